//! `make bench` — skychat: send → ack latency (p50, p99) between two visors over dmsg and
//! over skynet (an stcp transport between them), as the HTTP client sees it (`POST /message`
//! with `wait_ms`); messages per second into one TCP-direct skychat (`skywire standalone
//! skychat`) from 1 and from 10 peers, each a Noise-XK-over-TCP connection made here with the
//! library's `TcpNet`, every message acknowledged after it is durably stored; and that
//! skychat's RSS after 100 stored messages and after 100,000 (its caps raised to keep them).
//! Then groups (`groups.rs`): one post to a 50-member group until every member shows it, and
//! a fresh member catching up a full feed (10,000 entries): time and peak RSS.
//! Under `cargo test --all-targets` it runs small as a smoke test.

mod common;
#[path = "skychat/groups.rs"]
mod groups;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_executor::Executor;
use common::{Proc, free_port, rss_kib_of};
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use skywire::app::net::{Net, TcpNet};
use skywire::crypto::{Keypair, PublicKey};

fn bin() -> String {
    std::env::var("SKYWIRE_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_skywire").into())
}

/// Starts `skywire args…` and returns it with its first stdout line.
fn spawn(args: &[&str], log: &Path) -> (Proc, String) {
    let mut c = Command::new(bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    (Proc(c), line.trim().to_string())
}

/// One request (Connection: close); (status, body).
fn http(port: u16, token: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(70))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        code,
        raw.split_once("\r\n\r\n").map_or("", |x| x.1).to_string(),
    )
}

fn wait_file(f: &Path) -> String {
    let t0 = Instant::now();
    loop {
        if let Ok(t) = std::fs::read_to_string(f)
            && !t.trim().is_empty()
        {
            return t.trim().to_string();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{} never written",
            f.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn field(cfg: &str, key: &str) -> String {
    let pat = format!("\"{key}\": \"");
    let i = cfg.find(&pat).unwrap_or_else(|| panic!("{key}"));
    let rest = &cfg[i + pat.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// A visor with skychat on `port`, on the bench's discovery and relay.
struct Visor {
    _proc: Proc,
    pk: String,
    port: u16,
    token: String,
}

fn visor(dir: &Path, disc: &str, relay: &str, transport_to: Option<&str>) -> (PathBuf, String) {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("skywire-config.json");
    let o = Command::new(bin())
        .args(["config", "gen", "-o", file.to_str().unwrap(), "--force"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let port = free_port();
    let mut cfg = std::fs::read_to_string(&file).unwrap();
    for (from, to) in [
        (
            "\"relay_addr\": \":8080\"".to_string(),
            "\"relay_addr\": \"127.0.0.1:0\"".to_string(),
        ),
        (
            "\"disc_addr\": \"127.0.0.1:9090\"".to_string(),
            "\"disc_addr\": \"127.0.0.1:0\"".to_string(),
        ),
        (
            "\"listen\": \"0.0.0.0:7777\"".to_string(),
            format!("\"listen\": \"127.0.0.1:{}\"", free_port()),
        ),
        (
            "\"discovery\": \"\"".to_string(),
            format!("\"discovery\": \"{disc}\""),
        ),
        (
            "\"servers\": []".to_string(),
            format!("\"servers\": [\"{relay}\"]"),
        ),
        (
            "\"apps\": []".to_string(),
            format!(
                // No per-peer rate: the latency runs send more than 200 in 10 s.
                r#""apps": [{{"name": "skychat", "args": ["--addr", "127.0.0.1:{port}", "--peer-rate", "0"], "auto_start": true}}]"#
            ),
        ),
    ] {
        assert!(cfg.contains(&from), "{from}");
        cfg = cfg.replacen(&from, &to, 1);
    }
    if let Some(pk) = transport_to {
        cfg = cfg.replacen(
            "\"transports\": []",
            &format!("\"transports\": [{{\"pk\": \"{pk}\", \"type\": \"stcp\"}}]"),
            1,
        );
    }
    std::fs::write(&file, &cfg).unwrap();
    (file, format!("{port}"))
}

fn start_visor(file: &Path) -> Visor {
    let cfg = std::fs::read_to_string(file).unwrap();
    let port: u16 = cfg
        .split("\"--addr\", \"127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    let dir = file.parent().unwrap();
    let (proc, line) = spawn(
        &[
            "visor",
            "-c",
            file.to_str().unwrap(),
            "--rpc",
            &format!("127.0.0.1:{}", free_port()),
        ],
        &dir.join("visor.log"),
    );
    assert!(line.starts_with("visor "), "{line}");
    let state = dir.join(field(&cfg, "local_path"));
    let token = wait_file(&state.join(format!("skychat-http-{port}.token")));
    Visor {
        _proc: proc,
        pk: field(&cfg, "pk"),
        port,
        token,
    }
}

/// `n` acked sends a → b over `network`, one at a time; (p50, p99) in ms.
fn latency(a: &Visor, b: &Visor, network: &str, n: usize) -> (f64, f64) {
    let body = |i: usize| {
        format!(
            r#"{{"recipient": "{}", "message": "latency {i}", "network": "{network}", "wait_ms": 10000}}"#,
            b.pk
        )
    };
    // Until the network carries it (routes, channels), not timed.
    let t0 = Instant::now();
    while http(a.port, &a.token, "POST", "/message", &body(0)).0 != 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{network}: never acked"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut ms: Vec<f64> = (0..n)
        .map(|i| {
            let t = Instant::now();
            let (code, r) = http(a.port, &a.token, "POST", "/message", &body(i + 1));
            assert_eq!(code, 200, "{r}");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let at = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
    (at(0.50), at(0.99))
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// `peers` connections each send `per_peer` messages with ack to `pk` at 127.0.0.1:`tcp`
/// as fast as the connection takes them (TCP flow control and the receiver's bounds pace
/// the writer), reading the acks as they come; returns the wall time until the last ack.
fn throughput(pk: PublicKey, tcp: u16, peers: usize, per_peer: usize, base: u64) -> Duration {
    let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..peers)
        .map(|p| {
            let ex2 = ex.clone();
            ex.spawn(async move {
                let net = TcpNet::new(Keypair::generate().unwrap(), None, ex2);
                net.add_peer(pk, format!("127.0.0.1:{tcp}"));
                let c = net.dial(pk, 1).await.expect("dial");
                let (mut r, mut w) = futures_lite::io::split(c);
                let writer = async move {
                    for i in 0..per_peer {
                        let id = base + (p * per_peer + i) as u64;
                        let m = format!(
                            r#"{{"type":"chat-msg","id":"{id:016x}","body":"bench message {i} of peer {p}","ack":true}}"#
                        );
                        w.write_all(&frame(m.as_bytes())).await.unwrap();
                    }
                    w.flush().await.unwrap();
                    w
                };
                let reader = async move {
                    let mut acks = 0usize;
                    let mut head = [0u8; 4];
                    let mut body = Vec::new();
                    while acks < per_peer {
                        r.read_exact(&mut head).await.expect("ack stream ended");
                        body.resize(u32::from_be_bytes(head) as usize, 0);
                        r.read_exact(&mut body).await.unwrap();
                        if body.windows(8).any(|x| x == b"chat-ack") {
                            acks += 1;
                        } else {
                            panic!("not an ack: {}", String::from_utf8_lossy(&body));
                        }
                    }
                };
                let (_w, ()) = future::zip(writer, reader).await;
            })
        })
        .collect();
    future::block_on(ex.run(async {
        for t in tasks {
            t.await;
        }
    }));
    t0.elapsed()
}

fn main() {
    let full = common::full_run();
    let (lat_n, one_n, ten_n, stored) = if full {
        (300usize, 5_000usize, 1_000usize, 100_000usize)
    } else {
        (10, 100, 20, 1_000)
    };
    // Group members, posts timed to all of them, entries a late member catches up (the
    // feed's cap is 10,000 entries: the fill leaves the newest of them).
    let (g_members, g_posts, g_catch_up) = if full { (50, 20, 10_000) } else { (3, 3, 100) };
    let dir = std::env::temp_dir().join(format!("skywire-bench-skychat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // Two visors on a discovery and relay of their own, an stcp transport between them.
    let (_disc, line) = spawn(
        &[
            "dmsg",
            "disc",
            "--addr",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ],
        &dir.join("disc.log"),
    );
    let disc = line
        .strip_prefix("discovery listening on ")
        .unwrap()
        .to_string();
    let (_relay, line) = spawn(
        &[
            "dmsg",
            "server",
            "--addr",
            "127.0.0.1:0",
            "--disc",
            &disc,
            "--log-level",
            "warn",
        ],
        &dir.join("relay.log"),
    );
    // "relay <pk> listening on <addr> …"
    let words: Vec<&str> = line.split_whitespace().collect();
    let relay = format!("{}@{}", words[1], words[4]);
    let (fb, _) = visor(&dir.join("b"), &disc, &relay, None);
    let bpk = field(&std::fs::read_to_string(&fb).unwrap(), "pk");
    let (fa, _) = visor(&dir.join("a"), &disc, &relay, Some(&bpk));
    let b = start_visor(&fb);
    let a = start_visor(&fa);
    let (d50, d99) = latency(&a, &b, "dmsg", lat_n);
    let (s50, s99) = latency(&a, &b, "skynet", lat_n);
    drop((a, b));

    // One TCP-direct skychat, caps raised to keep every message, no per-peer rate.
    let keys = Keypair::generate().unwrap();
    let (http_port, tcp) = (free_port(), free_port());
    let state = dir.join("tcp");
    let sk = skywire::crypto::hex::encode(keys.seed());
    let (rx, line) = spawn(
        &[
            "app",
            "skychat",
            "run",
            "--mode",
            "tcp",
            "--sk",
            &sk,
            "--listen",
            &format!("127.0.0.1:{tcp}"),
            "--state-dir",
            state.to_str().unwrap(),
            "--log-level",
            "warn",
            "--",
            "--addr",
            &format!("127.0.0.1:{http_port}"),
            "--history-per-peer",
            "1000000",
            "--history-max-bytes",
            "1073741824",
            "--peer-rate",
            "0",
        ],
        &dir.join("tcp.log"),
    );
    assert!(line.contains("skychat running"), "{line}");
    let pk = *keys.public();
    let pid = rx.pid().to_string();
    let first = throughput(pk, tcp, 1, 100, 1);
    let rss_100 = rss_kib_of(&pid);
    let one = throughput(pk, tcp, 1, one_n, 1_000_000);
    let ten = throughput(pk, tcp, 10, ten_n, 2_000_000);
    let sent = 100 + one_n + 10 * ten_n;
    let rest = stored.saturating_sub(sent);
    let fill = if rest > 0 {
        throughput(pk, tcp, 10, rest / 10, 3_000_000)
    } else {
        Duration::ZERO
    };
    let total = sent + rest / 10 * 10;
    let rss_all = rss_kib_of(&pid);
    let token = wait_file(&state.join(format!("skychat-http-{http_port}.token")));
    let (code, st) = http(http_port, &token, "GET", "/status", "");
    assert_eq!(code, 200, "{st}");
    let log_bytes = std::fs::metadata(state.join("skychat-tcp/history.log"))
        .map(|m| m.len())
        .unwrap_or(0);

    drop(rx);
    let group_rows = groups::run(&dir, g_members, g_posts, g_catch_up);

    let one_rate = one_n as f64 / one.as_secs_f64();
    let ten_rate = (10 * ten_n) as f64 / ten.as_secs_f64();
    let cmd = "cargo bench --bench skychat -- --write docs/benchmarks.md";
    let body = format!(
        "### Skychat\n\n`{cmd}` on {} (release build; every message acknowledged after the \
         receiver's history store synced it).\n\n\
         | what | value |\n|---|---:|\n\
         | send → ack over dmsg, p50 / p99 ({lat_n} sends, one at a time, `POST /message`) | {d50:.2} / {d99:.2} ms |\n\
         | send → ack over skynet (one stcp hop), p50 / p99 | {s50:.2} / {s99:.2} ms |\n\
         | messages/s into one skychat from 1 peer ({one_n} messages, TCP-direct) | {one_rate:.0} |\n\
         | messages/s from 10 peers ({ten_n} each) | {ten_rate:.0} |\n\
         | receiver RSS after 100 stored messages | {rss_100} KiB |\n\
         | receiver RSS after {total} stored messages (caps raised; fill took {:.1} s) | {rss_all} KiB |\n\
         | history file after {total} messages | {:.1} MiB |\n\
         {group_rows}\n\n\
         The armv7 marginal size of `app-skychat` is in the size table above (`make size`).",
        common::machine(),
        fill.as_secs_f64(),
        log_bytes as f64 / (1 << 20) as f64,
    );
    let _ = first;
    println!("{body}");
    if let Some(f) = common::write_target() {
        common::write_section(&f, "skychat", &body).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
