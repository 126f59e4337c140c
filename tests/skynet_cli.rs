//! The skynet commands of `skywire cli visor` against real visors on 127.0.0.1 (A, B, C, with
//! a separate relay and discovery); stcp transports A–B and B–C from the configs
//! (so A reaches C in two hops through B), C runs the echo test app. `tp add|rm|ls|types`,
//! `route ls|groups|drops`, `app routes`, `ping --route` and the RPC dial by route policy,
//! with `--json` parsed into the RPC's own types, and the errors an operator meets.
#![cfg(all(feature = "skynet", feature = "test-apps"))]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::dmsg::{start_disc, start_relay};
use common::visor::*;
use miniserde::json::{Array, Object, Value};
use skywire::http::json::parse_object;
use skywire::rpc::skynet::{Drops, GroupView, Removed, RuleInfo, TpTypes, TpView};
use skywire::rpc::{Body, Items, Pong};

const ECHO_PORT: u16 = 5001;

fn s(v: &str) -> Value {
    Value::String(v.into())
}

/// A config in `dir` on the discovery `disc` and the relay `relay` (`pk@addr`), running
/// `apps`, with `stcp` (listen on `port`, `peers`) and the persistent `transports` to them.
fn config(
    dir: &Path,
    disc: &str,
    relay: &str,
    apps: &str,
    port: u16,
    peers: &[(&str, u16)],
) -> std::path::PathBuf {
    let file = write_config(dir, None, apps);
    let mut text = std::fs::read_to_string(&file).unwrap();
    for (from, to) in [
        (
            "\"discovery\": \"\"".to_string(),
            format!("\"discovery\": \"{disc}\""),
        ),
        (
            "\"servers\": []".to_string(),
            format!("\"servers\": [\"{relay}\"]"),
        ),
    ] {
        assert!(text.contains(&from), "{from} in {text}");
        text = text.replacen(&from, &to, 1);
    }
    let mut cfg = parse_object(&text).unwrap();
    let mut stcp = Object::new();
    stcp.insert("listen".into(), s(&format!("127.0.0.1:{port}")));
    let mut book = Array::new();
    let mut tps = Array::new();
    for (pk, p) in peers {
        book.push(s(&format!("{pk}@127.0.0.1:{p}")));
        let mut t = Object::new();
        t.insert("pk".into(), s(pk));
        t.insert("type".into(), s("stcp"));
        tps.push(Value::Object(t));
    }
    stcp.insert("peers".into(), Value::Array(book));
    cfg.insert("stcp".into(), Value::Object(stcp));
    cfg.insert("transports".into(), Value::Array(tps));
    std::fs::write(&file, miniserde::json::to_string(&Value::Object(cfg))).unwrap();
    file
}

fn pk_of(file: &Path) -> String {
    let cfg = parse_object(&std::fs::read_to_string(file).unwrap()).unwrap();
    match cfg.get("pk") {
        Some(Value::String(p)) => p.clone(),
        other => panic!("pk: {other:?}"),
    }
}

/// The command's stdout parsed as a `T`, asserting success.
fn json<T: Body>(o: Output) -> T {
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    T::from_object(&parse_object(&out).unwrap_or_else(|e| panic!("{e}: {out}")))
        .unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Asserts the command failed with exit `code` and says `what`.
fn fails(o: Output, code: i32, what: &str) -> String {
    let t = text(&o);
    assert_eq!(o.status.code(), Some(code), "{t}");
    assert!(t.contains(what), "expected {what:?} in: {t}");
    t
}

/// Waits (≤ 20 s) until `v` has an up transport to every one of `peers`.
fn wait_up(v: &Visor, peers: &[&str]) -> Vec<TpView> {
    let t0 = Instant::now();
    loop {
        let tps: Items<TpView> = json(v.cli(&["tp", "ls", "--json"]));
        if peers
            .iter()
            .all(|p| tps.0.iter().any(|t| t.peer == *p && t.state == "up"))
        {
            return tps.0;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "transports to {peers:?} never all up: {:?}",
            tps.0
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `ping --route` retried (≤ 20 s) while discovery has not yet published every link.
fn ping_until(v: &Visor, to: &str, route: &str) -> Pong {
    let t0 = Instant::now();
    loop {
        let o = v.cli(&["ping", to, "--route", route, "-n", "2", "--json"]);
        if o.status.success() {
            return json(o);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "ping --route {route}: {}",
            text(&o)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The RPC dial upgrade to `to`:`port` by `route` on `v`, then `msg` echoed back.
fn dial_echo(v: &Visor, to: &str, route: &str, msg: &[u8]) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect(&v.rpc).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        s,
        "POST /v1/dial/{to}/{ECHO_PORT}?route={route} HTTP/1.1\r\nHost: {}\r\nAuthorization: \
         Bearer {}\r\nConnection: Upgrade\r\nUpgrade: skywire-stream\r\nContent-Length: 0\r\n\r\n",
        v.rpc,
        v.token()
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        if s.read(&mut b).unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    let h = String::from_utf8_lossy(&head).into_owned();
    if !h.starts_with("HTTP/1.1 101") {
        let mut rest = String::new();
        let _ = s.read_to_string(&mut rest);
        return Err(format!("{h}{rest}"));
    }
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).map_err(|e| e.to_string())?;
    Ok(got)
}

#[test]
fn skynet_commands_against_three_visors() {
    let (_disc, disc) = start_disc();
    let relay_proc = start_relay(&disc, &[]);
    let relay = relay_proc.arg();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let da = tmp("sky-a");
    let ca = config(&da, &disc, &relay, "[]", pa, &[]);
    let a = start_visor(&da, Some(&ca));
    let db = tmp("sky-b");
    let cb = config(&db, &disc, &relay, "[]", pb, &[(&a.pk, pa)]);
    let b = start_visor(&db, Some(&cb));
    let dc = tmp("sky-c");
    let echo = format!(
        r#"[{{"name": "test-a", "args": ["--port", "{ECHO_PORT}", "--echo"], "auto_start": true}}]"#
    );
    let cc = config(&dc, &disc, &relay, &echo, pc, &[(&b.pk, pb)]);
    let c = start_visor(&dc, Some(&cc));
    assert_eq!(c.pk, pk_of(&cc));
    c.wait_state("test-a", "running");

    // tp types, tp ls: the config's transports come up on both ends.
    let t: TpTypes = json(a.cli(&["tp", "types", "--json"]));
    assert!(t.types.contains(&"stcp".to_string()), "{t:?}");
    let o = a.cli(&["tp", "types"]);
    assert!(text(&o).lines().any(|l| l == "stcp"), "{}", text(&o));
    let at_b = wait_up(&b, &[&a.pk, &c.pk]);
    for t in &at_b {
        assert_eq!(t.kind, "stcp", "{t:?}");
        assert_eq!(t.id.len(), 32, "{t:?}");
    }
    let ab = at_b.iter().find(|t| t.peer == a.pk).unwrap();
    assert!(
        ab.initiator && ab.persistent,
        "B dialed A from its config: {ab:?}"
    );
    let at_a = wait_up(&a, &[&b.pk]);
    assert_eq!(at_a[0].id, ab.id, "one transport id on both ends");
    assert!(!at_a[0].initiator);
    let o = b.cli(&["tp", "ls"]);
    let human = text(&o);
    assert!(human.starts_with("ID") && human.contains(&ab.id), "{human}");
    // Both ends measure the transport's RTT (not only the one whose pings win the race).
    let t0 = Instant::now();
    for (v, peer) in [(&a, &b.pk), (&b, &a.pk)] {
        loop {
            let tps: Items<TpView> = json(v.cli(&["tp", "ls", "--json"]));
            if tps.0.iter().any(|t| t.peer == *peer && t.rtt_us > 0) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "no RTT to {peer} within 15 s: {:?}",
                tps.0
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    // Ping over a 2-hop route A → B → C, and what each hop's rule table says.
    let p = ping_until(&a, &c.pk, "hops:2");
    assert_eq!(p.route, "hops:2");
    assert_eq!(p.rtt_us.len(), 2, "{p:?}");
    let human = text(&a.cli(&["ping", &c.pk, "--route", "hops:2", "-n", "1"]));
    assert!(human.contains("over hops:2: seq=1 rtt="), "{human}");
    let kinds = |v: &Visor| -> Vec<String> {
        let r: Items<RuleInfo> = json(v.cli(&["route", "ls", "--json"]));
        r.0.into_iter().map(|r| r.kind).collect()
    };
    assert!(kinds(&a).contains(&"source".into()), "{:?}", kinds(&a));
    assert!(
        kinds(&b).contains(&"intermediary".into()),
        "{:?}",
        kinds(&b)
    );
    assert!(kinds(&c).contains(&"destination".into()), "{:?}", kinds(&c));
    let rules: Items<RuleInfo> = json(b.cli(&["route", "ls", "--json"]));
    let mid = rules.0.iter().find(|r| r.kind == "intermediary").unwrap();
    let (src, dst) = (
        mid.towards_src.clone().unwrap(),
        mid.towards_dst.clone().unwrap(),
    );
    assert_eq!(
        (src.peer.as_str(), dst.peer.as_str()),
        (a.pk.as_str(), c.pk.as_str())
    );
    let human = text(&b.cli(&["route", "ls"]));
    assert!(
        human.contains(&format!("{}:{}", &a.pk[..8], src.route_id)),
        "{human}"
    );

    // The RPC dial by policy reaches C's echo app through B; C's app routes show the group.
    let got = dial_echo(&a, &c.pk, &format!("via:{}", b.pk), b"over two hops").unwrap();
    assert_eq!(got, b"over two hops");
    let groups: Items<GroupView> = json(c.cli(&["app", "routes", "test-a", "--json"]));
    let g = groups
        .0
        .iter()
        .find(|g| g.peer == a.pk)
        .unwrap_or_else(|| panic!("no group from A for test-a: {groups:?}"));
    assert!(!g.initiator, "{g:?}");
    let leg = g.legs.first().unwrap_or_else(|| panic!("no legs: {g:?}"));
    // From this visor (C) to the peer (A); the first hop's type is C's own transport.
    assert_eq!(
        leg.hops,
        vec![c.pk.clone(), b.pk.clone(), a.pk.clone()],
        "{g:?}"
    );
    assert_eq!(
        (leg.tp_types.len(), leg.tp_types[0].as_str()),
        (2, "stcp"),
        "{g:?}"
    );
    let human = text(&c.cli(&["app", "routes", "test-a"]));
    assert!(human.contains(&format!("from {}", a.pk)), "{human}");
    assert!(
        human.contains(&format!("{} -stcp-> {} -", &c.pk[..8], &b.pk[..8])),
        "{human}"
    );
    let all: Items<GroupView> = json(a.cli(&["route", "groups", "--json"]));
    let g = all.0.iter().find(|g| g.peer == c.pk && g.initiator);
    let g = g.unwrap_or_else(|| panic!("A initiated no group to C: {all:?}"));
    assert!(
        g.legs
            .iter()
            .any(|l| l.hops == [a.pk.clone(), b.pk.clone(), c.pk.clone()]),
        "{g:?}"
    );
    let _: Drops = json(b.cli(&["route", "drops", "--json"]));

    // tp add / rm at run time: a dmsg transport C → A, then gone.
    let added: TpView = json(c.cli(&["tp", "add", &a.pk, "--type", "dmsg", "--once", "--json"]));
    assert!(!added.persistent, "{added:?}");
    assert_eq!(
        (added.kind.as_str(), added.peer.as_str()),
        ("dmsg", a.pk.as_str())
    );
    assert_eq!(added.state, "up", "{added:?}");
    let r: Removed = json(c.cli(&["tp", "rm", &added.id, "--json"]));
    assert_eq!(r.removed, added.id);
    let tps: Items<TpView> = json(c.cli(&["tp", "ls", "--json"]));
    assert!(tps.0.iter().all(|t| t.id != added.id), "{tps:?}");

    // With no --type the visor tries its types in order: stcp first, to the address A
    // publishes in discovery (C's config knows only B's); kept up (no --once).
    let added: TpView = json(c.cli(&["tp", "add", &a.pk, "--json"]));
    assert_eq!(
        (added.kind.as_str(), added.persistent),
        ("stcp", true),
        "{added:?}"
    );
    let human = text(&c.cli(&["tp", "rm", &added.id]));
    assert_eq!(human.trim(), format!("removed {}", added.id));

    // Errors: checked by the CLI (exit 2) or answered by the visor (exit 1), one line each.
    fails(
        a.cli(&["ping", &c.pk, "--route", "hops:0"]),
        2,
        "a route policy is auto",
    );
    fails(a.cli(&["ping", &c.pk, "--route", "sideways"]), 2, "hops:K");
    fails(
        a.cli(&["tp", "add", &c.pk, "--type", "udp"]),
        2,
        "stcp or dmsg",
    );
    fails(a.cli(&["tp", "add", "zz"]), 2, "zz");
    fails(a.cli(&["tp", "rm", "abc"]), 2, "32 hex digits");
    fails(a.cli(&["tp", "rm", &"0".repeat(32)]), 1, &"0".repeat(32));
    fails(a.cli(&["app", "routes", "nosuchapp"]), 1, "nosuchapp");
    let t = fails(a.cli(&["ping", &c.pk, "--route", "direct"]), 1, &c.pk[..8]);
    assert!(!t.contains("panic"), "{t}");
    let stranger = skywire::crypto::Keypair::from_seed(&[9; 32])
        .public()
        .to_hex();
    fails(
        a.cli(&["ping", &stranger, "--route", "hops:1"]),
        1,
        &stranger[..8],
    );
    let e = dial_echo(&a, &c.pk, "via:zz", b"x").unwrap_err();
    assert!(
        e.starts_with("HTTP/1.1 400") && e.contains("route policy"),
        "{e}"
    );
}
