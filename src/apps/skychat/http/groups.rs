//! `/groups…` routes (behind the same gate as every path), on the group service.

use miniserde::json::Object;

use super::PeerRef;
use crate::apps::skychat::chat::Chat;
use crate::apps::skychat::group::{GroupId, Mode};
use crate::apps::skychat::groups::{Fail, Groups, Info};
use crate::crypto::identity::PublicKey;
use crate::http::json::{Fields, Ordered, Out, parse_object, str_array};
use crate::http::server::{Request, Response};

/// `POST /groups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateBody {
    /// `name`.
    pub name: String,
    /// `mode`.
    pub mode: Mode,
    /// `members`.
    pub members: Vec<PeerRef>,
}

fn bad(msg: impl std::fmt::Display) -> Response {
    Response::error(400, msg.to_string())
}

fn object(body: &[u8]) -> Result<Object, Response> {
    if body.len() > super::MAX_BODY {
        return Err(Response::error(413, "body too large"));
    }
    let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(bad("a JSON object body is required"));
    }
    parse_object(text).map_err(bad)
}

/// Parses `POST /groups {"name","mode"?,"members"?}`.
pub fn parse_create(body: &[u8]) -> Result<CreateBody, Response> {
    let obj = object(body)?;
    let mut f = Fields::new(&obj, "");
    let name = f.str("name").map_err(bad)?.to_string();
    let mode = match f.opt_str("mode").map_err(bad)? {
        None => Mode::Public,
        Some(m) => Mode::parse(m)
            .ok_or_else(|| bad(f.err("mode", "expected \"public\" or \"private\"")))?,
    };
    let mut members = Vec::new();
    for (path, m) in f.opt_str_array("members").map_err(bad)? {
        members.push(PeerRef::parse(m).map_err(|e| bad(format!("field `{path}`: {e}")))?);
    }
    f.deny_unknown().map_err(bad)?;
    Ok(CreateBody {
        name,
        mode,
        members,
    })
}

/// Parses a body of one required string field `key` (`invite`, `message`).
pub fn parse_one(body: &[u8], key: &'static str) -> Result<String, Response> {
    let obj = object(body)?;
    let mut f = Fields::new(&obj, "");
    let v = f.str(key).map_err(bad)?.to_string();
    if v.is_empty() {
        return Err(bad(f.err(key, "must not be empty")));
    }
    f.deny_unknown().map_err(bad)?;
    Ok(v)
}

/// Parses `POST /groups/<id>/members {"action","pk"}`.
pub fn parse_members(body: &[u8]) -> Result<(&'static str, PeerRef), Response> {
    let obj = object(body)?;
    let mut f = Fields::new(&obj, "");
    let a = f.str("action").map_err(bad)?;
    let action = ["add", "remove", "promote", "demote"]
        .into_iter()
        .find(|k| *k == a)
        .ok_or_else(|| bad(f.err("action", "expected add|remove|promote|demote")))?;
    let pk = f.str("pk").map_err(bad)?;
    let pk = PeerRef::parse(pk).map_err(|e| bad(f.err("pk", e)))?;
    f.deny_unknown().map_err(bad)?;
    Ok((action, pk))
}

fn resp(f: Fail) -> Response {
    Response::error(f.0, f.1)
}

fn ok(o: Ordered) -> Response {
    Response::json(200, o.to_compact() + "\n")
}

fn info_json(i: &Info) -> Ordered {
    let mut o = Ordered::new()
        .field("id", Out::Str(i.id.to_hex()))
        .field("name", Out::Str(i.name.clone()))
        .field("owner_pk", Out::Str(i.owner.to_hex()))
        .field("port", Out::U64(i.port.into()))
        .field("mode", Out::Str(i.mode.as_str().into()))
        .field(
            "role",
            Out::Str(i.role.map(|r| r.as_str()).unwrap_or("none").into()),
        )
        .field("members", str_array(i.members.iter().map(|p| p.to_hex())))
        .field("admins", str_array(i.admins.iter().map(|p| p.to_hex())))
        .field("last_seq", Out::U64(i.last_seq))
        .field("last_message_at", Out::U64(i.last_message_at))
        .field("created_at", Out::U64(i.created_at))
        .field("subscriber_alive", Out::Bool(i.subscriber_alive));
    if let Some(n) = i.subscribers {
        o = o.field("subscribers", Out::U64(n as u64));
    }
    if i.deleted {
        o = o.field("deleted", Out::Bool(true));
    }
    o
}

fn resolve(chat: &Chat, p: &PeerRef) -> Result<PublicKey, Response> {
    match p {
        PeerRef::Pk(pk) => Ok(*pk),
        PeerRef::Alias(n) => chat
            .aliases()
            .resolve(n)
            .ok_or_else(|| Response::error(404, format!("no alias {n:?}"))),
    }
}

fn query_u64(req: &Request, key: &str, max: u64, default: u64) -> Result<u64, Response> {
    match req.query_param(key) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(bad(format!(
                "query `{key}`: expected an integer from 0 to {max}, got {v:?}"
            ))),
        },
    }
}

/// Whether `path` is a group route.
pub fn is_group_path(path: &str) -> bool {
    path == "/groups" || path.starts_with("/groups/")
}

/// Serves a `/groups…` request.
pub async fn route(chat: &Chat, req: &Request) -> Response {
    let Some(g) = chat.groups() else {
        return Response::error(
            503,
            "groups are off: this host does not lend skychat its identity",
        );
    };
    inner(chat, g, req).await.unwrap_or_else(|e| e)
}

async fn inner(chat: &Chat, g: &Groups, req: &Request) -> Result<Response, Response> {
    let parts: Vec<&str> = req.path.trim_end_matches('/').split('/').skip(2).collect();
    let m = req.method.as_str();
    match (m, parts.as_slice()) {
        ("POST", []) => {
            let b = parse_create(&req.body)?;
            let mut members = Vec::new();
            for p in &b.members {
                members.push(resolve(chat, p)?);
            }
            let i = g.create(&b.name, b.mode, &members).map_err(resp)?;
            Ok(ok(info_json(&i)))
        }
        ("GET", []) => {
            let items = g
                .ids()
                .into_iter()
                .filter_map(|id| g.info(id).ok())
                .map(|i| Out::Obj(info_json(&i)))
                .collect();
            Ok(ok(Ordered::new().field("groups", Out::Arr(items))))
        }
        ("POST", ["join"]) => {
            let link = parse_one(&req.body, "invite")?;
            let i = g.join(chat, &link).await.map_err(resp)?;
            Ok(ok(info_json(&i)))
        }
        (_, [id, rest @ ..]) => {
            let id = GroupId::from_hex(id)
                .map_err(|e| Response::error(404, format!("no group {id:?}: {e}")))?;
            match (m, rest) {
                ("GET", []) => Ok(ok(info_json(&g.info(id).map_err(resp)?))),
                ("POST", ["invite"]) => {
                    let l = g.invite(id).map_err(resp)?;
                    Ok(ok(Ordered::new().field("invite", Out::Str(l))))
                }
                ("POST", ["message"]) => {
                    let text = parse_one(&req.body, "message")?;
                    let (seq, eid) = g.post(chat, id, &text).await.map_err(resp)?;
                    Ok(ok(Ordered::new()
                        .field("seq", Out::U64(seq))
                        .field("id", Out::Str(format!("{eid:016x}")))))
                }
                ("GET", ["history"]) => {
                    let limit = query_u64(req, "limit", 10_000, 100)?.max(1) as usize;
                    let since = query_u64(req, "since", u64::MAX, 0)?;
                    let posts = g.history(id, since, limit).map_err(resp)?;
                    let items = posts
                        .into_iter()
                        .map(|p| {
                            let o = Ordered::new()
                                .field("seq", Out::U64(p.seq))
                                .field("from", Out::Str(p.from.to_hex()));
                            let o = match p.text {
                                Ok(t) => o.field("text", Out::Str(t)),
                                Err(e) => o.field("text", Out::Null).field("error", Out::Str(e)),
                            };
                            Out::Obj(o.field("ts", Out::U64(p.ts_ms)))
                        })
                        .collect();
                    Ok(ok(Ordered::new().field("messages", Out::Arr(items))))
                }
                ("POST", ["members"]) => {
                    let (action, p) = parse_members(&req.body)?;
                    let pk = resolve(chat, &p)?;
                    let seq = g.member_action(chat, id, action, pk).await.map_err(resp)?;
                    Ok(ok(Ordered::new().field("seq", Out::U64(seq))))
                }
                ("POST", ["leave"]) => {
                    g.leave(chat, id).await.map_err(resp)?;
                    Ok(ok(Ordered::new()))
                }
                ("POST", ["delete"]) => {
                    g.delete(chat, id).await.map_err(resp)?;
                    Ok(ok(Ordered::new()))
                }
                _ => Err(Response::error(
                    404,
                    format!("no route {} {}", req.method, req.path),
                )),
            }
        }
        _ => Err(Response::error(
            404,
            format!("no route {} {}", req.method, req.path),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_and_refuse_garbage() {
        let b = parse_create(br#"{"name":"club","mode":"private","members":["bob"]}"#).unwrap();
        assert_eq!(b.mode, Mode::Private);
        assert_eq!(b.members, vec![PeerRef::Alias("bob".into())]);
        assert_eq!(parse_create(br#"{"name":"x"}"#).unwrap().mode, Mode::Public);
        for bad in [
            &br#"{"name":"x","mode":"secret"}"#[..],
            br#"{"name":"x","extra":1}"#,
            br#"{"mode":"public"}"#,
            br#"[]"#,
            b"",
        ] {
            assert_eq!(parse_create(bad).unwrap_err().status, 400);
        }
        assert_eq!(parse_one(br#"{"invite":"x"}"#, "invite").unwrap(), "x");
        assert_eq!(
            parse_one(br#"{"invite":""}"#, "invite").unwrap_err().status,
            400
        );
        assert_eq!(
            parse_one(br#"{"message":"x","y":1}"#, "message")
                .unwrap_err()
                .status,
            400
        );
        let (a, _) = parse_members(br#"{"action":"promote","pk":"bob"}"#).unwrap();
        assert_eq!(a, "promote");
        assert_eq!(
            parse_members(br#"{"action":"ban","pk":"bob"}"#)
                .unwrap_err()
                .status,
            400
        );
        assert!(is_group_path("/groups") && is_group_path("/groups/ab/history"));
        assert!(!is_group_path("/groupsx"));
    }
}
