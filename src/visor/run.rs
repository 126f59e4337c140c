//! `skywire visor`: the phase-1 core, started in this order (docs/architecture.md):
//!
//! 1. config: `-c FILE`, else `<state dir>/skywire-config.json`, created with fresh keys if
//!    missing; then logging at the config's level;
//! 2. the app plan (every compiled-in app sorted into dependency waves): a config error
//!    stops here, before anything listens;
//! 3. signal handlers (SIGINT, SIGTERM), and the RPC address bound (not yet served): when it
//!    is taken another visor is running, which is the error to report;
//! 4. the network: with no discovery and no relays configured, the embedded discovery and
//!    relay (DESIGN.md §7); then the dmsg client (to the configured relays, or to our own);
//! 5. the services registry and dmsgctrl (port 7); with the `skynet` feature, the skynet
//!    node: the transport manager (dmsg transports on port 45 through the registry, the stcp
//!    listener on `stcp.listen`, the `transports` of the config kept up) and the router, the
//!    registry's second carrier;
//! 6. the RPC server on `cli_addr` starts serving, behind the local guard (Host, Origin, and
//!    the bearer token written to `<state dir>/rpc.token` once the address was bound);
//! 7. the launcher, which starts the auto-start apps wave by wave.
//!
//! [`start`] does 1-6 on an executor the caller owns and returns what it started
//! ([`Started`]: the caller, the CLI, reports it); [`Visor::run`] does 7 and waits for a signal.
//! The visor prints nothing itself (it logs).
//!
//! Shutdown (SIGINT/SIGTERM, or `POST /v1/shutdown` / `POST /v1/restart`, which start it
//! [`RPC_STOP_DELAY`] after answering) goes backwards: apps stop in reverse wave order, the
//! dmsg client closes its sessions gracefully, and the process exits 0, or, for a restart,
//! runs itself again with the same arguments ([`reexec`]; exit [`EXIT_REEXEC_FAILED`] when
//! that fails).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_executor::Executor;
use async_net::TcpListener;
use futures_lite::{StreamExt, future};

use super::config::{self, Config, ConfigErrorKind};
use super::config_writer::ConfigWriter;
use super::rpc::{self, RpcState};
pub use super::stop::StopKind;
use super::stop::Stopper;
use crate::addr::{bind_addr, check_host_port, is_loopback};
use crate::app::HostInfo;
use crate::app::conn::ConnTable;
use crate::app::launcher::{self, Launcher};
use crate::app::net::Tagged;
use crate::app::services::Services;
use crate::apps::APPS;
use crate::crypto::{Keypair, PublicKey};
use crate::dmsg::client::{ClientConfig, DmsgClient};
use crate::dmsg::disc::{self, DiscLimits};
use crate::dmsg::disc_client::DiscClient;
use crate::dmsg::relay::{Relay, RelayConfig};
use crate::http::server::{self, Limits};
use crate::spawn::Spawn;

/// Where the state directory is when neither `-c` nor `--state-dir` is given.
pub const DEFAULT_STATE_DIR: &str = "./local";

/// How the visor was asked to start.
#[derive(Debug, Clone, Default)]
pub struct VisorOptions {
    /// `-c FILE`.
    pub config: Option<PathBuf>,
    /// `--state-dir DIR` (or `$SKYWIRE_STATE_DIR`).
    pub state_dir: Option<PathBuf>,
    /// `--rpc ADDR`: overrides `cli_addr`.
    pub rpc: Option<String>,
    /// `--log-level`: overrides the config.
    pub log_level: Option<String>,
}

/// The state directory when no `-c` is given: `--state-dir`, else `$SKYWIRE_STATE_DIR`, else
/// [`DEFAULT_STATE_DIR`].
fn state_dir_of(opts: &VisorOptions) -> PathBuf {
    opts.state_dir
        .clone()
        .or_else(|| std::env::var_os("SKYWIRE_STATE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// Where the visor started with `opts` keeps its RPC token: `<state dir>/rpc.token`, the
/// state directory being the config's `local_path` (resolved against the config file's
/// directory). For the CLI, which finds the config as the visor does but never creates it.
pub fn rpc_token_file(opts: &VisorOptions) -> Result<PathBuf, String> {
    let file = match &opts.config {
        Some(f) => f.clone(),
        None => state_dir_of(opts).join(config::DEFAULT_FILE),
    };
    let cfg = Config::load(&file).map_err(|e| match e.kind {
        ConfigErrorKind::Missing => format!(
            "{}: no visor config here, so no RPC token; point to the visor's with -c FILE or \
             --state-dir DIR (or $SKYWIRE_STATE_DIR) as it was started",
            file.display()
        ),
        ConfigErrorKind::Io(ref io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            format!(
                "{}: permission denied; the CLI must run as the visor's user to use its RPC",
                file.display()
            )
        }
        _ => e.to_string(),
    })?;
    Ok(cfg.state_dir(&file).join(config::RPC_TOKEN_FILE))
}

/// The RPC address in the visor's config (`cli_addr`), found as [`rpc_token_file`] finds
/// it; `None` when there is no readable config.
pub fn cli_addr_of(opts: &VisorOptions) -> Option<String> {
    let file = match &opts.config {
        Some(f) => f.clone(),
        None => state_dir_of(opts).join(config::DEFAULT_FILE),
    };
    Config::load(&file).ok().map(|c| c.cli_addr)
}

/// Writes a fresh RPC token to `file` (0600, atomically), creating its directory (0700)
/// when missing; returns the token.
fn write_rpc_token(file: &Path) -> Result<String, String> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create state directory {}: {e}", dir.display()))?;
    }
    let token = crate::http::guard::new_token()?;
    config::write_secret_file(file, format!("{token}\n").as_bytes(), true)
        .map_err(|e| format!("RPC token: {e}"))?;
    Ok(token)
}

/// Finds or creates the config. Returns it with its path and whether it was created.
pub fn resolve_config(opts: &VisorOptions) -> Result<(Config, PathBuf, bool), String> {
    if let Some(file) = &opts.config {
        return match Config::load(file) {
            Ok(c) => Ok((c, file.clone(), false)),
            Err(e) if matches!(e.kind, ConfigErrorKind::Missing) => Err(format!(
                "{}: no such config; create one with 'skywire config gen -o {}', or start \
                 'skywire visor' without -c to use the embedded default",
                file.display(),
                file.display()
            )),
            Err(e) => Err(e.to_string()),
        };
    }
    let dir = state_dir_of(opts);
    let file = dir.join(config::DEFAULT_FILE);
    match Config::load(&file) {
        Ok(c) => Ok((c, file, false)),
        Err(e) if matches!(e.kind, ConfigErrorKind::Missing) => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("cannot create state directory {}: {e}", dir.display()))?;
            let mut cfg = Config::generate().map_err(|e| e.to_string())?;
            // The config lives in the state directory, so the state directory is its own.
            cfg.local_path = ".".into();
            cfg.save(&file, false).map_err(|e| e.to_string())?;
            Ok((cfg, file, true))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A guess at an address other machines can reach us on: the source address of the default
/// route (no packet is sent), else loopback.
fn outward_ip() -> std::net::IpAddr {
    let guess = || -> std::io::Result<std::net::IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.connect("192.0.2.1:9")?;
        Ok(s.local_addr()?.ip())
    };
    match guess() {
        Ok(ip) if !ip.is_unspecified() => ip,
        _ => std::net::IpAddr::from([127, 0, 0, 1]),
    }
}

fn bind(addr: &str, what: &str, field: &str, file: &Path) -> Result<TcpListener, String> {
    future::block_on(TcpListener::bind(bind_addr(addr))).map_err(|e| {
        format!(
            "{what}: cannot listen on {addr}: {e}; set {field} in {} (port 0 picks a free one)",
            file.display()
        )
    })
}

/// What [`start`] started, for the caller to report (the visor itself prints nothing).
#[derive(Debug, Clone)]
pub struct Started {
    /// The visor's public key.
    pub pk: PublicKey,
    /// The address the RPC is served on.
    pub rpc_addr: SocketAddr,
    /// `embedded`, `joined` or `discovery`.
    pub network: String,
    /// `pk@host:port` of the relay this visor hosts (embedded network), if any.
    pub hosted_relay: Option<String>,
    /// The discovery URL in use, if any.
    pub discovery: Option<String>,
}

impl Started {
    /// The command another board joins this visor's embedded network with, if it hosts one.
    pub fn join_hint(&self) -> Option<String> {
        self.hosted_relay
            .as_ref()
            .map(|r| format!("skywire config gen --join {r}"))
    }
}

/// A started visor: its tasks run on the executor given to [`start`]; [`Visor::run`] starts
/// the apps and waits for SIGINT/SIGTERM.
pub struct Visor {
    /// What was started.
    pub started: Started,
    t_start: Instant,
    signals: async_signal::Signals,
    stopper: Stopper,
    launcher: Launcher,
    dmsg: DmsgClient,
    #[cfg(feature = "skynet")]
    router: crate::router::Router,
    /// dmsgctrl's accept loop: dropping the task would cancel it.
    _dmsgctrl: async_executor::Task<()>,
    ex: Arc<Executor<'static>>,
}

impl std::fmt::Debug for Visor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Visor")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// Starts the visor's steps 1-6 (module docs) on `ex`, which the caller owns and runs.
pub fn start(opts: VisorOptions, ex: Arc<Executor<'static>>) -> Result<Visor, String> {
    let t_start = Instant::now();
    // 1. Config and logging.
    let (cfg, file, created) = resolve_config(&opts)?;
    let level = opts
        .log_level
        .clone()
        .unwrap_or_else(|| cfg.log_level.as_str().to_string());
    let filter: log::LevelFilter = level.parse().map_err(|_| {
        format!("log level {level:?} is not one of error, warn, info, debug, trace")
    })?;
    crate::logger::init(filter);
    // The last lines, for `GET /v1/logs`.
    crate::logger::keep_lines();
    if created {
        log::info!("created {} with a fresh identity", file.display());
    }
    let rpc_addr = opts.rpc.clone().unwrap_or_else(|| cfg.cli_addr.clone());
    check_host_port(&rpc_addr).map_err(|e| format!("--rpc: {e}"))?;
    if !is_loopback(&rpc_addr) {
        log::warn!("RPC on {rpc_addr} is not loopback: anyone who reaches it controls this visor");
    }

    // 2. The app plan.
    let planned =
        launcher::plan(APPS, &cfg.apps).map_err(|e| format!("{}: {e}", file.display()))?;
    #[cfg(not(feature = "skynet"))]
    if !cfg.transports.is_empty() {
        log::warn!(
            "{}: `transports` ignored: this build has no skynet (feature `skynet`)",
            file.display()
        );
    }

    // 3. Signals, before anything is started, so none is missed.
    let signals =
        async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;

    // The RPC address is bound first (served in step 6): when it is taken, another visor is
    // almost certainly running, and that is the thing to say.
    let rl = future::block_on(TcpListener::bind(bind_addr(&rpc_addr))).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "RPC address {rpc_addr} is taken: another visor is probably running \
                 ('skywire cli visor --rpc {rpc_addr} info' tells); stop it, or give this one \
                 its own --rpc and dmsg.embedded addresses in {}",
                file.display()
            )
        } else {
            format!(
                "RPC: cannot listen on {rpc_addr}: {e}; set cli_addr in {} or pass --rpc",
                file.display()
            )
        }
    })?;
    // The RPC token, once the address is ours (so a second visor on the same state
    // directory fails above instead of replacing the first one's token).
    let token_file = cfg.state_dir(&file).join(config::RPC_TOKEN_FILE);
    let token_file = std::path::absolute(&token_file).unwrap_or(token_file);
    let token = write_rpc_token(&token_file)?;
    let pk = *cfg.keys.public();

    // 4. The network.
    let embedded = cfg.dmsg.discovery.is_empty() && cfg.dmsg.servers.is_empty();
    let mut hosted_relay = None;
    let (disc_url, relays, network) = if embedded {
        let e = &cfg.dmsg.embedded;
        let (dl, handler, flusher) =
            disc::service(&bind_addr(&e.disc_addr), None, DiscLimits::default()).map_err(|m| {
                format!(
                    "embedded discovery: {m}; set dmsg.embedded.disc_addr in {} (port 0 picks a \
                     free one)",
                    file.display()
                )
            })?;
        let disc_local = dl.local_addr().map_err(|e| e.to_string())?;
        let disc_url = format!("http://{}", loopback_if_unspecified(disc_local));
        ex.spawn_boxed(flusher).detach();
        ex.spawn_boxed(server::serve(dl, ex.clone(), handler, Limits::default()))
            .detach();
        let rl = bind(
            &e.relay_addr,
            "embedded relay",
            "dmsg.embedded.relay_addr",
            &file,
        )?;
        let relay_local = rl.local_addr().map_err(|e| e.to_string())?;
        let public = if !e.public_addr.is_empty() {
            e.public_addr.clone()
        } else if relay_local.ip().is_unspecified() {
            format!("{}:{}", outward_ip(), relay_local.port())
        } else {
            relay_local.to_string()
        };
        let relay_keys = embedded_relay_keys(&cfg.keys);
        let relay_pk = *relay_keys.public();
        let relay = Relay::new(
            relay_keys,
            RelayConfig {
                public_addr: public.clone(),
                ..RelayConfig::default()
            },
            ex.clone(),
        );
        let dc = DiscClient::new(&disc_url).map_err(|e| e.to_string())?;
        ex.spawn_boxed(relay.clone().publish_loop(dc)).detach();
        let r2 = relay.clone();
        ex.spawn_boxed(async move {
            if let Err(e) = r2.serve(rl).await {
                log::error!("embedded relay stopped: {e}");
            }
        })
        .detach();
        hosted_relay = Some(format!("{relay_pk}@{public}"));
        let own = (relay_pk, loopback_if_unspecified(relay_local).to_string());
        (Some(disc_url), vec![own], "embedded".to_string())
    } else {
        let relays: Vec<(PublicKey, String)> = cfg
            .dmsg
            .servers
            .iter()
            .map(|a| (a.pk, a.addr.clone()))
            .collect();
        let d = (!cfg.dmsg.discovery.is_empty()).then(|| cfg.dmsg.discovery.clone());
        let net = if d.is_some() { "discovery" } else { "joined" };
        (d, relays, net.to_string())
    };
    let disc_client = match &disc_url {
        Some(u) => Some(DiscClient::new(u).map_err(|e| format!("dmsg.discovery: {e}"))?),
        None => None,
    };
    let dmsg = DmsgClient::start(
        ex.clone(),
        Keypair::from_seed(cfg.keys.seed()),
        disc_client,
        ClientConfig {
            sessions: (cfg.dmsg.sessions_count as usize).max(1),
            relays,
            ..ClientConfig::default()
        },
    );

    // 5. Services registry and dmsgctrl; the skynet node.
    let conns = ConnTable::default();
    #[allow(unused_mut)] // only skynet attaches a second carrier
    let mut services = Services::new(dmsg.clone(), conns.clone());
    #[cfg(feature = "skynet")]
    let router = start_skynet(&cfg, &ex, &dmsg, disc_url.as_deref(), &mut services)?;
    let dmsgctrl = services
        .serve_dmsgctrl(&ex)
        .map_err(|e| format!("dmsgctrl: {e}"))?;

    // 6. RPC (bound before the network, above).
    let rpc_local = rl.local_addr().map_err(|e| e.to_string())?;

    // 7. Launcher.
    let whitelist = crate::app::SharedKeys::new(cfg.pty_whitelist.clone());
    let writer = ConfigWriter::start(file.clone())
        .map_err(|e| format!("cannot start the config writer thread: {e}"))?;
    let editor = super::whitelist::WhitelistEditor::new(writer.clone(), whitelist.clone());
    let (svc, tags) = (services.clone(), conns.clone());
    // Called at each start of an app, so a route set through the RPC applies at its next.
    #[cfg(feature = "skynet")]
    let net_for = move |p: &launcher::Planned| {
        let name = p.def.name;
        Tagged::wrap(
            svc.net_with_route(name, p.route.clone()),
            name,
            tags.clone(),
        )
    };
    #[cfg(not(feature = "skynet"))]
    let net_for = move |p: &launcher::Planned| {
        Tagged::wrap(svc.net_for(p.def.name), p.def.name, tags.clone())
    };
    let launcher = Launcher::new(ex.clone(), planned, Arc::new(net_for), conns);
    let l2 = launcher.clone();
    let local_rpc = crate::app::LocalRpc::default();
    launcher.set_host(HostInfo {
        rpc: local_rpc.clone(),
        pk,
        hypervisors: cfg.hypervisors.clone(),
        started: t_start,
        apps: Arc::new(move || l2.states()),
        whitelist: whitelist.clone(),
        state_dir: cfg.state_dir(&file),
        keys: Some(Arc::new(Keypair::from_seed(cfg.keys.seed()))),
        tcp: Some({
            let (seed, ex) = (*cfg.keys.seed(), ex.clone());
            Arc::new(move |listen: Option<String>| {
                crate::app::net::TcpNet::new(Keypair::from_seed(&seed), listen, ex.clone())
            })
        }),
    });
    let stopper = Stopper::default();
    let state = Arc::new(RpcState {
        launcher: launcher.clone(),
        services: services.clone(),
        started: t_start,
        network: network.clone(),
        hosted_relay: hosted_relay.clone(),
        discovery: disc_url.clone(),
        rpc_addr: rpc_local.to_string(),
        config_file: file.clone(),
        whitelist,
        editor,
        writer,
        stopper: stopper.clone(),
        boot: crate::http::guard::new_token()?[..16].to_string(),
        #[cfg(feature = "skynet")]
        control: Some(Arc::new(router.clone()) as Arc<dyn crate::router::control::Control>),
    });
    let _ = local_rpc.set(rpc::handler(state.clone()));
    super::hvlink::start(
        &ex,
        services.net_for("hypervisor-link"),
        crate::app::net::TcpNet::new(Keypair::from_seed(cfg.keys.seed()), None, ex.clone()),
        pk,
        cfg.hypervisors.clone(),
        &cfg.hypervisor_addrs,
        rpc::handler(state.clone()),
        services.ports().clone(),
    );
    ex.spawn_boxed(server::serve(
        rl,
        ex.clone(),
        rpc::guarded(state, rpc_local, token, &token_file),
        Limits::default(),
    ))
    .detach();
    log::info!("RPC token in {}", token_file.display());
    Ok(Visor {
        started: Started {
            pk,
            rpc_addr: rpc_local,
            network,
            hosted_relay,
            discovery: disc_url,
        },
        t_start,
        signals,
        stopper,
        launcher,
        dmsg,
        #[cfg(feature = "skynet")]
        router,
        _dmsgctrl: dmsgctrl,
        ex,
    })
}

/// Published links of a node, from its discovery entry (the router's graph source).
#[cfg(feature = "skynet")]
struct DiscLinks(DiscClient);

#[cfg(feature = "skynet")]
impl crate::router::graph::LinkSource for DiscLinks {
    fn links(&self, pk: PublicKey) -> crate::router::graph::LinksFut {
        let d = self.0.clone();
        Box::pin(async move {
            let e = d.entry(&pk).await.ok().flatten()?;
            (e.pk == pk).then_some(e.links)
        })
    }
}

/// The skynet node (step 5): the router and its transport manager, attached to `services`.
/// A stcp listen address that cannot be bound is logged, not fatal: the visor still dials
/// stcp and serves dmsg transports.
#[cfg(feature = "skynet")]
fn start_skynet(
    cfg: &Config,
    ex: &Arc<Executor<'static>>,
    dmsg: &DmsgClient,
    disc_url: Option<&str>,
    services: &mut Services,
) -> Result<crate::router::Router, String> {
    use crate::router::{Router, RouterConfig};
    use crate::transport::{DMSG_PORT, Manager, TpConfig, TpType};
    let disc = match disc_url {
        Some(u) => Some(DiscClient::new(u).map_err(|e| format!("dmsg.discovery: {e}"))?),
        None => None,
    };
    let mut listen = cfg.stcp.listen.clone();
    // An address we cannot have is neither listened on nor published (a port taken by
    // another program must not be advertised as ours).
    if !listen.is_empty()
        && let Err(e) = std::net::TcpListener::bind(bind_addr(&listen))
    {
        log::warn!(
            "skynet: cannot listen for stcp on {listen}: {e}; stcp transports can only be \
             dialled from here (set stcp.listen, \"\" to turn it off)"
        );
        listen.clear();
    }
    // Bound to every interface: publish the address others most likely reach us on.
    let mut public_addrs = Vec::new();
    if let Ok(a) = bind_addr(&listen).parse::<SocketAddr>()
        && a.ip().is_unspecified()
        && a.port() != 0
    {
        public_addrs.push(SocketAddr::new(outward_ip(), a.port()).to_string());
    }
    let tp_cfg = TpConfig {
        public_addrs,
        ..TpConfig::default()
    };
    let (ex2, keys2, dmsg2, disc2) = (
        ex.clone(),
        Keypair::from_seed(cfg.keys.seed()),
        dmsg.clone(),
        disc.clone(),
    );
    let links = disc
        .clone()
        .map(|d| Arc::new(DiscLinks(d)) as Arc<dyn crate::router::graph::LinkSource>);
    let router = Router::start(
        ex.clone(),
        Keypair::from_seed(cfg.keys.seed()),
        move |sink| {
            let m = Manager::new(ex2, keys2, tp_cfg, Some(dmsg2), sink);
            if let Some(d) = disc2 {
                m.set_discovery(d);
            }
            m
        },
        links,
        RouterConfig::default(),
    );
    let mgr = router.transports().clone();
    mgr.set_addr_book(&cfg.stcp.peers);
    let m2 = mgr.clone();
    services
        .divert_dmsg(
            DMSG_PORT,
            "transports",
            Arc::new(move |s| m2.accept_dmsg(s)),
        )
        .map_err(|e| format!("skynet: {e}"))?;
    services.attach_router(router.clone());
    if !listen.is_empty() {
        match future::block_on(mgr.listen_stcp(&listen)) {
            Ok(a) => log::info!("skynet: stcp transports accepted on {a}"),
            Err(e) => log::warn!(
                "skynet: {e}; stcp transports can only be dialled from here (set stcp.listen, \"\" to turn it off)"
            ),
        }
    }
    for t in &cfg.transports {
        let Ok(kind) = t.kind.parse::<TpType>() else {
            continue;
        };
        let (m, pk) = (mgr.clone(), t.pk);
        ex.spawn_boxed(async move {
            match m.add(pk, kind, true).await {
                Ok(i) => log::info!("skynet: {kind} transport {} to {pk} up", i.id),
                Err(e) => log::info!("skynet: {e}"),
            }
        })
        .detach();
    }
    Ok(router)
}

impl Visor {
    /// Step 7, the launcher, then serves until SIGINT/SIGTERM or a stop asked for through the
    /// RPC, and shuts down (module docs). The future runs on the executor given to [`start`].
    /// Returns what was asked for: [`StopKind::Restart`] (`POST /v1/restart`) means the
    /// caller runs the visor again ([`reexec`]).
    pub async fn run(self) -> StopKind {
        let Visor {
            t_start,
            mut signals,
            stopper,
            launcher,
            dmsg,
            #[cfg(feature = "skynet")]
            router,
            _dmsgctrl: _served_until_return,
            ex,
            ..
        } = self;
        log::info!("started in {} ms", t_start.elapsed().as_millis());
        let l3 = launcher.clone();
        ex.spawn_boxed(async move { l3.start_all().await }).detach();
        let asked = future::or(
            async {
                let sig = signals.next().await;
                log::info!(
                    "{}: shutting down",
                    match sig {
                        Some(Ok(async_signal::Signal::Int)) => "SIGINT",
                        _ => "SIGTERM",
                    }
                );
                StopKind::Shutdown
            },
            async {
                let kind = stopper.wait().await;
                log::info!(
                    "RPC: {}",
                    match kind {
                        StopKind::Shutdown => "shutting down",
                        StopKind::Restart => "restarting",
                    }
                );
                // The RPC's 202 is written before anything stops.
                async_io::Timer::after(RPC_STOP_DELAY).await;
                kind
            },
        )
        .await;
        let t0 = Instant::now();
        let stop = async {
            launcher.shutdown().await;
            // Close on every route group's legs, then the transports go down.
            #[cfg(feature = "skynet")]
            router.shutdown();
            dmsg.shutdown(Duration::from_millis(500)).await;
        };
        future::or(stop, async {
            async_io::Timer::after(Duration::from_millis(1500)).await;
            log::warn!("shutdown took too long; exiting anyway");
        })
        .await;
        log::info!("stopped in {} ms", t0.elapsed().as_millis());
        asked
    }
}

/// How long a stop asked for through the RPC waits before it starts (so its answer is out).
pub const RPC_STOP_DELAY: Duration = Duration::from_millis(200);

/// The exit status when a restart cannot run the visor again ([`reexec`]): `EX_TEMPFAIL`,
/// a failure, so a service manager that restarts on failure (boards/common's unit) does it.
pub const EXIT_REEXEC_FAILED: i32 = 75;

/// Runs this program again in this process, with the arguments it was started with (after
/// [`Visor::run`] answered [`StopKind::Restart`], once everything it started has stopped and
/// with nothing else to do). Returns only if that failed, with why. Descriptors are not
/// inherited (the standard library opens them close-on-exec), so the new visor binds its
/// addresses afresh; the PID, the environment, stdout and stderr stay.
pub fn reexec() -> String {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| "skywire".into());
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return format!("cannot find this program to run it again: {e}"),
    };
    // The binary was replaced (an upgrade): run the new one at the same path.
    let exe = match exe.to_str().and_then(|p| p.strip_suffix(" (deleted)")) {
        Some(p) => PathBuf::from(p),
        None => exe,
    };
    log::info!("restarting: exec {}", exe.display());
    let e = std::process::Command::new(&exe)
        .arg0(argv0)
        .args(args)
        .exec();
    format!("cannot run {} again: {e}", exe.display())
}

/// The embedded relay's identity: derived from the visor's seed, so it is stable across
/// restarts (joined boards keep their `--join <pk>@…`) yet distinct from the visor's own PK
/// (discovery holds one entry per PK, and the visor publishes a client entry under its own).
pub fn embedded_relay_keys(visor: &Keypair) -> Keypair {
    let h = crate::crypto::hmac::sha512(&[b"skywire-rs embedded relay v1", visor.seed()]);
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&h[..32]);
    Keypair::from_seed(&seed)
}

fn loopback_if_unspecified(a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], a.port()))
    } else {
        a
    }
}
