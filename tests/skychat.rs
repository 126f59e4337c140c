//! Skychat between real visors (issue 14): a discovery, a relay and two visors on
//! 127.0.0.1 with an stcp transport between them, driven through `skywire cli skychat` and
//! the HTTP surface like a user would — acked sends over dmsg and skynet, `listen`, an
//! external SSE client (sseclient-py), `history`, `events`, aliases; an SSE client that
//! reconnects with Last-Event-ID gets exactly what it missed; a receiver killed with
//! SIGKILL while acked sends stream in keeps every one of them.

mod common;

use std::collections::HashSet;
use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::skychat::*;
use common::visor::text;
use miniserde::json::Value;

#[test]
fn two_visors_chat_over_dmsg_and_skynet() {
    let (_d, disc, relay) = network();
    let mut a = Node::new("A", &disc, &relay.arg());
    let mut b = Node::new("B", &disc, &relay.arg());
    a.transport_to(&b);
    a.start();
    b.start();

    // An external SSE client and `listen` on B, before anything is sent.
    let (_py, py_lines) = sse(&b, "/sse", 2, "", "hello over");
    wait_lines(&py_lines, &["open 200"], 10);
    let (_listen, mut listen_out) = b.sc_spawn(&["listen", "--count", "2", "--json"]);
    let listened = Arc::new(Mutex::new(Vec::new()));
    let l2 = listened.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        while listen_out.read_line(&mut line).unwrap_or(0) > 0 {
            l2.lock().unwrap().push(std::mem::take(&mut line));
        }
    });
    std::thread::sleep(Duration::from_millis(500));

    let t = send_acked(&a, &b.pk, "hello over dmsg", "dmsg");
    assert!(
        t.contains(&format!("Acked by {} in", b.pk)) && t.contains("(via dmsg)"),
        "{t}"
    );
    let t = send_acked(&a, &b.pk, "hello over skynet", "skynet");
    assert!(
        t.contains(&format!("Acked by {} in", b.pk)) && t.contains("(via skynet)"),
        "{t}"
    );

    // Both reached the SSE client and `listen`, once each.
    let got = wait_lines(&py_lines, &["hello over dmsg", "hello over skynet"], 15);
    let dm = got.iter().filter(|l| l.contains("hello over dmsg")).count();
    assert_eq!(dm, 1, "{got:#?}");
    let got = wait_lines(&listened, &["hello over dmsg", "hello over skynet"], 15);
    assert_eq!(got.len(), 2, "{got:#?}");

    // History and events on B show both, from A.
    let o = b.sc(&["history", "--peer", &a.pk, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let h = parse(&String::from_utf8_lossy(&o.stdout));
    let bodies: Vec<&str> = items(&h)
        .iter()
        .map(|m| as_str(get(m, "message")))
        .collect();
    assert_eq!(bodies, ["hello over dmsg", "hello over skynet"], "{h:?}");
    let nets: Vec<&str> = items(&h)
        .iter()
        .map(|m| as_str(get(m, "network")))
        .collect();
    assert_eq!(nets, ["dmsg", "skynet"], "{h:?}");
    let o = b.sc(&["events", "--since", "0", "--count", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    let ev = String::from_utf8_lossy(&o.stdout).into_owned();
    for l in ev.lines() {
        let e = parse(l);
        assert_eq!(as_str(get(&e, "from")), a.pk, "{l}");
        assert!(as_u64(get(&e, "seq")) > 0, "{l}");
    }
    assert!(
        ev.contains("hello over dmsg") && ev.contains("hello over skynet"),
        "{ev}"
    );

    // An alias works wherever a PK does.
    let o = a.sc(&["alias", "add", "bob", &b.pk]);
    assert!(o.status.success(), "{}", text(&o));
    let o = a.sc(&["alias", "ls", "--json"]);
    assert!(
        text(&o).contains("bob") && text(&o).contains(&b.pk),
        "{}",
        text(&o)
    );
    let t = send_until_acked(&a, &["send", "-t", "bob", "-m", "by alias", "-w", "10s"]);
    assert!(t.contains(&format!("Acked by {}", b.pk)), "{t}");

    // /status counts what happened.
    let (code, st) = b.http("GET", "/status", None);
    assert_eq!(code, 200, "{st}");
    let st = parse(&st);
    assert!(as_u64(get(&st, "inbound_msg_count")) >= 3, "{st:?}");
    assert_eq!(as_str(get(&st, "visor_pk")), b.pk);
    // No credential: 401; a web page's Origin: 403.
    let (code, _) = http_to(b.port, "GET", "/status", None, None);
    assert_eq!(code, 401);
}

#[test]
fn sse_resumes_with_last_event_id_and_listen_with_since() {
    let (_d, disc, relay) = network();
    let mut a = Node::new("A2", &disc, &relay.arg());
    let mut b = Node::new("B2", &disc, &relay.arg());
    a.start();
    b.start();
    send_acked(&a, &b.pk, "first", "dmsg");

    // Where the client stopped: the seq of "first" in B's events.
    let o = b.sc(&["events", "--since", "0", "--count", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let first = parse(String::from_utf8_lossy(&o.stdout).lines().next().unwrap());
    let seq = as_u64(get(&first, "seq"));

    // 100 messages while no client is connected, each acked.
    for i in 0..100 {
        let body = format!(
            r#"{{"recipient": "{}", "message": {}, "network": "dmsg", "wait_ms": 10000}}"#,
            b.pk,
            json_str(&format!("m-{i:03}"))
        );
        let (code, r) = a.http("POST", "/message", Some(&body));
        assert_eq!(code, 200, "message {i}: {r}");
    }

    // The SSE client resumes after `seq` and gets exactly those 100, in order, once each.
    let (mut py, lines) = sse(&b, "/sse", 100, &seq.to_string(), "m-");
    let child = py.take();
    let status = common::visor::wait_exit(child, 30);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{:#?}",
        lines.lock().unwrap()
    );
    let got: Vec<String> = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("m-"))
        .cloned()
        .collect();
    let want: Vec<String> = (0..100).map(|i| format!("m-{i:03}")).collect();
    let seen: Vec<String> = got
        .iter()
        .map(|l| {
            let data = as_str(get(&parse(l), "data")).to_string();
            as_str(get(&parse(&data), "message")).to_string()
        })
        .collect();
    assert_eq!(seen, want);

    // `listen --since` resumes the same way.
    let o = b.sc(&[
        "listen",
        "--since",
        &seq.to_string(),
        "--count",
        "100",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let texts: Vec<String> = out
        .lines()
        .map(|l| as_str(get(&parse(l), "text")).to_string())
        .collect();
    assert_eq!(texts, want);
}

#[test]
fn receiver_killed_mid_stream_keeps_every_acked_message() {
    let (_d, disc, relay) = network();
    let mut a = Node::new("A3", &disc, &relay.arg());
    let mut b = Node::new("B3", &disc, &relay.arg());
    a.start();
    b.start();
    send_acked(&a, &b.pk, "warm", "dmsg");

    // 1,000 sends from 8 threads, each waiting for its ack (≤ 3 s); B is killed with
    // SIGKILL once 300 are acked.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let next = Arc::new(Mutex::new(0u32));
    let token = a.token();
    let (port, bpk) = (a.port, b.pk.clone());
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (acked, next, token, bpk) = (acked.clone(), next.clone(), token.clone(), bpk.clone());
            std::thread::spawn(move || {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        if *n >= 1000 {
                            return;
                        }
                        *n += 1;
                        *n - 1
                    };
                    let body = format!(
                        r#"{{"recipient": "{bpk}", "message": "k-{i:04}", "network": "dmsg", "wait_ms": 3000}}"#
                    );
                    let (code, r) = http_to(port, "POST", "/message", Some(&body), Some(&token));
                    if code == 200 {
                        let v = parse(&r);
                        if matches!(get(&v, "acked"), Value::Bool(true)) {
                            acked.lock().unwrap().push(as_str(get(&v, "id")).to_string());
                        }
                    }
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    while acked.lock().unwrap().len() < 300 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "300 acks never came"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut v = b.visor.take().unwrap();
    let mut c = v.proc.take();
    c.kill().unwrap(); // SIGKILL
    let _ = c.wait();
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300, "{}", acked.len());

    // After a restart, B's history holds every acked message, none twice.
    b.start();
    let (code, h) = b.http("GET", &format!("/history?peer={}&limit=1000", a.pk), None);
    assert_eq!(code, 200, "{h}");
    let h = parse(&h);
    let ids: Vec<&str> = items(&h).iter().map(|m| as_str(get(m, "id"))).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a message stored twice");
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !unique.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acked messages lost after SIGKILL: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "kill -9: {} acked before/around the kill, {} stored after restart, 0 lost",
        acked.len(),
        ids.len()
    );
}

/// `tmux -L <our socket> args…` (a server of our own, killed at the end).
fn tmux(sock: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("tmux")
        .args(["-L", sock])
        .args(args)
        .output()
        .expect("tmux (tests/deps.d/tools.sh installs it)")
}

fn pane(sock: &str) -> String {
    String::from_utf8_lossy(&tmux(sock, &["capture-pane", "-p", "-t", "chat"]).stdout).into_owned()
}

fn wait_pane(sock: &str, want: &str, secs: u64) -> String {
    let t0 = Instant::now();
    loop {
        let p = pane(sock);
        if p.contains(want) {
            return p;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{want:?} never on the screen:\n{p}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn chat_terminal_ui_sends_receives_and_restores_the_terminal() {
    let (_d, disc, relay) = network();
    let mut a = Node::new("CA", &disc, &relay.arg());
    let mut b = Node::new("CB", &disc, &relay.arg());
    a.start();
    b.start();
    send_acked(&a, &b.pk, "said before", "dmsg");

    let sock = format!("skychat-test-{}", std::process::id());
    let stty_after = a.dir.join("stty-after.txt");
    let cmd = format!(
        "{} cli skychat --addr {} -c {} chat -t {}; echo CHAT-EXITED $?; stty -a > {}; sleep 60",
        common::skywire_bin().display(),
        a.addr(),
        a.config.display(),
        b.pk,
        stty_after.display()
    );
    let o = tmux(
        &sock,
        &[
            "new-session",
            "-d",
            "-s",
            "chat",
            "-x",
            "120",
            "-y",
            "30",
            &cmd,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = tmux(&self.0, &["kill-server"]);
        }
    }
    let _kill = Kill(sock.clone());

    // History above the input line.
    wait_pane(&sock, "said before", 15);
    // A typed line is sent and acked (B stores it).
    let o = tmux(
        &sock,
        &["send-keys", "-t", "chat", "typed in the tui", "Enter"],
    );
    assert!(o.status.success());
    wait_pane(&sock, "typed in the tui", 10);
    let t0 = Instant::now();
    loop {
        let (_, h) = b.http("GET", &format!("/history?peer={}", a.pk), None);
        if h.contains("typed in the tui") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "B never got it: {h}\n{}",
            pane(&sock)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // An incoming message appears live.
    let body = format!(
        r#"{{"recipient": "{}", "message": "incoming while chatting", "network": "dmsg", "wait_ms": 10000}}"#,
        a.pk
    );
    let (code, r) = b.http("POST", "/message", Some(&body));
    assert_eq!(code, 200, "{r}");
    wait_pane(&sock, "incoming while chatting", 15);
    // Ctrl-C ends it and the terminal is back in cooked mode with echo.
    let o = tmux(&sock, &["send-keys", "-t", "chat", "C-c"]);
    assert!(o.status.success());
    wait_pane(&sock, "CHAT-EXITED", 10);
    let t0 = Instant::now();
    let stty = loop {
        if let Ok(s) = std::fs::read_to_string(&stty_after)
            && !s.is_empty()
        {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "no stty output");
        std::thread::sleep(Duration::from_millis(50));
    };
    let words: Vec<&str> = stty.split_whitespace().collect();
    for want in ["icanon", "echo", "isig"] {
        assert!(words.contains(&want), "{want} not restored: {stty}");
    }
}

/// `-n auto` (the default) goes over skynet when a transport to the peer exists and falls
/// back to dmsg when none does; a cached connection that died with its peer is redialled
/// and the send still acked.
#[test]
fn auto_prefers_skynet_falls_back_to_dmsg_and_redials_a_dead_connection() {
    let (_d, disc, relay) = network();
    let mut a = Node::new("AA", &disc, &relay.arg());
    let mut b = Node::new("AB", &disc, &relay.arg());
    let mut c = Node::new("AC", &disc, &relay.arg());
    a.transport_to(&b);
    a.start();
    b.start();
    c.start();
    let auto = |to: &Node, msg: &str| {
        let t0 = Instant::now();
        loop {
            let o = a.sc(&["send", "-t", &to.pk, "-m", msg, "-w", "10s"]);
            let t = text(&o);
            if o.status.success() {
                return t;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "{t}");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    // The stcp transport comes up after the visors do: until then auto may take dmsg.
    let t0 = Instant::now();
    loop {
        let t = auto(&b, "to B");
        if t.contains("(via skynet)") {
            break;
        }
        assert!(t.contains("(via dmsg)"), "{t}");
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "never over skynet: {t}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let t = auto(&c, "to C");
    assert!(t.contains("(via dmsg)"), "no transport to C, so dmsg: {t}");
    // B restarts: A's cached connection to it is dead; the next send redials.
    drop(b.visor.take());
    b.start();
    let t = auto(&b, "after B restarted");
    assert!(t.contains("Acked by"), "{t}");
    let (code, h) = b.http("GET", &format!("/history?peer={}", a.pk), None);
    assert_eq!(code, 200, "{h}");
    assert!(h.contains("after B restarted"), "{h}");
}
