//! Test apps (the `test-apps` feature; tests only, never in a board build). Arguments:
//! `--fail-start` (fails before ready), `--crash-after-ms N` (ready, then fails after N ms),
//! `--exit-after-ms N` (ready, then exits cleanly), `--port P` (answers every connection on
//! overlay port P with its name and closes), `--echo` (with `--port`: echoes every
//! connection back instead, half-close included, each in its own task).

use std::time::Duration;

use argh::FromArgs;
use futures_lite::future;
use futures_lite::io::AsyncWriteExt;

use crate::app::settings::RestartPolicy;
use crate::app::{AppCtx, AppDef, AppFuture, DepKind, Mode};
use crate::spawn::Spawn;

#[derive(FromArgs, Debug)]
/// test app arguments
struct Args {
    /// fail before becoming ready
    #[argh(switch)]
    fail_start: bool,
    /// fail this many ms after becoming ready
    #[argh(option)]
    crash_after_ms: Option<u64>,
    /// exit cleanly this many ms after becoming ready
    #[argh(option)]
    exit_after_ms: Option<u64>,
    /// answer connections on this overlay port
    #[argh(option)]
    port: Option<u16>,
    /// echo what each connection sends (with --port)
    #[argh(switch)]
    echo: bool,
}

fn parse(name: &str, args: &[String]) -> Result<Args, String> {
    crate::app::parse_args(name, args)
}

fn check(args: &[String]) -> Result<(), String> {
    parse("test", args).map(|_| ())
}

fn start(ctx: AppCtx) -> AppFuture {
    Box::pin(run(ctx))
}

async fn run(ctx: AppCtx) -> Result<(), String> {
    let a = parse(ctx.name, &ctx.args)?;
    // Take a moment, like a real app binding its ports: waves must wait for it.
    async_io::Timer::after(Duration::from_millis(100)).await;
    if a.fail_start {
        return Err(format!("{} was told to fail at start", ctx.name));
    }
    let listener = match a.port {
        Some(p) => Some(ctx.net.listen(p).map_err(|e| e.to_string())?),
        None => None,
    };
    ctx.ready();
    ctx.set_status("test app running");
    let serve = async {
        match &listener {
            Some(l) if a.echo => loop {
                let c = l.accept().await.map_err(|e| e.to_string())?;
                ctx.ex
                    .spawn_boxed(async move {
                        let (mut r, mut w) = futures_lite::io::split(c);
                        let _ = futures_lite::io::copy(&mut r, &mut w).await;
                        let _ = w.close().await;
                    })
                    .detach();
            },
            Some(l) => loop {
                let mut c = l.accept().await.map_err(|e| e.to_string())?;
                let _ = c.write_all(ctx.name.as_bytes()).await;
                let _ = c.close().await;
            },
            None => future::pending::<Result<(), String>>().await,
        }
    };
    let end = async {
        match (a.crash_after_ms, a.exit_after_ms) {
            (Some(ms), _) => {
                async_io::Timer::after(Duration::from_millis(ms)).await;
                Err(format!("{} crashed on purpose", ctx.name))
            }
            (None, Some(ms)) => {
                async_io::Timer::after(Duration::from_millis(ms)).await;
                Ok(())
            }
            (None, None) => {
                ctx.stopped().await;
                Ok(())
            }
        }
    };
    future::or(serve, end).await
}

const MODES: &[Mode] = &[Mode::Visor, Mode::Dmsg, Mode::Tcp];

/// A test app: the four differ only in name, dependencies and criticality.
const fn def(
    name: &'static str,
    summary: &'static str,
    depends: &'static [(&'static str, DepKind)],
    critical: bool,
) -> AppDef {
    AppDef {
        name,
        summary,
        modes: MODES,
        port: None,
        depends,
        critical,
        autostart: false,
        restart: RestartPolicy::OnFailure,
        tcp_listen: None,
        check_args: check,
        start,
    }
}

pub static TEST_A: AppDef = def("test-a", "test app (no dependencies)", &[], false);
pub static TEST_B: AppDef = def(
    "test-b",
    "test app (requires test-a)",
    &[("test-a", DepKind::Requires)],
    false,
);
pub static TEST_C: AppDef = def(
    "test-c",
    "test app (wants test-a)",
    &[("test-a", DepKind::Wants)],
    false,
);
pub static TEST_CRIT: AppDef = def("test-crit", "test app (critical)", &[], true);
