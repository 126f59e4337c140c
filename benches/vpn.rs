//! `make bench` — the VPN beside nebula (relayed) and boringtun (direct), same machine, same
//! run (issue 17). iperf3 TCP (3 × 10 s in the full run, the median kept) through:
//!
//! - **ours over one relay**: vpn-client → dmsg relay → vpn-server → NAT → the outside
//!   namespace (tests/common/netns.rs draws the bed), `cli vpn start --via dmsg`;
//! - **ours direct**: the same over an stcp transport (`--via skynet`, one hop);
//! - **nebula relayed**: two nebula nodes whose direct UDP is dropped, through a third that is
//!   lighthouse and relay (`../shared/PEERS.md`: chachapoly, MTU 1300), TUN devices moved to
//!   two namespaces;
//! - **boringtun direct**: two `boringtun-cli` instances (WireGuard), as PEERS.md runs them.
//!
//! Throughput is iperf3's received rate; CPU is the CPU-seconds per GiB of every daemon on
//! the path (both visors and the relay; the nebula nodes and relay; both boringtuns), read
//! from /proc before and after each run, not of iperf3. A peer that is not installed is
//! reported as such (nebula: `apt install nebula`; boringtun: `cargo install --locked
//! boringtun-cli --version 0.7.1` and `apt install wireguard-tools`). Needs root (network
//! namespaces, TUN devices). Under `cargo test --all-targets` it runs ours for 2 s, as a
//! smoke test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::cpu_seconds_of;

/// A child killed (by PID) and reaped when dropped (the netns bed's handle).
pub struct ChildGuard(pub Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The binary under test.
pub fn skywire_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skywire"))
}

/// What the netns bed needs of the test helpers.
pub mod visor {
    /// stdout and stderr of `o`.
    pub fn text(o: &std::process::Output) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }
}

#[allow(dead_code)]
#[path = "../tests/common/netns.rs"]
mod netns;

use netns::{Lab, sh, wait_until};

/// One measurement: received Mbit/s and the daemons' CPU-seconds per GiB.
#[derive(Debug, Clone, Copy)]
struct Row {
    mbit: f64,
    cpu_per_gib: f64,
}

/// iperf3 from namespace `cli` to `ip` (its server in `srv`), `runs` × `secs`; the median
/// run by throughput, with the CPU of `pids` over it.
fn iperf(srv: &str, ip: &str, cli: &str, runs: usize, secs: u64, pids: &[u32]) -> Option<Row> {
    let mut server = Command::new("ip")
        .args(["netns", "exec", srv, "iperf3", "-s", "-B", ip, "-p", "5299"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(1500));
    let mut rows = Vec::new();
    for _ in 0..runs {
        let c0: f64 = pids.iter().map(|p| cpu_seconds_of(*p)).sum();
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                cli,
                "timeout",
                &(secs + 30).to_string(),
                "iperf3",
            ])
            .args(["-c", ip, "-p", "5299", "-t", &secs.to_string(), "-J"])
            .output()
            .ok()?;
        let c1: f64 = pids.iter().map(|p| cpu_seconds_of(*p)).sum();
        let j: miniserde::json::Value =
            miniserde::json::from_str(&String::from_utf8_lossy(&o.stdout)).ok()?;
        let bps = match netns::at(&j, &["end", "sum_received", "bits_per_second"]) {
            miniserde::json::Value::Number(miniserde::json::Number::F64(f)) => *f,
            miniserde::json::Value::Number(miniserde::json::Number::U64(n)) => *n as f64,
            _ => 0.0,
        };
        if bps <= 0.0 {
            eprintln!("iperf3 to {ip}: {}", visor::text(&o));
            continue;
        }
        let gib = bps / 8.0 * secs as f64 / f64::from(1u32 << 30);
        rows.push(Row {
            mbit: bps / 1e6,
            cpu_per_gib: (c1 - c0) / gib,
        });
        std::thread::sleep(Duration::from_secs(1));
    }
    let _ = server.kill();
    let _ = server.wait();
    rows.sort_by(|a, b| a.mbit.total_cmp(&b.mbit));
    rows.get(rows.len() / 2).copied()
}

/// Ours: one bed, the tunnel over the relay then over the stcp transport.
fn ours(runs: usize, secs: u64) -> (Option<Row>, Option<Row>) {
    let mut lab = Lab::new("bv");
    let relay = lab.relay();
    let scfg = lab.config(
        "server",
        &relay,
        r#"[{"name": "skychat", "auto_start": false}, {"name": "vpn-server", "auto_start": true}]"#,
        &[(
            "\"listen\": \"0.0.0.0:7777\"",
            "\"listen\": \"10.99.3.1:7777\"",
        )],
    );
    let (spk, server) = lab.visor("s", &scfg, "server.log");
    let tp = format!(r#""transports": [{{"pk": "{spk}", "type": "stcp"}}]"#);
    let ccfg = lab.config(
        "client",
        &relay,
        r#"[{"name": "skychat", "auto_start": false}]"#,
        &[("\"transports\": []", &tp)],
    );
    let (_, client) = lab.visor("c", &ccfg, "client.log");
    let pids = [lab.relay_pid, server.id(), client.id()];
    lab.keep(server);
    lab.keep(client);
    wait_until(20, "vpn-server running", || {
        lab.nft("s").contains("skywire_vpn_server")
    });
    let vpn = |args: &[&str]| {
        let mut a = vec!["cli", "vpn", "-c", ccfg.to_str().unwrap()];
        a.extend_from_slice(args);
        lab.sw("c", &a)
    };
    let mut out = Vec::new();
    for via in ["dmsg", "skynet"] {
        let o = vpn(&["start", &spk, "--via", via, "--wait", "60"]);
        if !o.status.success() {
            eprintln!("vpn start --via {via}: {}", visor::text(&o));
            out.push(None);
            continue;
        }
        out.push(iperf(
            &lab.ns("o"),
            "10.99.9.1",
            &lab.ns("c"),
            runs,
            secs,
            &pids,
        ));
        let _ = vpn(&["stop"]);
    }
    (out[0], out[1])
}

/// Namespaces `<tag>u` (underlay), `<tag>a`, `<tag>b`; removed when dropped.
struct PeerBed {
    tag: String,
    procs: Vec<ChildGuard>,
    dir: PathBuf,
}

impl PeerBed {
    fn new(tag: &str) -> PeerBed {
        let tag = format!("{tag}{}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("skywire-vpn-bench-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for n in ["u", "a", "b"] {
            let ns = format!("{tag}{n}");
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
            sh(&["ip", "netns", "add", &ns]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        PeerBed {
            tag,
            procs: Vec::new(),
            dir,
        }
    }

    fn ns(&self, n: &str) -> String {
        format!("{}{n}", self.tag)
    }

    /// Starts `prog args…` in the underlay namespace; its PID.
    fn start(&mut self, prog: &str, args: &[&str], log: &str) -> u32 {
        let c = Command::new("ip")
            .args(["netns", "exec", &self.ns("u"), prog])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(self.dir.join(log)).unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.join(format!("{log}.err"))).unwrap(),
            ))
            .spawn()
            .unwrap();
        let pid = c.id();
        self.procs.push(ChildGuard(Some(c)));
        pid
    }

    /// Waits until namespace `a` pings `ip` (the tunnel is up), at most `secs`.
    fn wait_ping(&self, secs: u64, what: &str, ip: &str) {
        let a = self.ns("a");
        wait_until(secs, what, || {
            Command::new("ip")
                .args(["netns", "exec", &a, "ping", "-c", "1", "-W", "2", ip])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    }

    /// Moves TUN `dev` from the underlay to `to` with `addr`.
    fn take_tun(&self, dev: &str, to: &str, addr: &str) {
        wait_until(10, dev, || {
            Command::new("ip")
                .args(["-n", &self.ns("u"), "link", "show", dev])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        sh(&[
            "ip",
            "-n",
            &self.ns("u"),
            "link",
            "set",
            dev,
            "netns",
            &self.ns(to),
        ]);
        sh(&["ip", "-n", &self.ns(to), "addr", "add", addr, "dev", dev]);
        sh(&["ip", "-n", &self.ns(to), "link", "set", dev, "up"]);
    }
}

impl Drop for PeerBed {
    fn drop(&mut self) {
        self.procs.clear();
        for n in ["u", "a", "b"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(n)])
                .status();
        }
    }
}

fn have(prog: &str) -> bool {
    netns::which(prog).is_some()
}

/// nebula relayed, as ../shared/peer-bench runs it.
fn nebula(runs: usize, secs: u64) -> Result<Row, String> {
    if !have("nebula") || !have("nebula-cert") {
        return Err("not installed (apt install nebula)".into());
    }
    let mut bed = PeerBed::new("bn");
    let d = bed.dir.clone();
    let cert = |args: &[&str]| {
        let o = Command::new("nebula-cert")
            .args(args)
            .current_dir(&d)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "nebula-cert {args:?}: {}",
            visor::text(&o)
        );
    };
    cert(&["ca", "-name", "bench-ca", "-duration", "4h"]);
    for (n, ip) in [
        ("nodea", "10.203.0.1/24"),
        ("nodeb", "10.203.0.2/24"),
        ("relay", "10.203.0.254/24"),
    ] {
        cert(&["sign", "-name", n, "-ip", ip]);
    }
    let fw = "firewall:\n  outbound: [{port: any, proto: any, host: any}]\n  inbound: [{port: any, proto: any, host: any}]\n";
    let pki = |n: &str| {
        format!(
            "pki: {{ca: {0}/ca.crt, cert: {0}/{n}.crt, key: {0}/{n}.key}}\n",
            d.display()
        )
    };
    std::fs::write(
        d.join("relay.yml"),
        format!(
            "{}static_host_map: {{}}\nlighthouse: {{am_lighthouse: true, interval: 60, hosts: []}}\nlisten: {{host: 127.0.0.1, port: 4250}}\npunchy: {{punch: false}}\nrelay: {{am_relay: true, use_relays: false}}\ncipher: chachapoly\ntun: {{disabled: true}}\nlogging: {{level: warning}}\n{fw}",
            pki("relay")
        ),
    )
    .unwrap();
    for (n, port) in [("a", 4242), ("b", 4243)] {
        std::fs::write(
            d.join(format!("node{n}.yml")),
            format!(
                "{}static_host_map: {{\"10.203.0.254\": [\"127.0.0.1:4250\"]}}\nlighthouse: {{am_lighthouse: false, interval: 60, hosts: [\"10.203.0.254\"]}}\nlisten: {{host: 127.0.0.1, port: {port}}}\npunchy: {{punch: false}}\nrelay: {{relays: [\"10.203.0.254\"], am_relay: false, use_relays: true}}\ncipher: chachapoly\ntun: {{disabled: false, dev: neb{n}, mtu: 1300}}\nlogging: {{level: warning}}\n{fw}",
                pki(&format!("node{n}"))
            ),
        )
        .unwrap();
    }
    // Direct node-to-node UDP dropped: everything goes through the relay.
    let o = Command::new("ip")
        .args(["netns", "exec", &bed.ns("u"), "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(
                b"table inet bench {\n  chain out {\n    type filter hook output priority 0; policy accept;\n    udp sport 4242 udp dport 4243 drop\n    udp sport 4243 udp dport 4242 drop\n  }\n}\n",
            )?;
            c.wait_with_output()
        })
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!("nft: {}", visor::text(&o)));
    }
    let cfg = |n: &str| d.join(n).to_string_lossy().into_owned();
    let relay = bed.start("nebula", &["-config", &cfg("relay.yml")], "relay.log");
    std::thread::sleep(Duration::from_secs(1));
    let a = bed.start("nebula", &["-config", &cfg("nodea.yml")], "nodea.log");
    let b = bed.start("nebula", &["-config", &cfg("nodeb.yml")], "nodeb.log");
    bed.take_tun("neba", "a", "10.203.0.1/24");
    bed.take_tun("nebb", "b", "10.203.0.2/24");
    let (na, nb) = (bed.ns("a"), bed.ns("b"));
    bed.wait_ping(30, "nebula through its relay", "10.203.0.2");
    iperf(&nb, "10.203.0.2", &na, runs, secs, &[relay, a, b]).ok_or_else(|| "iperf3 failed".into())
}

/// The boringtun-cli binary (on PATH or in cargo's bin directory).
fn boringtun_bin() -> Option<String> {
    if have("boringtun-cli") {
        return Some("boringtun-cli".into());
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".cargo")))
        .ok()?;
    let p = home.join("bin/boringtun-cli");
    p.exists().then(|| p.to_string_lossy().into_owned())
}

/// boringtun direct (WireGuard), as ../shared/peer-bench runs it.
fn boringtun(runs: usize, secs: u64) -> Result<Row, String> {
    let Some(bt) = boringtun_bin() else {
        return Err("not installed (cargo install --locked boringtun-cli --version 0.7.1)".into());
    };
    if !have("wg") {
        return Err("wg not installed (apt install wireguard-tools)".into());
    }
    let mut bed = PeerBed::new("bw");
    let d = bed.dir.clone();
    let key = |n: &str| {
        let k = sh(&["wg", "genkey"]);
        std::fs::write(d.join(format!("{n}.key")), k.trim()).unwrap();
        let o = Command::new("wg")
            .arg("pubkey")
            .stdin(std::fs::File::open(d.join(format!("{n}.key"))).unwrap())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let (pa, pb) = (key("a"), key("b"));
    let mut pids = Vec::new();
    for dev in ["wgA", "wgB"] {
        pids.push(bed.start(
            &bt,
            &["--foreground", "--disable-drop-privileges", dev],
            &format!("{dev}.log"),
        ));
    }
    std::thread::sleep(Duration::from_secs(2));
    let u = bed.ns("u");
    let ka = d.join("a.key").to_string_lossy().into_owned();
    let kb = d.join("b.key").to_string_lossy().into_owned();
    sh(&[
        "ip",
        "netns",
        "exec",
        &u,
        "wg",
        "set",
        "wgA",
        "private-key",
        &ka,
        "listen-port",
        "51821",
        "peer",
        &pb,
        "endpoint",
        "127.0.0.1:51822",
        "allowed-ips",
        "10.204.0.2/32",
    ]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &u,
        "wg",
        "set",
        "wgB",
        "private-key",
        &kb,
        "listen-port",
        "51822",
        "peer",
        &pa,
        "endpoint",
        "127.0.0.1:51821",
        "allowed-ips",
        "10.204.0.1/32",
    ]);
    sh(&["ip", "-n", &u, "link", "set", "wgA", "up"]);
    sh(&["ip", "-n", &u, "link", "set", "wgB", "up"]);
    bed.take_tun("wgA", "a", "10.204.0.1/24");
    bed.take_tun("wgB", "b", "10.204.0.2/24");
    let (na, nb) = (bed.ns("a"), bed.ns("b"));
    bed.wait_ping(20, "boringtun up", "10.204.0.2");
    iperf(&nb, "10.204.0.2", &na, runs, secs, &pids).ok_or_else(|| "iperf3 failed".into())
}

fn cell(r: &Result<Row, String>) -> (String, String) {
    match r {
        Ok(r) => (format!("{:.0}", r.mbit), format!("{:.1}", r.cpu_per_gib)),
        Err(e) => (format!("— ({e})"), "—".into()),
    }
}

fn main() {
    if !netns::can_run() {
        return;
    }
    let full = common::full_run();
    let (runs, secs) = if full { (3, 10) } else { (1, 2) };
    let (relayed, direct) = ours(runs, secs);
    let relayed = relayed.ok_or_else(|| "failed".to_string());
    let direct = direct.ok_or_else(|| "failed".to_string());
    for (what, r) in [
        ("ours over one relay", &relayed),
        ("ours direct (stcp)", &direct),
    ] {
        let (m, c) = cell(r);
        println!("{what}: {m} Mbit/s, {c} CPU-s/GiB");
    }
    if !full {
        assert!(
            relayed.is_ok() && direct.is_ok(),
            "the tunnel carried nothing"
        );
        return;
    }
    let neb = nebula(runs, secs);
    let bt = boringtun(runs, secs);
    let rows = [
        ("skywire-rs VPN, one dmsg relay", &relayed),
        ("nebula 1.6 relayed (chachapoly, MTU 1300)", &neb),
        ("skywire-rs VPN, direct stcp transport", &direct),
        ("boringtun 0.7 direct (WireGuard)", &bt),
    ];
    let mut body = format!(
        "Measured by `cargo bench --bench vpn -- --write docs/benchmarks.md` (root: network namespaces) on {}: iperf3 TCP, median of {runs} × {secs} s; CPU is every daemon on the path (our two visors and the relay; nebula's two nodes and relay; both boringtuns), not iperf3.\n\n| path | Mbit/s | daemon CPU-s per GiB |\n|---|---|---|\n",
        common::machine()
    );
    for (what, r) in rows {
        let (m, c) = cell(r);
        println!("{what}: {m} Mbit/s, {c} CPU-s/GiB");
        body.push_str(&format!("| {what} | {m} | {c} |\n"));
    }
    let ratio = |a: &Result<Row, String>, b: &Result<Row, String>| match (a, b) {
        (Ok(a), Ok(b)) => format!(
            "{:.2}× the throughput at {:.2}× the CPU per GiB",
            a.mbit / b.mbit,
            a.cpu_per_gib / b.cpu_per_gib
        ),
        _ => "not compared (a side did not run)".into(),
    };
    body.push_str(&format!(
        "\nRelayed, ours against nebula: {} (budget ≥ 1× at ≤ 1×). Direct, ours against boringtun: {} (budget ≥ 1× throughput).\n",
        ratio(&relayed, &neb),
        ratio(&direct, &bt)
    ));
    println!("{body}");
    if let Some(f) = common::write_target() {
        common::write_section(&f, "vpn", &body).unwrap();
    }
}
