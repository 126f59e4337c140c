//! `make bench` — skynet: routed throughput over 1, 2 and 3 hops between real visors on
//! 127.0.0.1 (stcp transports) as ratios to one AEAD pass measured in the same run, CPU per
//! GiB at a forwarding hop (the middle visor's utime + stime) beside one AEAD pass, route
//! setup time by hop count, memory per idle transport (a visor's RSS over K transports, and
//! the transport layer's own buffer accounting) and per route rule (the router core's table,
//! in this process). Under `cargo test --all-targets --features skywire/test-apps` it runs
//! small as a smoke test.
//!
//! The visors: V0..V3 on a discovery and a relay of their own (`skywire dmsg disc`, `dmsg
//! server`: path search needs the published links, and a joined visor has no discovery);
//! stcp transports V0–V1, V1–V2, V2–V3, V0–V3, V1–V3, V0–V2 (a full mesh), kept from the
//! config. The peer at
//! the far end is the `test-a` app of V3 in `--echo` mode (a test app: this bench needs
//! `test-apps`), so every byte crosses each hop twice; the bench writes on one thread and
//! reads the echo on another, both through V0's RPC dial upgrade
//! (`POST /v1/dial/<V3>/<port>?route=P`) with `P` = `direct`, `via:V1`, `via:V1,V2`.

mod common;
#[path = "common/visors.rs"]
mod visors;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_executor::Executor;
use common::{Sample, aead_pass, cpu_seconds_of, free_port, rss_kib, rss_kib_of};
use futures_lite::future::{self, block_on};
use miniserde::json::{Array, Object, Value};
use skywire::crypto::Keypair;
use skywire::http::json::parse_object;
use skywire::router::core::{Core, CoreConfig, Event, Verdict};
use skywire::rpc::skynet::{Drops, GroupView};
use skywire::rpc::{Body, Items};
use skywire::transport::{Manager, PacketSink, TpConfig, Transport};
use visors::{
    Visor, gen_config, s, start_tool, start_visor, str_field, wait_transports, write_config,
};

/// The overlay port of V3's echo app.
const ECHO_PORT: u16 = 5001;
/// Bytes written (and read back) at once.
const CHUNK: usize = 64 * 1024;

/// V3's apps: the `test-a` test app echoing on [`ECHO_PORT`].
fn echo_apps() -> Array {
    let mut app = Object::new();
    app.insert("name".into(), s("test-a"));
    let mut args = Array::new();
    for a in ["--port", &ECHO_PORT.to_string(), "--echo"] {
        args.push(s(a));
    }
    app.insert("args".into(), Value::Array(args));
    app.insert("auto_start".into(), Value::Bool(true));
    let mut apps = Array::new();
    apps.push(Value::Object(app));
    apps
}

/// The RPC dial upgrade on `v` to `to`:`port` by route policy `route`: the raw stream after
/// the 101, or the visor's answer.
fn dial(v: &Visor, to: &str, port: u16, route: &str) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(&v.rpc).map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /v1/dial/{to}/{port}?route={route} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer \
         {}\r\nConnection: Upgrade\r\nUpgrade: skywire-stream\r\nContent-Length: 0\r\n\r\n",
        v.rpc, v.token
    )
    .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || s.read(&mut b).map_err(|e| e.to_string())? == 0 {
            break;
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    if !text.starts_with("HTTP/1.1 101") {
        let mut rest = String::new();
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.read_to_string(&mut rest);
        return Err(format!("{} {rest}", text.lines().next().unwrap_or("")));
    }
    Ok(s)
}

/// [`dial`], retried (≤ `limit`) while the route cannot be set up yet (discovery has not
/// published every link): the stream and how long the successful dial took.
fn dial_retry(v: &Visor, to: &str, route: &str, limit: Duration) -> (TcpStream, Duration) {
    let t0 = Instant::now();
    loop {
        let t = Instant::now();
        match dial(v, to, ECHO_PORT, route) {
            Ok(s) => return (s, t.elapsed()),
            Err(e) => {
                assert!(t0.elapsed() < limit, "dial --route {route}: {e}");
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
}

/// What one echo run moved.
struct Echo {
    /// Bytes read back (every one checked).
    got: u64,
    /// Wall time until the last of them.
    wall: Duration,
    /// The run hit its time limit before all `bytes` came back.
    cut: bool,
}

/// Writes `bytes` (a counting pattern) on one thread and reads the echo on this one, checking
/// every byte, for at most `limit`: a route that stalls is reported as such (what came back
/// by then), not waited for.
fn echo(s: TcpStream, bytes: u64, limit: Duration) -> Echo {
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.set_write_timeout(Some(limit)).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = s;
    let t0 = Instant::now();
    // The counting pattern (byte k is k mod 251) as one table, sliced at each offset: a
    // division per byte made this process the bottleneck at ~100 MiB/s.
    let pattern: Arc<Vec<u8>> = Arc::new((0..CHUNK + 251).map(|k| (k % 251) as u8).collect());
    // n ≤ CHUNK and the offset into the cycle < 251: always inside the table.
    let at = |off: u64, n: usize| -> std::ops::Range<usize> {
        let k = (off % 251) as usize;
        k..k + n
    };
    let wp = pattern.clone();
    let writer = std::thread::spawn(move || {
        let mut sent = 0u64;
        while sent < bytes {
            let n = CHUNK.min((bytes - sent) as usize);
            if w.write_all(&wp[at(sent, n)]).is_err() {
                break;
            }
            sent += n as u64;
        }
        let _ = w.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    let mut wall = Duration::ZERO;
    while got < bytes && t0.elapsed() < limit {
        let n = match r.read(&mut buf) {
            Ok(0) => panic!("echo ended after {got} of {bytes} bytes"),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => panic!("echo read after {got} bytes: {e}"),
        };
        if buf[..n] != pattern[at(got, n)] {
            let i = (0..n)
                .find(|&i| buf[i] != ((got + i as u64) % 251) as u8)
                .unwrap_or(0);
            panic!("byte {} came back wrong", got + i as u64);
        }
        got += n as u64;
        wall = t0.elapsed();
    }
    // Unblock a writer stuck on a stalled route.
    let _ = r.shutdown(Shutdown::Both);
    writer.join().unwrap();
    Echo {
        got,
        wall,
        cut: got < bytes,
    }
}

/// A sink that drops every packet (the in-process transport peers carry no routes).
struct NullSink;

impl PacketSink for NullSink {
    fn packet(&self, _: &Transport, _: Vec<u8>) {}
    fn up(&self, _: &Transport) {}
    fn down(&self, _: &Transport, _: &str) {}
}

/// A routing packet: `type ‖ route_id u32be ‖ payload_len u16be ‖ payload`.
fn routing_packet(ty: u8, route_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![ty];
    p.extend_from_slice(&route_id.to_be_bytes());
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Heap per intermediary rule: a router core (in this process) with `n` complete rules, each
/// set up by a SetupRequest from A and acknowledged by B, as on a forwarding hop. Returns
/// this process's RSS growth per rule in bytes, and the rules the core reports.
fn rule_memory(n: usize) -> (f64, usize) {
    let [a, x, b] = [1u8, 2, 3].map(|i| *Keypair::from_seed(&[i; 32]).public());
    let mut core = Core::new(
        x,
        CoreConfig {
            max_rules: n,
            max_rules_per_transport: n,
            per_hop_timeout: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(3600),
            setup_rate: 1_000_000,
            setup_burst: 1_000_000,
        },
    );
    core.transport_up(1, a);
    core.transport_up(2, b);
    let rss0 = rss_kib();
    let mut ack = Vec::new();
    for i in 0..n as u32 {
        let now = Duration::from_micros(i.into());
        let mut req = Vec::new();
        req.extend_from_slice(&i.to_be_bytes()); // setup id
        req.extend_from_slice(&u64::from(i).to_be_bytes()); // group id
        req.extend_from_slice(&[0, 1, 3]); // leg, hop (X), path length
        req.extend_from_slice(&(i + 1).to_be_bytes()); // A's id
        for pk in [a, x, b] {
            req.extend_from_slice(pk.as_bytes());
        }
        let mut p = routing_packet(7, 0, &req);
        assert_eq!(core.handle_packet(1, &mut p, now), Verdict::Consumed);
        // X relayed the request to B with its own id as the reverse id.
        let mut x_id = None;
        while let Some(e) = core.poll_event() {
            if let Event::Send { tp: 2, packet } = e {
                x_id = Some(u32::from_be_bytes(
                    packet[7 + 15..7 + 19].try_into().unwrap(),
                ));
            }
        }
        let x_id = x_id.expect("the request went on to B");
        ack.clear();
        ack.extend_from_slice(&i.to_be_bytes());
        ack.extend_from_slice(&(i + 1).to_be_bytes()); // B's id
        let mut p = routing_packet(8, x_id, &ack);
        assert_eq!(core.handle_packet(2, &mut p, now), Verdict::Consumed);
        while core.poll_event().is_some() {}
    }
    let rules = core.rule_count();
    let grown = rss_kib().saturating_sub(rss0) as f64 * 1024.0;
    drop(std::hint::black_box(core));
    (grown / n as f64, rules)
}

/// Memory per idle transport: a fresh visor, then `k` stcp transports it dials (`tp add`) to
/// in-process peers; its RSS before and after (once idle), and the transport layer's own
/// buffer accounting (`buffer_bytes` of `tp ls`). Returns (RSS KiB before, after, summed
/// buffer bytes, transports up).
fn transport_memory(dir: &Path, k: usize, settle: Duration) -> (u64, u64, u64, usize) {
    let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
    let ex2 = ex.clone();
    std::thread::spawn(move || block_on(ex2.run(future::pending::<()>())));
    let mut peers = Vec::new();
    let mut managers = Vec::new();
    for _ in 0..k {
        let m = Manager::new(
            ex.clone(),
            Keypair::generate().unwrap(),
            TpConfig::default(),
            None,
            Arc::new(NullSink),
        );
        let addr = block_on(m.listen_stcp("127.0.0.1:0")).unwrap();
        peers.push((m.pk().to_hex(), addr.port()));
        managers.push(m);
    }
    let (file, cfg) = gen_config(&dir.join("tp-memory"), None);
    write_config(&file, cfg, free_port(), &peers, &[], None);
    let v = start_visor(&file);
    std::thread::sleep(settle);
    let before = rss_kib_of(&v.pid().to_string());
    for (pk, _) in &peers {
        v.cli(&["tp", "add", pk, "--type", "stcp", "--once"]);
    }
    let pks: Vec<&str> = peers.iter().map(|(p, _)| p.as_str()).collect();
    wait_transports(&v, &pks, Duration::from_secs(30));
    std::thread::sleep(settle);
    let after = rss_kib_of(&v.pid().to_string());
    let tps = v.transports();
    let buffers = tps.iter().map(|t| t.buffer_bytes).sum();
    let up = tps.iter().filter(|t| t.state == "up").count();
    for m in &managers {
        m.shutdown();
    }
    (before, after, buffers, up)
}

/// MiB/s with a decimal below 10.
fn mib(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child-forward") {
        common::child_forward(&args[i + 1]);
        return;
    }
    let full = common::full_run();
    let gib = (1u64 << 30) as f64;
    let (bytes, tp_count, rule_count, settle, limit) = if full {
        (
            256u64 << 20,
            64,
            65_536,
            Duration::from_secs(3),
            Duration::from_secs(60),
        )
    } else {
        (
            4 << 20,
            4,
            1024,
            Duration::from_millis(500),
            Duration::from_secs(30),
        )
    };
    let dir = std::env::temp_dir().join(format!("skywire-bench-skynet-{}", std::process::id()));

    // Same-run ceiling, and the in-process measurement before any thread or child exists.
    let aead = aead_pass(if full { 1 << 30 } else { 16 << 20 }, 16 * 1024);
    // The kernel's floor for passing bytes through a process (read → write, no crypto).
    let floor_bytes = if full { 1u64 << 30 } else { 64 << 20 };
    let (floor_cpu, floor_wall) = common::bare_forwarder(floor_bytes);
    let floor = Sample {
        bytes: floor_bytes,
        wall: floor_wall,
        cpu: floor_cpu,
    };
    let (per_rule, rules) = rule_memory(rule_count);
    assert_eq!(rules, rule_count, "every setup left a rule");

    let (rss_before, rss_after, buffers, up) = transport_memory(&dir, tp_count, settle);
    assert_eq!(up, tp_count, "every transport came up");

    // A discovery and a relay; four visors on them, full stcp mesh; V3 echoes on ECHO_PORT.
    let (_disc, line) = start_tool(&[
        "dmsg",
        "disc",
        "--addr",
        "127.0.0.1:0",
        "--log-level",
        "error",
    ]);
    let disc = line
        .strip_prefix("discovery listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let (_relay, line) = start_tool(&[
        "dmsg",
        "server",
        "--addr",
        "127.0.0.1:0",
        "--disc",
        &disc,
        "--log-level",
        "error",
    ]);
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts.first(), Some(&"relay"), "{line}");
    let relay = format!("{}@{}", parts[1], parts[4]);
    let stcp: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let mut visors = Vec::new();
    let mut pks: Vec<String> = Vec::new();
    for i in 0..4 {
        let (f, c) = gen_config(&dir.join(format!("v{i}")), Some((&disc, &relay)));
        let pk = str_field(&c, "pk");
        // Each dials the visors started before it.
        let peers: Vec<(String, u16)> = (0..i).map(|j| (pks[j].clone(), stcp[j])).collect();
        let dial: Vec<String> = pks[..i].to_vec();
        write_config(&f, c, stcp[i], &peers, &dial, (i == 3).then(echo_apps));
        visors.push(start_visor(&f));
        pks.push(pk);
    }
    for (i, v) in visors.iter().enumerate() {
        let others: Vec<&str> = (0..4)
            .filter(|&j| j != i)
            .map(|j| pks[j].as_str())
            .collect();
        wait_transports(v, &others, Duration::from_secs(30));
    }
    let (v0, v1, v2) = (&visors[0], &visors[1], &visors[2]);
    let dst = pks[3].clone();
    // Route setup by hop count, on idle transports: each policy a new route group (the first
    // dial by it: path search, setup hop by hop, Noise KK end to end, the stream's open).
    let (p1, p2) = (&pks[1], &pks[2]);
    let setup_policies = [
        (1, "direct".to_string()),
        (2, format!("via:{p1}")),
        (2, format!("via:{p2}")),
        (3, format!("via:{p1},{p2}")),
        (3, format!("via:{p2},{p1}")),
    ];
    let mut setups = Vec::new();
    for (hops, policy) in &setup_policies {
        let (stream, took) = dial_retry(v0, &dst, policy, Duration::from_secs(30));
        drop(stream);
        setups.push((*hops, policy.clone(), took));
    }
    let groups = parse_object(&v0.cli(&["route", "groups", "--json"])).unwrap();
    let groups = Items::<GroupView>::from_object(&groups).unwrap().0.len();
    let policies = [
        (1, "direct".to_string()),
        (2, format!("via:{p1}")),
        (3, format!("via:{p1},{p2}")),
    ];
    let mut runs = Vec::new();
    for (hops, policy) in &policies {
        // A stream on the live group of this policy (set up above).
        let t = Instant::now();
        let stream = dial(v0, &dst, ECHO_PORT, policy).unwrap_or_else(|e| panic!("{policy}: {e}"));
        let open = t.elapsed();
        // The rules of routes through the first forwarding hop (V1), as `route ls` shows them:
        // packets and bytes they carried over the run (their mean packet size).
        let through_v1 = || -> (u64, u64, usize) {
            let r = v1.rules();
            let mid = r.iter().filter(|r| r.kind == "intermediary");
            let n = mid.clone().count();
            (
                mid.clone().map(|r| r.packets).sum(),
                mid.map(|r| r.bytes).sum(),
                n,
            )
        };
        let (pk0, by0, at_v1) = through_v1();
        assert!(
            *hops == 1 || at_v1 > 0,
            "route ls on V1 shows no intermediary rule"
        );
        let (cpu1, cpu2) = (cpu_seconds_of(v1.pid()), cpu_seconds_of(v2.pid()));
        let moved = echo(stream, bytes, limit);
        let (cpu1, cpu2) = (
            cpu_seconds_of(v1.pid()) - cpu1,
            cpu_seconds_of(v2.pid()) - cpu2,
        );
        let (pk1, by1, _) = through_v1();
        let mean_packet = (by1 - by0).checked_div(pk1 - pk0).unwrap_or(0);
        // And one after the bulk run.
        let t = Instant::now();
        let after = dial(v0, &dst, ECHO_PORT, policy).map(|_| t.elapsed());
        runs.push((*hops, open, after, moved, cpu1, cpu2, mean_packet));
    }
    // What the routers dropped on the way (`route drops`), to explain a slow run.
    let mut drops = Vec::new();
    for (i, v) in visors.iter().enumerate() {
        let o = parse_object(&v.cli(&["route", "drops", "--json"])).unwrap();
        for (reason, n) in Drops::from_object(&o).unwrap().0 {
            if n > 0 {
                drops.push(format!("V{i} {reason}: {n}"));
            }
        }
    }
    drop(visors);
    let _ = std::fs::remove_dir_all(&dir);

    let mut out = format!(
        "Machine: {}. Release binary: four `skywire visor` processes on 127.0.0.1 (with a \
         `dmsg disc` and a `dmsg server`), a full mesh of stcp transports from their configs; \
         the bench dials V3's echo app (the `test-a` test app, `--echo`) through V0's RPC dial \
         upgrade by route policy and writes {} MiB while reading the echo back on another \
         thread (every byte checked), so each hop carries the data both ways. 1 hop: \
         `direct`; 2: `via:V1`; 3: `via:V1,V2`. Throughput is bytes one way per second of \
         wall time; CPU is the forwarding visor's utime + stime over the run per GiB it \
         forwarded (both directions).\n\n",
        common::machine(),
        bytes >> 20
    );
    out.push_str(
        "| route | MiB/s each way | × one AEAD pass | V1 CPU-s per GiB forwarded | × one AEAD pass | V2 CPU-s per GiB | mean routing packet at V1, B | stream open on the live group, ms: before | after the run |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    out.push_str(&format!(
        "| one AEAD pass, ChaCha20-Poly1305, 16 KiB (same run) | {:.0} | 1.00 | {:.2} | 1.00 | | | | |\n",
        aead.mib_per_s(),
        aead.cpu_s_per_gib()
    ));
    let aead_cpu = aead.cpu_s_per_gib();
    out.push_str(&format!(
        "| bare forwarder: read → write of 256 KiB, one process (same run) | {} | {:.2} | {:.2} | {:.2} | | | | |\n",
        mib(floor.mib_per_s()),
        floor.gib_per_s() / aead.gib_per_s(),
        floor.cpu_s_per_gib(),
        floor.cpu_s_per_gib() / aead_cpu,
    ));
    let mut cut = Vec::new();
    for (hops, open, after, moved, cpu1, cpu2, mean_packet) in &runs {
        let m = Sample {
            bytes: moved.got,
            wall: moved.wall,
            cpu: 0.0,
        };
        let fwd_gib = 2.0 * moved.got as f64 / gib;
        let (c1, c2) = if *hops > 1 {
            (
                format!("{:.2}", cpu1 / fwd_gib),
                format!("{:.2}", cpu1 / fwd_gib / aead_cpu),
            )
        } else {
            ("".into(), "".into())
        };
        let v2 = if *hops > 2 {
            format!("{:.2}", cpu2 / fwd_gib)
        } else {
            String::new()
        };
        let mean = if *hops > 1 {
            mean_packet.to_string()
        } else {
            String::new()
        };
        if moved.cut {
            cut.push(format!(
                "{hops} hop{}: {:.1} of {} MiB came back within the {} s limit",
                if *hops == 1 { "" } else { "s" },
                moved.got as f64 / (1u64 << 20) as f64,
                bytes >> 20,
                limit.as_secs()
            ));
        }
        out.push_str(&format!(
            "| {hops} hop{}{} | {} | {:.2} | {c1} | {c2} | {v2} | {mean} | {} | {} |\n",
            if *hops == 1 { "" } else { "s" },
            if moved.cut { " (cut, see below)" } else { "" },
            mib(m.mib_per_s()),
            m.gib_per_s() / aead.gib_per_s(),
            ms(*open),
            after.as_ref().map(|d| ms(*d)).unwrap_or_else(|e| e.clone()),
        ));
    }
    let per_floor: Vec<String> = runs
        .iter()
        .filter(|r| r.0 > 1)
        .map(|(hops, _, _, moved, cpu1, ..)| {
            let fwd_gib = 2.0 * moved.got as f64 / gib;
            format!(
                "{:.2}× at {hops} hops",
                cpu1 / fwd_gib / floor.cpu_s_per_gib()
            )
        })
        .collect();
    out.push_str(&format!(
        "\nV1's CPU per GiB forwarded against the bare forwarder's (the kernel's floor for a \
         process that passes bytes on): {}.\n",
        per_floor.join(", ")
    ));
    out.push_str(&format!(
        "\nRoute setup by hop count, V0 → V3 on idle transports (the first dial by a policy: \
         path search, setup hop by hop, Noise KK end to end, the stream's open; {groups} route \
         groups at V0 afterwards):\n\n| hops | policy | first dial, ms |\n|---:|---|---:|\n"
    ));
    for (hops, policy, took) in &setups {
        let named = policy.replace(p1.as_str(), "V1").replace(p2.as_str(), "V2");
        out.push_str(&format!("| {hops} | `{named}` | {} |\n", ms(*took)));
    }
    out.push_str(&format!(
        "\nPackets the routers dropped over the runs (`route drops`): {}.\n",
        if drops.is_empty() {
            "none".to_string()
        } else {
            drops.join(", ")
        }
    ));
    if !cut.is_empty() {
        out.push_str(&format!(
            "\nRuns cut at their time limit (the rate is what came back until then): {}.\n",
            cut.join("; ")
        ));
    }
    out.push_str(&format!(
        "\nGoals (issue 13): ≥ 0.5× one AEAD pass at 3 hops; ≤ 0.25× one AEAD pass of CPU per \
         GiB at a forwarding hop.\n\nMemory per idle transport: a fresh visor dialing {tp_count} \
         stcp transports (`tp add`) to in-process peers: RSS {rss_before} KiB before, \
         {rss_after} KiB once idle ({:.1} KiB per transport, {:.1} s after the last came up); \
         the transport layer's buffers hold {:.0} B per transport (`buffer_bytes` of `tp ls`). \
         Budget: ≤ 16 KiB.\n\nMemory per route rule: a router core in the bench process with \
         {rule_count} intermediary rules (each set up and acknowledged as on a forwarding \
         hop): {per_rule:.0} bytes of RSS per rule, the table's growth included.\n",
        (rss_after as f64 - rss_before as f64) / tp_count as f64,
        settle.as_secs_f64(),
        buffers as f64 / tp_count as f64,
    ));
    print!("{out}");
    if let Some(file) = common::write_target() {
        common::write_section(&file, "skynet", out.trim_end()).unwrap();
        println!("wrote the results to {file}");
    }
}
