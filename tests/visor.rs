//! The visor end to end: real `skywire visor` processes on 127.0.0.1 (one hosting the
//! embedded relay + discovery, one joined to it), driven through `skywire cli visor …`,
//! `skywire app …`, `skywire dmsg curl|cat` and the multicall entries, like a user would.
//! Launcher semantics use the test-only apps of the `test-apps` feature (`make test` builds
//! with it).
#![cfg(feature = "test-apps")]

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::visor::*;

use async_executor::Executor;
use futures_lite::io::AsyncReadExt;
use skywire::app::net::{Net, TcpNet};
use skywire::crypto::{Keypair, PublicKey};

#[test]
fn fresh_state_dir_serves_and_sigterm_exits_zero_quickly() {
    // The embedded default as a user gets it: relay on :8080, discovery on 127.0.0.1:9090
    // (the only test using the fixed default ports; the others use free ones).
    for p in [8080, 9090] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", p)).is_ok(),
            "port {p} is busy on this machine; this test needs the embedded default's ports"
        );
    }
    let dir = tmp("fresh");
    let mut v = start_visor(&dir, None);
    let created = dir.join("skywire-config.json");
    let cfg = std::fs::read_to_string(&created).unwrap();
    assert!(cfg.contains(&v.pk), "config holds the pk the visor printed");
    assert!(cfg.contains("\"local_path\": \".\""), "{cfg}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&created).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let info = v.info();
    assert_eq!(json_field(&info, "network"), "embedded");
    v.wait_state("logserver", "running");
    // Local tools find the embedded network with no flags at all.
    let t0 = Instant::now();
    loop {
        let o = sw(&["dmsg", "curl", &format!("dmsg://{}:80/health", v.pk)]);
        if o.status.success() {
            assert!(String::from_utf8_lossy(&o.stdout).contains("\"status\":\"ok\""));
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{}", text(&o));
        std::thread::sleep(Duration::from_millis(200));
    }
    let child = v.proc.take();
    let t0 = Instant::now();
    sigterm(&child);
    let st = wait_exit(child, 5).expect("visor did not exit");
    assert!(st.success(), "{st:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    // A second start reuses the identity.
    let v2 = start_visor(&dir, None);
    assert_eq!(v2.pk, v.pk);
}

#[test]
fn two_visors_ping_curl_node_info_and_tags() {
    let d1 = tmp("host");
    let friend = Keypair::from_seed(&[42; 32]);
    let apps = format!(
        r#"[{{"name": "logserver", "args": ["--whitelist", "{}"], "auto_start": true, "restart_policy": "on-failure"}}]"#,
        friend.public()
    );
    let c1 = write_config(&d1, None, &apps);
    let mut a = start_visor(&d1, Some(&c1));
    let info = a.info();
    assert_eq!(json_field(&info, "network"), "embedded");
    let relay = json_field(&info, "hosted_relay");
    let disc = json_field(&info, "discovery");
    // The embedded relay has its own (derived, stable) key, not the visor's.
    assert!(!relay.starts_with(&a.pk) && relay.len() > 65, "{relay}");

    let d2 = tmp("joiner");
    let c2 = write_config(&d2, Some(&relay), "[]");
    let b = start_visor(&d2, Some(&c2));
    assert_eq!(json_field(&b.info(), "network"), "joined");
    a.wait_state("logserver", "running");
    b.wait_state("logserver", "running");

    // Ping both ways (the joiner's session to the relay may take a moment).
    for (from, to) in [(&a, &b.pk), (&b, &a.pk)] {
        let t0 = Instant::now();
        loop {
            let o = from.cli(&["ping", to, "-n", "2"]);
            if o.status.success() {
                let out = String::from_utf8_lossy(&o.stdout).into_owned();
                assert_eq!(out.matches("rtt=").count(), 2, "{out}");
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "ping: {}", text(&o));
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let o = a.cli(&["ping", &b.pk, "--json"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"rtt_us\""));

    // /health for anyone; /node-info only for the whitelisted key.
    let url = format!("dmsg://{}:80/health", b.pk);
    let o = sw(&["dmsg", "curl", &url, "--relay", &relay, "--disc", &disc]);
    assert!(o.status.success(), "{}", text(&o));
    let body = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    assert!(body.contains(&b.pk), "{body}");
    let url = format!("dmsg://{}:80/node-info", a.pk);
    let o = sw(&["dmsg", "curl", &url, "--relay", &relay, "--disc", &disc]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not whitelisted"), "{}", text(&o));
    let sk = hex(friend.seed());
    let o = sw(&[
        "dmsg", "curl", &url, "--relay", &relay, "--disc", &disc, "--sk", &sk,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let body = String::from_utf8_lossy(&o.stdout).into_owned();
    for k in ["\"arch\"", "\"mem_total_kib\"", "\"logserver\""] {
        assert!(body.contains(k), "{k} in {body}");
    }

    // Ports and connection tags: hold a stream open to the log server and look at it.
    let o = a.cli(&["ports", "--json"]);
    let ports = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        ports.contains("\"owner\":\"dmsgctrl\"") && ports.contains("\"owner\":\"logserver\""),
        "{ports}"
    );
    let mut hold = Command::new(common::skywire_bin())
        .args([
            "dmsg",
            "cat",
            &format!("{}:80", a.pk),
            "--relay",
            &relay,
            "--disc",
            &disc,
            "--sk",
            &sk,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let j = a.app_json("logserver");
        if j.contains(&format!("\"peer\":\"{}\"", friend.public())) {
            assert!(
                j.contains("\"remote_port\":") && j.contains("\"network\":\"dmsg\""),
                "{j}"
            );
            let o = a.cli(&["app", "status", "logserver"]);
            assert!(String::from_utf8_lossy(&o.stdout).contains(&friend.public().to_hex()));
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no tagged connection: {j}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = hold.kill();
    let _ = hold.wait();

    // SIGTERM: exit 0 within 2 s.
    let child = a.proc.take();
    let t0 = Instant::now();
    sigterm(&child);
    let st = wait_exit(child, 5).expect("visor did not exit");
    assert!(st.success(), "{st:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let log = std::fs::read_to_string(a.dir.join("visor.log")).unwrap();
    assert!(log.contains("logserver stopped"), "{log}");
}

#[test]
fn launcher_semantics_through_the_binary() {
    let dir = tmp("launcher");
    // test-b requires test-a, test-c wants test-a; test-a fails at start.
    let apps = r#"[
        {"name": "test-a", "args": ["--fail-start"], "auto_start": true, "restart_policy": "never"},
        {"name": "test-b", "args": [], "auto_start": true, "restart_policy": "never"},
        {"name": "test-c", "args": ["--port", "9"], "auto_start": true, "restart_policy": "never"},
        {"name": "test-crit", "args": ["--crash-after-ms", "300"], "auto_start": true, "restart_policy": "on-failure"}
    ]"#;
    let c = write_config(&dir, None, apps);
    let v = start_visor(&dir, Some(&c));
    let b = v.wait_state("test-b", "blocked");
    assert!(
        json_field(&b, "last_error").contains("requires test-a, which is failed"),
        "{b}"
    );
    v.wait_state("test-c", "running");
    let a = v.app_json("test-a");
    assert_eq!(json_field(&a, "state"), "failed");

    // Waves in dependency order: test-a (wave 1) started before test-c (wave 2).
    let o = v.cli(&["app", "ls", "--json"]);
    let ls = String::from_utf8_lossy(&o.stdout).into_owned();
    let seq = |name: &str| -> u64 {
        let i = ls.find(&format!("\"name\":\"{name}\"")).unwrap();
        let rest = &ls[i..];
        let j = rest.find("\"start_seq\":").unwrap() + "\"start_seq\":".len();
        rest[j..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(seq("test-a") > 0 && seq("test-a") < seq("test-c"), "{ls}");
    let o = v.cli(&["app", "ls"]);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("LAST ERROR") && table.contains("test-b"),
        "{table}"
    );

    // The crashing critical app is restarted per policy while the visor keeps serving.
    let t0 = Instant::now();
    loop {
        let j = v.app_json("test-crit");
        let restarts: u64 = {
            let k = "\"restarts\":";
            let i = j.find(k).unwrap() + k.len();
            j[i..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        if restarts >= 2 {
            assert!(j.contains("crashed on purpose"), "{j}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "not restarted: {j}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let info = v.info();
    let relay = json_field(&info, "hosted_relay");
    let disc = json_field(&info, "discovery");
    let o = sw(&[
        "dmsg",
        "cat",
        &format!("{}:9", v.pk),
        "--relay",
        &relay,
        "--disc",
        &disc,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "test-c");

    // Critical: refused without the flag, done with it.
    let o = v.sw(&["app", "test-crit", "stop", "--rpc", &v.rpc]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--i-know-what-im-doing"), "{}", text(&o));
    let o = v.sw(&[
        "app",
        "test-crit",
        "stop",
        "--rpc",
        &v.rpc,
        "--i-know-what-im-doing",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json_field(&v.app_json("test-crit"), "state"), "stopped");

    // Starting test-b now pulls in test-a, which fails again: a clear refusal.
    let o = v.sw(&["app", "test-b", "start", "--rpc", &v.rpc]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("test-b not started: requires test-a"),
        "{}",
        text(&o)
    );

    // The pty whitelist: edited through the RPC, saved in the config file.
    let friend = Keypair::from_seed(&[5; 32]).public().to_hex();
    let o = v.pty(&["whitelist", "add", &friend]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), friend);
    let saved = std::fs::read_to_string(&c).unwrap();
    assert!(saved.contains(&friend), "{saved}");
    let o = v.pty(&["whitelist", "rm", &friend]);
    assert!(o.status.success(), "{}", text(&o));
    let o = v.pty(&["whitelist", "ls", "--json"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\"whitelist\":[]"),
        "{}",
        text(&o)
    );
    assert!(!std::fs::read_to_string(&c).unwrap().contains(&friend));
    let o = v.pty(&["whitelist", "add", "zz"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // An unknown app and an unreachable visor are one-line errors.
    let o = v.sw(&["app", "nope", "status", "--rpc", &v.rpc]);
    assert!(text(&o).contains("no app \"nope\""), "{}", text(&o));
    let o = sw(&[
        "cli",
        "visor",
        "--rpc",
        &format!("127.0.0.1:{}", free_port()),
        "info",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("start one with 'skywire visor'"),
        "{}",
        text(&o)
    );
}

#[test]
fn cycle_is_rejected_at_config_load() {
    let dir = tmp("cycle");
    let apps = r#"[{"name": "test-a", "requires": ["test-b"]}]"#;
    let c = write_config(&dir, None, apps);
    let o = sw(&["config", "check", "-c", c.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("dependency cycle: test-a -> test-b -> test-a"),
        "{}",
        text(&o)
    );
    let child = Command::new(common::skywire_bin())
        .args([
            "visor",
            "-c",
            c.to_str().unwrap(),
            "--rpc",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dependency cycle"));
}

#[test]
fn standalone_modes_dmsg_and_tcp() {
    // dmsg mode: the log server on its own dmsg client, reached with dmsg curl.
    let dir = tmp("standalone");
    let c = write_config(&dir, None, "[]");
    let v = start_visor(&dir, Some(&c));
    let info = v.info();
    let relay = json_field(&info, "hosted_relay");
    let disc = json_field(&info, "discovery");
    let sk = hex(&[9u8; 32]);
    let pk = Keypair::from_seed(&[9u8; 32]).public().to_hex();
    let (mut app, line) = spawn_first_line(
        common::skywire_bin(),
        &[
            "app",
            "logserver",
            "run",
            "--mode",
            "dmsg",
            "--sk",
            &sk,
            "--relay",
            &relay,
            "--disc",
            &disc,
        ],
    );
    assert_eq!(line, format!("logserver running (dmsg mode) as {pk}"));
    let o = sw(&[
        "dmsg",
        "curl",
        &format!("dmsg://{pk}:80/health"),
        "--relay",
        &relay,
        "--disc",
        &disc,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&pk));
    sigterm(app.0.as_ref().unwrap());
    assert!(wait_exit(app.take(), 5).unwrap().success());

    // The log server has no TCP mode: a clear refusal.
    let o = sw(&["app", "logserver", "run", "--mode", "tcp"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("logserver has no tcp mode"),
        "{}",
        text(&o)
    );

    // tcp mode through the multicall name: `standalone test-c --listen … -- --port 5`,
    // reached over Noise XK with the library's TCP network.
    let link = dir.join("standalone");
    std::os::unix::fs::symlink(common::skywire_bin(), &link).unwrap();
    let port = free_port();
    let (mut st, line) = spawn_first_line(
        &link,
        &[
            "test-c",
            "--sk",
            &sk,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--",
            "--port",
            "5",
        ],
    );
    assert_eq!(line, format!("test-c running (tcp mode) as {pk}"));
    let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
    let client = TcpNet::new(Keypair::from_seed(&[3; 32]), None, ex.clone());
    let server = PublicKey::from_hex(&pk).unwrap();
    client.add_peer(server, format!("127.0.0.1:{port}"));
    let got = async_io::block_on(ex.run(async {
        let mut c = client.dial(server, 5).await.unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).await.unwrap();
        let wrong = client.dial(server, 6).await.unwrap_err();
        (s, wrong.to_string())
    }));
    assert_eq!(got.0, "test-c");
    assert!(got.1.contains("serves no port 6"), "{}", got.1);
    sigterm(st.0.as_ref().unwrap());
    assert!(wait_exit(st.take(), 5).unwrap().success());
}
