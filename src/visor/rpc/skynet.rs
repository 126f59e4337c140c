//! The skynet routes of the RPC (see the table in `visor::rpc`): transports, the rule table,
//! route groups, drop counters and pings over a route, answered from the visor's
//! [`Control`] — 503 when the visor runs no skynet node, 501 from a build without the
//! `skynet` feature.

use std::time::Duration;

use crate::crypto::PublicKey;
use crate::http::server::{Request, Response};

use super::RpcState;

#[cfg(not(feature = "skynet"))]
const NO_SKYNET: &str = "this visor was built without skynet (the `skynet` cargo feature): it has \
                         no transports, routes or route groups";

/// The `route` query parameter: `None` for none or `dmsg` (the dmsg paths), else the
/// policy's text; 501 in this build for any other.
#[cfg(not(feature = "skynet"))]
pub(super) fn policy(route: Option<&str>) -> Result<Option<String>, Response> {
    match route {
        None | Some("dmsg") => Ok(None),
        Some(_) => Err(Response::error(501, NO_SKYNET)),
    }
}

/// `count` round trips to `pk` over a route chosen by `policy`.
#[cfg(not(feature = "skynet"))]
pub(super) async fn ping(
    _: &RpcState,
    _: PublicKey,
    _: &str,
    _: u32,
) -> Result<Vec<Duration>, Response> {
    Err(Response::error(501, NO_SKYNET))
}

/// Every skynet route: 501 in this build.
#[cfg(not(feature = "skynet"))]
pub(super) async fn route(_: &RpcState, _: &Request, _: &[&str]) -> Response {
    Response::error(501, NO_SKYNET)
}

#[cfg(feature = "skynet")]
pub(super) use on::{ping, policy, route};

#[cfg(feature = "skynet")]
mod on {
    use std::sync::Arc;

    use super::*;
    use crate::router::control::Control;
    use crate::router::policy::RoutePolicy;
    use crate::rpc::skynet::{Drops, Removed, TpTypes};
    use crate::rpc::{Body, Items};
    use crate::visor::rpc::{bad_pk, launch_err, ok};

    /// What a visor that runs no skynet node answers.
    const SKYNET_OFF: &str = "this visor runs no skynet node: it has no transports, routes or \
                              route groups";

    fn control(st: &RpcState) -> Result<&Arc<dyn Control>, Response> {
        st.control
            .as_ref()
            .ok_or_else(|| Response::error(503, SKYNET_OFF))
    }

    /// The `route` query parameter: `None` for none or `dmsg` (the dmsg paths), else the
    /// policy in its canonical text (400 naming what is accepted when it does not parse).
    pub(in crate::visor::rpc) fn policy(route: Option<&str>) -> Result<Option<String>, Response> {
        let Some(r) = route else { return Ok(None) };
        match r.parse::<RoutePolicy>() {
            Ok(RoutePolicy::Dmsg) => Ok(None),
            Ok(p) => Ok(Some(p.to_string())),
            Err(e) => Err(Response::error(400, format!("route {r:?}: {e}"))),
        }
    }

    /// `count` round trips to `pk` over a route chosen by `policy`.
    pub(in crate::visor::rpc) async fn ping(
        st: &RpcState,
        pk: PublicKey,
        policy: &str,
        count: u32,
    ) -> Result<Vec<Duration>, Response> {
        let c = control(st)?;
        c.ping(pk, policy.to_string(), count)
            .await
            .map_err(|e| Response::error(502, e))
    }

    /// `/v1/transports…`, `/v1/routes…`, `/v1/groups`, `/v1/apps/<name>/routes`.
    pub(in crate::visor::rpc) async fn route(
        st: &RpcState,
        req: &Request,
        segs: &[&str],
    ) -> Response {
        let c = match control(st) {
            Ok(c) => c,
            Err(r) => return r,
        };
        match (req.method.as_str(), segs) {
            ("GET", ["v1", "transports"]) => ok(Items(c.transports()).to_json()),
            ("GET", ["v1", "transports", "types"]) => ok(TpTypes {
                types: c.transport_types(),
            }
            .to_json()),
            ("POST", ["v1", "transports", pk]) => add(c.as_ref(), req, pk).await,
            ("DELETE", ["v1", "transports", id]) => {
                if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Response::error(
                        400,
                        format!("{id:?} is not a transport id (32 hex digits, as 'tp ls' shows)"),
                    );
                }
                let id = id.to_ascii_lowercase();
                match c.remove_transport(&id) {
                    Ok(()) => ok(Removed { removed: id }.to_json()),
                    Err(e) => Response::error(404, e),
                }
            }
            ("GET", ["v1", "routes"]) => ok(Items(c.rules()).to_json()),
            ("GET", ["v1", "routes", "drops"]) => ok(Drops(c.drops()).to_json()),
            ("GET", ["v1", "groups"]) => ok(Items(c.groups(None)).to_json()),
            ("GET", ["v1", "apps", name, "routes"]) => match st.launcher.status(name) {
                Ok(_) => ok(Items(c.groups(Some(name))).to_json()),
                Err(e) => launch_err(e),
            },
            (m, _) => Response::error(500, format!("{m} {}: route table out of step", req.path)),
        }
    }

    /// `POST /v1/transports/<pk>[?type=T][&persistent=0]`: with no type, each type the
    /// visor dials in turn (its order: stcp first), the first that comes up wins (and only it
    /// is kept up).
    async fn add(c: &dyn Control, req: &Request, pk: &str) -> Response {
        let pk = match PublicKey::from_hex(pk) {
            Ok(k) => k,
            Err(e) => return bad_pk(pk, e),
        };
        let persistent = !matches!(req.query_param("persistent"), Some("0" | "false"));
        let known = c.transport_types();
        let kinds = match req.query_param("type") {
            Some(t) if known.iter().any(|k| k == t) => vec![t.to_string()],
            Some(t) => {
                return Response::error(
                    400,
                    format!(
                        "no transport type {t:?} (this visor dials: {})",
                        known.join(", ")
                    ),
                );
            }
            None => known,
        };
        // Trying types in turn, each first attempt is not persistent (a persistent transport
        // stays configured, redialing, when its first attempt fails); the one that came up is
        // then made persistent if asked.
        let explicit = kinds.len() == 1 && req.query_param("type").is_some();
        let mut why = Vec::new();
        for k in kinds {
            let first = persistent && explicit;
            match c.add_transport(pk, k.clone(), first).await {
                Ok(_) if persistent && !first => {
                    return match c.add_transport(pk, k.clone(), true).await {
                        Ok(tp) => ok(tp.to_json()),
                        Err(e) => Response::error(502, format!("{k} to {pk}: {e}")),
                    };
                }
                Ok(tp) => return ok(tp.to_json()),
                Err(e) => why.push(format!("{k}: {e}")),
            }
        }
        if why.is_empty() {
            return Response::error(503, "this visor has no transport type to dial");
        }
        Response::error(502, format!("no transport to {pk}: {}", why.join("; ")))
    }
}
