//! `make bench` — hostile peers (issue 11, "Done when"): a well-behaved transfer through the
//! real binaries, alone and then beside each hostile peer, with its throughput, whether every
//! byte arrived intact, and the peak RSS growth of the attacked process over its RSS just
//! before the attack.
//!
//! Each row runs on a fresh network: `skywire dmsg disc`, `skywire dmsg server` (the relay),
//! and where needed `skywire visor` joined to that relay and `skywire app pty run --mode tcp`
//! (a TCP-mode host). The transfer's two ends live in this process: a receiver `DmsgClient`
//! listening on a port, and either a sender `DmsgClient` (path "relay": sender → relay →
//! receiver) or a TCP connection through the visor's RPC dial, the way `skywire cli pty` uses
//! the visor (path "visor": this process → visor → relay → receiver; the visor runs the
//! end-to-end channel). The bytes are a position-dependent pattern that the receiver checks
//! as they arrive.
//!
//! The hostile peers are `common/attack.rs`, run in a child copy of this bench
//! (`--child-attack KIND …`) at nice 10 — a peer on another machine does not take our CPU; on
//! two cores it still gets what the transfer leaves. Every attack is bounded: it stops when
//! the transfer has finished or after a few seconds, and at once when the attacked process has
//! grown by more than 512 MiB (reported as "> 512 MiB (attack stopped)"); a target that keeps
//! growing past 1 GiB after that is killed.
//!
//! Flags (after `--`): `--write FILE` writes the table between the `bench:hostile` markers;
//! `--quick` moves 256 MiB instead of 1 GiB (for development; committed numbers come from a
//! full run); `--only NAME[,NAME…]` runs only those attacks (names as in the table's first
//! column's code, e.g. `ping-relay`). Under `cargo test --all-targets` it runs small as a
//! smoke test (8 MiB, half-second attacks).

#[path = "common/attack.rs"]
mod attack;
mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_executor::Executor;
use async_io::Timer;
use attack::Kind;
use common::{Proc, free_port, rss_kib_of};
use futures_lite::future::{self, block_on};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use skywire::crypto::{Keypair, PublicKey};
use skywire::dmsg::client::{ClientConfig, DmsgClient};
use skywire::dmsg::disc_client::DiscClient;

const BIN: &str = env!("CARGO_BIN_EXE_skywire");
/// The receiver's dmsg port.
const PORT: u16 = 5001;
/// Growth of the target at which the attack is stopped.
const WATCHDOG_KIB: u64 = 512 * 1024;
/// Growth at which the target itself is killed (the attack stopped and it kept growing).
const KILL_KIB: u64 = 1024 * 1024;
/// The per-session budget the issue sets as its goal.
const BUDGET_KIB: u64 = 4 * 1024;
/// The throughput the issue asks for under attack, as a fraction of the unattacked one.
const GOAL_RATIO: f64 = 0.7;

/// What one run moves and how long it lets things take.
#[derive(Debug, Clone)]
struct Plan {
    bytes: u64,
    /// Longest an attack runs (it also stops when the transfer has finished).
    attack_cap: Duration,
    /// How long the attack runs before the transfer starts.
    ramp: Duration,
    /// A transfer not finished by then is reported as such.
    transfer_timeout: Duration,
    /// Baselines before and after the attacks (else only before).
    baseline_after: bool,
    streams: usize,
    tiny_streams: usize,
    parked_streams: usize,
    replay_conns: usize,
    max_replays: u64,
    mode: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Relay,
    Visor,
    Host,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Relay => "relay",
            Target::Visor => "visor",
            Target::Host => "TCP-mode pty host",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Relay,
    Visor,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Relay => "client → relay → client",
            Via::Visor => "RPC dial → visor → relay → client",
        }
    }
}

/// What is attacked and which path the transfer takes, per attack.
fn placement(k: Kind) -> (Target, Via, &'static str) {
    match k {
        Kind::PingRelay => (
            Target::Relay,
            Via::Relay,
            "(a) ping flood, never reading: XK session from a throwaway key",
        ),
        Kind::PingVisor => (
            Target::Visor,
            Via::Visor,
            "(b) ping flood, never reading: inner mux of a KK channel through the relay",
        ),
        Kind::StreamsRelay => (
            Target::Relay,
            Via::Relay,
            "(c) uncredited streams: one session asks for N channels to a sink session that never reads, a window (256 KiB) of data on each",
        ),
        Kind::StreamsVisor => (
            Target::Visor,
            Via::Visor,
            "(c) uncredited streams: N inner streams to dmsgctrl (port 7), a window of pings on each, pongs never read",
        ),
        Kind::TinyRelay => (
            Target::Relay,
            Via::Relay,
            "(d) 1-byte data frames on N relay streams to the never-reading sink",
        ),
        Kind::TinyVisor => (
            Target::Visor,
            Via::Visor,
            "(d) 1-byte data frames on N inner streams to dmsgctrl",
        ),
        Kind::ParkedTcp => (
            Target::Host,
            Via::Relay,
            "(e) parked streams before authorisation: a stranger's TCP connection, N streams to the pty port, a window of data on each; reconnects when dropped",
        ),
        Kind::Replay => (
            Target::Relay,
            Via::Relay,
            "(f) XK message 1 replay: one captured message 1 from M concurrent connections",
        ),
    }
}

// ---------------------------------------------------------------------------------------
// The transfer's bytes.

fn word(i: u64) -> u64 {
    (i ^ 0x5157_4952_4557_4b59).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The pattern's bytes at stream offset `off` (any alignment).
fn fill_pattern(off: u64, out: &mut [u8]) {
    let mut i = 0;
    while i < out.len() {
        let o = off + i as u64;
        let w = word(o / 8).to_le_bytes();
        let k = (o % 8) as usize;
        let n = (8 - k).min(out.len() - i);
        out[i..i + n].copy_from_slice(&w[k..k + n]);
        i += n;
    }
}

/// What the receiver saw on one stream.
#[derive(Debug)]
struct Received {
    bytes: u64,
    /// Offset of the first byte that differs from the pattern.
    bad_at: Option<u64>,
    /// How the stream ended, if not cleanly.
    error: Option<String>,
    at: Instant,
}

async fn receive<S: futures_lite::io::AsyncRead + Unpin>(mut s: S) -> Received {
    let mut buf = vec![0u8; 256 * 1024];
    let mut want = vec![0u8; 256 * 1024];
    let mut off = 0u64;
    let mut bad_at = None;
    let error = loop {
        match s.read(&mut buf).await {
            Ok(0) => break None,
            Ok(n) => {
                if bad_at.is_none() {
                    fill_pattern(off, &mut want[..n]);
                    if want[..n] != buf[..n] {
                        let i = (0..n).find(|&i| want[i] != buf[i]).unwrap_or(0);
                        bad_at = Some(off + i as u64);
                    }
                }
                off += n as u64;
            }
            Err(e) => break Some(e.to_string()),
        }
    };
    Received {
        bytes: off,
        bad_at,
        error,
        at: Instant::now(),
    }
}

async fn send_pattern<S: futures_lite::io::AsyncWrite + Unpin>(
    s: &mut S,
    total: u64,
) -> Result<(), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    while off < total {
        let n = (total - off).min(buf.len() as u64) as usize;
        fill_pattern(off, &mut buf[..n]);
        s.write_all(&buf[..n])
            .await
            .map_err(|e| format!("write at {off}: {e}"))?;
        off += n as u64;
    }
    s.flush().await.map_err(|e| e.to_string())?;
    s.close().await.map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// Processes.

/// Starts `skywire <args>` (with a raised descriptor limit) and returns it with its first
/// stdout line; the rest of its stdout is drained by a thread.
fn start(args: &[&str]) -> (Proc, String) {
    let mut cmd = format!("ulimit -n 8192 2>/dev/null; exec '{BIN}'");
    for a in args {
        cmd.push_str(&format!(" '{a}'"));
    }
    let mut child = Command::new("sh")
        .args(["-c", &cmd])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
    });
    (Proc(child), line.trim().to_string())
}

struct Visor {
    proc: Proc,
    /// The RPC address and the config file (the CLI finds the RPC token beside it).
    rpc: (String, PathBuf),
    pk: PublicKey,
}

struct Host {
    proc: Proc,
    pk: PublicKey,
    addr: String,
}

/// One fresh network: discovery, relay, and (if asked) a joined visor and a TCP-mode host.
struct Net {
    url: String,
    relay: Proc,
    relay_pk: PublicKey,
    relay_addr: String,
    visor: Option<Visor>,
    host: Option<Host>,
    _disc: Proc,
    dir: PathBuf,
}

impl Net {
    fn start(dir: &Path, visor: bool, host: bool) -> Net {
        let (disc, line) = start(&[
            "dmsg",
            "disc",
            "--addr",
            "127.0.0.1:0",
            "--log-level",
            "error",
        ]);
        let url = line
            .strip_prefix("discovery listening on ")
            .unwrap_or_else(|| panic!("discovery did not start: {line:?}"))
            .to_string();
        let (relay, line) = start(&[
            "dmsg",
            "server",
            "--addr",
            "127.0.0.1:0",
            "--disc",
            &url,
            "--log-level",
            "error",
        ]);
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert!(parts.len() >= 5, "relay did not start: {line:?}");
        let relay_pk = PublicKey::from_hex(parts[1]).unwrap();
        let relay_addr = parts[4].to_string();
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let join = format!("{}@{relay_addr}", parts[1]);
        let visor = visor.then(|| start_visor(dir, &join, &url));
        let host = host.then(|| {
            let addr = format!("127.0.0.1:{}", free_port());
            let (proc, line) = start(&[
                "app",
                "pty",
                "run",
                "--mode",
                "tcp",
                "--listen",
                &addr,
                "--log-level",
                "error",
            ]);
            let pk = line
                .rsplit(' ')
                .next()
                .and_then(|h| PublicKey::from_hex(h).ok())
                .unwrap_or_else(|| panic!("pty host did not start: {line:?}"));
            Host { proc, pk, addr }
        });
        Net {
            url,
            relay,
            relay_pk,
            relay_addr,
            visor,
            host,
            _disc: disc,
            dir: dir.to_path_buf(),
        }
    }

    /// The daemons that may be attacked (not discovery).
    fn pids(&self) -> Vec<u32> {
        let mut v = vec![self.relay.pid()];
        v.extend(self.visor.as_ref().map(|x| x.proc.pid()));
        v.extend(self.host.as_ref().map(|x| x.proc.pid()));
        v
    }

    fn target_pid(&self, t: Target) -> u32 {
        match t {
            Target::Relay => self.relay.pid(),
            Target::Visor => self.visor.as_ref().unwrap().proc.pid(),
            Target::Host => self.host.as_ref().unwrap().proc.pid(),
        }
    }

    fn kill_target(&mut self, t: Target) {
        let p = match t {
            Target::Relay => &mut self.relay,
            Target::Visor => &mut self.visor.as_mut().unwrap().proc,
            Target::Host => &mut self.host.as_mut().unwrap().proc,
        };
        let _ = p.0.kill();
    }

    fn target_alive(&mut self, t: Target) -> bool {
        let p = match t {
            Target::Relay => &mut self.relay,
            Target::Visor => &mut self.visor.as_mut().unwrap().proc,
            Target::Host => &mut self.host.as_mut().unwrap().proc,
        };
        matches!(p.0.try_wait(), Ok(None))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.visor = None;
        self.host = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_visor(dir: &Path, join: &str, url: &str) -> Visor {
    let file = dir.join("skywire-config.json");
    let o = Command::new(BIN)
        .args(["config", "gen", "-o", file.to_str().unwrap(), "--force"])
        .args(["--join", join, "--discovery", url])
        .output()
        .unwrap();
    assert!(o.status.success(), "config gen: {o:?}");
    let cfg = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"log_level\": \"info\"", "\"log_level\": \"error\"");
    std::fs::write(&file, cfg).unwrap();
    let rpc = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(BIN)
        .args(["visor", "-c", file.to_str().unwrap(), "--rpc", &rpc])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
    });
    let pk = line
        .strip_prefix("visor ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|h| PublicKey::from_hex(h).ok())
        .unwrap_or_else(|| panic!("visor did not start: {line:?}"));
    Visor {
        proc: Proc(child),
        rpc: (rpc, file),
        pk,
    }
}

// ---------------------------------------------------------------------------------------
// The transfer's ends, in this process: a DmsgClient each, on an executor thread each.

struct Node {
    client: Option<DmsgClient>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    ex: Arc<Executor<'static>>,
}

impl Node {
    fn start(net: &Net) -> Node {
        let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (ex2, stop2) = (ex.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            block_on(ex2.run(async {
                while !stop2.load(Ordering::Relaxed) {
                    Timer::after(Duration::from_millis(20)).await;
                }
            }))
        });
        let client = DmsgClient::start(
            ex.clone(),
            Keypair::generate().unwrap(),
            Some(DiscClient::new(&net.url).unwrap()),
            ClientConfig {
                relays: vec![(net.relay_pk, net.relay_addr.clone())],
                ..ClientConfig::default()
            },
        );
        block_on(client.wait_ready(Duration::from_secs(15))).expect("dmsg client ready");
        Node {
            client: Some(client),
            stop,
            thread: Some(thread),
            ex,
        }
    }

    fn client(&self) -> &DmsgClient {
        self.client.as_ref().unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.client = None;
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The receiver: every stream to `PORT` is checked and reported on `tx`.
fn serve(node: &Node, tx: mpsc::Sender<Received>) {
    let l = node.client().listen(PORT).unwrap();
    let ex = node.ex.clone();
    node.ex
        .spawn(async move {
            while let Ok(s) = l.accept().await {
                let tx = tx.clone();
                ex.spawn(async move {
                    let _ = tx.send(receive(s).await);
                })
                .detach();
            }
        })
        .detach();
}

/// Starts one transfer of `bytes` to the receiver `to` on a thread; its outcome (the send
/// side's) arrives on the returned channel.
fn send(
    via: Via,
    sender: Option<&Node>,
    visor_rpc: Option<(String, PathBuf)>,
    to: PublicKey,
    bytes: u64,
) -> mpsc::Receiver<Result<(), String>> {
    let (tx, rx) = mpsc::channel();
    let client = sender.map(|n| n.client().clone());
    let rpc = visor_rpc.map(|(addr, config)| skywire::cli::Rpc {
        addr: Some(addr),
        config: Some(config),
        state_dir: None,
    });
    std::thread::spawn(move || {
        let r = block_on(async {
            match via {
                Via::Relay => {
                    let c = client.expect("a sender");
                    let mut s = c.dial(&to, PORT).await.map_err(|e| format!("dial: {e}"))?;
                    send_pattern(&mut s, bytes).await
                }
                Via::Visor => {
                    let rpc = rpc.expect("a visor");
                    let mut s = skywire::cli::dial_via_visor(&rpc, &to, PORT, None)
                        .await
                        .map_err(|e| format!("dial through the visor: {}", e.msg))?;
                    send_pattern(&mut s, bytes).await
                }
            }
        });
        let _ = tx.send(r);
    });
    rx
}

// ---------------------------------------------------------------------------------------
// The attacker child.

/// What the attacker reported on its stdout.
#[derive(Debug, Default)]
struct AttackLog {
    ready: bool,
    ups: u64,
    downs: u64,
    last_down: String,
    sent: u64,
}

struct Attacker {
    proc: Option<Proc>,
    log: Arc<Mutex<AttackLog>>,
}

impl Attacker {
    fn spawn(kind: Kind, net: &Net, plan: &Plan) -> Attacker {
        let me = std::env::current_exe().unwrap();
        let victim = net
            .visor
            .as_ref()
            .map(|v| v.pk.to_hex())
            .unwrap_or_else(|| "-".into());
        let host = net
            .host
            .as_ref()
            .map(|h| format!("{}@{}", h.pk.to_hex(), h.addr))
            .unwrap_or_else(|| "-".into());
        let streams = match kind {
            Kind::TinyRelay | Kind::TinyVisor => plan.tiny_streams,
            Kind::ParkedTcp => plan.parked_streams,
            _ => plan.streams,
        };
        let mut child = Command::new(me)
            .arg("--child-attack")
            .arg(kind.name())
            .arg(format!("{}@{}", net.relay_pk.to_hex(), net.relay_addr))
            .arg(victim)
            .arg(host)
            .arg(streams.to_string())
            .arg(plan.replay_conns.to_string())
            .arg(plan.max_replays.to_string())
            // Its own bound, in case this process is gone.
            .arg(
                (plan.attack_cap + plan.ramp + Duration::from_secs(5))
                    .as_millis()
                    .to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let log = Arc::new(Mutex::new(AttackLog::default()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let mut l = log2.lock().unwrap();
                if line == "ready" {
                    l.ready = true;
                } else if line == "up" {
                    l.ups += 1;
                } else if let Some(why) = line.strip_prefix("down ") {
                    l.downs += 1;
                    l.last_down = why.to_string();
                } else if let Some(n) = line.strip_prefix("sent ") {
                    l.sent = n.parse().unwrap_or(l.sent);
                }
            }
        });
        Attacker {
            proc: Some(Proc(child)),
            log,
        }
    }

    fn stop(&mut self) {
        self.proc = None;
    }

    fn running(&self) -> bool {
        self.proc.is_some()
    }
}

fn child_attack(args: &[String]) {
    let _ = rustix::process::setpriority_process(None, 10);
    let relay = {
        let (pk, addr) = args[1].split_once('@').unwrap();
        (PublicKey::from_hex(pk).unwrap(), addr.to_string())
    };
    let victim = (args[2] != "-").then(|| PublicKey::from_hex(&args[2]).unwrap());
    let host = (args[3] != "-").then(|| {
        let (pk, addr) = args[3].split_once('@').unwrap();
        (PublicKey::from_hex(pk).unwrap(), addr.to_string())
    });
    let params = attack::Params {
        relay,
        victim,
        host,
        streams: args[4].parse().unwrap(),
        conns: args[5].parse().unwrap(),
        max_replays: args[6].parse().unwrap(),
    };
    let cap = Duration::from_millis(args[7].parse().unwrap());
    let kind = Kind::parse(&args[0]).unwrap();
    let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
    block_on(
        ex.run(future::or(attack::run(ex.clone(), kind, params), async {
            Timer::after(cap).await;
        })),
    );
}

// ---------------------------------------------------------------------------------------
// One row.

#[derive(Debug)]
struct Row {
    attack: String,
    code: &'static str,
    target: Target,
    via: Via,
    /// Transfer throughput, if it finished.
    mib_s: Option<f64>,
    intact: bool,
    outcome: String,
    growth_kib: u64,
    pre_kib: u64,
    stopped: bool,
    target_killed: bool,
    target_died: bool,
    attacker: String,
    attack_secs: f64,
    transfer_secs: Option<f64>,
}

fn warm_up(
    via: Via,
    sender: Option<&Node>,
    net: &Net,
    to: PublicKey,
    rx: &mpsc::Receiver<Received>,
) {
    let t0 = Instant::now();
    loop {
        // A stream of an earlier, failed attempt may still report.
        while rx.try_recv().is_ok() {}
        let sent = send(
            via,
            sender,
            net.visor.as_ref().map(|v| v.rpc.clone()),
            to,
            1 << 20,
        );
        let why = match sent.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(())) => match rx.recv_timeout(Duration::from_secs(15)) {
                Ok(r) if r.bytes == 1 << 20 && r.bad_at.is_none() && r.error.is_none() => return,
                Ok(r) => format!("received {r:?}"),
                Err(_) => "nothing received".to_string(),
            },
            Ok(Err(e)) => e,
            Err(_) => "the sender hung".to_string(),
        };
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "warm-up transfer ({}) never worked: {why}",
            via.name()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn kib(v: u64) -> String {
    if v >= 10 * 1024 {
        format!("{:.1} MiB", v as f64 / 1024.0)
    } else {
        format!("{v} KiB")
    }
}

fn run_row(plan: &Plan, kind: Option<Kind>, target: Target, via: Via, label: &str) -> Row {
    let dir = std::env::temp_dir().join(format!("skywire-bench-hostile-{}", std::process::id()));
    let mut net = Net::start(
        &dir,
        via == Via::Visor || target == Target::Visor,
        target == Target::Host,
    );
    let (rtx, rrx) = mpsc::channel();
    let receiver = Node::start(&net);
    serve(&receiver, rtx);
    let sender = (via == Via::Relay).then(|| Node::start(&net));
    let to = *receiver.client().pk();
    warm_up(via, sender.as_ref(), &net, to, &rrx);

    let pid = net.target_pid(target).to_string();
    // Let the warm-up's buffers settle before taking the reference.
    std::thread::sleep(Duration::from_millis(200));
    let pre = rss_kib_of(&pid);
    // The network's other daemons are watched too: none may grow without bound either.
    let bystanders: Vec<(String, u64)> = net
        .pids()
        .into_iter()
        .map(|p| p.to_string())
        .filter(|p| *p != pid)
        .map(|p| {
            let r = rss_kib_of(&p);
            (p, r)
        })
        .collect();
    let mut bystander_grew = false;
    let mut peak = pre;
    let mut stopped = false;
    let mut killed = false;
    let t_attack = Instant::now();
    let mut attacker = kind.map(|k| Attacker::spawn(k, &net, plan));
    let mut attack_secs = 0.0;
    let sample = |peak: &mut u64| {
        let r = rss_kib_of(&pid);
        *peak = (*peak).max(r);
        r
    };
    if let Some(a) = &attacker {
        // Wait for the attacker to be in (at most 5 s), then let it work for the ramp.
        let t = Instant::now();
        while !a.log.lock().unwrap().ready && t.elapsed() < Duration::from_secs(5) {
            sample(&mut peak);
            std::thread::sleep(Duration::from_millis(5));
        }
        let t = Instant::now();
        while t.elapsed() < plan.ramp {
            if sample(&mut peak).saturating_sub(pre) > WATCHDOG_KIB {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let t0 = Instant::now();
    let sent = send(
        via,
        sender.as_ref(),
        net.visor.as_ref().map(|v| v.rpc.clone()),
        to,
        plan.bytes,
    );
    let mut send_result: Option<Result<(), String>> = None;
    let mut received: Option<Received> = None;
    let outcome = loop {
        let rss = sample(&mut peak);
        let grown = rss.saturating_sub(pre);
        if let Some(a) = attacker.as_mut()
            && a.running()
        {
            if grown > WATCHDOG_KIB {
                stopped = true;
            }
            if bystanders
                .iter()
                .any(|(p, r)| rss_kib_of(p).saturating_sub(*r) > WATCHDOG_KIB)
            {
                bystander_grew = true;
            }
            if stopped
                || bystander_grew
                || t_attack.elapsed() > plan.attack_cap + plan.ramp
                || received.is_some()
            {
                attack_secs = t_attack.elapsed().as_secs_f64();
                a.stop();
            }
        }
        if grown > KILL_KIB && !killed {
            killed = true;
            net.kill_target(target);
        }
        if send_result.is_none()
            && let Ok(r) = sent.try_recv()
        {
            send_result = Some(r);
        }
        if let Some(Err(e)) = &send_result {
            break format!("sender failed: {e}");
        }
        if let Ok(r) = rrx.recv_timeout(Duration::from_millis(5)) {
            received = Some(r);
        }
        if let Some(r) = &received {
            // Keep sampling until the attack has been stopped too.
            if attacker.as_ref().is_none_or(|a| !a.running()) {
                break match (&r.error, r.bad_at) {
                    (Some(e), _) => format!("receiver: {e}"),
                    (None, Some(at)) => format!("bytes differ from offset {at}"),
                    (None, None) if r.bytes != plan.bytes => {
                        format!("{} of {} bytes arrived", r.bytes, plan.bytes)
                    }
                    _ => "ok".to_string(),
                };
            }
        }
        if t0.elapsed() > plan.transfer_timeout {
            break format!("not finished after {} s", plan.transfer_timeout.as_secs());
        }
    };
    if let Some(a) = attacker.as_mut()
        && a.running()
    {
        attack_secs = t_attack.elapsed().as_secs_f64();
        a.stop();
    }
    let mib_s = received
        .as_ref()
        .filter(|r| outcome == "ok" && r.bytes == plan.bytes)
        .map(|r| plan.bytes as f64 / (1u64 << 20) as f64 / (r.at - t0).as_secs_f64());
    let target_died = !net.target_alive(target) && !killed;
    let attacker_text = attacker
        .as_ref()
        .map(|a| {
            let l = a.log.lock().unwrap();
            let mut s = format!("{} session(s) set up, {} ended", l.ups, l.downs);
            if !l.last_down.is_empty() {
                s.push_str(&format!(" (last: {})", l.last_down.replace('|', "/")));
            }
            if l.sent > 0 {
                let what = match kind {
                    Some(Kind::Replay) => "messages 2 answered",
                    Some(Kind::PingRelay | Kind::PingVisor) => "pings sent",
                    _ => "frames sent",
                };
                s.push_str(&format!("; {} {what}", l.sent));
            }
            if !l.ready {
                s.push_str("; never got in");
            }
            if bystander_grew {
                s.push_str("; stopped: another daemon of the network grew by 512 MiB");
            }
            s
        })
        .unwrap_or_default();
    let code = kind.map(Kind::name).unwrap_or("none");
    drop(attacker);
    drop(sender);
    drop(receiver);
    drop(net);
    Row {
        attack: label.to_string(),
        code,
        target,
        via,
        mib_s,
        intact: outcome == "ok",
        outcome,
        growth_kib: peak.saturating_sub(pre),
        pre_kib: pre,
        stopped,
        target_killed: killed,
        target_died,
        attacker: attacker_text,
        attack_secs,
        transfer_secs: mib_s.map(|m| plan.bytes as f64 / (1u64 << 20) as f64 / m),
    }
}

// ---------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child-attack") {
        child_attack(&args[i + 1..]);
        return;
    }
    // The receiver checks reads that start anywhere: the pattern must not depend on the split.
    let (mut whole, mut part) = (vec![0u8; 64], vec![0u8; 61]);
    fill_pattern(0, &mut whole);
    fill_pattern(3, &mut part);
    assert_eq!(whole[3..], part[..], "pattern differs across a split");
    let full = common::full_run();
    let quick = args.iter().any(|a| a == "--quick");
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').map(str::to_string).collect());
    let plan = if full {
        Plan {
            bytes: if quick { 256 << 20 } else { 1 << 30 },
            attack_cap: Duration::from_secs(8),
            ramp: Duration::from_millis(300),
            transfer_timeout: Duration::from_secs(60),
            baseline_after: true,
            streams: 1024,
            tiny_streams: 64,
            parked_streams: 256,
            replay_conns: 64,
            max_replays: 20_000,
            mode: if quick { "quick" } else { "full" },
        }
    } else {
        Plan {
            bytes: 8 << 20,
            attack_cap: Duration::from_millis(500),
            ramp: Duration::from_millis(100),
            transfer_timeout: Duration::from_secs(30),
            baseline_after: false,
            streams: 64,
            tiny_streams: 8,
            parked_streams: 32,
            replay_conns: 8,
            max_replays: 500,
            mode: "smoke",
        }
    };
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| {
            only.as_ref()
                .is_none_or(|o| o.iter().any(|n| n == k.name()))
        })
        .collect();
    let t_all = Instant::now();
    let progress = |r: &Row| {
        eprintln!(
            "hostile: {:<14} {:<6} {:>8} {} growth {} ({:.0} s so far)",
            r.code,
            r.target.name(),
            r.mib_s
                .map(|m| format!("{m:.0} MiB/s"))
                .unwrap_or_else(|| "-".into()),
            r.outcome,
            kib(r.growth_kib),
            t_all.elapsed().as_secs_f64()
        )
    };
    let need_visor = kinds.iter().any(|k| placement(*k).1 == Via::Visor);
    let mut base: Vec<Row> = Vec::new();
    let baseline = |when: &str, base: &mut Vec<Row>| {
        for via in [Via::Relay, Via::Visor] {
            if via == Via::Visor && !need_visor {
                continue;
            }
            let target = if via == Via::Relay {
                Target::Relay
            } else {
                Target::Visor
            };
            let r = run_row(
                &plan,
                None,
                target,
                via,
                &format!("none (baseline, {when})"),
            );
            progress(&r);
            assert!(r.intact, "the unattacked transfer failed: {}", r.outcome);
            base.push(r);
        }
    };
    baseline("before", &mut base);
    let mut rows = Vec::new();
    for k in &kinds {
        let (target, via, label) = placement(*k);
        let n = match k {
            Kind::TinyRelay | Kind::TinyVisor => plan.tiny_streams,
            Kind::ParkedTcp => plan.parked_streams,
            Kind::Replay => plan.replay_conns,
            _ => plan.streams,
        };
        let label = label
            .replace(" N ", &format!(" {n} "))
            .replace(" M ", &format!(" {n} "));
        let r = run_row(&plan, Some(*k), target, via, &label);
        progress(&r);
        rows.push(r);
    }
    if plan.baseline_after {
        baseline("after", &mut base);
    }
    let base_mib = |via: Via| {
        let v: Vec<f64> = base
            .iter()
            .filter(|r| r.via == via)
            .filter_map(|r| r.mib_s)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };

    let mut out = String::new();
    let shown: Vec<&String> = args.iter().skip(1).filter(|a| *a != "--bench").collect();
    let shown: Vec<&str> = shown.iter().map(|s| s.as_str()).collect();
    out.push_str(&format!(
        "Machine: {}. Command: `cargo bench --bench hostile -- {}` ({} run: {} MiB per transfer; total {:.0} s).\n\n",
        common::machine(),
        shown.join(" "),
        plan.mode,
        plan.bytes >> 20,
        t_all.elapsed().as_secs_f64()
    ));
    out.push_str(
        "Each row is a fresh network of release binaries on 127.0.0.1 (`dmsg disc`, `dmsg server`, and `visor` joined to it or `app pty run --mode tcp` where the row needs one). \
The transfer goes from this process to a receiving `DmsgClient` in this process, which checks every byte against a position-dependent pattern: \
path \"client → relay → client\" is a sending `DmsgClient`; path \"RPC dial → visor → relay → client\" is a TCP connection through the visor's `POST /v1/dial` (as `skywire cli pty` does), so the visor runs the end-to-end channel. \
The attack starts first (and runs alone for the ramp), runs in a child process at nice 10, and stops when the transfer has finished, after at most ",
    );
    out.push_str(&format!(
        "{} s, or when the target has grown by 512 MiB; a transfer that outlasts its attack finishes unattacked (the attacker column says how long each ran), so a stopped attack's ratio says little. Growth is the target's peak RSS during the row over its RSS just before the attack; the unattacked rows show what the transfer alone adds. Path (e)'s transfer does not pass through its target.\n\n",
        (plan.attack_cap + plan.ramp).as_secs_f64()
    ));
    out.push_str("| attack | target | transfer path | transfer MiB/s | × baseline | intact | target RSS growth | attacker |\n|---|---|---|---:|---:|---|---:|---|\n");
    for r in base.iter().chain(rows.iter()) {
        let b = base_mib(r.via);
        let (mib, ratio) = match r.mib_s {
            Some(m) => (format!("{m:.0}"), format!("{:.2}", m / b)),
            None => ("—".into(), "—".into()),
        };
        let mut growth = if r.stopped {
            "> 512 MiB (attack stopped)".to_string()
        } else {
            kib(r.growth_kib)
        };
        if r.target_killed {
            growth.push_str("; target killed at +1 GiB");
        }
        if r.target_died {
            growth.push_str("; **target died**");
        }
        let intact = if r.intact {
            "yes".to_string()
        } else {
            format!("**no**: {}", r.outcome.replace('|', "/"))
        };
        let mut attacker = r.attacker.clone();
        if r.code != "none" {
            attacker.push_str(&format!("; ran {:.1} s", r.attack_secs));
            if let Some(t) = r.transfer_secs {
                attacker.push_str(&format!(" (the transfer took {t:.1} s)"));
            }
        }
        out.push_str(&format!(
            "| {} (`{}`) | {} | {} | {mib} | {ratio} | {intact} | {growth} | {attacker} |\n",
            r.attack,
            r.code,
            r.target.name(),
            r.via.name()
        ));
    }
    out.push_str(&format!(
        "\nBaselines (mean of the unattacked rows, same run): {:.0} MiB/s client → relay → client",
        base_mib(Via::Relay)
    ));
    if need_visor {
        out.push_str(&format!(
            ", {:.0} MiB/s through the visor",
            base_mib(Via::Visor)
        ));
    }
    out.push_str(&format!(
        ". Pre-attack RSS of the targets: {}.\n",
        rows.iter()
            .map(|r| format!("{} {} KiB", r.code, r.pre_kib))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let misses: Vec<&str> = rows
        .iter()
        .filter(|r| {
            !r.intact
                || r.stopped
                || r.growth_kib > BUDGET_KIB
                || r.mib_s.is_none_or(|m| m / base_mib(r.via) < GOAL_RATIO)
        })
        .map(|r| r.code)
        .collect();
    out.push_str(&format!(
        "\nGoals (issue 11): every transfer intact at ≥ {GOAL_RATIO}× its baseline, target growth ≤ {} MiB per hostile session. {}\n",
        BUDGET_KIB / 1024,
        if misses.is_empty() {
            "Every row meets them.".to_string()
        } else {
            format!("Rows that miss: {}.", misses.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "))
        }
    ));
    print!("{out}");
    if let Some(file) = common::write_target() {
        if full {
            common::write_section(&file, "hostile", out.trim_end()).unwrap();
            println!("wrote the results to {file}");
        } else {
            println!("(smoke run: {file} not written)");
        }
    }
}
