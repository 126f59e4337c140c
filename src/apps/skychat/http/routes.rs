//! The routes behind the gate, on the engine ([`Chat`]).

use std::sync::Arc;
use std::time::Duration;

use async_executor::Executor;

use super::sse::sse_stream;
use super::{
    ErrorCount, PeerRef, parse_alias_add, parse_alias_rm, parse_events_query, parse_forget,
    parse_history_query, parse_message, parse_read, resume_point,
};
use crate::apps::skychat::chat::{Chat, NetChoice, SendOutcome, SendReq};
use crate::apps::skychat::events::{Channel, Dir, Event, Kind};
use crate::apps::skychat::proto::MsgId;
use crate::crypto::identity::PublicKey;
use crate::http::json::{Ordered, Out};
use crate::http::server::{Handler, Request, Response};

/// The routes on `chat`; `errors` counts the 4xx answers.
pub fn routes(chat: Chat, errors: Arc<ErrorCount>, ex: Arc<Executor<'static>>) -> Handler {
    Arc::new(move |req: Request| {
        let (chat, errors, ex) = (chat.clone(), errors.clone(), ex.clone());
        Box::pin(async move {
            let resp = route(&chat, &errors, &ex, req).await;
            if (400..500).contains(&resp.status) {
                errors.bump();
            }
            resp
        })
    })
}

fn no_content() -> Response {
    Response::text(204, "")
}

fn json(status: u16, o: Ordered) -> Response {
    Response::json(status, o.to_compact() + "\n")
}

fn json_arr(items: Vec<Out>) -> Response {
    // An array at the top level: wrap in a one-field object and strip it.
    let body = Ordered::new().field("a", Out::Arr(items)).to_compact();
    let inner = body
        .strip_prefix("{\"a\":")
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or("[]")
        .to_string();
    Response::json(200, inner + "\n")
}

fn resolve(chat: &Chat, p: &PeerRef, field: &str) -> Result<PublicKey, Response> {
    match p {
        PeerRef::Pk(pk) => Ok(*pk),
        PeerRef::Alias(name) => chat.aliases().resolve(name).ok_or_else(|| {
            Response::error(
                404,
                format!("{field}: no alias {name:?} (GET /aliases lists them)"),
            )
        }),
    }
}

async fn route(
    chat: &Chat,
    errors: &ErrorCount,
    ex: &Arc<Executor<'static>>,
    req: Request,
) -> Response {
    let r = match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/") => {
            let mut p = Response::text(200, super::web::INDEX);
            p.content_type = "text/html; charset=utf-8";
            Ok(p.with_header("Cache-Control", "no-store"))
        }
        ("POST", "/message") => message(chat, &req).await,
        ("GET", "/sse") => sse(chat, &req, true, ex),
        ("GET", "/events") => sse(chat, &req, false, ex),
        ("GET", "/history") => history(chat, &req),
        ("GET", "/history/peers") => history_peers(chat),
        ("POST", "/history/forget") => forget(chat, &req).await,
        ("GET", "/status") => Ok(status(chat, errors)),
        ("GET", "/unread") => Ok(json(
            200,
            Ordered::new().field("unread", Out::U64(chat.unread())),
        )),
        ("POST", "/unread") => {
            chat.reset_unread();
            Ok(no_content())
        }
        ("POST", "/read") => read(chat, &req).await,
        ("GET", "/aliases") => Ok(aliases(chat)),
        ("POST", "/aliases") => alias_add(chat, &req),
        ("POST", "/aliases/rm") => alias_rm(chat, &req),
        (_, p) if super::groups::is_group_path(p) => Ok(super::groups::route(chat, &req).await),
        (_, p) if super::pair::is_pair_path(p) => Ok(super::pair::route(chat, &req).await),
        (_, p) if KNOWN.contains(&p) => Err(Response::error(
            405,
            format!("{} is not served on {p}", req.method),
        )),
        (_, p) => Err(Response::error(
            404,
            format!("no route {p} (routes: {})", KNOWN.join(" ")),
        )),
    };
    r.unwrap_or_else(|e| e)
}

const KNOWN: &[&str] = &[
    "/",
    "/message",
    "/sse",
    "/events",
    "/history",
    "/history/peers",
    "/history/forget",
    "/status",
    "/unread",
    "/read",
    "/aliases",
    "/aliases/rm",
    "/groups",
    "/pair",
    "/health",
    "/login",
];

async fn message(chat: &Chat, req: &Request) -> Result<Response, Response> {
    let m = parse_message(&req.body)?;
    let to = resolve(chat, &m.recipient, "recipient")?;
    let network = NetChoice::parse(m.network).unwrap_or(NetChoice::Auto);
    let out = chat
        .send(SendReq {
            to,
            body: m.message,
            network,
            wait: Duration::from_millis(m.wait_ms),
            reply_to: m.reply_to.map(MsgId),
            retries: m.retries,
        })
        .await;
    let o = Ordered::new();
    Ok(match out {
        SendOutcome::Acked {
            id,
            ms,
            network,
            by,
        } => json(
            200,
            o.field("acked", Out::Bool(true))
                .field("id", Out::Str(id.to_string()))
                .field("ms", Out::U64(ms))
                .field("network", Out::Str(network.into()))
                .field("by", Out::Str(by.to_hex())),
        ),
        SendOutcome::Sent { id, network } => json(
            202,
            o.field("acked", Out::Bool(false))
                .field("sent", Out::Bool(true))
                .field("id", Out::Str(id.to_string()))
                .field("network", Out::Str(network.into())),
        ),
        SendOutcome::NotAcked { id, reason, ms } => json(
            504,
            o.field("acked", Out::Bool(false))
                .field("id", Out::Str(id.to_string()))
                .field("reason", Out::Str(reason))
                .field("ms", Out::U64(ms)),
        ),
        SendOutcome::Failed { reason } => json(
            502,
            o.field("acked", Out::Bool(false))
                .field("reason", Out::Str(reason)),
        ),
    })
}

fn channels_of(names: &[&str]) -> Vec<Channel> {
    names.iter().filter_map(|n| Channel::parse(n)).collect()
}

/// `/sse` (legacy JSON, history seed) and `/events` (structured).
fn sse(
    chat: &Chat,
    req: &Request,
    legacy: bool,
    ex: &Arc<Executor<'static>>,
) -> Result<Response, Response> {
    let (channels, resume) = if legacy {
        (vec![Channel::Dm, Channel::Group], resume_point(req)?)
    } else {
        let (names, since) = parse_events_query(req)?;
        (channels_of(&names), since)
    };
    Ok(sse_stream(
        chat.hub().clone(),
        chat.local_pk(),
        channels,
        resume,
        legacy,
        ex,
    ))
}

/// Message events the hub still keeps (the engine's history until the store lands), oldest
/// first.
fn kept_messages(chat: &Chat) -> Vec<Arc<Event>> {
    chat.hub()
        .kept(&[Channel::Dm])
        .into_iter()
        .filter(|e| e.kind == Kind::Message)
        .collect()
}

fn peer_of(chat: &Chat, e: &Event) -> PublicKey {
    if e.dir == Dir::Out || e.from == chat.local_pk() {
        e.to
    } else {
        e.from
    }
}

fn history(chat: &Chat, req: &Request) -> Result<Response, Response> {
    let (peer, limit) = parse_history_query(req)?;
    let peer = match &peer {
        Some(p) => Some(resolve(chat, p, "peer")?),
        None => None,
    };
    if let Some(st) = chat.store() {
        let recs = st
            .history(peer.as_ref(), limit)
            .map_err(|e| Response::error(500, format!("history: {e}")))?;
        let items = recs
            .into_iter()
            .map(|r| {
                let mut o = Ordered::new()
                    .field("id", Out::Str(MsgId(r.id).to_string()))
                    .field("peer", Out::Str(r.peer.to_hex()))
                    .field("dir", Out::Str(r.dir.as_str().into()))
                    .field("ts", Out::U64(r.ts_ms))
                    .field("network", Out::Str(r.net.as_str().into()))
                    .field("message", Out::Str(r.body));
                if let Some(rt) = r.reply_to {
                    o = o.field("reply_to_id", Out::Str(MsgId(rt).to_string()));
                }
                Out::Obj(o)
            })
            .collect();
        return Ok(json_arr(items));
    }
    let msgs: Vec<Arc<Event>> = kept_messages(chat)
        .into_iter()
        .filter(|e| peer.is_none_or(|p| peer_of(chat, e) == p))
        .collect();
    let skip = msgs.len().saturating_sub(limit);
    let items = msgs
        .into_iter()
        .skip(skip)
        .map(|e| {
            let mut o = Ordered::new()
                .field("id", Out::Str(e.id.to_string()))
                .field("peer", Out::Str(peer_of(chat, &e).to_hex()))
                .field("dir", Out::Str(e.dir.as_str().into()))
                .field("ts", Out::U64(e.ts_ms))
                .field("network", Out::Str(e.transport.into()))
                .field("message", Out::Str(e.text.clone()));
            if let Some(rt) = e.reply_to {
                o = o.field("reply_to_id", Out::Str(rt.to_string()));
            }
            Out::Obj(o)
        })
        .collect();
    Ok(json_arr(items))
}

fn history_peers(chat: &Chat) -> Result<Response, Response> {
    let mut peers: Vec<(PublicKey, u64, u64)> = Vec::new();
    if let Some(st) = chat.store() {
        peers = st
            .peers()
            .into_iter()
            .map(|p| (p.peer, p.count as u64, p.last_ts_ms))
            .collect();
    }
    for e in kept_messages(chat)
        .into_iter()
        .filter(|_| chat.store().is_none())
    {
        let p = peer_of(chat, &e);
        match peers.iter_mut().find(|(k, _, _)| *k == p) {
            Some(x) => {
                x.1 += 1;
                x.2 = x.2.max(e.ts_ms);
            }
            None => peers.push((p, 1, e.ts_ms)),
        }
    }
    let aliases = chat.aliases();
    let items = peers
        .into_iter()
        .map(|(pk, count, last)| {
            let mut o = Ordered::new().field("peer", Out::Str(pk.to_hex()));
            if let Some(n) = aliases.name_of(&pk) {
                o = o.field("alias", Out::Str(n));
            }
            Out::Obj(
                o.field("count", Out::U64(count))
                    .field("last_ts", Out::U64(last)),
            )
        })
        .collect();
    Ok(json_arr(items))
}

async fn forget(chat: &Chat, req: &Request) -> Result<Response, Response> {
    let peer = parse_forget(&req.body)?;
    let peer = match &peer {
        Some(p) => Some(resolve(chat, p, "peer")?),
        None => None,
    };
    let Some(st) = chat.store() else {
        return Err(Response::error(
            503,
            "this skychat keeps no history (--no-history): nothing to forget",
        ));
    };
    let n = st
        .forget(peer)
        .await
        .map_err(|e| Response::error(500, format!("forget: {e}")))?;
    Ok(json(
        200,
        Ordered::new().field("forgot", Out::U64(n as u64)),
    ))
}

async fn read(chat: &Chat, req: &Request) -> Result<Response, Response> {
    let (peer, id) = parse_read(&req.body)?;
    let peer = resolve(chat, &peer, "peer")?;
    chat.mark_read(peer, MsgId(id))
        .await
        .map_err(|e| Response::error(502, format!("read: {e}")))?;
    Ok(no_content())
}

fn aliases(chat: &Chat) -> Response {
    let items = chat
        .aliases()
        .list()
        .into_iter()
        .map(|(n, pk)| {
            Out::Obj(
                Ordered::new()
                    .field("name", Out::Str(n))
                    .field("pk", Out::Str(pk.to_hex())),
            )
        })
        .collect();
    json_arr(items)
}

fn alias_add(chat: &Chat, req: &Request) -> Result<Response, Response> {
    let (name, pk) = parse_alias_add(&req.body)?;
    chat.aliases()
        .set(&name, pk)
        .map_err(|e| Response::error(500, format!("aliases: {e}")))?;
    Ok(no_content())
}

fn alias_rm(chat: &Chat, req: &Request) -> Result<Response, Response> {
    let name = parse_alias_rm(&req.body)?;
    match chat.aliases().remove(&name) {
        Ok(true) => Ok(no_content()),
        Ok(false) => Err(Response::error(404, format!("no alias {name:?}"))),
        Err(e) => Err(Response::error(500, format!("aliases: {e}"))),
    }
}

fn status(chat: &Chat, errors: &ErrorCount) -> Response {
    let s = chat.status();
    let peers = s
        .peers
        .iter()
        .map(|(pk, net)| {
            Out::Obj(
                Ordered::new()
                    .field("pk", Out::Str(pk.to_hex()))
                    .field("network", Out::Str((*net).into())),
            )
        })
        .collect();
    let o = Ordered::new()
        .field("visor_pk", Out::Str(s.pk.to_hex()))
        .field("sse_subscribers", Out::U64(s.sse_subscribers as u64))
        .field("active_peer_conns", Out::U64(s.active_peer_conns as u64))
        .field("peers", Out::Arr(peers))
        .field("persistence_enabled", Out::Bool(s.persistence_enabled))
        .field("pairing_enabled", Out::Bool(chat.pairs().is_some()))
        .field("frame_proto_version", Out::U64(1))
        .field("schema_version", Out::Str("v1".into()))
        .field("app_uptime_sec", Out::U64(s.started.elapsed().as_secs()))
        .field("inbound_msg_count", Out::U64(s.inbound_msg_count))
        .field("outbound_msg_count", Out::U64(s.outbound_msg_count))
        .field("inbound_drop_count", Out::U64(s.inbound_drop_count))
        .field("outbound_fail_count", Out::U64(s.outbound_fail_count))
        .field("outbound_retry_count", Out::U64(s.outbound_retry_count))
        .field(
            "outbound_fallback_count",
            Out::U64(s.outbound_fallback_count),
        )
        .field("sse_drop_count", Out::U64(s.sse_drop_count))
        .field("protocol_error_count", Out::U64(s.protocol_error_count))
        .field("duplicate_count", Out::U64(s.duplicate_count))
        .field("last_rx_ts", Out::U64(s.last_rx_ts_ms.unwrap_or(0)))
        .field("last_send_ts", Out::U64(s.last_send_ts_ms.unwrap_or(0)));
    let o = match chat.store() {
        Some(st) => {
            let h = st.stats();
            o.field(
                "history",
                Out::Obj(
                    Ordered::new()
                        .field("records", Out::U64(h.records as u64))
                        .field("bytes", Out::U64(h.live_bytes))
                        .field("file_bytes", Out::U64(h.file_bytes))
                        .field("peers", Out::U64(h.peers as u64))
                        .field("fsyncs", Out::U64(h.fsyncs)),
                ),
            )
        }
        None => o,
    };
    json(200, o.field("http_error_count", Out::U64(errors.get())))
}

/// Serves skychat's HTTP surface on `l` (bound at `served`) until the listener fails.
pub async fn serve(
    l: async_net::TcpListener,
    served: std::net::SocketAddr,
    chat: Chat,
    opts: super::HttpOpts,
    ex: Arc<Executor<'static>>,
) -> Result<(), String> {
    if served.ip().is_unspecified() && opts.password.is_none() {
        log::warn!("skychat HTTP on every interface ({served}): set --password-file");
    }
    let errors = Arc::new(ErrorCount::default());
    let inner = routes(chat, errors.clone(), ex.clone());
    let handler = super::gate(served, &opts, errors, inner);
    let limits = crate::http::server::Limits {
        max_body_bytes: super::MAX_BODY,
        ..crate::http::server::Limits::default()
    };
    crate::http::server::serve(l, ex, handler, limits)
        .await
        .map_err(|e| format!("skychat HTTP on {served}: {e}"))
}

/// Binds the surface at `addr` (`host:port`, `:port` or `*:port` = every interface), writes a
/// fresh token to `<state_dir>/skychat-http-<port>.token` (0600) and loads the password file:
/// what [`serve`] needs. The token file is named after the port actually bound.
pub async fn bind(
    addr: &str,
    state_dir: &std::path::Path,
    password_file: Option<&std::path::Path>,
) -> Result<
    (
        async_net::TcpListener,
        std::net::SocketAddr,
        super::HttpOpts,
    ),
    String,
> {
    let a = crate::addr::bind_addr(addr);
    let password = match password_file {
        Some(p) => Some(super::auth::PasswordHash::load(p)?),
        None => None,
    };
    let l = async_net::TcpListener::bind(a.as_str())
        .await
        .map_err(|e| format!("skychat HTTP --addr {addr}: {e}"))?;
    let served = l
        .local_addr()
        .map_err(|e| format!("skychat HTTP --addr {addr}: {e}"))?;
    let token = crate::http::guard::new_token()?;
    let token_file = state_dir.join(format!("skychat-http-{}.token", served.port()));
    super::auth::write_token_file(&token_file, &token)?;
    Ok((
        l,
        served,
        super::HttpOpts {
            token,
            token_file,
            password,
        },
    ))
}

#[cfg(test)]
mod tests;
