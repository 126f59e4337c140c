//! Skynet port forwarding through the real binary: two visors on a relay and discovery on
//! 127.0.0.1 with an stcp transport between them (skynet-client dials by skynet routes by
//! default); a local `python3 -m http.server` on the server visor's side exposed with
//! `skywire cli skynet srv start --port P`, forwarded on the other visor with `skywire cli
//! skynet start --pk <B> --remote P --local L`, and curl fetching through 127.0.0.1:L; a
//! forward to an unexposed port, to a whitelist without the client's PK and to an exposed
//! port nothing listens on, each refused with its reason in `cli skynet status`; the status
//! tables (text and `--json`), `stop`, and both apps in `cli visor app ls`. Then a forward
//! that persists in the configs (`launcher.apps[].args`), through a whitelist naming the
//! client.
#![cfg(all(feature = "app-skynet-fwd", feature = "skynet"))]

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::ChildGuard;
use common::dmsg::{start_disc, start_relay};
use common::visor::{Visor, free_port, sw, text, tmp};

use common::net_node::Node;

/// `skywire cli skynet --rpc … -c … args…`, which must succeed; its output.
fn skynet(v: &Visor, args: &[&str]) -> String {
    let o = skynet_raw(v, args);
    assert!(o.status.success(), "cli skynet {args:?}: {}", text(&o));
    text(&o)
}

fn skynet_raw(v: &Visor, args: &[&str]) -> Output {
    let mut a = vec![
        "cli",
        "skynet",
        "--rpc",
        &v.rpc,
        "-c",
        v.config.to_str().unwrap(),
    ];
    a.extend_from_slice(args);
    sw(&a)
}

fn curl(url: &str) -> Output {
    Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "20", url])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// curl `url` until it succeeds (the server may not be routable yet), at most `secs`.
fn curl_until_ok(url: &str, secs: u64) -> String {
    let t0 = Instant::now();
    loop {
        let o = curl(url);
        if o.status.success() {
            return String::from_utf8_lossy(&o.stdout).into_owned();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "curl {url} never worked: {}",
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

/// Starts a forward named `name` on `cv` to `srv`:`remote`, curls through it (which must
/// fail: the server refuses), and returns the forward's status line once its last error is
/// set.
fn refused_forward(cv: &Visor, srv: &str, remote: u16, name: &str) -> String {
    let local = free_port();
    skynet(
        cv,
        &[
            "start",
            "--pk",
            srv,
            "--remote",
            &remote.to_string(),
            "--local",
            &local.to_string(),
            "--name",
            name,
        ],
    );
    let url = format!("http://127.0.0.1:{local}/hello.txt");
    let t0 = Instant::now();
    loop {
        let o = curl(&url);
        assert!(!o.status.success(), "{name}: curl worked: {}", text(&o));
        let st = skynet(cv, &["status"]);
        if let Some(line) = st.lines().find(|l| l.starts_with(&format!("name {name},")))
            && !line.ends_with("last_error -")
        {
            return line.to_string();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{name}: no last error: {st}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn forward_exposed_port_with_curl() {
    let (_disc_proc, disc) = start_disc();
    let relay = start_relay(&disc, &[]);
    let b = Node::new("skynet-fwd", "srv", &disc, &relay.arg(), "");
    let a = Node::new("skynet-fwd", "cli", &disc, &relay.arg(), "");
    a.transport_to(&b);
    let bv = b.start();
    let av = a.start();

    let www = tmp("skynet-fwd-www");
    std::fs::write(www.join("hello.txt"), "forwarded over skynet\n").unwrap();
    let (_www_proc, wport) = http_server(&www);
    let p = wport.to_string();

    // B exposes the HTTP server; A forwards a local port to it.
    let out = skynet(&bv, &["srv", "start", "--port", &p]);
    eprintln!("srv start: {}", out.trim());
    assert!(out.contains(&format!("127.0.0.1:{wport}")), "{out}");
    let local = free_port();
    let l = local.to_string();
    let out = skynet(
        &av,
        &[
            "start", "--pk", &b.pk, "--remote", &p, "--local", &l, "--json",
        ],
    );
    eprintln!("start: {}", out.trim());
    let compact: String = out.split_whitespace().collect();
    assert!(compact.contains("\"via\":\"skynet\""), "{out}");
    assert!(
        compact.contains(&format!("\"local\":\"127.0.0.1:{local}\"")),
        "{out}"
    );

    let t0 = Instant::now();
    let got = curl_until_ok(&format!("http://127.0.0.1:{local}/hello.txt"), 45);
    eprintln!(
        "curl through the forward after {} ms",
        t0.elapsed().as_millis()
    );
    assert_eq!(got, "forwarded over skynet\n");
    // A second connection on the same forward.
    assert_eq!(
        curl_until_ok(&format!("http://127.0.0.1:{local}/hello.txt"), 10),
        "forwarded over skynet\n"
    );

    // Refusals, each with its reason in the client's status.
    let unexposed = free_port();
    let line = refused_forward(&av, &b.pk, unexposed, "unexposed");
    eprintln!("unexposed: {line}");
    assert!(line.contains("port not exposed"), "{line}");
    assert!(
        line.contains(&format!("port {unexposed} is not exposed")),
        "{line}"
    );

    let other = skywire::crypto::Keypair::from_seed(&[7; 32])
        .public()
        .to_hex();
    let wl_port = free_port();
    skynet(
        &bv,
        &[
            "srv",
            "start",
            "--port",
            &wl_port.to_string(),
            "--name",
            "wl",
            "--wl",
            &other,
        ],
    );
    let line = refused_forward(&av, &b.pk, wl_port, "wl");
    eprintln!("whitelist: {line}");
    assert!(line.contains("not allowed"), "{line}");
    assert!(line.contains(&a.pk), "{line}");

    let dead = free_port();
    skynet(
        &bv,
        &[
            "srv",
            "start",
            "--port",
            &dead.to_string(),
            "--name",
            "dead",
        ],
    );
    let line = refused_forward(&av, &b.pk, dead, "dead");
    eprintln!("nothing listening: {line}");
    assert!(line.contains("local connect failed"), "{line}");

    // The tables.
    let st = skynet(&bv, &["srv", "status"]);
    eprintln!("srv status:\n{st}");
    assert!(
        st.lines().any(|l| l.starts_with(&format!(
            "name port-{wport}, port {wport}, whitelist 0 PK(s), served 2,"
        ))),
        "{st}"
    );
    assert!(
        st.contains(&format!(
            "name wl, port {wl_port}, whitelist 1 PK(s), served 0, refused 1"
        )),
        "{st}"
    );
    let j = skynet(&bv, &["srv", "status", "--json"]);
    let compact: String = j.split_whitespace().collect();
    assert!(
        compact.contains(&format!("\"whitelist\":[\"{other}\"]")),
        "{j}"
    );
    // The unexposed request counts in the app-wide refusals (keys come sorted).
    assert!(compact.ends_with("\"open\":0,\"refused\":1}"), "{j}");

    let st = skynet(&av, &["status"]);
    eprintln!("status:\n{st}");
    // The two curls were served; attempts made before the route was up (the first curl is
    // retried until it works) count as failed, and the last error of one may still show.
    let line = st
        .lines()
        .find(|l| l.starts_with(&format!("name fwd-{wport}, ")))
        .unwrap_or_else(|| panic!("no fwd-{wport} in {st}"));
    assert!(
        line.starts_with(&format!(
            "name fwd-{wport}, local 127.0.0.1:{local}, server {}, remote {wport}, active 0, total ",
            b.pk
        )),
        "{line}"
    );
    let count = |key: &str| -> u64 {
        line.split(&format!("{key} "))
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {line}"))
    };
    assert_eq!(count("total") - count("failed"), 2, "{line}");
    if count("failed") == 0 {
        assert!(line.ends_with("last_error -"), "{line}");
    }
    let j = skynet(&av, &["status", "--json"]);
    let compact: String = j.split_whitespace().collect();
    assert!(compact.contains("\"name\":\"unexposed\""), "{j}");
    assert!(compact.contains("portnotexposed"), "{j}");

    // The streams ran in a route group skynet-client owns (skynet, not dmsg).
    let o = av.cli(&["app", "routes", "skynet-client", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&b.pk), "no route group: {}", text(&o));

    // Both apps in the app table.
    let ls = text(&av.cli(&["app", "ls"]));
    assert!(ls.contains("skynet-client"), "{ls}");
    let ls = text(&bv.cli(&["app", "ls"]));
    assert!(ls.contains("skynet-srv"), "{ls}");

    // stop: the local port is closed; the exposure is gone.
    let out = skynet(&av, &["stop", "--name", &format!("fwd-{wport}")]);
    assert!(out.contains(&format!("stopped fwd-{wport}")), "{out}");
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", local)).is_ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "127.0.0.1:{local} still listens after stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = skynet_raw(&av, &["stop"]);
    assert!(!o.status.success(), "several forwards remain: {}", text(&o));
    assert!(text(&o).contains("--name"), "{}", text(&o));
    for n in ["unexposed", "wl", "dead"] {
        skynet(&av, &["stop", "--name", n]);
    }
    let st = skynet(&av, &["status"]);
    assert!(st.contains("none running"), "{st}");

    // A fresh forward to the stopped exposure is refused "not exposed".
    skynet(&bv, &["srv", "stop", "--name", &format!("port-{wport}")]);
    let st = skynet(&bv, &["srv", "status"]);
    assert!(!st.contains(&format!("port-{wport}")), "{st}");
    let line = refused_forward(&av, &b.pk, wport, "after-stop");
    assert!(line.contains("port not exposed"), "{line}");
}

/// Both apps started by the launcher from their `args`: an exposure whose whitelist names the
/// client visor, and a forward to it.
#[test]
fn forward_from_launcher_args_through_a_whitelist() {
    let (_disc_proc, disc) = start_disc();
    let relay = start_relay(&disc, &[]);
    let www = tmp("skynet-fwd-www-args");
    std::fs::write(www.join("hello.txt"), "from the launcher\n").unwrap();
    let (_www_proc, wport) = http_server(&www);
    // The client's PK is only known once its config is written.
    let a = Node::new("skynet-fwd", "acli", &disc, &relay.arg(), "");
    let b = Node::new(
        "skynet-fwd",
        "asrv",
        &disc,
        &relay.arg(),
        &format!(
            r#", {{"name": "skynet-srv", "args": ["--port", "{wport}", "--name", "web", "--wl", "{}"], "auto_start": true}}"#,
            a.pk
        ),
    );
    let local = free_port();
    let cfg = std::fs::read_to_string(&a.config).unwrap();
    let from = r#"{"name": "skychat", "auto_start": false}"#;
    assert!(cfg.contains(from), "{cfg}");
    let cfg = cfg.replacen(
        from,
        &format!(
            r#"{from}, {{"name": "skynet-client", "args": ["--srv", "{}", "--remote", "{wport}", "--local", "{local}", "--name", "web"], "auto_start": true}}"#,
            b.pk
        ),
        1,
    );
    std::fs::write(&a.config, cfg).unwrap();
    a.transport_to(&b);
    let bv = b.start();
    let av = a.start();
    bv.wait_state("skynet-srv", "running");
    av.wait_state("skynet-client", "running");

    let got = curl_until_ok(&format!("http://127.0.0.1:{local}/hello.txt"), 45);
    assert_eq!(got, "from the launcher\n");
    let st = skynet(&bv, &["srv", "status"]);
    eprintln!("srv status: {}", st.trim());
    assert!(
        st.contains(&format!(
            "name web, port {wport}, whitelist 1 PK(s), served 1, refused 0"
        )),
        "{st}"
    );
    let st = skynet(&av, &["status"]);
    eprintln!("status: {}", st.trim());
    // Connections before the route was up may have failed (their error stays the last one);
    // exactly one went through.
    assert!(st.starts_with("name web,"), "{st}");
    let n = |k: &str| -> u64 {
        let i = st.find(&format!(", {k} ")).unwrap() + k.len() + 3;
        st[i..].split(',').next().unwrap().parse().unwrap()
    };
    assert_eq!(n("total") - n("failed"), 1, "{st}");
    // The app's status line names the forward.
    let j = av.app_json("skynet-client");
    assert!(j.contains(&format!("web 127.0.0.1:{local} -> ")), "{j}");
}
