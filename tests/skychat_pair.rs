//! Skychat pairing over real visors (issue 15, item 6): add → pending on both sides → the
//! invitee restarted → still pending → accept → messages both ways → `pair poll` and
//! `/events?channel=pair` show them; decline; remove; hostile inputs; 503 when pairing is off.
//! Needs `--features skywire/test-apps`.
#![cfg(feature = "test-apps")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::skychat::*;
use common::visor::text;

/// `status` of the pair with `pk` in `GET /pair` on `n` ("" when there is none).
fn status_of(n: &Node, pk: &str) -> String {
    let (code, body) = n.http("GET", "/pair", None);
    assert_eq!(code, 200, "{body}");
    items(&parse(&body))
        .iter()
        .find(|p| as_str(get(p, "peer_pk")) == pk)
        .map(|p| as_str(get(p, "status")).to_string())
        .unwrap_or_default()
}

/// Waits (≤ 20 s) until the pair with `pk` on `n` is `want`.
fn wait_status(n: &Node, pk: &str, want: &str) {
    let t0 = Instant::now();
    loop {
        let s = status_of(n, pk);
        if s == want {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "pair with {pk} on {} is {s:?}, never {want:?}\n{}",
            n.addr(),
            n.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `pair add` retried (≤ 40 s) while the network comes up; its output.
fn add_until_delivered(from: &Node, to: &str) -> String {
    let t0 = Instant::now();
    loop {
        let o = from.sc(&["pair", "add", to]);
        let t = text(&o);
        if o.status.success() {
            return t;
        }
        assert!(
            t.contains("not delivered") && t0.elapsed() < Duration::from_secs(40),
            "pair add {to}: {t}\n{}",
            from.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A plain-Rust SSE reader of `path` on `n`: its status line and `data:` lines as they
/// arrive (read on a thread; each read bounded by a 30 s timeout, the stream ends when the
/// returned socket is dropped with the test).
fn events(n: &Node, path: &str) -> (TcpStream, Arc<Mutex<Vec<String>>>) {
    let mut s = TcpStream::connect(("127.0.0.1", n.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        n.port,
        n.token()
    )
    .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (l2, r) = (lines.clone(), s.try_clone().unwrap());
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok).take(10_000) {
            if let Some(d) = l.strip_prefix("data: ") {
                l2.lock().unwrap().push(d.to_string());
            } else if l.starts_with("HTTP/1.1 ") {
                l2.lock().unwrap().push(l);
            }
        }
    });
    (s, lines)
}

#[test]
fn add_restart_accept_send_poll_events_decline_remove() {
    let (_d, disc, relay) = network();
    let mut a = Node::with_args("PA", &disc, &relay.arg(), &["--pair-enable"]);
    let mut b = Node::with_args("PB", &disc, &relay.arg(), &["--pair-enable"]);
    let mut c = Node::new("PC", &disc, &relay.arg());
    for n in [&mut a, &mut b, &mut c] {
        n.start();
    }

    // Pairing off: 503 with how to turn it on; a peer's invite refused with the reason.
    let (code, body) = c.http("GET", "/pair", None);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("--pair-enable"), "{body}");
    let o = c.sc(&["pair", "list"]);
    assert!(
        !o.status.success() && text(&o).contains("--pair-enable"),
        "{}",
        text(&o)
    );
    let t0 = Instant::now();
    let refused = loop {
        let (code, body) = a.http("POST", "/pair", Some(&format!(r#"{{"pk":"{}"}}"#, c.pk)));
        if code == 409 {
            break body;
        }
        assert!(
            code == 202 && t0.elapsed() < Duration::from_secs(40),
            "{code} {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        refused.contains("pairing is off at the receiver"),
        "{refused}"
    );
    assert_eq!(status_of(&a, &c.pk), "", "a refused invite is not kept");

    // add → pending-out on A, pending-in on B.
    let out = add_until_delivered(&a, &b.pk);
    assert!(out.contains("invited"), "{out}");
    assert_eq!(status_of(&a, &b.pk), "pending-out");
    wait_status(&b, &a.pk, "pending-in");
    let (code, body) = b.http("GET", "/pair/invites", None);
    assert_eq!(code, 200);
    assert!(body.contains(&a.pk), "{body}");

    // The invitee restarts: the invite is still pending.
    drop(b.visor.take());
    b.start();
    assert!(
        b.log().contains("pairing on, 1 pair(s) restored"),
        "{}",
        b.log()
    );
    assert_eq!(status_of(&b, &a.pk), "pending-in");
    let (_, body) = b.http("GET", "/pair/invites", None);
    assert!(body.contains(&a.pk), "after restart: {body}");
    let since = "2000-01-01T00:00:00Z";

    // Live events on B from here on.
    let (_sse, live) = events(&b, "/events?channel=pair");
    wait_lines(&live, &["HTTP/1.1 200"], 10);

    // accept (through the alias book: B names A "alice").
    let (code, body) = b.http(
        "POST",
        "/aliases",
        Some(&format!(r#"{{"name":"alice","pk":"{}"}}"#, a.pk)),
    );
    assert_eq!(code, 204, "{body}");
    let o = b.sc(&["pair", "accept", "alice"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("paired with alice"), "{}", text(&o));
    assert_eq!(status_of(&b, &a.pk), "paired");
    wait_status(&a, &b.pk, "paired");

    // Both ways.
    let o = a.sc(&["pair", "send", "-t", &b.pk, "-m", "hello from A"]);
    assert!(
        o.status.success() && text(&o).contains("Acked by"),
        "{}",
        text(&o)
    );
    let o = b.sc(&["pair", "send", "-t", "alice", "-m", "hello from B"]);
    assert!(
        o.status.success() && text(&o).contains("Acked by alice"),
        "{}",
        text(&o)
    );

    let o = b.sc(&["pair", "poll", "--since", since, "--limit", "10", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = parse(&String::from_utf8_lossy(&o.stdout));
    let got: Vec<(&str, &str)> = items(&v)
        .iter()
        .map(|m| (as_str(get(m, "peer_pk")), as_str(get(m, "text"))))
        .collect();
    assert_eq!(got, vec![(a.pk.as_str(), "hello from A")]);
    let o = a.sc(&["pair", "poll"]);
    assert!(text(&o).contains("hello from B"), "{}", text(&o));
    // After the message's own time there is nothing new.
    let ts = as_str(get(&items(&v)[0], "ts")).to_string();
    let o = b.sc(&["pair", "poll", "--since", &ts, "--json"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");

    let got = wait_lines(&live, &["\"accepted\"", "hello from A", "hello from B"], 10);
    let msg = got.iter().find(|l| l.contains("hello from A")).unwrap();
    let e = parse(msg);
    assert_eq!(as_str(get(&e, "channel")), "pair");
    assert_eq!(as_str(get(&e, "type")), "message");
    assert_eq!(as_str(get(&e, "dir")), "in");
    assert_eq!(as_str(get(&e, "peer")), a.pk);

    let o = a.sc(&["pair", "list", "--json"]);
    let v = parse(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(as_str(get(&items(&v)[0], "status")), "paired");
    assert!(as_u64(get(&items(&v)[0], "last_msg_at")) > 0);

    // Hostile inputs: clear 4xx.
    let big = "x".repeat(5000);
    for (method, path, body, want, says) in [
        (
            "POST",
            "/pair".to_string(),
            r#"{"pk":"not a key!"}"#.to_string(),
            400,
            "public key",
        ),
        (
            "POST",
            "/pair".to_string(),
            r#"{"pk":"nobody"}"#.to_string(),
            404,
            "no alias",
        ),
        (
            "POST",
            "/pair".to_string(),
            format!(r#"{{"pk":"{}"}}"#, a.pk),
            400,
            "own key",
        ),
        (
            "POST",
            format!("/pair/invites/{}/accept", c.pk),
            "{}".to_string(),
            404,
            "no invite",
        ),
        (
            "POST",
            format!("/pair/{}/message", b.pk),
            format!(r#"{{"text":"{big}"}}"#),
            413,
            "4096",
        ),
        (
            "POST",
            format!("/pair/{}/message", c.pk),
            r#"{"text":"hi"}"#.to_string(),
            404,
            "not paired",
        ),
        (
            "GET",
            "/pair/inbox?since=yesterday".to_string(),
            String::new(),
            400,
            "RFC 3339",
        ),
        (
            "GET",
            "/pair/inbox?limit=0".to_string(),
            String::new(),
            400,
            "limit",
        ),
        (
            "DELETE",
            format!("/pair/{}", c.pk),
            String::new(),
            404,
            "no pair",
        ),
    ] {
        let body = (!body.is_empty()).then_some(body.as_str());
        let (code, got) = a.http(method, &path, body);
        assert_eq!(code, want, "{method} {path}: {got}");
        assert!(got.contains(says), "{method} {path}: {got}");
    }
    let o = a.sc(&["pair", "poll", "--since", "last tuesday"]);
    assert!(
        !o.status.success() && text(&o).contains("RFC 3339"),
        "{}",
        text(&o)
    );

    // remove: gone on both sides.
    let o = a.sc(&["pair", "remove", &b.pk]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(status_of(&a, &b.pk), "");
    wait_status(&b, &a.pk, "");
    let o = a.sc(&["pair", "send", "-t", &b.pk, "-m", "still there?"]);
    assert!(
        !o.status.success() && text(&o).contains("pair add"),
        "{}",
        text(&o)
    );
    wait_lines(&live, &["\"removed\""], 10);

    // decline: A invites again, B declines, A's invite is gone.
    let out = add_until_delivered(&a, &b.pk);
    assert!(out.contains("invited"), "{out}");
    wait_status(&b, &a.pk, "pending-in");
    let o = b.sc(&["pair", "decline", &a.pk]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("declined"), "{}", text(&o));
    assert_eq!(status_of(&b, &a.pk), "");
    wait_status(&a, &b.pk, "");
    let o = b.sc(&["pair", "accept", &a.pk]);
    assert!(
        !o.status.success() && text(&o).contains("no invite"),
        "{}",
        text(&o)
    );
    println!(
        "pairing: add, restart, accept, 2 messages, poll, {} pair event(s) live, remove, decline",
        live.lock().unwrap().len() - 1
    );
}
