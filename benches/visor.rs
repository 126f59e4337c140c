//! `make bench` — the visor daemon: startup time (process start → RPC answering) and
//! shutdown time (SIGTERM → exit), median of several fresh starts, and idle RSS with the
//! default apps, for a visor hosting the embedded relay + discovery and for one joined to it.
//! Under `cargo test --all-targets` it runs small as a smoke test.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, free_port, rss_kib_of};

const BIN: &str = env!("CARGO_BIN_EXE_skywire");

/// A config on free loopback ports; `join` makes it a joined visor.
fn config(dir: &Path, join: Option<&str>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("skywire-config.json");
    let mut args = vec!["config", "gen", "-o", file.to_str().unwrap(), "--force"];
    if let Some(j) = join {
        args.extend(["--join", j]);
    }
    let o = Command::new(BIN).args(&args).output().unwrap();
    assert!(o.status.success());
    let cfg = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\":8080\"", "\"127.0.0.1:0\"")
        .replace("\"127.0.0.1:9090\"", "\"127.0.0.1:0\"")
        .replace("\"log_level\": \"info\"", "\"log_level\": \"warn\"");
    std::fs::write(&file, cfg).unwrap();
    file
}

fn rpc_answers(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    // The RPC refuses a Host that is not its own address (DNS rebinding guard).
    let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    r.starts_with("HTTP/1.1 200")
}

/// Starts a visor; returns it, its RPC address and the time until the RPC answered.
fn start(cfg: &Path) -> (Proc, String, Duration) {
    let rpc = format!("127.0.0.1:{}", free_port());
    let t0 = Instant::now();
    let mut child = Command::new(BIN)
        .args(["visor", "-c", cfg.to_str().unwrap(), "--rpc", &rpc])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !rpc_answers(&rpc) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "visor never answered"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
    let took = t0.elapsed();
    // Drain stdout so the visor never blocks on it.
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut l = String::new();
        while r.read_line(&mut l).map(|n| n > 0).unwrap_or(false) {
            l.clear();
        }
    });
    (Proc(child), rpc, took)
}

fn info_field(rpc: &str, cfg: &Path, key: &str) -> String {
    // `-c`: the CLI finds the visor's RPC token through its config.
    let o = Command::new(BIN)
        .args(["cli", "visor", "--rpc", rpc, "-c", cfg.to_str().unwrap()])
        .args(["info", "--json"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    let pat = format!("\"{key}\":\"");
    let i = s.find(&pat).unwrap_or_else(|| panic!("{key} not in {s}")) + pat.len();
    s[i..i + s[i..].find('"').unwrap()].to_string()
}

fn stop(mut p: Proc) -> Duration {
    let t0 = Instant::now();
    let pid = rustix::process::Pid::from_child(&p.0);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let st = p.0.wait().unwrap();
    assert!(st.success(), "{st:?}");
    t0.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let full = common::full_run();
    let runs = if full { 15 } else { 3 };
    let settle = Duration::from_secs(if full { 3 } else { 1 });
    let dir = std::env::temp_dir().join(format!("skywire-bench-visor-{}", std::process::id()));
    let host_cfg = config(&dir.join("host"), None);

    let mut starts = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..runs {
        let (p, _, took) = start(&host_cfg);
        starts.push(took);
        stops.push(stop(p));
    }

    // Idle RSS: one host, one joined visor, both with the default apps, after they settle.
    let (host, host_rpc, _) = start(&host_cfg);
    let relay = info_field(&host_rpc, &host_cfg, "hosted_relay");
    let join_cfg = config(&dir.join("joined"), Some(&relay));
    let mut join_starts = Vec::new();
    for _ in 0..runs {
        let (p, _, took) = start(&join_cfg);
        join_starts.push(took);
        stop(p);
    }
    let (joined, _joined_rpc, _) = start(&join_cfg);
    std::thread::sleep(settle);
    let host_rss = rss_kib_of(&host.0.id().to_string());
    let joined_rss = rss_kib_of(&joined.0.id().to_string());
    drop(joined);
    drop(host);
    let _ = std::fs::remove_dir_all(&dir);

    let body = format!(
        "Machine: {}. Release binary, `skywire visor -c …` on free loopback ports, default apps \
         ({}). {runs} fresh starts each, median.\n\n\
         | visor | start → RPC answering, ms | SIGTERM → exit, ms | idle RSS, KiB |\n\
         |---|---:|---:|---:|\n\
         | hosting the embedded relay + discovery | {} | {} | {host_rss} |\n\
         | joined to it (dmsg client only) | {} | | {joined_rss} |\n\n\
         Budget (DESIGN.md §8): idle RSS ≤ 4 MiB (4096 KiB) with the default apps.",
        common::machine(),
        skywire::apps::names(),
        ms(median(starts)),
        ms(median(stops)),
        ms(median(join_starts)),
    );
    println!("{body}");
    if let Some(f) = common::write_target() {
        common::write_section(&f, "visor", &body).unwrap();
        println!("wrote the results to {f}");
    }
}
