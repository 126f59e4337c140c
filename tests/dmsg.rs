//! dmsg end to end: the real `skywire dmsg disc` and `skywire dmsg server` processes on
//! 127.0.0.1, clients as `skywire dmsg cat|curl|iperf|probe` processes or as the library
//! client, driven the way a user would.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_executor::Executor;
use futures_lite::future::{self, block_on};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use skywire::crypto::{Keypair, PublicKey};
use skywire::dmsg::client::{ClientConfig, DmsgClient};
use skywire::dmsg::disc_client::DiscClient;

fn spawn_line(
    args: &[&str],
) -> (
    common::ChildGuard,
    Vec<String>,
    BufReader<std::process::ChildStdout>,
) {
    let mut child = Command::new(common::skywire_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    (
        common::ChildGuard(Some(child)),
        Vec::new(),
        BufReader::new(out),
    )
}

struct Relay {
    proc: common::ChildGuard,
    pk: PublicKey,
    addr: String,
    /// Kept open so the relay's later output has somewhere to go.
    _out: BufReader<std::process::ChildStdout>,
}

struct Net {
    _disc: common::ChildGuard,
    url: String,
    relays: Vec<Relay>,
}

fn start_net(n_relays: usize) -> Net {
    let (disc, _, mut out) = spawn_line(&[
        "dmsg",
        "disc",
        "--addr",
        "127.0.0.1:0",
        "--log-level",
        "warn",
    ]);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("discovery listening on ")
        .unwrap()
        .to_string();
    let relays = (0..n_relays)
        .map(|_| {
            let (proc, _, mut out) = spawn_line(&[
                "dmsg",
                "server",
                "--addr",
                "127.0.0.1:0",
                "--disc",
                &url,
                "--ping-interval",
                "2",
                "--log-level",
                "warn",
            ]);
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            // relay <pk> listening on <addr>
            let parts: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(parts[0], "relay", "{line}");
            Relay {
                proc,
                pk: PublicKey::from_hex(parts[1]).unwrap(),
                addr: parts[4].to_string(),
                _out: out,
            }
        })
        .collect();
    // Relays publish at start; wait until discovery lists them all.
    let c = DiscClient::new(&url).unwrap();
    let t0 = Instant::now();
    while block_on(c.relays()).map(|r| r.len()).unwrap_or(0) < n_relays {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "relays not in discovery"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Net {
        _disc: disc,
        url,
        relays,
    }
}

fn relay_arg(r: &Relay) -> String {
    format!("{}@{}", r.pk, r.addr)
}

/// A `skywire dmsg …` tool process with piped stdio.
fn tool(args: &[&str]) -> Child {
    Command::new(common::skywire_bin())
        .arg("dmsg")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a line on `child`'s stderr starting with `prefix`.
fn wait_stderr_line(
    child: &mut Child,
    prefix: &str,
) -> (String, BufReader<std::process::ChildStderr>) {
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "no {prefix:?} line");
        if line.starts_with(prefix) {
            return (line.trim().to_string(), err);
        }
    }
}

/// Waits for `child` to exit within `secs`; returns (status, stdout).
fn wait_exit(mut child: Child, secs: u64) -> (std::process::ExitStatus, String) {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            return (st, out);
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn keypair_hex() -> (String, PublicKey) {
    let k = Keypair::generate().unwrap();
    (skywire::crypto::hex::encode(k.seed()), *k.public())
}

#[test]
fn cat_curl_probe_iperf_across_relays() {
    let net = start_net(2);
    let (r1, r2) = (relay_arg(&net.relays[0]), relay_arg(&net.relays[1]));

    // Listener on relay 1 only; dialler on relay 2 only: the dialler reaches it through the
    // relay the listener is on.
    let (sk, pk) = keypair_hex();
    let mut l = tool(&[
        "cat", "-l", "7", "--disc", &net.url, "--relay", &r1, "--sk", &sk,
    ]);
    let (line, mut l_err) = wait_stderr_line(&mut l, "listening on");
    assert_eq!(line, format!("listening on {pk}:7"));
    l.stdin
        .take()
        .unwrap()
        .write_all(b"hello from the listener\n")
        .unwrap();
    let mut d = tool(&[
        "cat",
        &format!("{pk}:7"),
        "--disc",
        &net.url,
        "--relay",
        &r2,
    ]);
    d.stdin
        .take()
        .unwrap()
        .write_all(b"hello from the dialler\n")
        .unwrap();
    let (st, out) = wait_exit(d, 20);
    assert!(st.success());
    assert_eq!(out, "hello from the listener\n");
    let (st, out) = wait_exit(l, 20);
    let mut why = String::new();
    let _ = l_err.read_to_string(&mut why);
    assert!(st.success(), "listener: {why}");
    assert_eq!(out, "hello from the dialler\n");

    // curl: an HTTP answer served by `cat -l 80` on a client that uses both relays.
    let (sk, pk) = keypair_hex();
    let mut web = tool(&[
        "cat", "-l", "80", "--disc", &net.url, "--relay", &r1, "--relay", &r2, "--sk", &sk,
    ]);
    let (_, _web_err) = wait_stderr_line(&mut web, "listening on");
    web.stdin
        .take()
        .unwrap()
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}")
        .unwrap();
    let c = tool(&[
        "curl",
        &format!("dmsg://{pk}:80/health"),
        "--disc",
        &net.url,
        "--relay",
        &r2,
    ]);
    let (st, out) = wait_exit(c, 20);
    assert!(st.success());
    assert_eq!(out, "{\"status\":\"ok\"}");
    let (_, req) = wait_exit(web, 10);
    assert!(req.starts_with("GET /health HTTP/1.1\r\n"), "{req}");

    // iperf server + probe + client: a number comes out.
    let (sk, pk) = keypair_hex();
    let mut srv = common::ChildGuard(Some(tool(&[
        "iperf", "-s", "--disc", &net.url, "--relay", &r1, "--sk", &sk,
    ])));
    let mut first = String::new();
    BufReader::new(srv.0.as_mut().unwrap().stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("iperf server on"), "{first}");
    let p = tool(&[
        "probe",
        &format!("{pk}:5201"),
        "--disc",
        &net.url,
        "--relay",
        &r2,
        "--json",
    ]);
    let (st, out) = wait_exit(p, 20);
    assert!(st.success(), "{out}");
    assert!(out.contains("\"reachable\": true"), "{out}");
    let p = tool(&["probe", &format!("{pk}:5202"), "--disc", &net.url]);
    let mut err = String::new();
    let mut p = p;
    let (st, _) = {
        let mut e = p.stderr.take().unwrap();
        let r = wait_exit(p, 20);
        e.read_to_string(&mut err).unwrap();
        r
    };
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("no listener on port 5202"), "{err}");
    let i = tool(&[
        "iperf",
        &pk.to_hex(),
        "-n",
        "8388608",
        "--json",
        "--disc",
        &net.url,
        "--relay",
        &r2,
    ]);
    let (st, out) = wait_exit(i, 60);
    assert!(st.success(), "{out}");
    assert!(out.contains("\"bytes_confirmed\": 8388608"), "{out}");
    assert!(out.contains("\"mib_per_s\""), "{out}");
}

fn executor() -> Arc<Executor<'static>> {
    let ex = Arc::new(Executor::new());
    let ex2 = ex.clone();
    std::thread::spawn(move || block_on(ex2.run(future::pending::<()>())));
    ex
}

fn lib_client(ex: &Arc<Executor<'static>>, net: &Net, relays: &[&Relay]) -> DmsgClient {
    let cfg = ClientConfig {
        sessions: relays.len().max(1),
        relays: relays.iter().map(|r| (r.pk, r.addr.clone())).collect(),
        listen_backlog: 2048,
        ..ClientConfig::default()
    };
    let c = DmsgClient::start(
        ex.clone(),
        Keypair::generate().unwrap(),
        Some(DiscClient::new(&net.url).unwrap()),
        cfg,
    );
    block_on(c.wait_ready(Duration::from_secs(10))).unwrap();
    c
}

fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    block_on(future::or(f, async {
        async_io::Timer::after(Duration::from_secs(secs)).await;
        panic!("timed out after {secs} s");
    }))
}

/// Echo server on `port` of `c`.
fn serve_echo(ex: &Arc<Executor<'static>>, c: &DmsgClient, port: u16) {
    let l = c.listen(port).unwrap();
    let ex2 = ex.clone();
    ex.spawn(async move {
        while let Ok(mut s) = l.accept().await {
            ex2.spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.close().await;
            })
            .detach();
        }
    })
    .detach();
}

async fn echo_once(c: &DmsgClient, pk: &PublicKey, port: u16, data: Vec<u8>) -> Result<(), String> {
    let s = c.dial(pk, port).await.map_err(|e| e.to_string())?;
    let (mut r, mut w) = futures_lite::io::split(s);
    let send = async {
        w.write_all(&data).await.map_err(|e| e.to_string())?;
        w.close().await.map_err(|e| e.to_string())
    };
    let recv = async {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(got)
    };
    let (a, b) = future::zip(send, recv).await;
    a?;
    let got = b?;
    if got != data {
        return Err(format!(
            "echo of {} bytes came back as {} different bytes",
            data.len(),
            got.len()
        ));
    }
    Ok(())
}

#[test]
fn thousand_concurrent_streams_through_one_relay() {
    let net = start_net(1);
    let ex = executor();
    let a = lib_client(&ex, &net, &[&net.relays[0]]);
    let b = lib_client(&ex, &net, &[&net.relays[0]]);
    serve_echo(&ex, &b, 9);
    let bpk = *b.pk();
    within(180, async {
        let tasks: Vec<_> = (0..1000u32)
            .map(|i| {
                let a = a.clone();
                ex.spawn(async move {
                    let data: Vec<u8> = (0..16 * 1024u32)
                        .map(|j| (j.wrapping_mul(i + 7) >> 3) as u8)
                        .collect();
                    echo_once(&a, &bpk, 9, data).await
                })
            })
            .collect();
        let mut failed = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            if let Err(e) = t.await {
                failed.push(format!("stream {i}: {e}"));
            }
        }
        assert!(
            failed.is_empty(),
            "{} of 1000 failed, first: {:?}",
            failed.len(),
            failed.first()
        );
    });
}

#[test]
fn relay_loss_reconnect_and_client_loss() {
    let mut net = start_net(2);
    let ex = executor();
    // The server picks its relay from discovery (one session).
    let server = lib_client(&ex, &net, &[]);
    serve_echo(&ex, &server, 9);
    let spk = *server.pk();
    let first = server.relays();
    assert_eq!(first.len(), 1);
    let dialler = lib_client(&ex, &net, &[]);
    within(30, echo_once(&dialler, &spk, 9, vec![1; 100_000])).unwrap();

    // Kill the relay the server is on: it reconnects to the other and re-publishes.
    let i = net.relays.iter().position(|r| r.pk == first[0]).unwrap();
    let mut dead = net.relays.remove(i);
    let t_kill = Instant::now();
    let mut p = dead.proc.take();
    p.kill().unwrap();
    p.wait().unwrap();
    let other = net.relays[0].pk;
    let disc = DiscClient::new(&net.url).unwrap();
    loop {
        let e = block_on(disc.entry(&spk)).unwrap().unwrap();
        if let skywire::dmsg::entry::Kind::Client { relays } = &e.kind
            && relays == &vec![other]
        {
            break;
        }
        assert!(
            t_kill.elapsed() < Duration::from_secs(15),
            "no re-publish after 15 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = t_kill.elapsed();
    eprintln!("re-published through the other relay {took:?} after the kill");
    // A new client dials successfully.
    let fresh = lib_client(&ex, &net, &[]);
    within(30, echo_once(&fresh, &spk, 9, vec![2; 100_000])).unwrap();

    // Kill a client mid-stream: the listener's read ends with an error, not a hang.
    let (sk, pk) = keypair_hex();
    let r = relay_arg(&net.relays[0]);
    let mut l = tool(&[
        "cat", "-l", "11", "--disc", &net.url, "--relay", &r, "--sk", &sk,
    ]);
    let (_, mut l_err) = wait_stderr_line(&mut l, "listening on");
    // Drain what the listener prints, as a user's terminal would.
    let mut l_out = l.stdout.take().unwrap();
    let drain = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = l_out.read_to_end(&mut v);
        v.len()
    });
    let mut d = tool(&[
        "cat",
        &format!("{pk}:11"),
        "--disc",
        &net.url,
        "--relay",
        &r,
    ]);
    let mut d_in = d.stdin.take().unwrap();
    d_in.write_all(&vec![b'x'; 100_000]).unwrap();
    // The listener has the connection and part of the data; kill the dialler.
    let mut line = String::new();
    l_err.read_line(&mut line).unwrap();
    assert!(line.starts_with("connection from"), "{line}");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    d.kill().unwrap();
    d.wait().unwrap();
    let st = loop {
        if let Some(st) = l.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the listener hangs after its peer died"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(drain.join().unwrap() > 0, "the listener received nothing");
    let mut rest = String::new();
    l_err.read_to_string(&mut rest).unwrap();
    assert_eq!(st.code(), Some(1), "{rest}");
    assert!(rest.contains("connection lost"), "{rest}");
    eprintln!(
        "listener ended {:?} after the dialler was killed",
        t.elapsed()
    );
}

#[test]
fn hostile_input_is_refused_while_a_transfer_goes_on() {
    let net = start_net(1);
    let relay = &net.relays[0];
    let ex = executor();
    let a = lib_client(&ex, &net, &[relay]);
    let b = lib_client(&ex, &net, &[relay]);
    serve_echo(&ex, &b, 9);
    let bpk = *b.pk();
    let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let transfer = {
        let a = a.clone();
        ex.spawn(async move { echo_once(&a, &bpk, 9, data).await })
    };
    // Garbage, a half-done handshake, an oversize length, while it runs.
    let addr = relay.addr.clone();
    let mut held = Vec::new();
    for bytes in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0x00, 0x30].into_iter().chain([7u8; 20]).collect(), // half of message 1
        vec![0xff, 0xff, 1, 2, 3],                               // oversize handshake length
        vec![0u8; 4096],
    ] {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let _ = s.write_all(&bytes);
        held.push(s);
    }
    // A forged discovery entry for b: refused.
    let mut forged = skywire::dmsg::entry::Entry::client(
        &Keypair::generate().unwrap(),
        u64::MAX / 2,
        skywire::dmsg::disc::unix_now(),
        vec![],
        vec![],
    )
    .unwrap();
    forged.pk = bpk;
    let disc = DiscClient::new(&net.url).unwrap();
    let err = block_on(disc.put(&forged)).unwrap_err().to_string();
    assert!(err.contains("400") && err.contains("signature"), "{err}");

    within(120, transfer).unwrap();
    // Every hostile connection was closed by the relay (read returns EOF or an error), except
    // possibly the half handshake, which the 10 s handshake timeout ends.
    for mut s in held {
        let mut buf = [0u8; 64];
        let t = Instant::now();
        let r = s.read(&mut buf);
        assert!(matches!(r, Ok(0) | Err(_)), "relay answered garbage: {r:?}");
        assert!(t.elapsed() < Duration::from_secs(12));
    }
    // And the network still works.
    within(30, echo_once(&a, &bpk, 9, vec![3; 10_000])).unwrap();
}

/// A client that completes the XK handshake and then never answers anything is dropped by the
/// relay once a ping goes unanswered (the tests run relays with --ping-interval 2).
#[test]
fn silent_session_is_dropped_after_a_missed_ping() {
    let net = start_net(1);
    let relay = &net.relays[0];
    let mut tcp = std::net::TcpStream::connect(&relay.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // Run our half of XK by hand over the blocking socket.
    let keys = Keypair::generate().unwrap();
    let mut hs = skywire::crypto::noise::xk_initiator(&keys, &relay.pk);
    let mut buf = [0u8; 128];
    for turn in 0..3 {
        if turn % 2 == 0 {
            let n = hs.write_message(&mut buf).unwrap();
            tcp.write_all(&(n as u16).to_be_bytes()).unwrap();
            tcp.write_all(&buf[..n]).unwrap();
        } else {
            let mut len = [0u8; 2];
            tcp.read_exact(&mut len).unwrap();
            let n = u16::from_be_bytes(len) as usize;
            tcp.read_exact(&mut buf[..n]).unwrap();
            hs.read_message(&buf[..n]).unwrap();
        }
    }
    assert!(hs.is_finished());
    // Now say nothing: read (and ignore) whatever the relay sends until it hangs up.
    let t0 = Instant::now();
    let mut sink = [0u8; 4096];
    loop {
        match tcp.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "relay kept a silent session"
        );
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "dropped too early: {took:?}"
    );
    eprintln!("silent session dropped after {took:?}");
}
