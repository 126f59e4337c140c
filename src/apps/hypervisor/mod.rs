//! The hypervisor (`app-hypervisor`): a small web UI on `127.0.0.1:8000` that manages this
//! visor and every visor listing this one's PK in its `hypervisors` (docs/hypervisor.md).
//!
//! - [`fleet`]: the visors, their links (they dial our overlay port 46 and serve their RPC
//!   on the stream, `visor::hvlink`), the poller.
//! - [`auth`]: the password (PBKDF2 in a 0600 file), sessions, CSRF, the login limiter.
//! - [`web`]: the page and the API it drives.
//! - `term` (`hv-term`): the browser terminal, a WebSocket bridged to a visor's pty.
//!
//! It runs in the visor (started on TCP, the one app that is: DESIGN.md §5) or standalone
//! in TCP mode with its own keys (`standalone hypervisor`); it is critical, so stopping it
//! needs `--i-know-what-im-doing`.

pub mod auth;
pub mod fleet;
#[cfg(feature = "hv-term")]
pub mod term;
pub mod web;

use std::time::Duration;

use argh::FromArgs;
use futures_lite::future;

use crate::app::settings::RestartPolicy;
use crate::app::{AppCtx, AppDef, AppFuture, Mode};
use crate::http::guard::LocalGuard;
use crate::http::server::Limits;
use crate::spawn::Spawn;

/// The overlay port visors dial (DESIGN.md §4).
pub const PORT: u16 = 46;
/// The web UI's default address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8000";
/// HTTP connections at once, and from one address.
pub const MAX_HTTP: usize = 64;
/// See [`MAX_HTTP`].
pub const MAX_HTTP_PER_ADDR: usize = 32;

/// `hypervisor` arguments (`launcher.apps[].args`).
#[derive(FromArgs, Debug)]
struct Args {
    /// address of the web UI (default 127.0.0.1:8000; `:8000` is every interface)
    #[argh(option, default = "DEFAULT_ADDR.to_string()")]
    addr: String,
    /// the password file (default <state dir>/hypervisor/password)
    #[argh(option)]
    password_file: Option<String>,
    /// a visor this hypervisor manages (repeatable); when given, links from any other PK
    /// are refused (default: every visor that lists this hypervisor)
    #[argh(option)]
    visor: Vec<String>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let a: Args = crate::app::parse_args("hypervisor", args)?;
    for v in &a.visor {
        crate::crypto::PublicKey::from_hex(v).map_err(|e| format!("--visor {v}: {e}"))?;
    }
    crate::addr::bind_addr(&a.addr)
        .parse::<std::net::SocketAddr>()
        .map_err(|e| format!("--addr {}: {e}", a.addr))?;
    Ok(a)
}

/// The app.
pub static DEF: AppDef = AppDef {
    name: "hypervisor",
    summary: "web UI that manages this visor and the visors listing it in `hypervisors`",
    modes: &[Mode::Visor, Mode::Tcp],
    port: Some(PORT),
    depends: &[],
    critical: true,
    autostart: false,
    restart: RestartPolicy::OnFailure,
    tcp_listen: Some(":7046"),
    check_args: |a| parse(a).map(|_| ()),
    start,
};

fn start(ctx: AppCtx) -> AppFuture {
    Box::pin(run(ctx))
}

async fn run(ctx: AppCtx) -> Result<(), String> {
    let args = parse(&ctx.args)?;
    let password_file = match &args.password_file {
        Some(p) => std::path::PathBuf::from(p),
        None => auth::password_file(&ctx.host.state_dir),
    };
    let hash = first_password(&password_file)?;
    let bind = crate::addr::bind_addr(&args.addr);
    let l = async_net::TcpListener::bind(bind.as_str())
        .await
        .map_err(|e| format!("hypervisor --addr {}: {e}", args.addr))?;
    let served = l.local_addr().map_err(|e| e.to_string())?;
    if served.ip().is_unspecified() {
        log::warn!(
            "hypervisor: the web UI is on every interface ({served}); anyone on the network \
             can try the password (and reads it unencrypted: put TLS in front of it)"
        );
    }
    let overlay = ctx
        .net
        .listen(PORT)
        .map_err(|e| format!("port {PORT}: {e}"))?;
    let local = match ctx.mode {
        Mode::Visor => ctx.host.rpc.get().map(|h| (ctx.host.pk, h.clone())),
        _ => None,
    };
    let allow = args
        .visor
        .iter()
        .filter_map(|v| crate::crypto::PublicKey::from_hex(v).ok())
        .collect();
    let fleet = fleet::Fleet::new(local, allow);
    let hv = web::Hv::new(
        fleet.clone(),
        ctx.net.clone(),
        ctx.ex.clone(),
        password_file,
        hash,
    );
    let handler = LocalGuard::new(served, None)
        .allow_same_origin()
        .wrap(web::routes(hv.clone()));
    let limits = Limits {
        max_connections: MAX_HTTP,
        max_connections_per_addr: MAX_HTTP_PER_ADDR,
        ..Limits::default()
    };
    let ex = ctx.ex.clone();
    let http = ex.spawn_boxed(crate::http::server::serve(l, ex.clone(), handler, limits));
    let poll = ex.spawn_boxed(fleet.clone().poll(ex.clone()));
    let f2 = fleet.clone();
    let accept = ex.spawn_boxed(async move {
        loop {
            match overlay.accept().await {
                Ok(conn) => {
                    let peer = *conn.peer();
                    match f2.adopt(conn) {
                        Ok(pk) => log::debug!("hypervisor: link from {pk}"),
                        Err(e) => log::info!("hypervisor: link from {peer} refused: {e}"),
                    }
                }
                Err(e) if e.is_transient() => {
                    async_io::Timer::after(Duration::from_millis(100)).await;
                }
                Err(e) => return e.to_string(),
            }
        }
    });
    let hv2 = hv.clone();
    let reload = ex.spawn_boxed(async move {
        loop {
            async_io::Timer::after(Duration::from_secs(2)).await;
            hv2.reload_password();
        }
    });
    ctx.ready();
    let status = |f: &fleet::Fleet| {
        let rows = f.rows();
        let online = rows.iter().filter(|r| r.online).count();
        format!(
            "http://{served}, {online} of {} visor(s) online",
            rows.len()
        )
    };
    ctx.set_status(status(&fleet));
    log::info!("hypervisor: web UI on http://{served}");
    let result = future::or(
        async {
            future::or(
                async { http.await.map_err(|e| format!("web UI on {served}: {e}")) },
                async { Err(format!("port {PORT}: {}", accept.await)) },
            )
            .await
        },
        async {
            loop {
                if future::or(
                    async {
                        ctx.stopped().await;
                        true
                    },
                    async {
                        async_io::Timer::after(Duration::from_secs(2)).await;
                        false
                    },
                )
                .await
                {
                    return Ok(());
                }
                ctx.set_status(status(&fleet));
            }
        },
    )
    .await;
    drop((poll, reload));
    result
}

/// The password hash: the file's, or on a first start a generated password, saved and
/// printed once on stderr (not through the log, which the pages show).
fn first_password(file: &std::path::Path) -> Result<auth::PasswordHash, String> {
    if file.exists() {
        return auth::load(file);
    }
    let pw = auth::generate_password()?;
    let h = auth::PasswordHash::new(&pw)?;
    auth::save(file, &h)?;
    eprintln!(
        "hypervisor: first start: the web UI password is {pw}\n\
         hypervisor: it is shown only this once; change it with `skywire cli visor hv password` \
         (its hash is in {})",
        file.display()
    );
    Ok(h)
}
