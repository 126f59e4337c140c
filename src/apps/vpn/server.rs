//! vpn-server (overlay port 44): each client that says hello (and the passcode, if one is
//! set) gets a /29 of its own from the private ranges — avoiding the networks it reports in
//! use, this machine's own, and the other clients' — and a TUN device `swvpns<N>` holding the
//! gateway address; its packets are forwarded and masqueraded out of the egress interface.
//!
//! Start: the undo journal of an earlier run that did not exit cleanly is replayed, then the
//! app checks that it can create TUN devices (without `CAP_NET_ADMIN` it fails with that
//! message and the visor keeps running), enables IPv4 forwarding and loads its nftables
//! table `ip skywire_vpn_server` (masquerade out of `--netifc`; with `--secure`, the default,
//! clients reach neither this machine nor its LANs nor each other), or where `nft` is not
//! installed the same rules as three iptables chains. Every change is journalled first and
//! undone when the app stops.
//!
//! Budgets (docs/architecture.md): at most `--max-clients` (default [`MAX_CLIENTS`]) sessions,
//! one per PK (a client that reconnects replaces its old session and keeps its block when it
//! can); at most [`MAX_HANDSHAKES`] streams waiting for their hello, each within
//! [`super::HANDSHAKE_TIMEOUT`] and at most [`proto::MAX_HELLO`] bytes; per session one TUN device and [`super::READ_BUF`] + [`super::WRITE_BATCH`] bytes of
//! buffers. Packets whose source is not the client's address, malformed frames and
//! oversize packets are dropped and counted per session.
//!
//! Control (`POST /v1/apps/vpn-server/control`): `{"op":"list"}` → `{"egress", "secure",
//! "passcode", "max_clients", "items": [{pk, address, gateway, interface, since_secs,
//! tx_bytes, rx_bytes, tx_packets, rx_packets, dropped_malformed, dropped_addr}]}`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argh::FromArgs;
use futures_lite::future;

use super::netcfg::{self, Journal};
use super::proto::{self, Net4, Status, Welcome};
use super::sys::Tun;
use super::{DEFAULT_MTU, Filter, MAX_MTU, Stats, pump, read_frame, same_secret, write_frame};
use crate::app::conn::Conn;
use crate::app::settings::RestartPolicy;
use crate::app::{AppCtx, AppDef, AppFuture, Mode, Signal};
use crate::crypto::PublicKey;
use crate::http::json::{Ordered, Out, parse_object};
use crate::spawn::Spawn;

/// The overlay port (DESIGN.md §4).
pub const PORT: u16 = 44;
/// Most clients at once (default).
pub const MAX_CLIENTS: usize = 32;
/// Most streams waiting for their hello at once; more are closed unread.
pub const MAX_HANDSHAKES: usize = 64;
/// The server's TUN devices: `swvpns0`, `swvpns1`, …
pub const TUN_PREFIX: &str = "swvpns";
/// Its nftables table (family `ip`).
pub const NFT_TABLE: &str = "skywire_vpn_server";
/// The address ranges blocks come from, in order (as Go Skywire's): first and last block.
const RANGES: [([u8; 4], [u8; 4]); 3] = [
    ([192, 168, 2, 0], [192, 168, 255, 248]),
    ([172, 16, 0, 0], [172, 31, 255, 248]),
    ([10, 0, 0, 0], [10, 255, 255, 248]),
];

#[derive(FromArgs, Debug)]
/// vpn-server arguments
struct Args {
    /// require this passcode from clients (1-64 bytes)
    #[argh(option)]
    passcode: Option<String>,
    /// the egress interface (default: the default route's)
    #[argh(option)]
    netifc: Option<String>,
    /// keep clients out of this machine, its LANs and each other (default true)
    #[argh(option, default = "true")]
    secure: bool,
    /// most clients at once (default 32)
    #[argh(option, default = "MAX_CLIENTS")]
    max_clients: usize,
    /// the tunnels' MTU (576-16384, default 1500)
    #[argh(option, default = "DEFAULT_MTU")]
    mtu: u16,
}

#[derive(Debug)]
struct Config {
    passcode: Option<String>,
    netifc: Option<String>,
    secure: bool,
    max_clients: usize,
    mtu: u16,
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let a: Args = crate::app::parse_args("vpn-server", args)?;
    if let Some(p) = &a.passcode
        && !(1..=proto::MAX_PASSCODE).contains(&p.len())
    {
        return Err(format!(
            "--passcode must be 1-{} bytes",
            proto::MAX_PASSCODE
        ));
    }
    if let Some(i) = &a.netifc
        && (i.is_empty() || i.len() > 15 || i.contains(['"', ' ', '/', '\t', '\n']))
    {
        return Err(format!("--netifc {i:?}: not an interface name"));
    }
    if !(1..=1024).contains(&a.max_clients) {
        return Err("--max-clients must be 1-1024".into());
    }
    if !(576..=MAX_MTU).contains(&a.mtu) {
        return Err(format!("--mtu must be 576-{MAX_MTU}"));
    }
    Ok(Config {
        passcode: a.passcode,
        netifc: a.netifc,
        secure: a.secure,
        max_clients: a.max_clients,
        mtu: a.mtu,
    })
}

/// The app definition.
pub static DEF: AppDef = AppDef {
    name: "vpn-server",
    summary: "VPN server: a TUN device per client, NAT out of this machine",
    modes: &[Mode::Visor, Mode::Dmsg, Mode::Tcp],
    port: Some(PORT),
    depends: &[],
    critical: false,
    autostart: false,
    restart: RestartPolicy::OnFailure,
    tcp_listen: Some(":4044"),
    check_args: |a| parse_args(a).map(|_| ()),
    start,
};

fn start(ctx: AppCtx) -> AppFuture {
    Box::pin(run(ctx))
}

/// The first /29 in [`RANGES`] that overlaps none of `avoid`.
pub fn allocate(avoid: &[Net4]) -> Option<Net4> {
    for (first, last) in RANGES {
        let (mut cur, last) = (u32::from_be_bytes(first), u32::from_be_bytes(last));
        while cur <= last {
            let block = Net4 {
                addr: Ipv4Addr::from(cur),
                prefix: 29,
            };
            match avoid.iter().find(|n| n.overlaps(&block)) {
                None => return Some(block),
                Some(n) => {
                    // Skip past the whole network in the way (or just this block).
                    let end = u64::from(u32::from(n.addr) & n.mask()) + (1u64 << (32 - n.prefix));
                    let next = end.max(u64::from(cur) + 8);
                    if next > u64::from(last) {
                        break;
                    }
                    cur = next as u32;
                }
            }
        }
    }
    None
}

/// A block's addresses: (gateway = base + 1, client = base + 2).
fn addresses(block: &Net4) -> (Ipv4Addr, Ipv4Addr) {
    let b = u32::from(block.addr) & block.mask();
    (Ipv4Addr::from(b + 1), Ipv4Addr::from(b + 2))
}

/// The nftables table's body.
fn ruleset(egress: &str, lans: &[Net4], secure: bool) -> String {
    let tun = format!("\"{TUN_PREFIX}*\"");
    let mut r = format!(
        "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    \
         iifname {tun} oifname \"{egress}\" masquerade\n  }}\n"
    );
    if secure {
        r.push_str(&format!(
            "  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    \
             iifname {tun} oifname {tun} drop\n"
        ));
        if !lans.is_empty() {
            let nets: Vec<String> = lans.iter().map(Net4::to_string).collect();
            r.push_str(&format!(
                "    iifname {tun} ip daddr {{ {} }} drop\n",
                nets.join(", ")
            ));
        }
        r.push_str(&format!(
            "  }}\n  chain input {{\n    type filter hook input priority filter; policy accept;\n    \
             iifname {tun} ct state established,related accept\n    \
             iifname {tun} icmp type echo-request accept\n    iifname {tun} drop\n  }}\n"
        ));
    }
    r
}

/// The iptables chains that do what [`ruleset`]'s table does, for a machine without `nft`:
/// masquerade out of `egress` (`nat` SKYWIRE_VPN_NAT from POSTROUTING) and, with `secure`,
/// clients kept from each other and the server's LANs (SKYWIRE_VPN_FWD from FORWARD) and
/// from the server itself but for replies and ping (SKYWIRE_VPN_IN from INPUT).
fn ipt_chains(egress: &str, lans: &[Net4], secure: bool) -> Vec<netcfg::IptChain> {
    let tun = format!("{TUN_PREFIX}+");
    // Interface names and networks hold no white space, so a rule is one line of words.
    let rule =
        |line: String| -> Vec<String> { line.split_whitespace().map(String::from).collect() };
    let mut v = vec![netcfg::IptChain {
        table: "nat",
        name: "SKYWIRE_VPN_NAT",
        hook: "POSTROUTING",
        rules: vec![rule(format!("-i {tun} -o {egress} -j MASQUERADE"))],
    }];
    if secure {
        let mut fwd = vec![rule(format!("-i {tun} -o {tun} -j DROP"))];
        fwd.extend(
            lans.iter()
                .map(|n| rule(format!("-i {tun} -d {n} -j DROP"))),
        );
        v.push(netcfg::IptChain {
            table: "filter",
            name: "SKYWIRE_VPN_FWD",
            hook: "FORWARD",
            rules: fwd,
        });
        v.push(netcfg::IptChain {
            table: "filter",
            name: "SKYWIRE_VPN_IN",
            hook: "INPUT",
            rules: vec![
                rule(format!(
                    "-i {tun} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
                )),
                rule(format!(
                    "-i {tun} -p icmp --icmp-type echo-request -j ACCEPT"
                )),
                rule(format!("-i {tun} -j DROP")),
            ],
        });
    }
    v
}

/// One client's session.
struct Session {
    id: u64,
    block: Net4,
    iface: String,
    since: Instant,
    stats: Arc<Stats>,
    stop: Signal,
    done: Signal,
}

struct Server {
    ctx: AppCtx,
    cfg: Config,
    egress: String,
    /// This machine's networks (but loopback and the tunnels) when the app started.
    lans: Vec<Net4>,
    sessions: Mutex<HashMap<PublicKey, Session>>,
    next_id: Mutex<u64>,
    /// Raised when the app stops: every session ends.
    quit: Signal,
    /// Streams waiting for their hello.
    handshakes: std::sync::atomic::AtomicUsize,
}

impl Server {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<PublicKey, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn status_line(&self) {
        let s = self.sessions();
        let mut line = format!(
            "{} client(s) (at most {}); egress {}; secure {}; passcode {}",
            s.len(),
            self.cfg.max_clients,
            self.egress,
            if self.cfg.secure { "on" } else { "off" },
            if self.cfg.passcode.is_some() {
                "on"
            } else {
                "off"
            }
        );
        for (pk, c) in s.iter() {
            let (_, client) = addresses(&c.block);
            line.push_str(&format!(
                "; {} {client} on {} ({} B in, {} B out)",
                &pk.to_hex()[..8],
                c.iface,
                Stats::get(&c.stats.rx_bytes),
                Stats::get(&c.stats.tx_bytes)
            ));
        }
        drop(s);
        self.ctx.set_status(line);
    }

    fn list_json(&self) -> Ordered {
        let s = self.sessions();
        let items = s
            .iter()
            .map(|(pk, c)| {
                let (gw, client) = addresses(&c.block);
                let st = &c.stats;
                Out::Obj(
                    Ordered::new()
                        .field("pk", Out::Str(pk.to_hex()))
                        .field("address", Out::Str(client.to_string()))
                        .field("gateway", Out::Str(gw.to_string()))
                        .field("interface", Out::Str(c.iface.clone()))
                        .field("since_secs", Out::U64(c.since.elapsed().as_secs()))
                        .field("rx_bytes", Out::U64(Stats::get(&st.rx_bytes)))
                        .field("tx_bytes", Out::U64(Stats::get(&st.tx_bytes)))
                        .field("rx_packets", Out::U64(Stats::get(&st.rx_packets)))
                        .field("tx_packets", Out::U64(Stats::get(&st.tx_packets)))
                        .field(
                            "dropped_malformed",
                            Out::U64(Stats::get(&st.dropped_malformed)),
                        )
                        .field("dropped_addr", Out::U64(Stats::get(&st.dropped_addr))),
                )
            })
            .collect();
        Ordered::new()
            .field("egress", Out::Str(self.egress.clone()))
            .field("secure", Out::Bool(self.cfg.secure))
            .field("passcode", Out::Bool(self.cfg.passcode.is_some()))
            .field("max_clients", Out::U64(self.cfg.max_clients as u64))
            .field("items", Out::Arr(items))
    }

    /// Refuses `conn` with `status`.
    async fn refuse(peer: &PublicKey, conn: &mut Conn, status: Status, why: &str) {
        log::info!("vpn-server: {peer} refused: {why}");
        let _ = write_frame(conn, &proto::encode_welcome(&Welcome::refuse(status, why))).await;
        // A graceful close (FIN after the answer), so the answer is read before the end.
        let _ = futures_lite::io::AsyncWriteExt::close(conn).await;
    }

    /// Serves one client until its session ends.
    async fn serve(self: Arc<Self>, mut conn: Conn) {
        let peer = *conn.peer();
        use std::sync::atomic::Ordering::Relaxed;
        if self.handshakes.fetch_add(1, Relaxed) >= MAX_HANDSHAKES {
            self.handshakes.fetch_sub(1, Relaxed);
            log::info!("vpn-server: {peer}: {MAX_HANDSHAKES} hellos pending (the limit); closed");
            return;
        }
        let hello = read_frame(&mut conn, proto::MAX_HELLO, super::HANDSHAKE_TIMEOUT).await;
        self.handshakes.fetch_sub(1, Relaxed);
        let hello = match hello {
            Ok(b) => b,
            Err(e) => {
                log::info!("vpn-server: {peer}: no hello: {e}");
                Self::refuse(&peer, &mut conn, Status::BadRequest, &e).await;
                return;
            }
        };
        let hello = match proto::parse_hello(&hello) {
            Ok(h) => h,
            Err(e) => {
                Self::refuse(&peer, &mut conn, Status::BadRequest, &e.to_string()).await;
                return;
            }
        };
        if let Some(p) = &self.cfg.passcode
            && !same_secret(p.as_bytes(), &hello.passcode)
        {
            let why = if hello.passcode.is_empty() {
                "this server needs a passcode (--passcode)"
            } else {
                "wrong passcode"
            };
            Self::refuse(&peer, &mut conn, Status::Forbidden, why).await;
            return;
        }
        // A client that reconnects replaces its old session (whose block it may keep).
        let old = self
            .sessions()
            .get(&peer)
            .map(|s| (s.stop.clone(), s.done.clone()));
        if let Some((stop, done)) = old {
            stop.raise();
            let wait = async {
                async_io::Timer::after(Duration::from_secs(3)).await;
            };
            future::or(done.wait(), wait).await;
        }
        let (id, block, stats, stop, done) = match self.admit(peer, &hello.in_use) {
            Ok(r) => r,
            Err((status, why)) => {
                Self::refuse(&peer, &mut conn, status, &why).await;
                return;
            }
        };
        let (gw, client) = addresses(&block);
        let why = match self.tunnel(&peer, id, block).await {
            Err(e) => {
                log::warn!("vpn-server: {peer}: {e}");
                Self::refuse(&peer, &mut conn, Status::Internal, &e).await;
                e
            }
            Ok(tun) => {
                let welcome = Welcome {
                    status: Status::Ok,
                    client,
                    gateway: gw,
                    prefix: 29,
                    mtu: self.cfg.mtu,
                    reason: String::new(),
                };
                match write_frame(&mut conn, &proto::encode_welcome(&welcome)).await {
                    Err(e) => e,
                    Ok(()) => {
                        log::info!(
                            "vpn-server: {peer} connected: {client} on {} (gateway {gw})",
                            tun.name()
                        );
                        self.status_line();
                        let filter = Filter {
                            src: Some(client),
                            dst: None,
                            mtu: self.cfg.mtu,
                        };
                        let stop = future::or(stop.wait(), self.quit.wait());
                        pump(&tun, conn, filter, &stats, stop).await
                    }
                }
            }
        };
        log::info!(
            "vpn-server: {peer} ({client}) disconnected: {why}; {} B in, {} B out, {} malformed and {} misaddressed packet(s) dropped",
            Stats::get(&stats.rx_bytes),
            Stats::get(&stats.tx_bytes),
            Stats::get(&stats.dropped_malformed),
            Stats::get(&stats.dropped_addr)
        );
        {
            let mut s = self.sessions();
            if s.get(&peer).is_some_and(|c| c.id == id) {
                s.remove(&peer);
            }
        }
        done.raise();
        self.status_line();
    }

    /// A session slot and an address block for `peer`, or the refusal.
    #[allow(clippy::type_complexity)]
    fn admit(
        &self,
        peer: PublicKey,
        in_use: &[Net4],
    ) -> Result<(u64, Net4, Arc<Stats>, Signal, Signal), (Status, String)> {
        let mut s = self.sessions();
        if s.len() >= self.cfg.max_clients && !s.contains_key(&peer) {
            return Err((
                Status::Busy,
                format!("{} clients connected (the limit)", self.cfg.max_clients),
            ));
        }
        // The networks in the way: the client's, this machine's, the other clients'.
        let mut avoid = in_use.to_vec();
        avoid.extend(self.lans.iter().copied());
        avoid.extend(s.iter().filter(|(k, _)| **k != peer).map(|(_, c)| c.block));
        let block = allocate(&avoid).ok_or((
            Status::NoFreeAddress,
            "no free /29 avoids your networks".to_string(),
        ))?;
        let id = {
            let mut n = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        let sess = Session {
            id,
            block,
            iface: String::new(),
            since: Instant::now(),
            stats: Arc::new(Stats::default()),
            stop: Signal::default(),
            done: Signal::default(),
        };
        let r = (
            id,
            block,
            sess.stats.clone(),
            sess.stop.clone(),
            sess.done.clone(),
        );
        s.insert(peer, sess);
        Ok(r)
    }

    /// The client's TUN device, addressed and up.
    async fn tunnel(&self, peer: &PublicKey, id: u64, block: Net4) -> Result<Tun, String> {
        let tun = Tun::open(&format!("{TUN_PREFIX}%d"))?;
        let (gw, _) = addresses(&block);
        let dev = tun.name().to_string();
        netcfg::run(
            &["ip", "addr", "add", &format!("{gw}/29"), "dev", &dev],
            None,
        )
        .await?;
        let mtu = self.cfg.mtu.to_string();
        netcfg::run(&["ip", "link", "set", "dev", &dev, "mtu", &mtu, "up"], None).await?;
        if let Some(s) = self.sessions().get_mut(peer)
            && s.id == id
        {
            s.iface = dev;
        }
        Ok(tun)
    }

    fn control(&self, body: &str) -> Result<Ordered, (u16, String)> {
        let obj = parse_object(body).map_err(|e| (400, format!("control request: {e}")))?;
        match obj.get("op") {
            Some(miniserde::json::Value::String(op)) if op == "list" => Ok(self.list_json()),
            _ => Err((400, "control request: expected {\"op\":\"list\"}".into())),
        }
    }
}

async fn run(ctx: AppCtx) -> Result<(), String> {
    let cfg = parse_args(&ctx.args)?;
    let journal = Journal::new(&ctx.host.state_dir, "vpn-server");
    let n = journal.replay().await;
    if n > 0 {
        log::info!("vpn-server: restored {n} setting(s) left by a run that did not exit cleanly");
    }
    let res = serve(ctx, cfg, &journal).await;
    journal.replay().await;
    res
}

async fn serve(ctx: AppCtx, cfg: Config, journal: &Journal) -> Result<(), String> {
    // Fails here, with what to do, where TUN devices cannot be made.
    drop(Tun::open(&format!("{TUN_PREFIX}%d"))?);
    let egress = match &cfg.netifc {
        Some(i) => i.clone(),
        None => netcfg::default_dev().await?.ok_or(
            "no default route to find the egress interface by: give --netifc <interface> (the one facing the internet)",
        )?,
    };
    let addrs = netcfg::addrs().await?;
    if cfg.netifc.is_some() && !addrs.iter().any(|a| a.dev == egress) {
        log::warn!("vpn-server: --netifc {egress} has no IPv4 address (yet)");
    }
    let lans: Vec<Net4> = addrs
        .iter()
        .filter(|a| a.dev != "lo" && !a.dev.starts_with(TUN_PREFIX))
        .map(|a| a.net)
        .collect();
    // Which packet filter: nftables where `nft` is installed, else iptables (its nft or
    // legacy backend), else nothing to NAT with — said before anything is changed.
    let nft = netcfg::on_path("nft");
    if !nft && !netcfg::on_path("iptables") {
        return Err(
            "vpn-server needs nftables or iptables for NAT and neither `nft` nor \
                    `iptables` is on PATH (Debian: apt install nftables)"
                .into(),
        );
    }
    netcfg::set_sysctl(journal, "/proc/sys/net/ipv4/ip_forward", "1")?;
    if nft {
        netcfg::nft_table(
            journal,
            "ip",
            NFT_TABLE,
            &ruleset(&egress, &lans, cfg.secure),
        )
        .await?;
    } else {
        for c in ipt_chains(&egress, &lans, cfg.secure) {
            netcfg::iptables_chain(journal, &c).await?;
        }
    }
    let listener = ctx
        .net
        .listen(PORT)
        .map_err(|e| format!("port {PORT}: {e}"))?;
    log::info!(
        "vpn-server: on port {PORT}, NAT out of {egress} ({}), secure {}, passcode {}",
        if nft { "nftables" } else { "iptables" },
        if cfg.secure { "on" } else { "off" },
        if cfg.passcode.is_some() { "on" } else { "off" }
    );
    let srv = Arc::new(Server {
        ctx: ctx.clone(),
        cfg,
        egress,
        lans,
        sessions: Mutex::new(HashMap::new()),
        next_id: Mutex::new(0),
        quit: Signal::default(),
        handshakes: std::sync::atomic::AtomicUsize::new(0),
    });
    let s2 = srv.clone();
    ctx.set_control(Arc::new(move |body: String| {
        let s = s2.clone();
        Box::pin(async move { s.control(&body).map(|o| o.to_pretty()) })
    }));
    srv.status_line();
    ctx.ready();
    let accept = async {
        loop {
            let conn = listener.accept().await.map_err(|e| e.to_string())?;
            ctx.ex.spawn_boxed(srv.clone().serve(conn)).detach();
        }
    };
    let res = future::or(accept, async {
        ctx.stopped().await;
        Ok(())
    })
    .await;
    srv.quit.raise();
    // Give the sessions a moment to close their streams and TUN devices.
    let drained = async {
        while !srv.sessions().is_empty() {
            async_io::Timer::after(Duration::from_millis(20)).await;
        }
    };
    future::or(drained, async {
        async_io::Timer::after(Duration::from_secs(2)).await;
    })
    .await;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(a: [u8; 4], p: u8) -> Net4 {
        Net4 {
            addr: Ipv4Addr::from(a),
            prefix: p,
        }
    }

    #[test]
    fn blocks_avoid_what_is_in_use() {
        assert_eq!(allocate(&[]), Some(net([192, 168, 2, 0], 29)));
        assert_eq!(
            allocate(&[net([192, 168, 2, 5], 32)]),
            Some(net([192, 168, 2, 8], 29))
        );
        // A whole /16 in the way is skipped in one step, then the next range is used.
        assert_eq!(
            allocate(&[net([192, 168, 0, 0], 16)]),
            Some(net([172, 16, 0, 0], 29))
        );
        assert_eq!(
            allocate(&[net([192, 168, 0, 0], 16), net([172, 16, 0, 0], 12)]),
            Some(net([10, 0, 0, 0], 29))
        );
        assert_eq!(allocate(&[net([0, 0, 0, 0], 0)]), None);
        let (gw, client) = addresses(&net([192, 168, 2, 8], 29));
        assert_eq!(
            (gw, client),
            (
                Ipv4Addr::new(192, 168, 2, 9),
                Ipv4Addr::new(192, 168, 2, 10)
            )
        );
    }

    #[test]
    fn arguments_checked() {
        let a = |v: &[&str]| parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let c = a(&[]).unwrap();
        assert!(c.secure && c.passcode.is_none() && c.mtu == DEFAULT_MTU);
        assert!(!a(&["--secure", "false"]).unwrap().secure);
        for (v, want) in [
            (vec!["--passcode", ""], "--passcode"),
            (vec!["--netifc", "eth 0"], "--netifc"),
            (vec!["--max-clients", "0"], "--max-clients"),
            (vec!["--mtu", "100"], "--mtu"),
        ] {
            let e = a(&v).unwrap_err();
            assert!(e.contains(want), "{v:?}: {e}");
        }
    }

    #[test]
    fn ruleset_shape() {
        let r = ruleset("eth0", &[net([192, 168, 1, 0], 24)], true);
        assert!(r.contains("iifname \"swvpns*\" oifname \"eth0\" masquerade"));
        assert!(r.contains("ip daddr { 192.168.1.0/24 } drop"));
        assert!(r.contains("chain input"));
        let open = ruleset("eth0", &[], false);
        assert!(!open.contains("chain forward") && !open.contains("chain input"));
    }

    #[test]
    fn iptables_chains_shape() {
        let c = ipt_chains("eth0", &[net([192, 168, 1, 0], 24)], true);
        let names: Vec<_> = c.iter().map(|c| (c.table, c.name, c.hook)).collect();
        assert_eq!(
            names,
            [
                ("nat", "SKYWIRE_VPN_NAT", "POSTROUTING"),
                ("filter", "SKYWIRE_VPN_FWD", "FORWARD"),
                ("filter", "SKYWIRE_VPN_IN", "INPUT")
            ]
        );
        assert_eq!(
            c[0].rules,
            [["-i", "swvpns+", "-o", "eth0", "-j", "MASQUERADE"]]
        );
        assert_eq!(
            c[1].rules[1],
            ["-i", "swvpns+", "-d", "192.168.1.0/24", "-j", "DROP"]
        );
        assert_eq!(c[2].rules.last().unwrap(), &["-i", "swvpns+", "-j", "DROP"]);
        let open = ipt_chains("eth0", &[], false);
        assert_eq!(open.len(), 1);
    }
}
