//! `make bench` — skysocks beside `ssh -D`, same machine, same run (issue 16):
//! - a download through the SOCKS5 proxy with `curl --socks5-hostname` (1 GiB in the full
//!   run): skysocks-client → one dmsg relay → skysocks (both standalone on dmsg clients of
//!   their own); both inside visors joined by a direct stcp transport, the client's streams
//!   in a one-hop route group (`cli proxy start --via skynet`); and both standalone in TCP
//!   mode (Noise XK over TCP, the streams in one kept connection); against `ssh -D` (OpenSSH's client,
//!   `chacha20-poly1305@openssh.com`, to dropbear: no sshd here). Throughput and the
//!   CPU-seconds per GiB of every process on the path (both apps and the relay, or both
//!   visors; the ssh
//!   client and dropbear with its session child), not of curl or the HTTP server;
//! - new connections on an open proxy: 1,000 sequential `GET`s of 1 KiB, each a fresh SOCKS5
//!   connection (greeting, CONNECT, request, answer, close), made by this process.
//!
//! The HTTP server is a thread of this process serving `GET /<bytes>` from memory. Every
//! process is started here on 127.0.0.1 and stopped by PID. Under `cargo test --all-targets`
//! it runs small, without `ssh -D`, as a smoke test.

mod common;
#[path = "common/visors.rs"]
mod visors;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, cpu_seconds_of, free_port};
use skywire::crypto::Keypair;
use skywire::crypto::hex::encode as hex;

const BIN: &str = env!("CARGO_BIN_EXE_skywire");

/// Starts `skywire args…` (stderr to `log`) and returns it with its first stdout line.
fn spawn(args: &[&str], log: &Path) -> (Proc, String) {
    common::spawn_first_line(BIN, args, Some(log))
}

/// The HTTP server: `GET /<n>` answers `n` bytes; its port.
fn http_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().map_while(Result::ok) {
            std::thread::spawn(move || serve(s));
        }
    });
    port
}

fn serve(mut s: TcpStream) {
    let mut req = Vec::new();
    let mut b = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&b[..n]),
        }
        if req.len() > 8192 {
            return;
        }
    }
    let line = String::from_utf8_lossy(&req);
    let n: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.trim_start_matches('/').parse().ok())
        .unwrap_or(0);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(head.as_bytes()).is_err() {
        return;
    }
    let chunk = vec![0x5au8; 256 * 1024];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len() as u64) as usize;
        if s.write_all(&chunk[..k]).is_err() {
            return;
        }
        left -= k as u64;
    }
}

/// CPU-seconds (user + system) of `pid` and every process below it.
fn tree_cpu(pid: u32) -> f64 {
    let mut total = cpu_seconds_of(pid);
    if let Ok(d) = std::fs::read_dir("/proc") {
        for e in d.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(pid) {
                total += tree_cpu(child);
            }
        }
    }
    total
}

fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter().map(|&p| tree_cpu(p)).sum()
}

/// One download of `bytes` through the SOCKS5 proxy on `port` with curl: (MiB/s, CPU-s/GiB
/// of `pids`).
fn download(port: u16, http: u16, bytes: u64, pids: &[u32]) -> (f64, f64) {
    let c0 = cpu_of(pids);
    let t = Instant::now();
    let o = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "300", "-o", "/dev/null"])
        .args(["-w", "%{size_download}", "--socks5-hostname"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(format!("http://127.0.0.1:{http}/{bytes}"))
        .output()
        .unwrap();
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_of(pids) - c0;
    let got: u64 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        o.status.success() && got == bytes,
        "curl through :{port}: {got} of {bytes} bytes; {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let gib = bytes as f64 / (1u64 << 30) as f64;
    (bytes as f64 / (1 << 20) as f64 / wall, cpu / gib)
}

/// The median (by throughput) of `runs` downloads.
fn median_download(runs: usize, port: u16, http: u16, bytes: u64, pids: &[u32]) -> (f64, f64) {
    let mut v: Vec<(f64, f64)> = (0..runs)
        .map(|_| download(port, http, bytes, pids))
        .collect();
    v.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    v[v.len() / 2]
}

/// `n` sequential 1 KiB GETs, each on a fresh SOCKS5 connection; mean ms per GET.
fn small_gets(port: u16, http: u16, n: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(&[5, 1, 0]).unwrap();
        let mut r = [0u8; 2];
        s.read_exact(&mut r).unwrap();
        assert_eq!(r, [5, 0], "greeting refused");
        let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
        req.extend_from_slice(&http.to_be_bytes());
        s.write_all(&req).unwrap();
        let mut rep = [0u8; 10];
        s.read_exact(&mut rep).unwrap();
        assert_eq!(rep[1], 0, "CONNECT refused: {rep:?}");
        s.write_all(b"GET /1024 HTTP/1.1\r\nHost: b\r\n\r\n")
            .unwrap();
        let mut body = Vec::new();
        let _ = s.read_to_end(&mut body);
        assert!(body.len() > 1024, "short answer: {} bytes", body.len());
    }
    t.elapsed().as_secs_f64() * 1e3 / n as f64
}

/// Waits (≤ 30 s) until a SOCKS5 CONNECT through `port` to `http` succeeds.
fn wait_proxy(port: u16, http: u16) {
    let t0 = Instant::now();
    loop {
        let ok = std::panic::catch_unwind(|| small_gets(port, http, 1)).is_ok();
        if ok {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "proxy :{port} never worked"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `ssh -D` (chacha20-poly1305) to dropbear: (ssh, dropbear, SOCKS port), or `None` with
/// the reason printed.
fn ssh_d(dir: &Path) -> Option<(Proc, Proc, u16)> {
    let key = dir.join("id_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    if !st.success() {
        println!("ssh -D comparison skipped: ssh-keygen failed");
        return None;
    }
    let pubkey = std::fs::read_to_string(dir.join("id_ed25519.pub")).ok()?;
    let dport = free_port();
    let db = common::start_dropbear(dir, dport, pubkey.trim())?;
    let sport = free_port();
    let ssh = Command::new("ssh")
        .args(["-N", "-c", "chacha20-poly1305@openssh.com", "-i"])
        .arg(&key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-p"])
        .arg(dport.to_string())
        .arg("-D")
        .arg(format!("127.0.0.1:{sport}"))
        .arg("root@127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let ssh = Proc(ssh);
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", sport)).is_err() {
        if t0.elapsed() > Duration::from_secs(10) {
            println!("ssh -D comparison skipped: ssh -D did not listen");
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((ssh, db, sport))
}

fn main() {
    let full = common::full_run();
    let (bytes, runs, gets) = if full {
        (1u64 << 30, 3, 1000)
    } else {
        (16u64 << 20, 1, 20)
    };
    let dir = std::env::temp_dir().join(format!("skywire-bench-skysocks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let http = http_server();

    // A discovery and a relay of the bench's own.
    let (disc_p, line) = spawn(
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
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let (relay_p, line) = spawn(
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
    let w: Vec<&str> = line.split_whitespace().collect();
    let relay = format!("{}@{}", w[1], w[4]);
    let srv = Keypair::generate().unwrap();
    let cli = Keypair::generate().unwrap();
    let (srv_sk, cli_sk) = (hex(srv.seed()), hex(cli.seed()));
    let srv_pk = srv.public().to_hex();

    // Over the relay: both apps standalone on their own dmsg clients.
    let (s_dmsg, line) = spawn(
        &[
            "app",
            "skysocks",
            "run",
            "--mode",
            "dmsg",
            "--sk",
            &srv_sk,
            "--disc",
            &disc,
            "--relay",
            &relay,
            "--log-level",
            "warn",
        ],
        &dir.join("srv-dmsg.log"),
    );
    assert!(line.starts_with("skysocks running"), "{line}");
    let p_dmsg = free_port();
    let addr = format!("127.0.0.1:{p_dmsg}");
    let (c_dmsg, line) = spawn(
        &[
            "app",
            "skysocks-client",
            "run",
            "--mode",
            "dmsg",
            "--sk",
            &cli_sk,
            "--disc",
            &disc,
            "--relay",
            &relay,
            "--log-level",
            "warn",
            "--",
            "--srv",
            &srv_pk,
            "--addr",
            &addr,
        ],
        &dir.join("cli-dmsg.log"),
    );
    assert!(line.starts_with("skysocks-client running"), "{line}");
    wait_proxy(p_dmsg, http);
    let dmsg_pids = [s_dmsg.pid(), c_dmsg.pid(), relay_p.pid()];
    let relayed = median_download(runs, p_dmsg, http, bytes, &dmsg_pids);
    let relayed_gets = small_gets(p_dmsg, http, gets);
    drop((c_dmsg, s_dmsg));

    // Direct: both apps in TCP mode (Noise XK over TCP, the streams in one connection).
    let tport = free_port();
    let listen = format!("127.0.0.1:{tport}");
    let (s_tcp, line) = spawn(
        &[
            "app",
            "skysocks",
            "run",
            "--mode",
            "tcp",
            "--sk",
            &srv_sk,
            "--listen",
            &listen,
            "--log-level",
            "warn",
        ],
        &dir.join("srv-tcp.log"),
    );
    assert!(line.starts_with("skysocks running"), "{line}");
    let p_tcp = free_port();
    let addr = format!("127.0.0.1:{p_tcp}");
    let peer = format!("tcp://{srv_pk}@{listen}");
    let (c_tcp, line) = spawn(
        &[
            "app",
            "skysocks-client",
            "run",
            "--mode",
            "tcp",
            "--sk",
            &cli_sk,
            "--peer",
            &peer,
            "--log-level",
            "warn",
            "--",
            "--srv",
            &srv_pk,
            "--addr",
            &addr,
        ],
        &dir.join("cli-tcp.log"),
    );
    assert!(line.starts_with("skysocks-client running"), "{line}");
    wait_proxy(p_tcp, http);
    let tcp_pids = [s_tcp.pid(), c_tcp.pid()];
    let direct = median_download(runs, p_tcp, http, bytes, &tcp_pids);
    let direct_gets = small_gets(p_tcp, http, gets);
    drop((c_tcp, s_tcp));

    // Over a direct stcp transport: both apps inside visors, skysocks-client started by
    // `cli proxy start --via skynet`, so its streams run in one route group of one hop.
    let (stcp_s, stcp_c) = (free_port(), free_port());
    let (f, c) = visors::gen_config(&dir.join("vs"), Some((&disc, &relay)));
    let s_pk = visors::str_field(&c, "pk");
    let mut apps = miniserde::json::Array::new();
    let mut app = miniserde::json::Object::new();
    app.insert("name".into(), visors::s("skysocks"));
    app.insert("auto_start".into(), miniserde::json::Value::Bool(true));
    apps.push(miniserde::json::Value::Object(app));
    visors::write_config(&f, c, stcp_s, &[], &[], Some(apps));
    let vs = visors::start_visor(&f);
    let (f, c) = visors::gen_config(&dir.join("vc"), Some((&disc, &relay)));
    let peers = [(s_pk.clone(), stcp_s)];
    let dial = [s_pk.clone()];
    visors::write_config(&f, c, stcp_c, &peers, &dial, Some(Default::default()));
    let vc = visors::start_visor(&f);
    visors::wait_transports(&vc, &[&s_pk], Duration::from_secs(30));
    let p_stcp = free_port();
    let o = Command::new(BIN)
        .args(["cli", "proxy", "--rpc", &vc.rpc, "-c"])
        .arg(&vc.cfg)
        .args(["start", "--pk", &s_pk, "--via", "skynet", "--addr"])
        .arg(format!("127.0.0.1:{p_stcp}"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cli proxy start: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    wait_proxy(p_stcp, http);
    let stcp_pids = [vs.pid(), vc.pid()];
    let routed = median_download(runs, p_stcp, http, bytes, &stcp_pids);
    let routed_gets = small_gets(p_stcp, http, gets);
    drop((vc, vs, relay_p, disc_p));

    let ssh = if full { ssh_d(&dir) } else { None };
    let size = if bytes >= 1 << 30 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    };
    let mut rows = vec![
        format!(
            "| skysocks over one dmsg relay | {:.0} | {:.2} | {relayed_gets:.2} |",
            relayed.0, relayed.1
        ),
        format!(
            "| skysocks over a direct stcp transport (skynet route; both apps in visors) | {:.0} | {:.2} | {routed_gets:.2} |",
            routed.0, routed.1
        ),
        format!(
            "| skysocks direct in TCP mode (standalone apps, streams in one Noise XK connection) | {:.0} | {:.2} | {direct_gets:.2} |",
            direct.0, direct.1
        ),
    ];
    let mut ratios = String::new();
    if let Some((ssh_p, db_p, sport)) = &ssh {
        let pids = [ssh_p.pid(), db_p.pid()];
        let s = median_download(runs, *sport, http, bytes, &pids);
        let s_gets = small_gets(*sport, http, gets);
        rows.push(format!(
            "| `ssh -D`, chacha20-poly1305 (OpenSSH client → dropbear) | {:.0} | {:.2} | {s_gets:.2} |",
            s.0, s.1
        ));
        ratios = format!(
            "\n\nRatios to `ssh -D` in this run (relayed / direct stcp / TCP mode): throughput \
             {:.2}× / {:.2}× / {:.2}× (goal ≥ 2×); CPU per GiB {:.2}× / {:.2}× / {:.2}× (goal ≤ \
             0.5×); time per new connection {:.2}× / {:.2}× / {:.2}× (goal ≤ 1×).",
            relayed.0 / s.0,
            routed.0 / s.0,
            direct.0 / s.0,
            relayed.1 / s.1,
            routed.1 / s.1,
            direct.1 / s.1,
            relayed_gets / s_gets,
            routed_gets / s_gets,
            direct_gets / s_gets,
        );
    } else if !full {
        ratios = "\n\n(Smoke run: no `ssh -D`.)".into();
    }
    drop(ssh);
    let cmd = "cargo bench --bench skysocks -- --write docs/benchmarks.md";
    let body = format!(
        "### Skysocks\n\n`{cmd}` on {}: a {size} download with `curl --socks5-hostname` \
         (median of {runs}), CPU of every process on the path; {gets} sequential 1 KiB GETs, \
         each a new SOCKS5 connection on the open proxy.\n\n\
         | path | MiB/s | CPU-s/GiB | ms per new connection + GET |\n|---|---:|---:|---:|\n{}{ratios}\n\n\
         The armv7 marginal sizes of `app-skysocks` and `app-skysocks-client` are in the size \
         table above (`make size`).",
        common::machine(),
        rows.join("\n"),
    );
    println!("{body}");
    if let Some(f) = common::write_target() {
        common::write_section(&f, "skysocks", &body).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
