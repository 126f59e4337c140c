//! `/pair…` routes (behind the same gate as every path), on the pairing service; all answer
//! 503 with how to turn pairing on when skychat runs without `--pair-enable`.
//!
//! | route | body / query | answer |
//! |---|---|---|
//! | `POST /pair` | `{"pk"}` (or Go's `peer_pk`; a PK or an alias) | `{"peer_pk","status","delivered"[,"reason"]}` (202 when not delivered) |
//! | `GET /pair` | | `[{"peer_pk","alias"?,"status","since","added_at","last_msg_at"}]` |
//! | `GET /pair/invites` | | `[{"peer_pk","alias"?,"received_at"}]` |
//! | `POST /pair/invites/<pk>/accept` | | `{"peer_pk","status":"paired"}` |
//! | `POST /pair/invites/<pk>/decline` | | `{"peer_pk","declined":true,"told":bool}` |
//! | `GET /pair/inbox` | `since` (RFC 3339), `limit` (1..=1000, default 100) | `[{"peer_pk","id","text","ts","ts_ms"}]` |
//! | `POST /pair/<pk>/message` | `{"text"}` | `{"id","acked":true,"ms","network"}` |
//! | `DELETE /pair/<pk>` | | `{"peer_pk","removed":true,"told":bool}` |

use miniserde::json::Object;

use super::PeerRef;
use crate::apps::skychat::chat::Chat;
use crate::apps::skychat::pair::book::{Fail, Status};
use crate::apps::skychat::pair::time::{format_rfc3339, parse_rfc3339};
use crate::apps::skychat::pair::{INBOX_CAP, OFF_FOR_USERS, Pairs};
use crate::crypto::identity::PublicKey;
use crate::http::json::{Fields, Ordered, Out, parse_object};
use crate::http::server::{Request, Response};

/// The default and largest `limit` of `GET /pair/inbox`.
pub const INBOX_LIMIT_DEFAULT: usize = 100;

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

/// Parses `POST /pair {"pk"}` (`peer_pk` also taken, as Go names it).
pub fn parse_add(body: &[u8]) -> Result<PeerRef, Response> {
    let obj = object(body)?;
    let mut f = Fields::new(&obj, "");
    let pk = f.opt_str("pk").map_err(bad)?;
    let peer_pk = f.opt_str("peer_pk").map_err(bad)?;
    f.deny_unknown().map_err(bad)?;
    let (key, v) = match (pk, peer_pk) {
        (Some(v), None) => ("pk", v),
        (None, Some(v)) => ("peer_pk", v),
        (Some(_), Some(_)) => return Err(bad("give `pk` or `peer_pk`, not both")),
        (None, None) => return Err(bad("field `pk`: missing (a public key or an alias)")),
    };
    PeerRef::parse(v).map_err(|e| bad(format!("field `{key}`: {e}")))
}

/// Parses `POST /pair/<pk>/message {"text"}` (length checked by the service: 413 past it).
pub fn parse_text(body: &[u8]) -> Result<String, Response> {
    let obj = object(body)?;
    let mut f = Fields::new(&obj, "");
    let t = f.str("text").map_err(bad)?.to_string();
    f.deny_unknown().map_err(bad)?;
    if t.is_empty() {
        return Err(bad("field `text`: must not be empty"));
    }
    Ok(t)
}

/// Parses `since` (RFC 3339; `+` taken literally) and `limit` of `GET /pair/inbox`.
pub fn parse_inbox_query(
    since: Option<&str>,
    limit: Option<&str>,
) -> Result<(Option<u64>, usize), Response> {
    let since = match since {
        None | Some("") => None,
        Some(raw) => {
            let v = super::pct_decode(&raw.replace('+', "%2B"))
                .ok_or_else(|| bad("query `since`: bad percent-encoding"))?;
            Some(parse_rfc3339(&v).map_err(|e| bad(format!("query `since`: {e}")))?)
        }
    };
    let limit = match limit {
        None | Some("") => INBOX_LIMIT_DEFAULT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=INBOX_CAP).contains(&n) => n,
            _ => {
                return Err(bad(format!(
                    "query `limit`: expected 1 to {INBOX_CAP}, got {v:?}"
                )));
            }
        },
    };
    Ok((since, limit))
}

fn resp(f: Fail) -> Response {
    Response::error(f.0, f.1)
}

fn json(status: u16, o: Ordered) -> Response {
    Response::json(status, o.to_compact() + "\n")
}

fn json_arr(items: Vec<Out>) -> Response {
    let body = Ordered::new().field("a", Out::Arr(items)).to_compact();
    let inner = body
        .strip_prefix("{\"a\":")
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or("[]")
        .to_string();
    Response::json(200, inner + "\n")
}

fn resolve(chat: &Chat, s: &str) -> Result<PublicKey, Response> {
    match PeerRef::parse(s).map_err(|e| bad(format!("{s:?}: {e}")))? {
        PeerRef::Pk(pk) => Ok(pk),
        PeerRef::Alias(n) => chat.aliases().resolve(&n).ok_or_else(|| {
            Response::error(404, format!("no alias {n:?} (GET /aliases lists them)"))
        }),
    }
}

fn with_alias(chat: &Chat, o: Ordered, pk: &PublicKey) -> Ordered {
    match chat.aliases().name_of(pk) {
        Some(n) => o.field("alias", Out::Str(n)),
        None => o,
    }
}

/// Whether `path` is a pairing route.
pub fn is_pair_path(path: &str) -> bool {
    path == "/pair" || path.starts_with("/pair/")
}

/// Serves a `/pair…` request.
pub async fn route(chat: &Chat, req: &Request) -> Response {
    let Some(p) = chat.pairs() else {
        return Response::error(503, OFF_FOR_USERS);
    };
    inner(chat, p, req).await.unwrap_or_else(|e| e)
}

async fn inner(chat: &Chat, p: &Pairs, req: &Request) -> Result<Response, Response> {
    let parts: Vec<&str> = req.path.trim_end_matches('/').split('/').skip(2).collect();
    let m = req.method.as_str();
    match (m, parts.as_slice()) {
        ("POST", []) => {
            let who = parse_add(&req.body)?;
            let peer = match who {
                PeerRef::Pk(pk) => pk,
                PeerRef::Alias(n) => resolve(chat, &n)?,
            };
            let a = p.add(chat, peer).await.map_err(resp)?;
            let o = Ordered::new()
                .field("peer_pk", Out::Str(peer.to_hex()))
                .field("status", Out::Str(a.status.as_str().into()));
            Ok(match a.delivered {
                Ok(()) => json(200, o.field("delivered", Out::Bool(true))),
                Err(e) => json(
                    202,
                    o.field("delivered", Out::Bool(false)).field(
                        "reason",
                        Out::Str(format!(
                            "{e}; the invite is kept: POST /pair again to resend it"
                        )),
                    ),
                ),
            })
        }
        ("GET", []) => {
            let items = p
                .list()
                .into_iter()
                .map(|x| {
                    let o = with_alias(
                        chat,
                        Ordered::new().field("peer_pk", Out::Str(x.peer.to_hex())),
                        &x.peer,
                    );
                    Out::Obj(
                        o.field("status", Out::Str(x.status.as_str().into()))
                            .field("since", Out::U64(x.since))
                            .field("added_at", Out::Str(format_rfc3339(x.since)))
                            .field("last_msg_at", Out::U64(x.last_msg_at)),
                    )
                })
                .collect();
            Ok(json_arr(items))
        }
        ("GET", ["invites"]) => {
            let items = p
                .list()
                .into_iter()
                .filter(|x| x.status == Status::PendingIn)
                .map(|x| {
                    let o = with_alias(
                        chat,
                        Ordered::new().field("peer_pk", Out::Str(x.peer.to_hex())),
                        &x.peer,
                    );
                    Out::Obj(o.field("received_at", Out::Str(format_rfc3339(x.since))))
                })
                .collect();
            Ok(json_arr(items))
        }
        ("POST", ["invites", who, "accept"]) => {
            let peer = resolve(chat, who)?;
            p.accept(chat, peer).await.map_err(resp)?;
            Ok(json(
                200,
                Ordered::new()
                    .field("peer_pk", Out::Str(peer.to_hex()))
                    .field("status", Out::Str("paired".into())),
            ))
        }
        ("POST", ["invites", who, "decline"]) => {
            let peer = resolve(chat, who)?;
            let told = p.decline(chat, peer).await.map_err(resp)?;
            Ok(json(
                200,
                Ordered::new()
                    .field("peer_pk", Out::Str(peer.to_hex()))
                    .field("declined", Out::Bool(true))
                    .field("told", Out::Bool(told)),
            ))
        }
        ("GET", ["inbox"]) => {
            let (since, limit) =
                parse_inbox_query(req.query_param("since"), req.query_param("limit"))?;
            let items = p
                .inbox(since, limit)
                .into_iter()
                .map(|x| {
                    Out::Obj(
                        Ordered::new()
                            .field("peer_pk", Out::Str(x.peer.to_hex()))
                            .field("id", Out::Str(x.id.to_string()))
                            .field("text", Out::Str(x.text))
                            .field("ts", Out::Str(format_rfc3339(x.ts_ms)))
                            .field("ts_ms", Out::U64(x.ts_ms)),
                    )
                })
                .collect();
            Ok(json_arr(items))
        }
        ("POST", [who, "message"]) if !matches!(*who, "invites" | "inbox") => {
            let text = parse_text(&req.body)?;
            let peer = resolve(chat, who)?;
            let (id, ms, net) = p.send(chat, peer, &text).await.map_err(resp)?;
            Ok(json(
                200,
                Ordered::new()
                    .field("id", Out::Str(id.to_string()))
                    .field("acked", Out::Bool(true))
                    .field("ms", Out::U64(ms))
                    .field("network", Out::Str(net.into())),
            ))
        }
        ("DELETE", [who]) if !matches!(*who, "invites" | "inbox") => {
            let peer = resolve(chat, who)?;
            let told = p.remove(chat, peer).await.map_err(resp)?;
            Ok(json(
                200,
                Ordered::new()
                    .field("peer_pk", Out::Str(peer.to_hex()))
                    .field("removed", Out::Bool(true))
                    .field("told", Out::Bool(told)),
            ))
        }
        _ => Err(Response::error(
            404,
            format!(
                "no route {} {} (pairing routes: POST|GET /pair, GET /pair/invites, POST \
                 /pair/invites/<pk>/accept|decline, GET /pair/inbox, POST /pair/<pk>/message, \
                 DELETE /pair/<pk>)",
                req.method, req.path
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_queries_parse_and_refuse_garbage() {
        let pk = crate::crypto::Keypair::from_seed(&[4; 32])
            .public()
            .to_hex();
        assert_eq!(
            parse_add(format!(r#"{{"pk":"{pk}"}}"#).as_bytes()).unwrap(),
            PeerRef::parse(&pk).unwrap()
        );
        assert_eq!(
            parse_add(br#"{"peer_pk":"bob"}"#).unwrap(),
            PeerRef::Alias("bob".into())
        );
        for b in [
            &br#"{}"#[..],
            br#"{"pk":"bob","peer_pk":"bob"}"#,
            br#"{"pk":"not a key!"}"#,
            br#"{"pk":"bob","x":1}"#,
            b"",
            b"[1]",
        ] {
            let r = parse_add(b).unwrap_err();
            assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(b));
        }
        assert_eq!(parse_text(br#"{"text":"hi"}"#).unwrap(), "hi");
        assert_eq!(parse_text(br#"{"text":""}"#).unwrap_err().status, 400);
        assert_eq!(parse_text(br#"{"message":"hi"}"#).unwrap_err().status, 400);
        assert_eq!(parse_inbox_query(None, None).unwrap(), (None, 100));
        assert_eq!(
            parse_inbox_query(Some("2026-05-12T10:30:00+02:00"), Some("5")).unwrap(),
            (Some(1_778_574_600_000), 5)
        );
        assert_eq!(
            parse_inbox_query(Some("2026-05-12T08%3A30%3A00Z"), None).unwrap(),
            (Some(1_778_574_600_000), 100)
        );
        for (s, l) in [
            (Some("yesterday"), None),
            (Some("%zz"), None),
            (None, Some("0")),
            (None, Some("1001")),
            (None, Some("x")),
        ] {
            assert_eq!(
                parse_inbox_query(s, l).unwrap_err().status,
                400,
                "{s:?} {l:?}"
            );
        }
        assert!(is_pair_path("/pair") && is_pair_path("/pair/inbox"));
        assert!(!is_pair_path("/pairs"));
    }
}
