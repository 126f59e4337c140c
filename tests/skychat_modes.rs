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
