//! The pty app's definition (`app-pty`, overlay port 22, critical, autostart): the framework
//! side of the host. Every accepted connection is checked against the trusted keys (the
//! host's own PK, its hypervisors, and `pty.whitelist` / `--whitelist`) and served by
//! [`host::serve_session`]. Runs in every mode: inside the visor, `dmsg pty` (own dmsg
//! client), `standalone pty --listen :2022` (Noise XK over TCP).

use std::sync::Arc;

use argh::FromArgs;
use futures_lite::future;

use super::PORT;
use super::host::{self, HostConfig, Limits, SessionCounter};
use crate::app::settings::RestartPolicy;
use crate::app::{AppCtx, AppDef, AppFuture, Mode, is_trusted};
use crate::spawn::Spawn;

#[derive(FromArgs, Debug)]
/// pty host arguments
struct Args {
    /// sessions at once (default 8)
    #[argh(option, default = "8")]
    max_sessions: usize,
    /// largest session request, bytes (default 65535)
    #[argh(option, default = "65535")]
    max_request: usize,
    /// shell for sessions (default: the user's login shell)
    #[argh(option)]
    shell: Option<std::path::PathBuf>,
}

fn parse_args(args: &[String]) -> Result<HostConfig, String> {
    let a: Args = crate::app::parse_args("pty", args)?;
    if a.max_sessions == 0 {
        return Err("--max-sessions must be at least 1".into());
    }
    if !(64..=65_535).contains(&a.max_request) {
        return Err("--max-request must be 64-65535".into());
    }
    Ok(HostConfig {
        limits: Limits {
            max_sessions: a.max_sessions,
            max_request: a.max_request,
            ..Limits::default()
        },
        shell: a.shell,
    })
}

/// The app definition.
pub static DEF: AppDef = AppDef {
    name: "pty",
    summary: "remote shell on a pseudo-terminal, for whitelisted PKs",
    modes: &[Mode::Visor, Mode::Dmsg, Mode::Tcp],
    port: Some(PORT),
    depends: &[],
    critical: true,
    autostart: true,
    restart: RestartPolicy::OnFailure,
    tcp_listen: Some(":2022"),
    check_args: |a| parse_args(a).map(|_| ()),
    start,
};

fn start(ctx: AppCtx) -> AppFuture {
    Box::pin(run(ctx))
}

async fn run(ctx: AppCtx) -> Result<(), String> {
    let config = Arc::new(parse_args(&ctx.args)?);
    let listener = ctx
        .net
        .listen(PORT)
        .map_err(|e| format!("port {PORT}: {e}"))?;
    ctx.ready();
    let counter = Arc::new(SessionCounter::new());
    let status = |n: usize| {
        format!(
            "{n} session(s) of at most {}; {} whitelisted",
            config.limits.max_sessions,
            ctx.host.whitelist.get().len()
        )
    };
    ctx.set_status(status(0));
    let serve = async {
        loop {
            let conn = listener.accept().await.map_err(|e| e.to_string())?;
            let peer = *conn.peer();
            let allowed = is_trusted(&ctx.host, &ctx.host.whitelist.get(), &peer);
            let (config, count, c2) = (config.clone(), counter.clone(), ctx.clone());
            ctx.ex
                .spawn_boxed(async move {
                    // Stopping the app ends its sessions: the dropped session closes the pty,
                    // and the kernel hangs up the shell's session.
                    let session = host::serve_session(conn, peer, allowed, &config, &count);
                    let end = future::or(session, async {
                        c2.stopped().await;
                        Err(super::PtyError::Interrupted("TERM (pty app stopped)"))
                    })
                    .await;
                    match end {
                        Ok(e) => log::info!("pty: session of {peer}: {e}"),
                        Err(e) => log::info!("pty: session of {peer} failed: {e}"),
                    }
                    c2.set_status(format!(
                        "{} session(s) of at most {}; {} whitelisted",
                        count.active(),
                        config.limits.max_sessions,
                        c2.host.whitelist.get().len()
                    ));
                })
                .detach();
            ctx.set_status(status(counter.active() + 1));
        }
    };
    future::or(serve, async {
        ctx.stopped().await;
        Ok(())
    })
    .await
}
