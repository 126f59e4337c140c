//! `make bench` — dmsg through the real binaries: relayed throughput beside raw loopback TCP
//! and one AEAD pass (same run), CPU-seconds per GiB of sender, relay and receiver beside a bare
//! read → write forwarder process (the kernel's floor for a relay, same run), relay RSS
//! with 1, 100 and 1,000 idle clients, and stream-open latency to a peer with an open channel.
//! Under `cargo test --all-targets` it runs small as a smoke test.
//!
//! The idle clients live in a child copy of this bench (`--child-clients N`), started through
//! `sh -c 'ulimit -n …'` so that it and the relay can hold a thousand connections.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_executor::Executor;
use common::{
    Proc, Sample, aead_pass, bare_forwarder, child_forward, cpu_seconds_of, raw_tcp, rss_kib_of,
};
use futures_lite::future::{self, block_on};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use skywire::crypto::Keypair;
use skywire::dmsg::client::{ClientConfig, DmsgClient};
use skywire::dmsg::disc_client::DiscClient;

/// The binary under test: this build's, or `SKYWIRE_BENCH_BIN` (e.g. a board-profile build
/// for this machine, to compare the two in one run).
fn bin() -> String {
    std::env::var("SKYWIRE_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_skywire").into())
}

/// Starts `skywire <args>` (with a raised descriptor limit) and returns it with its first
/// stdout line.
fn start(args: &[&str]) -> (Proc, String, BufReader<std::process::ChildStdout>) {
    let mut cmd = format!("ulimit -n 8192 2>/dev/null; exec '{}'", bin());
    for a in args {
        cmd.push_str(&format!(" '{a}'"));
    }
    let mut child = Command::new("sh")
        .args(["-c", &cmd])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    (Proc(child), line.trim().to_string(), out)
}

fn child_clients(n: usize, disc: &str, relay: &str) {
    let _ = skywire::cli::init_logging("warn");
    let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
    let (pk, addr) = relay.split_once('@').unwrap();
    let pk = skywire::crypto::PublicKey::from_hex(pk).unwrap();
    let mut clients = Vec::new();
    block_on(ex.run(async {
        for _ in 0..n {
            let c = DmsgClient::start(
                ex.clone(),
                Keypair::generate().unwrap(),
                Some(DiscClient::new(disc).unwrap()),
                ClientConfig {
                    relays: vec![(pk, addr.to_string())],
                    ..ClientConfig::default()
                },
            );
            clients.push(c);
        }
        for c in &clients {
            c.wait_ready(Duration::from_secs(60)).await.unwrap();
        }
        println!("ready {n}");
        // Stay connected until the parent closes our stdin.
        let stdin = async_io::Async::new(std::io::stdin()).ok();
        if let Some(mut s) = stdin {
            let mut b = [0u8; 1];
            let _ = futures_lite::io::AsyncReadExt::read(&mut s, &mut b).await;
        }
    }));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child-clients") {
        child_clients(args[i + 1].parse().unwrap(), &args[i + 2], &args[i + 3]);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--child-forward") {
        child_forward(&args[i + 1]);
        return;
    }
    let full = common::full_run();
    let gib = 1u64 << 30;
    let (bytes, idle_counts, opens): (u64, Vec<usize>, usize) = if full {
        (gib, vec![1, 100, 1000], 1000)
    } else {
        (32 << 20, vec![1, 10], 20)
    };

    let (_disc, line, _disc_out) = start(&[
        "dmsg",
        "disc",
        "--addr",
        "127.0.0.1:0",
        "--log-level",
        "error",
    ]);
    let url = line
        .strip_prefix("discovery listening on ")
        .unwrap()
        .to_string();
    let (relay, line, _relay_out) = start(&[
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
    let relay_arg = format!("{}@{}", parts[1], parts[4]);

    // Same-run ceilings.
    let tcp = raw_tcp(if full { 4 * gib } else { 64 << 20 });
    let aead = aead_pass(if full { gib } else { 16 << 20 }, 16 * 1024);
    let floor_bytes = if full { gib } else { 64 << 20 };
    let (floor_cpu, floor_wall) = bare_forwarder(floor_bytes);
    let floor = Sample {
        bytes: floor_bytes,
        wall: floor_wall,
        cpu: floor_cpu,
    };

    // Relayed throughput: iperf server and client processes, one relay between them.
    let srv_keys = Keypair::generate().unwrap();
    let sk = skywire::crypto::hex::encode(srv_keys.seed());
    let (srv, first, _srv_out) = start(&[
        "dmsg", "iperf", "-s", "--disc", &url, "--relay", &relay_arg, "--sk", &sk,
    ]);
    assert!(first.starts_with("iperf server on"), "{first}");
    let (relay_cpu0, srv_cpu0) = (cpu_seconds_of(relay.pid()), cpu_seconds_of(srv.pid()));
    let t0 = Instant::now();
    let out = Command::new(bin())
        .args([
            "dmsg",
            "iperf",
            &srv_keys.public().to_hex(),
            "-n",
            &bytes.to_string(),
            "--json",
        ])
        .args(["--disc", &url, "--relay", &relay_arg])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let wall = t0.elapsed();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "iperf client failed: {text}");
    let field = |k: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("\"{k}\": ")))
            .map(|v| v.trim_end_matches(',').parse().unwrap())
            .unwrap_or_else(|| panic!("{k} missing in {text}"))
    };
    let secs = field("seconds_ms") / 1000.0;
    let relayed = Sample {
        bytes,
        wall: Duration::from_secs_f64(secs),
        cpu: 0.0,
    };
    let sender_cpu = field("cpu_ms") / 1000.0;
    let relay_cpu = cpu_seconds_of(relay.pid()) - relay_cpu0;
    let recv_cpu = cpu_seconds_of(srv.pid()) - srv_cpu0;
    let per_gib = |c: f64| c / (bytes as f64 / gib as f64);
    drop(srv);
    let _ = wall;

    // Stream-open latency on an open channel (in this process).
    let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
    let ex2 = ex.clone();
    std::thread::spawn(move || block_on(ex2.run(future::pending::<()>())));
    let (rpk, raddr) = relay_arg.split_once('@').unwrap();
    let relays = vec![(
        skywire::crypto::PublicKey::from_hex(rpk).unwrap(),
        raddr.to_string(),
    )];
    let mk = || {
        DmsgClient::start(
            ex.clone(),
            Keypair::generate().unwrap(),
            Some(DiscClient::new(&url).unwrap()),
            ClientConfig {
                relays: relays.clone(),
                ..ClientConfig::default()
            },
        )
    };
    let (a, b) = (mk(), mk());
    block_on(a.wait_ready(Duration::from_secs(10))).unwrap();
    block_on(b.wait_ready(Duration::from_secs(10))).unwrap();
    let l = b.listen(7).unwrap();
    ex.spawn(async move {
        while let Ok(mut s) = l.accept().await {
            let _ = s.close().await;
        }
    })
    .detach();
    let bpk = *b.pk();
    let first_open = {
        let t = Instant::now();
        let mut s = block_on(a.dial(&bpk, 7)).unwrap();
        let mut v = Vec::new();
        block_on(s.read_to_end(&mut v)).unwrap();
        t.elapsed()
    };
    let mut lat: Vec<f64> = (0..opens)
        .map(|_| {
            let t = Instant::now();
            let s = block_on(a.dial(&bpk, 7)).unwrap();
            let d = t.elapsed().as_secs_f64() * 1e6;
            drop(s);
            d
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];

    if std::env::var_os("BENCH_DEBUG").is_some() {
        let port = url
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        let ss = Command::new("sh").args(["-c", &format!("ss -tan | grep ':{port}' | awk '{{print $1}}' | sort | uniq -c; curl -s {url}/health")]).output().unwrap();
        eprintln!(
            "disc sockets before idle phase:\n{}",
            String::from_utf8_lossy(&ss.stdout)
        );
    }
    // Relay RSS with idle clients.
    let me = std::env::current_exe().unwrap();
    let mut rss = Vec::new();
    let base = rss_kib_of(&relay.pid().to_string());
    for &n in &idle_counts {
        let cmd = format!(
            "ulimit -n 8192 2>/dev/null; exec '{}' --child-clients {n} '{url}' '{relay_arg}'",
            me.display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &cmd])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        if !line.starts_with("ready") {
            let port = url
                .rsplit(':')
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_string();
            let ss = Command::new("sh").args(["-c", &format!("ss -tanp | grep ':{port}' | head -20; ss -tan | grep ':{port}' | wc -l; curl -s -m 2 {url}/health")]).output().unwrap();
            panic!(
                "idle clients ({n}): {line:?}; disc sockets:\n{}",
                String::from_utf8_lossy(&ss.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
        rss.push((n, rss_kib_of(&relay.pid().to_string())));
        let _ = child.stdin.take().unwrap().write_all(b"x");
        let _ = child.kill();
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(500));
    }

    let mut out = String::new();
    out.push_str(&format!(
        "Machine: {}. Release binaries: `skywire dmsg disc`, `dmsg server`, `dmsg iperf -s` and `dmsg iperf -n {} --json` as separate processes on 127.0.0.1, one relay between them.\n\n",
        common::machine(),
        bytes
    ));
    out.push_str("| what | MiB/s | × raw TCP | × one AEAD pass |\n|---|---:|---:|---:|\n");
    for (name, s) in [
        ("raw loopback TCP (same run)", &tcp),
        ("ChaCha20-Poly1305, one pass, 16 KiB (same run)", &aead),
        (
            "bare forwarder: read → write of 256 KiB, one process (same run)",
            &floor,
        ),
        ("relayed dmsg stream (iperf through the relay)", &relayed),
    ] {
        out.push_str(&format!(
            "| {name} | {:.0} | {:.2} | {:.2} |\n",
            s.mib_per_s(),
            s.gib_per_s() / tcp.gib_per_s(),
            s.gib_per_s() / aead.gib_per_s()
        ));
    }
    let aead_cpu = aead.cpu_s_per_gib();
    out.push_str(&format!(
        "\nCPU-seconds per GiB relayed: sender {:.2}, relay {:.2}, receiver {:.2} (one AEAD pass: {:.2}; the relay runs no AEAD over the data, only over 28-byte session headers; the bare forwarder, the kernel's floor for passing bytes through a process: {:.2}).\n\n| CPU per GiB | sender | relay | receiver | bare forwarder |\n|---|---:|---:|---:|---:|\n| × one AEAD pass | {:.2} | {:.2} | {:.2} | {:.2} |\n| × the bare forwarder | | {:.2} | | 1.00 |\n",
        per_gib(sender_cpu),
        per_gib(relay_cpu),
        per_gib(recv_cpu),
        aead_cpu,
        floor.cpu_s_per_gib(),
        per_gib(sender_cpu) / aead_cpu,
        per_gib(relay_cpu) / aead_cpu,
        per_gib(recv_cpu) / aead_cpu,
        floor.cpu_s_per_gib() / aead_cpu,
        per_gib(relay_cpu) / floor.cpu_s_per_gib(),
    ));
    out.push_str(&format!(
        "\nStream open to a peer with an open channel (dial → port status received), {} opens: median {:.0} µs, p99 {:.0} µs; the first open (relay channel + KK handshake) took {:.2} ms.\n",
        lat.len(),
        pct(0.5),
        pct(0.99),
        first_open.as_secs_f64() * 1000.0
    ));
    out.push_str("\nRelay RSS with idle connected clients (each: XK session, no streams):\n\n| idle clients | relay RSS, KiB | per client, KiB |\n|---:|---:|---:|\n");
    out.push_str(&format!("| 0 | {base} | |\n"));
    for (n, r) in &rss {
        out.push_str(&format!(
            "| {n} | {r} | {:.1} |\n",
            (*r as f64 - base as f64) / *n as f64
        ));
    }
    print!("{out}");
    if let Some(file) = common::write_target() {
        common::write_section(&file, "dmsg", out.trim_end()).unwrap();
        println!("wrote the results to {file}");
    }
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read(&mut [0u8; 0]);
}
