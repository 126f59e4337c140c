//! The admin routes of the RPC (see the table in `visor::rpc`): the log tail, app settings
//! edits (saved through the config writer thread, then taken by the launcher) and stopping
//! or restarting the visor.

use crate::app::settings::AppEntry;
use crate::http::server::{Request, Response};
use crate::rpc::{
    self as api, AppSettings, AppSettingsSaved, Body, LOGS_DEFAULT, LOGS_MAX, LogLine, Logs,
};

use super::{RpcState, StopKind, edit_err, launch_err, ok};

/// `GET /v1/logs[?since=SEQ][&n=N]`.
pub(super) fn logs(req: &Request) -> Response {
    let since = match req.query_param("since").map(str::parse::<u64>) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => {
            return Response::error(400, "since must be a line number (0 or more)");
        }
    };
    let n = match req.query_param("n").map(str::parse::<u32>) {
        None => LOGS_DEFAULT,
        Some(Ok(n)) if (1..=LOGS_MAX).contains(&n) => n,
        Some(_) => return Response::error(400, format!("n must be 1-{LOGS_MAX}")),
    };
    let (lines, next) = crate::logger::tail(since, n as usize);
    ok(Logs {
        lines: lines
            .into_iter()
            .map(|l| LogLine {
                seq: l.seq,
                time: l.time,
                level: l.level.as_str().into(),
                text: l.text,
            })
            .collect(),
        next,
    }
    .to_json())
}

/// `POST /v1/shutdown` and `POST /v1/restart`: 202 now, the stop once the answer is out
/// (`visor::run` waits `RPC_STOP_DELAY` first). Asked again, the same answer; the other one
/// after the first is 409.
pub(super) fn stop(st: &RpcState, kind: StopKind) -> Response {
    let doing = |k| match k {
        StopKind::Shutdown => "shutting down",
        StopKind::Restart => "restarting",
    };
    match st.stopper.request(kind) {
        Ok(()) => {}
        Err(k) if k == kind => {}
        Err(k) => {
            return Response::error(409, format!("the visor is {} already", doing(k)));
        }
    }
    Response::json(
        202,
        api::Status {
            status: doing(kind).into(),
        }
        .to_json()
        .to_pretty()
            + "\n",
    )
}

/// The route asked for, parsed (nothing in a build without skynet, which refuses one).
#[cfg(feature = "skynet")]
type Route = Option<crate::router::policy::RoutePolicy>;
#[cfg(not(feature = "skynet"))]
type Route = Option<std::convert::Infallible>;

/// `settings` (with `route`, the parsed `settings.route`) applied to `e`.
fn patch(e: &mut AppEntry, s: &AppSettings, route: &Route) {
    if let Some(a) = &s.args {
        e.args = a.clone();
    }
    if let Some(b) = s.auto_start {
        e.auto_start = b;
    }
    #[cfg(feature = "skynet")]
    if let Some(r) = route {
        e.route = r.clone();
    }
    #[cfg(not(feature = "skynet"))]
    let _ = route;
}

/// `POST /v1/apps/<name>/settings`: checked (404 unknown app, 400 bad body, route or
/// arguments), saved to the config file's `launcher.apps[]` entry (made when there is
/// none) through the config writer, then taken by the launcher for the app's next start.
pub(super) async fn set_app(st: &RpcState, name: &str, req: &Request) -> Response {
    let base = match st.launcher.entry(name) {
        Ok(e) => e,
        Err(e) => return launch_err(e),
    };
    let Ok(body) = std::str::from_utf8(&req.body) else {
        return Response::error(400, "the body is not UTF-8");
    };
    let settings = match AppSettings::parse(body) {
        Ok(s) => s,
        Err(m) => return Response::error(400, m),
    };
    #[cfg(feature = "skynet")]
    let route: Route = match settings.route.as_deref() {
        None => None,
        Some(r) => match r.parse::<crate::router::policy::RoutePolicy>() {
            Ok(p) => Some(p),
            Err(e) => return Response::error(400, format!("route {r:?}: {e}")),
        },
    };
    #[cfg(not(feature = "skynet"))]
    let route: Route = match settings.route {
        None => None,
        Some(_) => {
            return Response::error(
                400,
                "route: this visor was built without skynet (the `skynet` cargo feature); its \
                 apps dial over dmsg",
            );
        }
    };
    // The arguments are checked before anything is saved.
    let mut want = base.clone();
    patch(&mut want, &settings, &route);
    if let Err(e) = st.launcher.check_entry(&want) {
        return launch_err(e);
    }
    let (l1, l2, n1, n2) = (
        st.launcher.clone(),
        st.launcher.clone(),
        name.to_string(),
        name.to_string(),
    );
    let saved =
        st.writer
            .edit(
                move |cfg| {
                    let i = cfg.apps.iter().position(|a| a.name == n1);
                    let mut e = i.map_or(base, |i| cfg.apps[i].clone());
                    patch(&mut e, &settings, &route);
                    // The file's own arguments (kept when none are given) may have been edited
                    // by hand since the visor started.
                    l1.check_entry(&e)
                        .map_err(|e| super::EditError::Invalid(e.to_string()))?;
                    match i {
                        Some(i) if cfg.apps[i] == e => Ok(false),
                        Some(i) => {
                            cfg.apps[i] = e;
                            Ok(true)
                        }
                        None => {
                            cfg.apps.push(e);
                            Ok(true)
                        }
                    }
                },
                move |cfg| {
                    let e =
                        cfg.apps.iter().find(|a| a.name == n2).ok_or_else(|| {
                            crate::app::launcher::LaunchError::Unknown(n2.clone())
                        })?;
                    let r = l2.set_entry(e);
                    if r.is_ok() {
                        log::info!(
                            "launcher.apps: {n2}: settings saved (args {:?}, auto_start {}{})",
                            e.args,
                            e.auto_start,
                            route_text(e)
                        );
                    }
                    r
                },
            )
            .await;
    match saved {
        Ok(Ok(restart_needed)) => match st.launcher.status(name) {
            Ok(a) => ok(AppSettingsSaved {
                app: api::App {
                    connections: Some(
                        st.launcher
                            .conns()
                            .list(Some(name))
                            .iter()
                            .map(api::Conn::from)
                            .collect(),
                    ),
                    ..api::App::from(&a)
                },
                restart_needed,
            }
            .to_json()),
            Err(e) => launch_err(e),
        },
        Ok(Err(e)) => launch_err(e),
        Err(e) => edit_err(e),
    }
}

#[cfg(feature = "skynet")]
fn route_text(e: &AppEntry) -> String {
    format!(", route {}", e.route)
}

#[cfg(not(feature = "skynet"))]
fn route_text(_: &AppEntry) -> String {
    String::new()
}
