//! The .dmsg/.skynet resolvers through the real binary (issue 16 item 3): two visors on a
//! relay and discovery on 127.0.0.1 with an stcp transport between them, the resolver app on
//! one, and curl (`--socks5-hostname`) fetching the other visor's log server as
//! `http://<pk>.dmsg/health` and `http://<pk>.skynet/health`; a virtual host's `Host:`
//! rewrite seen by an echo app; names that are not overlay names sent upstream (through
//! skysocks-client to skysocks) or, on a standalone dmsg-mode resolver without
//! `--upstream`, refused "not allowed"; malformed overlay names refused; the counters in
//! `cli visor proxies`.
#![cfg(all(feature = "app-resolver", feature = "test-apps"))]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::ChildGuard;
use common::dmsg::{start_disc, start_relay};
use common::visor::{free_port, json_field, text, tmp};

use common::net_node::Node;

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// curl through the SOCKS5 server at `port` until it succeeds, at most `secs`.
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

/// A SOCKS5 CONNECT to `name`:`port` by hand (no auth); the reply code.
fn socks_connect(proxy: u16, name: &str, port: u16) -> (TcpStream, u8) {
    let mut s = TcpStream::connect(("127.0.0.1", proxy)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = vec![5, 1, 0, 5, 1, 0, 3, name.len() as u8];
    req.extend_from_slice(name.as_bytes());
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).unwrap();
    let mut b = [0u8; 12];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b[..2], &[5, 0], "method choice");
    (s, b[3])
}

const ECHO_PORT: u16 = 90;

#[test]
fn dmsg_and_skynet_names_with_curl() {
    let (_disc_proc, disc) = start_disc();
    let relay = start_relay(&disc, &[]);
    let srv = Node::new(
        "resolver",
        "srv",
        &disc,
        &relay.arg(),
        &format!(
            r#", {{"name": "skysocks", "auto_start": true}}, {{"name": "test-a", "args": ["--port", "{ECHO_PORT}", "--echo"], "auto_start": true}}"#
        ),
    );
    let (p_dmsg, p_sky, p_socks) = (free_port(), free_port(), free_port());
    let cli = Node::new(
        "resolver",
        "cli",
        &disc,
        &relay.arg(),
        &format!(
            r#", {{"name": "skysocks-client", "args": ["--srv", "{}", "--addr", "127.0.0.1:{p_socks}"], "auto_start": true}}, {{"name": "resolver", "args": ["--dmsg-addr", "127.0.0.1:{p_dmsg}", "--skynet-addr", "127.0.0.1:{p_sky}", "--upstream", "127.0.0.1:{p_socks}"], "auto_start": true}}"#,
            srv.pk
        ),
    );
    cli.transport_to(&srv);
    let _sv = srv.start();
    let cv = cli.start();
    cv.wait_state("resolver", "running");

    // The log server's JSON, by its .dmsg name and by its .skynet name.
    let t0 = Instant::now();
    let health = curl_until_ok(p_dmsg, &format!("http://{}.dmsg/health", srv.pk), 40);
    eprintln!(
        "resolver: .dmsg /health after {} ms: {}",
        t0.elapsed().as_millis(),
        health.trim()
    );
    assert_eq!(json_field(&health, "pk"), srv.pk, "{health}");
    assert_eq!(json_field(&health, "status"), "ok", "{health}");
    let t0 = Instant::now();
    let up = srv.pk.to_ascii_uppercase();
    let health = curl_until_ok(p_sky, &format!("http://{up}.skynet/health"), 40);
    eprintln!(
        "resolver: .skynet /health after {} ms",
        t0.elapsed().as_millis()
    );
    assert_eq!(json_field(&health, "pk"), srv.pk, "{health}");
    // A virtual host on the log server (which does not look at Host:) still serves.
    let h = curl_until_ok(p_dmsg, &format!("http://www.{}.dmsg/health", srv.pk), 10);
    assert_eq!(json_field(&h, "status"), "ok", "{h}");

    // The rewrite, as the echo app sees it: Host: is the label; the rest goes unchanged.
    let (mut s, code) = socks_connect(p_dmsg, &format!("site.example.{}.dmsg", srv.pk), ECHO_PORT);
    assert_eq!(code, 0, "vhost connect");
    s.write_all(b"GET /a HTTP/1.1\r\nHost: ignored\r\nX-Keep: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: second\r\n\r\n")
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = String::new();
    s.read_to_string(&mut back).unwrap();
    assert_eq!(
        back,
        "GET /a HTTP/1.1\r\nHost: site.example\r\nX-Keep: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: second\r\n\r\n"
    );
    // Without a label nothing is rewritten.
    let (mut s, code) = socks_connect(p_dmsg, &format!("{}.dmsg", srv.pk), ECHO_PORT);
    assert_eq!(code, 0);
    s.write_all(b"GET / HTTP/1.1\r\nHost: as-sent\r\n\r\n")
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = String::new();
    s.read_to_string(&mut back).unwrap();
    assert_eq!(back, "GET / HTTP/1.1\r\nHost: as-sent\r\n\r\n");

    // Not an overlay name: upstream (skysocks-client -> skysocks on the other visor).
    let www = tmp("resolver-www");
    std::fs::write(www.join("small.txt"), "upstreamed\n").unwrap();
    let (_www, wport) = http_server(&www);
    let got = curl_until_ok(p_dmsg, &format!("http://localhost:{wport}/small.txt"), 30);
    assert_eq!(got, "upstreamed\n");

    // Malformed overlay names are refused (host unreachable), never sent upstream.
    let o = curl(&[
        "--socks5-hostname",
        &format!("127.0.0.1:{p_dmsg}"),
        "http://abc.dmsg/",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    // curl names the SOCKS5 reply code: 4, host unreachable.
    assert!(
        text(&o).contains("SOCKS5 connection to abc.dmsg. (4)"),
        "{}",
        text(&o)
    );
    // A .skynet name at the .dmsg resolver: not allowed.
    let (_s, code) = socks_connect(p_dmsg, &format!("{}.skynet", srv.pk), 80);
    assert_eq!(code, 2, "not allowed");
    // Nothing on that overlay port: connection refused.
    let (_s, code) = socks_connect(p_dmsg, &format!("{}.dmsg", srv.pk), 4242);
    assert_eq!(code, 5, "connection refused");

    // The table, listed with counters.
    let o = cv.cli(&["proxies"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    eprintln!("{t}");
    assert!(t.contains(".dmsg") && t.contains(".skynet"), "{t}");
    assert!(t.contains(&format!("127.0.0.1:{p_socks}")), "{t}");
    let o = cv.cli(&["proxies", "--json"]);
    let j = text(&o);
    assert!(o.status.success(), "{j}");
    let compact: String = j.split_whitespace().collect();
    assert!(compact.contains("\"upstreamed\":1"), "{j}");
    assert!(compact.contains("\"refused\":2"), "{j}");
    assert!(
        compact.contains(&format!("\"addr\":\"127.0.0.1:{p_sky}\"")),
        "{j}"
    );

    // In the app table, and the .skynet dial ran in a route group the app owns.
    let ls = text(&cv.cli(&["app", "ls"]));
    assert!(ls.contains("resolver"), "{ls}");
    let o = cv.cli(&["app", "routes", "resolver", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&srv.pk), "no route group: {}", text(&o));
}

/// Standalone on its own dmsg client (the dmsg resolver only), with no --upstream: other
/// names are refused "not allowed".
#[test]
fn standalone_dmsg_mode_refuses_other_names() {
    use skywire::crypto::Keypair;
    let (_disc_proc, disc) = start_disc();
    let relay = start_relay(&disc, &[]);
    let srv = Node::new("resolver", "ssrv", &disc, &relay.arg(), "");
    let _sv = srv.start();
    let kp = Keypair::from_seed(&[41; 32]);
    let sk = common::visor::hex(kp.seed());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let relay_arg = relay.arg();
    let (_r, line) = common::visor::spawn_first_line(
        common::skywire_bin(),
        &[
            "app",
            "resolver",
            "run",
            "--mode",
            "dmsg",
            "--sk",
            &sk,
            "--disc",
            &disc,
            "--relay",
            &relay_arg,
            "--",
            "--dmsg-addr",
            &addr,
        ],
    );
    assert_eq!(
        line,
        format!("resolver running (dmsg mode) as {}", kp.public().to_hex())
    );
    let health = curl_until_ok(port, &format!("http://{}.dmsg/health", srv.pk), 40);
    assert_eq!(json_field(&health, "pk"), srv.pk, "{health}");
    let o = curl(&["--socks5-hostname", &addr, "http://example.com/"]);
    assert!(!o.status.success());
    // Reply code 2: not allowed.
    assert!(
        text(&o).contains("SOCKS5 connection to example.com. (2)"),
        "{}",
        text(&o)
    );
    // TCP mode is not offered.
    let o = common::visor::sw(&["app", "resolver", "run", "--mode", "tcp", "--sk", &sk]);
    assert!(!o.status.success(), "{}", text(&o));
}
