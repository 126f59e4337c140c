//! vpn-client (app port 43): one tunnel at a time to a vpn-server, carrying all of this
//! machine's IPv4 traffic. Inside the visor it is driven by `skywire cli vpn start <pk> |
//! stop | status` through its control surface (`POST /v1/apps/vpn-client/control`);
//! standalone, `--srv <pk>` starts the tunnel with the app. Inside the visor it starts with
//! the visor and idles (a tunnel needs `cli vpn start`), so that the undo journal of a run
//! that crashed is replayed at boot.
//!
//! Bringing a tunnel up:
//! 1. dial the server's port 44 (`--via auto|dmsg|skynet`), send the hello with the networks
//!    this machine uses (so the server's block avoids them) and the passcode, read the
//!    welcome;
//! 2. create the TUN device `swvpnc<N>` with the client address (kept across reconnects);
//! 3. **pin the underlay**: for every address the tunnel itself travels over — the remote
//!    ends of this process's TCP connections (relays, stcp transports, the TCP-mode server)
//!    and the network's servers ([`crate::app::net::Net::underlay`], e.g. discovery) — add a
//!    host route through the route it has now, so the tunnel does not swallow itself;
//! 4. route `0.0.0.0/1` and `128.0.0.0/1` into the TUN device (more specific than any default
//!    route, which is left alone);
//! 5. optionally point `/etc/resolv.conf` at `--dns`, and with `--killswitch` load the
//!    nftables table `inet skywire_vpn_killswitch`: nothing leaves but through the tunnel,
//!    to loopback, to the pinned underlay, or to this machine's own LANs (IPv6 included).
//!
//! Every change but the TUN device (which the kernel removes with the process) is recorded in
//! the undo journal first and undone when the tunnel stops — and on the next start after a
//! crash. When the tunnel drops, the client reconnects by itself (backoff 1 s doubling to
//! 10 s); meanwhile, without the kill-switch its routes are removed (traffic goes direct),
//! with it they stay (traffic waits in the dead tunnel). A server's "wrong passcode" or "bad
//! request" ends the attempts (state `refused`).
//!
//! Control requests: `{"op":"start","pk":…,"passcode":…,"killswitch":bool,"dns":"a.b.c.d",
//! "via":…}` → the status; `{"op":"stop"}` → `{"stopped":"<pk>"}`; `{"op":"status"}` →
//! `{"tunnel": status or null}`. A status is `server, state (connecting|up|retrying|
//! refused), state_secs, address, gateway, interface, network, mtu, rtt_ms, killswitch, dns,
//! pinned, connects, last_error, tx_bytes, rx_bytes, tx_packets, rx_packets,
//! dropped_malformed, dropped_addr`.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argh::FromArgs;
use async_executor::Task;
use async_io::Timer;
use futures_lite::future;

use super::netcfg::{self, Journal, Undo};
use super::proto::{self, Hello, Net4, Status, Welcome};
use super::sys::Tun;
use super::{Filter, Stats, pump, read_frame, write_frame};
use crate::app::conn::Conn;
use crate::app::net::Via;
use crate::app::settings::RestartPolicy;
use crate::app::{AppCtx, AppDef, AppFuture, Mode, Signal};
use crate::crypto::PublicKey;
use crate::http::json::{Fields, JsonError, Ordered, Out, parse_object, str_array};
use crate::spawn::Spawn;

/// The app's own overlay port (DESIGN.md §4; it dials out and listens on none).
pub const PORT: u16 = 43;
/// The server's port.
pub const SERVER_PORT: u16 = 44;
/// The client's TUN device: `swvpnc0`.
pub const TUN_PREFIX: &str = "swvpnc";
/// The kill-switch's nftables table (family `inet`).
pub const NFT_TABLE: &str = "skywire_vpn_killswitch";
/// The longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(20);
const RESOLV_CONF: &str = "/etc/resolv.conf";

#[derive(FromArgs, Debug)]
/// vpn-client arguments (without --srv the app starts with no tunnel)
struct Args {
    /// the vpn-server's PK
    #[argh(option)]
    srv: Option<String>,
    /// the server's passcode
    #[argh(option)]
    passcode: Option<String>,
    /// nothing leaves this machine outside the tunnel, even while it is down
    #[argh(switch)]
    killswitch: bool,
    /// point /etc/resolv.conf at this DNS server while the tunnel runs
    #[argh(option)]
    dns: Option<String>,
    /// dial by auto (the app's route policy), dmsg or skynet (default auto)
    #[argh(option, default = "String::from(\"auto\")")]
    via: String,
}

/// A tunnel's settings.
#[derive(Debug, Clone)]
pub struct TunnelCfg {
    /// The server.
    pub server: PublicKey,
    /// Its passcode.
    pub passcode: Option<String>,
    /// Block traffic outside the tunnel.
    pub killswitch: bool,
    /// The DNS server to use.
    pub dns: Option<Ipv4Addr>,
    /// The network to dial by.
    pub via: Via,
}

impl TunnelCfg {
    /// Checks and builds the settings; errors name the flag.
    pub fn new(
        server: &str,
        passcode: Option<&str>,
        killswitch: bool,
        dns: Option<&str>,
        via: &str,
    ) -> Result<TunnelCfg, String> {
        let server = PublicKey::from_hex(server).map_err(|e| {
            format!("--srv {server:?}: {e} (give the vpn-server visor's 64-hex-digit PK)")
        })?;
        if let Some(p) = passcode
            && !(1..=proto::MAX_PASSCODE).contains(&p.len())
        {
            return Err(format!(
                "--passcode must be 1-{} bytes",
                proto::MAX_PASSCODE
            ));
        }
        let dns = dns
            .map(|d| {
                d.parse::<Ipv4Addr>()
                    .map_err(|_| format!("--dns {d:?}: expected an IPv4 address, e.g. 1.1.1.1"))
            })
            .transpose()?;
        let via = match via {
            "auto" => Via::Auto,
            "dmsg" => Via::Dmsg,
            "skynet" => Via::Skynet,
            v => return Err(format!("--via {v:?}: expected auto, dmsg or skynet")),
        };
        Ok(TunnelCfg {
            server,
            passcode: passcode.map(String::from),
            killswitch,
            dns,
            via,
        })
    }
}

fn parse_args(args: &[String]) -> Result<Option<TunnelCfg>, String> {
    let a: Args = crate::app::parse_args("vpn-client", args)?;
    let Some(srv) = a.srv else {
        if a.passcode.is_some() || a.dns.is_some() || a.killswitch {
            return Err("--passcode, --dns and --killswitch need --srv <pk>".into());
        }
        return Ok(None);
    };
    TunnelCfg::new(
        &srv,
        a.passcode.as_deref(),
        a.killswitch,
        a.dns.as_deref(),
        &a.via,
    )
    .map(Some)
}

/// The app definition.
pub static DEF: AppDef = AppDef {
    name: "vpn-client",
    summary: "VPN client: all IPv4 traffic through a vpn-server ('skywire cli vpn')",
    modes: &[Mode::Visor, Mode::Dmsg, Mode::Tcp],
    port: Some(PORT),
    depends: &[],
    critical: false,
    // Idle until `cli vpn start`; started with the visor so that settings a crash left
    // behind (a kill-switch above all) are undone at boot.
    autostart: true,
    restart: RestartPolicy::OnFailure,
    tcp_listen: None,
    check_args: |a| parse_args(a).map(|_| ()),
    start,
};

fn start(ctx: AppCtx) -> AppFuture {
    Box::pin(run(ctx))
}

/// Where a tunnel is.
#[derive(Debug)]
struct State {
    phase: &'static str,
    since: Instant,
    welcome: Option<Welcome>,
    iface: String,
    network: String,
    pinned: Vec<Ipv4Addr>,
    connects: u64,
    last_error: Option<String>,
}

/// A running tunnel.
struct Tunnel {
    cfg: TunnelCfg,
    stats: Arc<Stats>,
    state: Arc<Mutex<State>>,
    stop: Signal,
    task: Task<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Tunnel {
    fn to_json(&self) -> Ordered {
        let s = lock(&self.state);
        let st = &self.stats;
        let w = s.welcome.as_ref();
        let addr =
            |f: fn(&Welcome) -> Ipv4Addr| w.map_or(Out::Null, |w| Out::Str(f(w).to_string()));
        let rtt = Stats::get(&st.rtt_us);
        Ordered::new()
            .field("server", Out::Str(self.cfg.server.to_hex()))
            .field("state", Out::Str(s.phase.into()))
            .field("state_secs", Out::U64(s.since.elapsed().as_secs()))
            .field("address", addr(|w| w.client))
            .field("gateway", addr(|w| w.gateway))
            .field(
                "interface",
                if s.iface.is_empty() {
                    Out::Null
                } else {
                    Out::Str(s.iface.clone())
                },
            )
            .field(
                "network",
                if s.network.is_empty() {
                    Out::Null
                } else {
                    Out::Str(s.network.clone())
                },
            )
            .field("mtu", w.map_or(Out::Null, |w| Out::U64(u64::from(w.mtu))))
            .field(
                "rtt_ms",
                if rtt == 0 {
                    Out::Null
                } else {
                    // Milliseconds with two decimals, in integers (no float formatting
                    // code in the binary for one field).
                    Out::Str(format!("{}.{:02}", rtt / 1000, rtt % 1000 / 10))
                },
            )
            .field("killswitch", Out::Bool(self.cfg.killswitch))
            .field(
                "dns",
                self.cfg.dns.map_or(Out::Null, |d| Out::Str(d.to_string())),
            )
            .field("pinned", str_array(s.pinned.iter().map(|p| p.to_string())))
            .field("connects", Out::U64(s.connects))
            .field(
                "last_error",
                s.last_error.clone().map_or(Out::Null, Out::Str),
            )
            .field("tx_bytes", Out::U64(Stats::get(&st.tx_bytes)))
            .field("rx_bytes", Out::U64(Stats::get(&st.rx_bytes)))
            .field("tx_packets", Out::U64(Stats::get(&st.tx_packets)))
            .field("rx_packets", Out::U64(Stats::get(&st.rx_packets)))
            .field(
                "dropped_malformed",
                Out::U64(Stats::get(&st.dropped_malformed)),
            )
            .field("dropped_addr", Out::U64(Stats::get(&st.dropped_addr)))
    }
}

/// Why an attempt failed: worth retrying or not.
enum Failure {
    Retry(String),
    Fatal(String),
}

/// The machine-side state of a tunnel: what has been set up, so a reconnect redoes only
/// what changed.
struct Setup {
    tun: Option<Tun>,
    address: Option<(Ipv4Addr, u8, u16)>,
    pinned: Vec<Ipv4Addr>,
    routes: bool,
    dns: bool,
    killswitch: bool,
    lans: Vec<Net4>,
}

/// One attempt: dial, hello, welcome.
async fn connect(ctx: &AppCtx, cfg: &TunnelCfg) -> Result<(Conn, Welcome), Failure> {
    let dial = ctx.net.dial_via(cfg.server, SERVER_PORT, cfg.via);
    let mut conn = future::or(async { dial.await.map_err(|e| e.to_string()) }, async {
        Timer::after(DIAL_TIMEOUT).await;
        Err(format!("no answer within {} s", DIAL_TIMEOUT.as_secs()))
    })
    .await
    .map_err(|e| Failure::Retry(format!("cannot reach the server: {e}")))?;
    let in_use = netcfg::addrs()
        .await
        .map_err(Failure::Retry)?
        .into_iter()
        .filter(|a| a.dev != "lo" && !a.dev.starts_with(TUN_PREFIX))
        .map(|a| a.net)
        .take(proto::MAX_IN_USE)
        .collect();
    let hello = Hello {
        passcode: cfg.passcode.clone().unwrap_or_default().into_bytes(),
        in_use,
    };
    write_frame(&mut conn, &proto::encode_hello(&hello))
        .await
        .map_err(|e| Failure::Retry(format!("hello: {e}")))?;
    let b = read_frame(
        &mut conn,
        proto::WELCOME_FIXED + proto::MAX_REASON,
        super::HANDSHAKE_TIMEOUT,
    )
    .await
    .map_err(|e| Failure::Retry(format!("no welcome from the server: {e}")))?;
    let w = proto::parse_welcome(&b)
        .map_err(|e| Failure::Retry(format!("the server's welcome: {e}")))?;
    match w.status {
        Status::Ok => Ok((conn, w)),
        Status::Forbidden | Status::BadRequest => Err(Failure::Fatal(format!(
            "the server refused: {} ({})",
            w.status.text(),
            w.reason
        ))),
        s => Err(Failure::Retry(format!(
            "the server refused: {} ({})",
            s.text(),
            w.reason
        ))),
    }
}

impl Setup {
    /// Brings the machine in line with the welcome: TUN device, address, pins, routes, DNS,
    /// kill-switch.
    async fn apply(
        &mut self,
        ctx: &AppCtx,
        cfg: &TunnelCfg,
        w: &Welcome,
        j: &Journal,
        state: &Mutex<State>,
    ) -> Result<(), String> {
        if self.tun.is_none() {
            let t = Tun::open(&format!("{TUN_PREFIX}%d"))?;
            lock(state).iface = t.name().to_string();
            self.tun = Some(t);
        }
        let dev = self
            .tun
            .as_ref()
            .map(|t| t.name().to_string())
            .unwrap_or_default();
        let want = (w.client, w.prefix, w.mtu);
        if self.address != Some(want) {
            netcfg::run(&["ip", "addr", "flush", "dev", &dev], None).await?;
            let a = format!("{}/{}", w.client, w.prefix);
            netcfg::run(&["ip", "addr", "add", &a, "dev", &dev], None).await?;
            let mtu = w.mtu.to_string();
            netcfg::run(&["ip", "link", "set", "dev", &dev, "mtu", &mtu, "up"], None).await?;
            self.address = Some(want);
            self.routes = false;
        }
        // The underlay, before the tunnel takes the routes.
        let mut ips = netcfg::tcp_peers();
        for h in ctx.net.underlay() {
            for ip in netcfg::resolve4(&h) {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        for ip in ips {
            if self.pinned.contains(&ip) || ip.is_loopback() {
                continue;
            }
            let Some(r) = netcfg::route_get(ip).await? else {
                continue;
            };
            if r.dev == "lo" || r.dev == dev {
                continue;
            }
            let host = format!("{ip}/32");
            let mut add = vec!["ip", "route", "replace", &host];
            let gw = r.gateway.map(|g| g.to_string());
            if let Some(g) = &gw {
                add.extend(["via", g]);
            }
            add.extend(["dev", &r.dev]);
            j.record(&Undo::cmd(&["ip", "route", "del", &host]))?;
            netcfg::run(&add, None).await?;
            if self.killswitch {
                let el = format!("{{ {ip} }}");
                netcfg::run(
                    &["nft", "add", "element", "inet", NFT_TABLE, "underlay", &el],
                    None,
                )
                .await?;
            }
            self.pinned.push(ip);
        }
        lock(state).pinned = self.pinned.clone();
        if !self.routes {
            for half in ["0.0.0.0/1", "128.0.0.0/1"] {
                netcfg::run(&["ip", "route", "replace", half, "dev", &dev], None).await?;
            }
            self.routes = true;
        }
        if let (Some(d), false) = (cfg.dns, self.dns) {
            let backup = j.backup_path("resolv.conf.before-vpn");
            let b = backup.to_string_lossy().to_string();
            std::fs::copy(RESOLV_CONF, &backup)
                .map_err(|e| format!("back up {RESOLV_CONF}: {e}"))?;
            j.record(&Undo::Restore(RESOLV_CONF.into(), b))?;
            std::fs::write(
                RESOLV_CONF,
                format!("# set by skywire vpn-client\nnameserver {d}\n"),
            )
            .map_err(|e| format!("write {RESOLV_CONF}: {e}"))?;
            self.dns = true;
        }
        if cfg.killswitch && !self.killswitch {
            netcfg::nft_table(
                j,
                "inet",
                NFT_TABLE,
                &killswitch_rules(&self.pinned, &self.lans),
            )
            .await?;
            self.killswitch = true;
        }
        Ok(())
    }

    /// After the tunnel dropped: without the kill-switch, traffic goes direct again.
    async fn down(&mut self, cfg: &TunnelCfg) {
        if cfg.killswitch || !self.routes {
            return;
        }
        for half in ["0.0.0.0/1", "128.0.0.0/1"] {
            let _ = netcfg::run(&["ip", "route", "del", half], None).await;
        }
        self.routes = false;
    }
}

/// The kill-switch table's body.
fn killswitch_rules(pinned: &[Ipv4Addr], lans: &[Net4]) -> String {
    let mut r = String::from("  set underlay {\n    type ipv4_addr;\n");
    if !pinned.is_empty() {
        let v: Vec<String> = pinned.iter().map(Ipv4Addr::to_string).collect();
        r.push_str(&format!("    elements = {{ {} }}\n", v.join(", ")));
    }
    r.push_str(&format!(
        "  }}\n  chain output {{\n    type filter hook output priority filter; policy drop;\n    \
         oifname \"lo\" accept\n    oifname \"{TUN_PREFIX}*\" accept\n    \
         ip daddr @underlay accept\n"
    ));
    let nets: Vec<String> = lans
        .iter()
        .filter(|n| n.prefix > 0)
        .map(Net4::to_string)
        .collect();
    if !nets.is_empty() {
        r.push_str(&format!("    ip daddr {{ {} }} accept\n", nets.join(", ")));
    }
    r.push_str("  }\n");
    r
}

/// Runs one tunnel until `stop`: connect, set up, pump, reconnect.
async fn tunnel(
    ctx: AppCtx,
    cfg: TunnelCfg,
    stats: Arc<Stats>,
    state: Arc<Mutex<State>>,
    stop: Signal,
) {
    let j = Journal::new(&ctx.host.state_dir, "vpn-client");
    let lans = netcfg::addrs()
        .await
        .map(|v| {
            v.into_iter()
                .filter(|a| a.dev != "lo" && !a.dev.starts_with(TUN_PREFIX))
                .map(|a| a.net)
                .collect()
        })
        .unwrap_or_default();
    let mut setup = Setup {
        tun: None,
        address: None,
        pinned: Vec::new(),
        routes: false,
        dns: false,
        killswitch: false,
        lans,
    };
    let set = |phase: &'static str, err: Option<String>| {
        let mut s = lock(&state);
        if s.phase != phase {
            s.phase = phase;
            s.since = Instant::now();
        }
        if err.is_some() {
            s.last_error = err;
        }
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        set("connecting", None);
        let attempt = future::or(async { Some(connect(&ctx, &cfg).await) }, async {
            stop.wait().await;
            None
        })
        .await;
        let why = match attempt {
            None => break,
            Some(Err(Failure::Fatal(e))) => {
                log::warn!("vpn-client: {e}; not retrying (fix it and start again)");
                set("refused", Some(e));
                stop.wait().await;
                break;
            }
            Some(Err(Failure::Retry(e))) => e,
            Some(Ok((conn, w))) => {
                let network = conn.info().network.as_str().to_string();
                match setup.apply(&ctx, &cfg, &w, &j, &state).await {
                    Err(e) => format!("setting up the tunnel: {e}"),
                    Ok(()) => {
                        {
                            let mut s = lock(&state);
                            s.connects += 1;
                            s.welcome = Some(w.clone());
                            s.network = network.clone();
                        }
                        set("up", None);
                        log::info!(
                            "vpn-client: tunnel up to {} over {network}: {} via {} on {} (mtu {})",
                            cfg.server,
                            w.client,
                            w.gateway,
                            lock(&state).iface,
                            w.mtu
                        );
                        backoff = Duration::from_secs(1);
                        let filter = Filter {
                            src: None,
                            dst: Some(w.client),
                            mtu: w.mtu,
                        };
                        let Some(tun) = setup.tun.as_ref() else {
                            break;
                        };
                        let why = pump(tun, conn, filter, &stats, stop.wait()).await;
                        if stop.is_raised() {
                            break;
                        }
                        why
                    }
                }
            }
        };
        log::info!(
            "vpn-client: tunnel to {} down: {why}; retrying in {} s",
            cfg.server,
            backoff.as_secs()
        );
        set("retrying", Some(why));
        setup.down(&cfg).await;
        let wait = async {
            Timer::after(backoff).await;
            false
        };
        if future::or(wait, async {
            stop.wait().await;
            true
        })
        .await
        {
            break;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    // The TUN device (and its routes) go first, then everything journalled.
    drop(setup);
    let n = j.replay().await;
    log::info!(
        "vpn-client: tunnel to {} stopped; {n} setting(s) restored",
        cfg.server
    );
}

struct Manager {
    ctx: AppCtx,
    current: Mutex<Option<Tunnel>>,
}

impl Manager {
    fn status_line(&self) {
        let line = match &*lock(&self.current) {
            None => "no tunnel (start one: skywire cli vpn start <pk>)".to_string(),
            Some(t) => {
                let s = lock(&t.state);
                let addr = s
                    .welcome
                    .as_ref()
                    .map(|w| format!(" as {}", w.client))
                    .unwrap_or_default();
                format!(
                    "tunnel to {} {}{addr}{}; {} B out, {} B in{}",
                    &t.cfg.server.to_hex()[..8],
                    s.phase,
                    if s.network.is_empty() {
                        String::new()
                    } else {
                        format!(" over {}", s.network)
                    },
                    Stats::get(&t.stats.tx_bytes),
                    Stats::get(&t.stats.rx_bytes),
                    s.last_error
                        .as_ref()
                        .filter(|_| s.phase != "up")
                        .map(|e| format!("; {e}"))
                        .unwrap_or_default()
                )
            }
        };
        self.ctx.set_status(line);
    }

    fn start(&self, cfg: TunnelCfg) -> Result<Ordered, (u16, String)> {
        let mut cur = lock(&self.current);
        if let Some(t) = &*cur {
            return Err((
                409,
                format!(
                    "a tunnel to {} is running; stop it first (skywire cli vpn stop)",
                    t.cfg.server
                ),
            ));
        }
        // Refused here, with what to do, where TUN devices cannot be made.
        drop(Tun::open(&format!("{TUN_PREFIX}%d")).map_err(|e| (403, e))?);
        let stats = Arc::new(Stats::default());
        let state = Arc::new(Mutex::new(State {
            phase: "connecting",
            since: Instant::now(),
            welcome: None,
            iface: String::new(),
            network: String::new(),
            pinned: Vec::new(),
            connects: 0,
            last_error: None,
        }));
        let stop = Signal::default();
        let task = self.ctx.ex.spawn_boxed(tunnel(
            self.ctx.clone(),
            cfg.clone(),
            stats.clone(),
            state.clone(),
            stop.clone(),
        ));
        log::info!("vpn-client: starting a tunnel to {}", cfg.server);
        let t = Tunnel {
            cfg,
            stats,
            state,
            stop,
            task,
        };
        let json = t.to_json();
        *cur = Some(t);
        Ok(json)
    }

    /// Stops the tunnel and waits until its settings are restored.
    async fn stop(&self) -> Result<Ordered, (u16, String)> {
        let t = lock(&self.current).take();
        let Some(t) = t else {
            return Err((404, "no tunnel is running".into()));
        };
        t.stop.raise();
        // The tunnel task restores the journal; wait for it (bounded: each command has its
        // own timeout, and there are a handful).
        let _ = future::or(
            async {
                t.task.await;
            },
            async {
                Timer::after(Duration::from_secs(30)).await;
            },
        )
        .await;
        self.status_line();
        Ok(Ordered::new().field("stopped", Out::Str(t.cfg.server.to_hex())))
    }

    async fn control(&self, body: &str) -> Result<Ordered, (u16, String)> {
        let bad = |e: JsonError| (400, format!("control request: {e}"));
        let obj = parse_object(body).map_err(bad)?;
        let mut f = Fields::new(&obj, "");
        match f.str("op").map_err(bad)? {
            "status" => Ok(Ordered::new().field(
                "tunnel",
                lock(&self.current)
                    .as_ref()
                    .map_or(Out::Null, |t| Out::Obj(t.to_json())),
            )),
            "stop" => {
                f.deny_unknown().map_err(bad)?;
                self.stop().await
            }
            "start" => {
                let cfg = TunnelCfg::new(
                    f.str("pk").map_err(bad)?,
                    f.opt_str("passcode").map_err(bad)?,
                    f.opt_bool("killswitch").map_err(bad)?.unwrap_or(false),
                    f.opt_str("dns").map_err(bad)?,
                    f.opt_str("via").map_err(bad)?.unwrap_or("auto"),
                )
                .map_err(|e| (400, e))?;
                f.deny_unknown().map_err(bad)?;
                let r = self.start(cfg);
                self.status_line();
                r
            }
            op => Err((
                400,
                format!("control request: unknown op {op:?} (start, stop, status)"),
            )),
        }
    }
}

async fn run(ctx: AppCtx) -> Result<(), String> {
    let first = parse_args(&ctx.args)?;
    let j = Journal::new(&ctx.host.state_dir, "vpn-client");
    let n = j.replay().await;
    if n > 0 {
        log::info!("vpn-client: restored {n} setting(s) left by a run that did not exit cleanly");
    }
    let mgr = Arc::new(Manager {
        ctx: ctx.clone(),
        current: Mutex::new(None),
    });
    if let Some(cfg) = first {
        mgr.start(cfg).map_err(|(_, e)| e)?;
    }
    let m2 = mgr.clone();
    ctx.set_control(Arc::new(move |body: String| {
        let m = m2.clone();
        Box::pin(async move { m.control(&body).await.map(|o| o.to_pretty()) })
    }));
    mgr.status_line();
    ctx.ready();
    let refresh = async {
        loop {
            Timer::after(Duration::from_secs(2)).await;
            mgr.status_line();
        }
    };
    future::or(refresh, ctx.stopped()).await;
    let _ = mgr.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_checked() {
        let pk = crate::crypto::Keypair::from_seed(&[7; 32])
            .public()
            .to_hex();
        assert!(parse_args(&[]).unwrap().is_none());
        let c = parse_args(&args(&["--srv", &pk, "--dns", "1.1.1.1", "--killswitch"]))
            .unwrap()
            .unwrap();
        assert_eq!(c.dns, Some(Ipv4Addr::new(1, 1, 1, 1)));
        assert!(c.killswitch);
        for (a, want) in [
            (vec!["--srv", "02d3e1"], "--srv"),
            (vec!["--srv", &pk, "--dns", "one"], "--dns"),
            (vec!["--srv", &pk, "--via", "carrier-pigeon"], "--via"),
            (vec!["--srv", &pk, "--passcode", ""], "--passcode"),
            (vec!["--killswitch"], "need --srv"),
        ] {
            let e = parse_args(&args(&a)).unwrap_err();
            assert!(e.contains(want), "{a:?}: {e}");
        }
    }

    #[test]
    fn killswitch_ruleset() {
        let r = killswitch_rules(
            &[Ipv4Addr::new(10, 99, 3, 1)],
            &[Net4 {
                addr: Ipv4Addr::new(10, 99, 1, 2),
                prefix: 24,
            }],
        );
        assert!(r.contains("policy drop;"));
        assert!(r.contains("elements = { 10.99.3.1 }"));
        assert!(r.contains("oifname \"swvpnc*\" accept"));
        assert!(r.contains("ip daddr { 10.99.1.0/24 } accept"));
        assert!(!killswitch_rules(&[], &[]).contains("elements"));
    }
}
