//! `skywire app <name> start|stop|status|run` and the multicall entries `dmsg <app>` and
//! `standalone <app>`. start/stop/status talk to the running visor; `run` runs the app in the
//! foreground on a network of its own (`--mode dmsg`: its own dmsg client and keys;
//! `--mode tcp`: Noise XK over direct TCP).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use async_executor::Executor;
use futures_lite::{StreamExt, future};

use super::netflags::{resolve, start_client};
use super::rpc::{Rpc, app_start, app_status, app_stop};
use super::{CmdError, CmdResult, init_logging, say};
use crate::app::conn::ConnTable;
use crate::app::net::{DmsgNet, Net, Tagged, TcpNet, parse_tcp_peer};
use crate::app::{AppCtx, AppDef, HostInfo, Mode};
use crate::apps::{self, APPS};
use crate::spawn::Spawn;
use crate::visor::config::Config;

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "app")]
/// manage one app: `skywire app <name> start|stop|status|run`.
pub struct AppCmd {
    /// the app (see 'skywire cli visor app ls')
    #[argh(positional)]
    name: String,
    #[argh(subcommand)]
    cmd: AppSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum AppSub {
    Start(StartCmd),
    Stop(StopCmd),
    Status(StatusCmd),
    Run(Box<RunCmd>),
}

/// The visor that start/stop/status talk to: its RPC address and where its token is.
fn target(addr: Option<String>, config: Option<PathBuf>, state_dir: Option<PathBuf>) -> Rpc {
    Rpc {
        addr,
        config,
        state_dir,
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "start")]
/// start the app in the running visor.
struct StartCmd {
    /// visor RPC address (default $SKYWIRE_RPC, else the cli_addr of the visor's config,
    /// else 127.0.0.1:3435)
    #[argh(option)]
    rpc: Option<String>,
    /// the visor's config file (its RPC token is found beside it)
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// the visor's state directory (default $SKYWIRE_STATE_DIR, else ./local)
    #[argh(option)]
    state_dir: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stop")]
/// stop the app in the running visor.
struct StopCmd {
    /// visor RPC address (default $SKYWIRE_RPC, else the cli_addr of the visor's config,
    /// else 127.0.0.1:3435)
    #[argh(option)]
    rpc: Option<String>,
    /// the visor's config file (its RPC token is found beside it)
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// the visor's state directory (default $SKYWIRE_STATE_DIR, else ./local)
    #[argh(option)]
    state_dir: Option<PathBuf>,
    /// stop it even if it is critical (you may lose remote access)
    #[argh(switch)]
    i_know_what_im_doing: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
/// the app's state in the running visor, with its connections.
struct StatusCmd {
    /// visor RPC address (default $SKYWIRE_RPC, else the cli_addr of the visor's config,
    /// else 127.0.0.1:3435)
    #[argh(option)]
    rpc: Option<String>,
    /// the visor's config file (its RPC token is found beside it)
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// the visor's state directory (default $SKYWIRE_STATE_DIR, else ./local)
    #[argh(option)]
    state_dir: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// The run options, declared once: `skywire app <name> run` takes them with `--mode`
/// ([`RunCmd`]); the multicall entries `dmsg <app>` and `standalone <app>` without it (their
/// name is the mode), so their help does not offer or require a flag they set themselves.
macro_rules! run_options {
    // The type is taken apart (`Option`, `<`, inner, `>`) because argh recognises optional
    // and repeated options by the literal `Option`/`Vec`, which an opaque `$ty:ty` hides.
    ($( $(#[$attr:meta])* $field:ident : $outer:ident $(<$inner:ty>)?, )*) => {
        #[derive(FromArgs, Debug)]
        #[argh(subcommand, name = "run")]
        /// run the app standalone in the foreground; app arguments go after `--`.
        pub struct RunCmd {
            /// dmsg (own dmsg client and keys) or tcp (Noise XK over direct TCP)
            #[argh(option)]
            mode: String,
            $( $(#[$attr])* $field: $outer $(<$inner>)?, )*
        }

        #[derive(FromArgs, Debug)]
        /// run the app standalone in the foreground on the network this entry names (dmsg:
        /// its own dmsg client and keys; standalone: Noise XK over direct TCP); app arguments
        /// go after `--`.
        struct MulticallRun {
            $( $(#[$attr])* $field: $outer $(<$inner>)?, )*
        }

        impl MulticallRun {
            fn with_mode(self, mode: Mode) -> RunCmd {
                RunCmd {
                    mode: mode.as_str().to_string(),
                    $( $field: self.$field, )*
                }
            }
        }
    };
}

run_options! {
    /// secret key (hex); default: from -c, else a throwaway key
    #[argh(option)]
    sk: Option<String>,
    /// identity (and, for dmsg, network) from this skywire-config.json
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// dmsg: discovery URL (default: from -c, else http://127.0.0.1:9090)
    #[argh(option)]
    disc: Option<String>,
    /// dmsg: a relay to use, <pk>@<host>:<port> (repeatable)
    #[argh(option)]
    relay: Vec<String>,
    /// tcp: listen address, e.g. 127.0.0.1:2022 (default: the app's, :2022 for pty)
    #[argh(option)]
    listen: Option<String>,
    /// tcp: a peer's address, tcp://<pk>@<host>:<port> (repeatable)
    #[argh(option)]
    peer: Vec<String>,
    /// where the app keeps its files (default: -c's state directory, else
    /// $SKYWIRE_STATE_DIR, else ./local)
    #[argh(option)]
    state_dir: Option<PathBuf>,
    /// a PK allowed privileged access (a pty shell), besides -c's pty.whitelist (repeatable)
    #[argh(option)]
    whitelist: Vec<String>,
    /// log level (default info)
    #[argh(option, default = "String::from(\"info\")")]
    log_level: String,
    /// the app's own arguments
    #[argh(positional, greedy)]
    args: Vec<String>,
}

impl AppCmd {
    /// Runs the subcommand.
    pub fn run(self) -> CmdResult {
        match self.cmd {
            AppSub::Start(c) => app_start(target(c.rpc, c.config, c.state_dir), &self.name, c.json),
            AppSub::Stop(c) => app_stop(
                target(c.rpc, c.config, c.state_dir),
                &self.name,
                c.i_know_what_im_doing,
                c.json,
            ),
            AppSub::Status(c) => {
                app_status(target(c.rpc, c.config, c.state_dir), &self.name, c.json)
            }
            AppSub::Run(c) => {
                let mode = Mode::parse(&c.mode)
                    .filter(|m| *m != Mode::Visor)
                    .ok_or_else(|| {
                        CmdError::usage(format!(
                            "--mode {:?}: expected dmsg or tcp (inside the visor, use 'skywire app {} start')",
                            c.mode, self.name
                        ))
                    })?;
                run_standalone(&self.name, mode, *c)
            }
        }
    }
}

fn find_app(name: &str) -> Result<&'static AppDef, CmdError> {
    apps::find(name).ok_or_else(|| {
        CmdError::usage(format!(
            "no app {name:?} in this build (it has: {})",
            apps::names()
        ))
    })
}

/// Runs `name` in the foreground in `mode` until it ends or SIGINT/SIGTERM.
pub fn run_standalone(name: &str, mode: Mode, c: RunCmd) -> CmdResult {
    let def = find_app(name)?;
    if !def.supports(mode) {
        return Err(CmdError::usage(format!(
            "{name} has no {} mode (it runs: {})",
            mode.as_str(),
            def.modes
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    (def.check_args)(&c.args).map_err(|e| CmdError::usage(format!("{name}: {e}")))?;
    init_logging(&c.log_level)?;
    let mut signals =
        async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])
            .map_err(|e| CmdError::fail(format!("cannot install signal handlers: {e}")))?;
    #[allow(unused_mut)] // only the hypervisor replaces the keys
    let mut net_args = resolve(&c.sk, &c.config, &c.disc, &c.relay)?;
    let (hypervisors, mut whitelist, config_state) = match &c.config {
        Some(p) => {
            let cfg = Config::load(p).map_err(|e| CmdError::fail(e.to_string()))?;
            (
                cfg.hypervisors.clone(),
                cfg.pty_whitelist.clone(),
                Some(cfg.state_dir(p)),
            )
        }
        None => (Vec::new(), Vec::new(), None),
    };
    let state_dir = c
        .state_dir
        .clone()
        .or(config_state)
        .or_else(|| std::env::var_os("SKYWIRE_STATE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("local"));
    for w in &c.whitelist {
        let pk = crate::crypto::PublicKey::from_hex(w)
            .map_err(|e| CmdError::usage(format!("--whitelist {w}: {e}")))?;
        if !whitelist.contains(&pk) {
            whitelist.push(pk);
        }
    }
    // Visors list a hypervisor by its PK, so a standalone one keeps its key across restarts
    // (in its state directory) unless --sk or -c gives one.
    #[cfg(feature = "app-hypervisor")]
    if def.name == "hypervisor" && c.sk.is_none() && c.config.is_none() {
        net_args.keys = kept_keys(&state_dir.join("hypervisor").join("secret.key"))?;
    }
    let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
    let pk = *net_args.keys.public();
    let seed = *net_args.keys.seed();
    let tcp_ex = ex.clone();
    let tcp: crate::app::TcpFactory = Arc::new(move |listen: Option<String>| {
        TcpNet::new(
            crate::crypto::Keypair::from_seed(&seed),
            listen,
            tcp_ex.clone(),
        )
    });
    let mut dmsg_client = None;
    let net: Arc<dyn Net> = match mode {
        Mode::Dmsg => {
            let client = start_client(&ex, net_args)?;
            dmsg_client = Some(client.clone());
            Arc::new(DmsgNet { client })
        }
        _ => {
            let listen = c.listen.clone().or(def.tcp_listen.map(String::from));
            let tcp = TcpNet::new(net_args.keys, listen, ex.clone());
            for p in &c.peer {
                let (pk, addr) =
                    parse_tcp_peer(p).map_err(|e| CmdError::usage(format!("--peer: {e}")))?;
                tcp.add_peer(pk, addr);
            }
            tcp
        }
    };
    let started = Instant::now();
    let state = Arc::new(std::sync::Mutex::new("starting".to_string()));
    let st2 = state.clone();
    let app_name = def.name;
    let host = HostInfo {
        pk,
        hypervisors,
        started,
        apps: Arc::new(move || {
            vec![(
                app_name.to_string(),
                st2.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            )]
        }),
        whitelist: crate::app::SharedKeys::new(whitelist),
        state_dir,
        tcp: Some(tcp),
        keys: Some(Arc::new(crate::crypto::Keypair::from_seed(&seed))),
        rpc: Default::default(),
    };
    let ctx = AppCtx::new(
        def.name,
        c.args.clone(),
        mode,
        Tagged::wrap(net, def.name, ConnTable::default()),
        ex.clone(),
        host,
    );
    let stop = ctx.stop_signal();
    let ready = ctx.ready_signal();
    let main = async {
        if let Some(client) = &dmsg_client {
            client
                .wait_ready(Duration::from_secs(15))
                .await
                .map_err(|e| CmdError::fail(e.to_string()))?;
        }
        let mut app = ex.spawn_boxed((def.start)(ctx));
        let announce = async {
            ready.wait().await;
            *state.lock().unwrap_or_else(|p| p.into_inner()) = "running".into();
            say(&format!("{name} running ({} mode) as {pk}", mode.as_str()));
            future::pending::<()>().await;
        };
        let res = future::or(async { Some((&mut app).await) }, async {
            future::or(announce, async {
                signals.next().await;
            })
            .await;
            None
        })
        .await;
        let res = match res {
            Some(r) => r,
            None => {
                log::info!("{name}: stopping");
                stop.raise();
                // The app's own clean-up (the VPN restoring routes) runs before we exit;
                // one that does not end in time is cut off.
                let ended = future::or(async { Some((&mut app).await) }, async {
                    async_io::Timer::after(STOP_GRACE).await;
                    None
                })
                .await;
                match ended {
                    Some(Err(e)) => Err(e),
                    Some(Ok(())) => Ok(()),
                    None => {
                        log::warn!("{name}: did not stop within {} s", STOP_GRACE.as_secs());
                        Ok(())
                    }
                }
            }
        };
        if let Some(client) = &dmsg_client {
            client.shutdown(Duration::from_secs(1)).await;
        }
        res.map_err(|e| CmdError::fail(format!("{name}: {e}")))
    };
    async_io::block_on(ex.run(main))
}

/// How long a standalone app may take to stop after SIGINT/SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The multicall entries: `dmsg <app> [run flags] [-- app args]` is
/// `skywire app <app> run --mode dmsg …`, and `standalone <app> …` is `--mode tcp`.
pub fn multicall(tool: &str, mode: Mode, app: &str, rest: &[String]) -> CmdResult {
    // `dmsg pty host …` / `standalone pty host …` read naturally; `host` is the only role
    // the standalone entries run, so the word is optional.
    let rest = match rest.first().map(String::as_str) {
        Some("host") => &rest[1..],
        _ => rest,
    };
    let refs: Vec<&str> = rest.iter().map(String::as_str).collect();
    match MulticallRun::from_args(&[tool, app], &refs) {
        Ok(cmd) => run_standalone(app, mode, cmd.with_mode(mode)),
        Err(e) if e.status.is_ok() => super::print_line(&e.output),
        Err(e) => Err(CmdError::usage(e.output)),
    }
}

/// The apps that support `mode`, for help texts.
pub fn apps_with(mode: Mode) -> String {
    let v: Vec<&str> = APPS
        .iter()
        .filter(|d| d.supports(mode))
        .map(|d| d.name)
        .collect();
    if v.is_empty() {
        "none in this build".into()
    } else {
        v.join(", ")
    }
}

/// The key in `file` (64 hex digits of seed), created 0600 with a fresh one when missing.
#[cfg(feature = "app-hypervisor")]
fn kept_keys(file: &std::path::Path) -> Result<crate::crypto::Keypair, CmdError> {
    use crate::crypto::Keypair;
    match std::fs::read_to_string(file) {
        Ok(t) => {
            let seed = crate::crypto::hex::decode_array::<32>(t.trim())
                .map_err(|e| CmdError::fail(format!("{}: {e}", file.display())))?;
            Ok(Keypair::from_seed(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)
                .map_err(|e| CmdError::fail(format!("no randomness from the OS: {e}")))?;
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| CmdError::fail(format!("{}: {e}", dir.display())))?;
            }
            let text = crate::crypto::hex::encode(&seed) + "\n";
            crate::visor::config::write_secret_file(file, text.as_bytes(), false)
                .map_err(|e| CmdError::fail(e.to_string()))?;
            Ok(Keypair::from_seed(&seed))
        }
        Err(e) => Err(CmdError::fail(format!("{}: {e}", file.display()))),
    }
}
