//! Skychat's other two modes (issue 14): dmsg-standalone (`skywire dmsg skychat`, own keys
//! and its own dmsg client) chats with a visor-hosted skychat; TCP-direct (`skywire
//! standalone skychat`, Noise XK over TCP) takes `send --via tcp://…` from a sender whose
//! visor is stopped, and its whitelist refuses a key not on it.

mod common;

use common::dmsg::keypair_hex;
use common::skychat::*;
use common::visor::{free_port, sw, text};

#[test]
fn dmsg_standalone_chats_with_a_visor() {
    let (_d, disc, relay) = network();
    let mut a = Node::new("MA", &disc, &relay.arg());
    a.start();
    let relay_arg = relay.arg();
    let sa = standalone(
        "dmsg",
        "skychat-dmsg-standalone",
        &["--disc", &disc, "--relay", &relay_arg],
        &[],
    );
    let (pk, http, token) = (sa.pk, sa.http, sa.token.clone());

    // Visor → standalone, acked.
    let t = send_acked(&a, &pk.to_hex(), "to the standalone", "dmsg");
    assert!(t.contains(&format!("Acked by {}", pk.to_hex())), "{t}");
    // Standalone → visor, through its own surface, acked.
    let body = format!(
        r#"{{"recipient": "{}", "message": "from the standalone", "wait_ms": 10000}}"#,
        a.pk
    );
    let (code, r) = http_to(http, "POST", "/message", Some(&body), Some(&token));
    assert_eq!(code, 200, "{r}");
    let (code, h) = a.http("GET", &format!("/history?peer={}", pk.to_hex()), None);
    assert_eq!(code, 200, "{h}");
    assert!(
        h.contains("from the standalone") && h.contains("to the standalone"),
        "{h}"
    );
}

#[test]
fn tcp_direct_takes_send_via_with_the_senders_visor_stopped() {
    let (_d, disc, relay) = network();
    // The sender: a visor whose identity `send --via` uses, stopped before sending.
    let mut a = Node::new("TA", &disc, &relay.arg());
    a.start();
    drop(a.visor.take());

    let tcp = free_port();
    let listen = format!("127.0.0.1:{tcp}");
    let sb = standalone(
        "tcp",
        "skychat-tcp-standalone",
        &["--listen", &listen],
        &["--tcp-whitelist", &a.pk],
    );
    let (pk, http, token) = (sb.pk, sb.http, sb.token.clone());
    let via = format!("tcp://{}@127.0.0.1:{tcp}", pk.to_hex());

    // From A's config (its visor is not running): acked over TCP.
    let o = sw(&[
        "cli",
        "skychat",
        "send",
        "--via",
        &via,
        "-c",
        a.config.to_str().unwrap(),
        "-m",
        "direct hello",
        "-w",
        "5s",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains(&format!("Acked by {} in", pk.to_hex())) && t.contains("(via tcp"),
        "{t}"
    );
    let (code, h) = http_to(
        http,
        "GET",
        &format!("/history?peer={}", a.pk),
        None,
        Some(&token),
    );
    assert_eq!(code, 200, "{h}");
    assert!(h.contains("direct hello"), "{h}");

    // A key not on the whitelist is refused, and nothing of it is stored.
    let (other_sk, other) = keypair_hex();
    let o = sw(&[
        "cli",
        "skychat",
        "send",
        "--via",
        &via,
        "--sk",
        &other_sk,
        "-m",
        "not allowed",
        "-w",
        "3s",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    let (_, h) = http_to(
        http,
        "GET",
        &format!("/history?peer={}", other.to_hex()),
        None,
        Some(&token),
    );
    assert!(!h.contains("not allowed"), "{h}");
    let (code, st) = http_to(http, "GET", "/status", None, Some(&token));
    assert_eq!(code, 200, "{st}");
}

#[test]
fn visor_hosted_tcp_listen_and_a_tcp_peer_that_redials() {
    let (_d, disc, relay) = network();
    // The visor's skychat listens for TCP-direct peers too (`--tcp-listen`, an app arg).
    let mut v = Node::new("TL", &disc, &relay.arg());
    let tcp = free_port();
    let cfg = std::fs::read_to_string(&v.config).unwrap();
    let from = format!(r#""--addr", "127.0.0.1:{}"]"#, v.port);
    assert!(cfg.contains(&from), "{cfg}");
    let cfg = cfg.replacen(
        &from,
        &format!(
            r#""--addr", "127.0.0.1:{}", "--tcp-listen", "127.0.0.1:{tcp}"]"#,
            v.port
        ),
        1,
    );
    std::fs::write(&v.config, cfg).unwrap();
    // A standalone with a persistent `--tcp-peer` to it, started while the visor is down:
    // it keeps redialling with backoff.
    let peer = format!("tcp://{}@127.0.0.1:{tcp}", v.pk);
    let s = standalone("tcp", "skychat-tcp-peer", &[], &["--tcp-peer", &peer]);
    let vpk = v.pk.clone();
    let send_from_s = |msg: &str| {
        let body = format!(
            r#"{{"recipient": "{vpk}", "message": "{msg}", "network": "tcp", "wait_ms": 5000}}"#
        );
        let t0 = std::time::Instant::now();
        loop {
            let (code, r) = http_to(s.http, "POST", "/message", Some(&body), Some(&s.token));
            if code == 200 {
                return r;
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(30),
                "not delivered over tcp within 30 s: {code} {r}"
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    };
    std::thread::sleep(std::time::Duration::from_millis(1500));
    v.start();
    let r = send_from_s("over the kept connection");
    assert!(r.contains("tcp"), "{r}");
    // The visor answers on the connection the standalone made.
    let t = send_acked(&v, &s.pk.to_hex(), "back over tcp", "tcp");
    assert!(t.contains("(via tcp"), "{t}");
    // The visor restarts: the standalone redials and delivers again.
    drop(v.visor.take());
    v.start();
    send_from_s("after the restart");
    let (code, h) = v.http("GET", &format!("/history?peer={}", s.pk.to_hex()), None);
    assert_eq!(code, 200, "{h}");
    for m in [
        "over the kept connection",
        "back over tcp",
        "after the restart",
    ] {
        assert!(h.contains(m), "{m} in {h}");
    }
}

/// `--addr *:PORT` serves every interface: without a password it says so in the log; with
/// `--password-file` (written by `cli skychat passwd`) HTTP basic with that password is let in,
/// a wrong one and none are refused (401 asking for basic), and the token still works.
#[test]
fn every_interface_warns_and_a_password_file_lets_basic_in() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let dir = common::visor::tmp("skychat-every-interface");
    let pwf = dir.join("skychat.pw");
    let mut c = Command::new(common::skywire_bin())
        .args(["cli", "skychat", "passwd", "-f", pwf.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&pwf).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let run = |name: &str, password: bool| {
        let state = dir.join(name);
        std::fs::create_dir_all(&state).unwrap();
        let http = free_port();
        let (sk, _) = keypair_hex();
        let log = std::fs::File::create(state.join("stderr.log")).unwrap();
        let addr = format!("*:{http}");
        let listen = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "app",
            "skychat",
            "run",
            "--mode",
            "tcp",
            "--sk",
            &sk,
            "--listen",
            &listen,
            "--state-dir",
            state.to_str().unwrap(),
            "--",
            "--addr",
            &addr,
        ];
        if password {
            args.extend(["--password-file", pwf.to_str().unwrap()]);
        }
        let mut child = Command::new(common::skywire_bin())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert!(line.contains("skychat running"), "{line}");
        let token = wait_token(&state.join(format!("skychat-http-{http}.token")));
        (common::ChildGuard(Some(child)), state, http, token)
    };
    let raw = |http: u16, auth: Option<&str>| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
        let mut req =
            format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{http}\r\nConnection: close\r\n");
        if let Some(a) = auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };

    let (_p, state, http, token) = run("open", false);
    let (code, st) = http_to(http, "GET", "/status", None, Some(&token));
    assert_eq!(code, 200, "{st}");
    let log = std::fs::read_to_string(state.join("stderr.log")).unwrap();
    assert!(
        log.contains("every interface") && log.contains("--password-file"),
        "{log}"
    );

    let (_p, state, http, token) = run("locked", true);
    // "u:correct horse" / "u:wrong horse!"
    let ok = raw(http, Some("Basic dTpjb3JyZWN0IGhvcnNl"));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let wrong = raw(http, Some("Basic dTp3cm9uZyBob3JzZSE="));
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let none = raw(http, None);
    assert!(none.starts_with("HTTP/1.1 401"), "{none}");
    assert!(none.contains("WWW-Authenticate: Basic"), "{none}");
    assert_eq!(http_to(http, "GET", "/status", None, Some(&token)).0, 200);
    let log = std::fs::read_to_string(state.join("stderr.log")).unwrap();
    assert!(!log.contains("every interface"), "{log}");
}
