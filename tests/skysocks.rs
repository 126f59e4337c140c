//! skysocks + skysocks-client through the real binary (issue 16 items 1, 2, 5): two visors on
//! a relay and discovery on 127.0.0.1, skysocks on one, proxies started on the other with
//! `skywire cli proxy`, and clients nobody here wrote — curl (`--socks5-hostname`, `-x` for
//! the HTTP proxy) and PySocks — fetching from a local `python3 -m http.server` through
//! them: small files by IP and by name (resolved at the server), a 64 MiB file compared by
//! sha256, a wrong passcode refused, BIND answered "command not supported" by both ends, a
//! garbage greeting closed without disturbing another client, and the server visor killed
//! (the local client gets a SOCKS error) and restarted (the proxy works again).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::ChildGuard;
use common::dmsg::{start_disc, start_relay};
use common::visor::{Visor, free_port, sw, text, tmp};

use common::net_node::Node;

/// `skywire cli proxy --rpc … -c … args…`.
fn proxy(v: &Visor, args: &[&str]) -> Output {
    let mut a = vec![
        "cli",
        "proxy",
        "--rpc",
        &v.rpc,
        "-c",
        v.config.to_str().unwrap(),
    ];
    a.extend_from_slice(args);
    sw(&a)
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// curl through the SOCKS5 proxy at `port` until it succeeds (the server's visor may not be
/// in discovery yet), at most `secs`.
fn curl_until_ok(port: u16, url: &str, secs: u64) -> String {
    let proxy = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    loop {
        let o = curl(&["--fail", "--socks5-hostname", &proxy, url]);
        if o.status.success() {
            return String::from_utf8_lossy(&o.stdout).into_owned();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "curl via {proxy} {url} never worked: {}",
            text(&o)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `python3 -m http.server` on a free loopback port serving `dir`.
fn http_server(dir: &Path) -> (ChildGuard, u16) {
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .arg("--directory")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let g = ChildGuard(Some(child));
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "http.server never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (g, port)
}

fn sha256(p: &Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A file of `mib` MiB of pseudo-random bytes.
fn big_file(p: &Path, mib: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(p).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for c in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

/// Reads exactly `n` bytes (5 s at most).
fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).unwrap();
    b
}

/// True if the peer closes `s` within 5 s without sending anything.
fn closed_silently(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 64];
    // One read: a close shows as EOF or as a reset (when the server closed with our
    // bytes unread), and a second read after a reset would see EOF and lie.
    match s.read(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

/// A stream to `pk`:`port` through `v`'s RPC dial upgrade (the visor's identity), as a
/// plain socket: how the test reaches the skysocks server's port 3 directly.
fn dial_via_rpc(v: &Visor, pk: &str, port: u16) -> TcpStream {
    let mut s = TcpStream::connect(&v.rpc).unwrap();
    write!(
        s,
        "POST /v1/dial/{pk}/{port} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nUpgrade: skywire-stream\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n",
        v.rpc,
        v.token()
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).unwrap(),
            1,
            "{}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let h = String::from_utf8_lossy(&head);
    assert!(h.starts_with("HTTP/1.1 101"), "{h}");
    s
}

const PASS: &str = "s3cret-code";

#[test]
fn proxy_over_dmsg_with_curl_and_pysocks() {
    let (_disc_proc, disc) = start_disc();
    let relay = start_relay(&disc, &[]);
    let srv = Node::new(
        "skysocks",
        "srv",
        &disc,
        &relay.arg(),
        &format!(
            r#", {{"name": "skysocks", "args": ["--passcode", "{PASS}"], "auto_start": true}}"#
        ),
    );
    let cli = Node::new("skysocks", "cli", &disc, &relay.arg(), "");
    let mut sv = srv.start();
    let cv = cli.start();

    let www = tmp("skysocks-www");
    std::fs::write(www.join("small.txt"), "hello through skysocks\n").unwrap();
    big_file(&www.join("big.bin"), 64);
    let (_www_proc, wport) = http_server(&www);

    // Both apps are in the table; the client app starts with the first proxy.
    let ls = cv.cli(&["app", "ls"]);
    let ls = text(&ls);
    assert!(
        ls.contains("skysocks") && ls.contains("skysocks-client"),
        "{ls}"
    );
    let st = proxy(&cv, &["status"]);
    assert!(text(&st).contains("no proxies running"), "{}", text(&st));

    let (p_good, p_http, p_bad) = (free_port(), free_port(), free_port());
    let addr = format!("127.0.0.1:{p_good}");
    let http = format!("127.0.0.1:{p_http}");
    let o = proxy(
        &cv,
        &[
            "start",
            "--pk",
            &srv.pk,
            "--addr",
            &addr,
            "--passcode",
            PASS,
            "--name",
            "good",
            "--http",
            &http,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("SOCKS5 on {addr}")),
        "{}",
        text(&o)
    );
    // Same name twice: a clear refusal.
    let o = proxy(
        &cv,
        &[
            "start",
            "--pk",
            &srv.pk,
            "--name",
            "good",
            "--addr",
            "127.0.0.1:0",
        ],
    );
    assert!(
        !o.status.success() && text(&o).contains("already running"),
        "{}",
        text(&o)
    );
    // A bad PK is a usage error naming the flag.
    let o = proxy(&cv, &["start", "--pk", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--pk"), "{}", text(&o));

    // curl, by IP and by name (resolved at the server).
    let small = format!("http://127.0.0.1:{wport}/small.txt");
    assert_eq!(
        curl_until_ok(p_good, &small, 30),
        "hello through skysocks\n"
    );
    let by_name = format!("http://localhost:{wport}/small.txt");
    assert_eq!(
        curl_until_ok(p_good, &by_name, 5),
        "hello through skysocks\n"
    );

    // The HTTP proxy front: absolute URI and CONNECT.
    let o = curl(&["--fail", "-x", &format!("http://{http}"), &small]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello through skysocks\n"
    );
    let o = curl(&["--fail", "-p", "-x", &format!("http://{http}"), &small]);
    assert!(o.status.success(), "CONNECT: {}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello through skysocks\n"
    );
    // Hostile HTTP to the HTTP front: an origin-form request is refused with the reason.
    let mut h = TcpStream::connect(&http).unwrap();
    h.write_all(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut ans = String::new();
    h.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = h.read_to_string(&mut ans);
    assert!(
        ans.starts_with("HTTP/1.1 400") && ans.contains("absolute URI"),
        "{ans}"
    );

    // PySocks, an independent SOCKS5 client (rdns: the name goes to the server).
    let py = common::venv_python();
    let script = format!(
        "import socks\ns = socks.socksocket()\ns.set_proxy(socks.SOCKS5, '127.0.0.1', {p_good}, rdns=True)\n\
         s.settimeout(20)\ns.connect(('localhost', {wport}))\n\
         s.sendall(b'GET /small.txt HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n')\nb = b''\n\
         while True:\n    d = s.recv(65536)\n    if not d: break\n    b += d\n\
         print(b.split(b'\\r\\n\\r\\n', 1)[1].decode(), end='')\n"
    );
    let o = Command::new(&py).args(["-c", &script]).output().unwrap();
    assert!(o.status.success(), "pysocks: {}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello through skysocks\n"
    );

    // 64 MiB intact, in bounded time.
    let out = tmp("skysocks-dl").join("big.bin");
    let t0 = Instant::now();
    let o = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--max-time",
            "120",
            "--socks5-hostname",
            &addr,
        ])
        .arg(format!("http://127.0.0.1:{wport}/big.bin"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "big download: {}", text(&o));
    let took = t0.elapsed();
    assert_eq!(sha256(&out), sha256(&www.join("big.bin")), "64 MiB differ");
    eprintln!(
        "skysocks: 64 MiB over dmsg in {} ms ({} MiB/s)",
        took.as_millis(),
        64_000 / took.as_millis().max(1)
    );
    let st = text(&proxy(&cv, &["status", "--name", "good"]));
    assert!(st.contains("server: reachable"), "{st}");

    // `proxy test`: latency and throughput.
    let o = proxy(
        &cv,
        &[
            "test",
            "--name",
            "good",
            "--url",
            &format!("http://127.0.0.1:{wport}/big.bin"),
        ],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("HTTP 200, 64.0 MiB") && t.contains("throughput"),
        "{t}"
    );
    eprintln!("{t}");

    // A wrong passcode: refused, and the status says why.
    let bad = format!("127.0.0.1:{p_bad}");
    let o = proxy(
        &cv,
        &[
            "start",
            "--pk",
            &srv.pk,
            "--addr",
            &bad,
            "--passcode",
            "wrong",
            "--name",
            "bad",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = curl(&["--socks5-hostname", &bad, &small]);
    assert!(
        !o.status.success(),
        "a wrong passcode was let through: {}",
        text(&o)
    );
    let st = text(&proxy(&cv, &["status", "--name", "bad"]));
    assert!(st.contains("refused the passcode"), "{st}");
    // Without --name, stop is ambiguous now.
    let o = proxy(&cv, &["stop"]);
    assert!(
        !o.status.success() && text(&o).contains("--name"),
        "{}",
        text(&o)
    );
    let o = proxy(&cv, &["stop", "--name", "bad"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        TcpStream::connect(&bad).is_err(),
        "bad's port still listens"
    );

    // The server itself, straight on its port 3 (through the client visor's RPC dial): BIND
    // and UDP ASSOCIATE are "command not supported"; a wrong passcode gets auth failure.
    for cmd in [2u8, 3] {
        let mut s = dial_via_rpc(&cv, &srv.pk, 3);
        let mut m = vec![5, 1, 2, 1, PASS.len() as u8];
        m.extend_from_slice(PASS.as_bytes());
        m.push(1);
        m.push(b'x');
        m.extend_from_slice(&[5, cmd, 0, 1, 127, 0, 0, 1, 0, 80]);
        s.write_all(&m).unwrap();
        assert_eq!(read_n(&mut s, 4), [5, 2, 1, 0]);
        assert_eq!(read_n(&mut s, 10)[..2], [5, 7], "command {cmd}");
    }
    let mut s = dial_via_rpc(&cv, &srv.pk, 3);
    s.write_all(&[5, 1, 2, 1, 1, b'a', 1, b'b']).unwrap();
    assert_eq!(read_n(&mut s, 4), [5, 2, 1, 1]);
    assert!(closed_silently(&mut s));
    // And the local front answers BIND itself.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(&[5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80])
        .unwrap();
    assert_eq!(read_n(&mut s, 2), [5, 0]);
    assert_eq!(read_n(&mut s, 10)[..2], [5, 7]);

    // A garbage greeting is closed; another client at the same time is unaffected.
    let mut g = TcpStream::connect(&addr).unwrap();
    g.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(curl_until_ok(p_good, &small, 5), "hello through skysocks\n");
    assert!(closed_silently(&mut g), "garbage greeting not closed");

    // The apps' connections are tagged and listed.
    let o = cv.cli(&["app", "routes", "skysocks-client"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = sv.cli(&["app", "status", "skysocks"]);
    assert!(
        text(&o).contains("running") && text(&o).contains("served"),
        "{}",
        text(&o)
    );

    // The server's visor goes away: the local client gets a SOCKS error, not a hang.
    let mut c = sv.proc.take();
    c.kill().unwrap();
    c.wait().unwrap();
    let t0 = Instant::now();
    let o = curl(&["--socks5-hostname", &addr, &small]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "error took {:?}",
        t0.elapsed()
    );
    eprintln!(
        "skysocks: server down: curl failed in {} ms: {}",
        t0.elapsed().as_millis(),
        text(&o).trim()
    );
    let st = text(&proxy(&cv, &["status", "--name", "good"]));
    assert!(st.contains("server: unreachable"), "{st}");
    // It comes back (same identity): the proxy works again.
    sv = srv.start();
    let t0 = Instant::now();
    assert_eq!(
        curl_until_ok(p_good, &small, 45),
        "hello through skysocks\n"
    );
    eprintln!(
        "skysocks: server back: the proxy works again after {} ms",
        t0.elapsed().as_millis()
    );
    let st = text(&proxy(&cv, &["status", "--name", "good"]));
    assert!(st.contains("server: reachable"), "{st}");

    let o = proxy(&cv, &["stop"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&proxy(&cv, &["list"])).contains("no proxies running"));
    drop(sv);
}

#[test]
fn proxy_over_skynet() {
    let (_disc_proc, disc) = start_disc();
    let relay = start_relay(&disc, &[]);
    let srv = Node::new(
        "skysocks",
        "ssrv",
        &disc,
        &relay.arg(),
        r#", {"name": "skysocks", "auto_start": true}"#,
    );
    let cli = Node::new("skysocks", "scli", &disc, &relay.arg(), "");
    cli.transport_to(&srv);
    let _sv = srv.start();
    let cv = cli.start();
    let www = tmp("skysocks-www-skynet");
    std::fs::write(www.join("small.txt"), "over skynet\n").unwrap();
    let (_www_proc, wport) = http_server(&www);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let o = proxy(
        &cv,
        &[
            "start", "--pk", &srv.pk, "--addr", &addr, "--via", "skynet", "--json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("\"via\":\"skynet\""), "{}", text(&o));
    let small = format!("http://127.0.0.1:{wport}/small.txt");
    assert_eq!(curl_until_ok(port, &small, 45), "over skynet\n");
    // The stream ran in a route group the app owns.
    let o = cv.cli(&["app", "routes", "skysocks-client", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&srv.pk),
        "no route group to the server: {}",
        text(&o)
    );
}

/// Both apps in their standalone modes (DESIGN.md §5): `app … run --mode dmsg` on dmsg
/// clients of their own, and `--mode tcp` (Noise XK over TCP, the client dialling the
/// server's listener by `--peer`), each carrying a curl fetch.
#[test]
fn standalone_dmsg_and_tcp_modes() {
    use skywire::crypto::Keypair;
    let (_disc_proc, disc) = start_disc();
    let relay = start_relay(&disc, &[]);
    let www = tmp("skysocks-www-standalone");
    std::fs::write(www.join("small.txt"), "standalone\n").unwrap();
    let (_www_proc, wport) = http_server(&www);
    let small = format!("http://127.0.0.1:{wport}/small.txt");
    let bin = common::skywire_bin();
    let srv = Keypair::from_seed(&[31; 32]);
    let cli = Keypair::from_seed(&[32; 32]);
    let (srv_sk, cli_sk) = (
        common::visor::hex(srv.seed()),
        common::visor::hex(cli.seed()),
    );
    let srv_pk = srv.public().to_hex();
    let relay_arg = relay.arg();

    // dmsg: each on its own dmsg client and key.
    let dmsg = |sk: &str, app: &str, extra: &[&str]| {
        let mut a = vec![
            "app", app, "run", "--mode", "dmsg", "--sk", sk, "--disc", &disc, "--relay",
            &relay_arg, "--",
        ];
        a.extend_from_slice(extra);
        common::visor::spawn_first_line(&bin, &a)
    };
    let (_s, line) = dmsg(&srv_sk, "skysocks", &["--passcode", PASS]);
    assert_eq!(line, format!("skysocks running (dmsg mode) as {srv_pk}"));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (_c, line) = dmsg(
        &cli_sk,
        "skysocks-client",
        &[
            "--srv",
            &srv_pk,
            "--addr",
            &addr,
            "--passcode",
            PASS,
            "--max-conns",
            "8",
        ],
    );
    assert!(
        line.starts_with("skysocks-client running (dmsg mode)"),
        "{line}"
    );
    assert_eq!(curl_until_ok(port, &small, 30), "standalone\n");
    // At its connection limit (--max-conns 8) a new local connection is closed at once;
    // once the holders go, the proxy serves again.
    let holders: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(&addr).unwrap();
    let t0 = Instant::now();
    assert!(closed_silently(&mut extra), "over the limit, not closed");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    drop(holders);
    assert_eq!(curl_until_ok(port, &small, 10), "standalone\n");

    // tcp: the server listens; the client knows where by --peer.
    let tport = free_port();
    let listen = format!("127.0.0.1:{tport}");
    let (_ts, line) = common::visor::spawn_first_line(
        &bin,
        &[
            "app", "skysocks", "run", "--mode", "tcp", "--sk", &srv_sk, "--listen", &listen,
        ],
    );
    assert_eq!(line, format!("skysocks running (tcp mode) as {srv_pk}"));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let peer = format!("tcp://{srv_pk}@{listen}");
    let (_tc, line) = common::visor::spawn_first_line(
        &bin,
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
            "--",
            "--srv",
            &srv_pk,
            "--addr",
            &addr,
        ],
    );
    assert!(
        line.starts_with("skysocks-client running (tcp mode)"),
        "{line}"
    );
    assert_eq!(curl_until_ok(port, &small, 15), "standalone\n");
    // Several connections at once, each its own Noise connection in this mode.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let small = small.clone();
            std::thread::spawn(move || curl_until_ok(port, &small, 15))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), "standalone\n");
    }
}
