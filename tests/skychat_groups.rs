//! Skychat groups over real visors (issue 15): create, invite, join, post from the owner and
//! a member, the same history everywhere; a forged invite refused. Needs
//! `--features skywire/test-apps`.
#![cfg(feature = "test-apps")]

mod common;

use std::time::{Duration, Instant};

use common::skychat::*;

fn post(n: &Node, path: &str, body: &str) -> (u16, String) {
    n.http("POST", path, Some(body))
}

/// `POST /groups/<id>/members {"action", "pk"}` on `n`.
fn roster(n: &Node, id: &str, action: &str, pk: &str) -> (u16, String) {
    post(
        n,
        &format!("/groups/{id}/members"),
        &format!(r#"{{"action":"{action}","pk":"{pk}"}}"#),
    )
}

/// (seq, from, text) of a group's history on `n`.
fn history(n: &Node, id: &str) -> Vec<(u64, String, String)> {
    let (code, body) = n.http("GET", &format!("/groups/{id}/history?limit=1000"), None);
    assert_eq!(code, 200, "{body}");
    let v = parse(&body);
    items(get(&v, "messages"))
        .iter()
        .map(|m| {
            let text = match get(m, "text") {
                miniserde::json::Value::String(s) => s.clone(),
                _ => String::new(),
            };
            (
                as_u64(get(m, "seq")),
                as_str(get(m, "from")).to_string(),
                text,
            )
        })
        .collect()
}

fn wait_history(n: &Node, id: &str, want: usize) -> Vec<(u64, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = history(n, id);
        if h.len() >= want || Instant::now() > deadline {
            return h;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]

fn owner_and_members_share_one_history_and_an_outsider_is_refused() {
    let (_d, disc, relay) = network();
    let mut o = Node::new("GO", &disc, &relay.arg());
    let mut a = Node::new("GA", &disc, &relay.arg());
    let mut b = Node::new("GB", &disc, &relay.arg());
    let mut x = Node::new("GX", &disc, &relay.arg());
    for n in [&mut o, &mut a, &mut b, &mut x] {
        n.start();
    }
    let (code, body) = post(&o, "/groups", r#"{"name":"club"}"#);
    assert_eq!(code, 200, "{body}");
    let id = as_str(get(&parse(&body), "id")).to_string();
    let (code, body) = post(&o, &format!("/groups/{id}/invite"), "");
    assert_eq!(code, 200, "{body}");
    let invite = as_str(get(&parse(&body), "invite")).to_string();

    for m in [&a, &b] {
        let (code, body) = post(
            m,
            "/groups/join",
            &format!(r#"{{"invite":{}}}"#, json_str(&invite)),
        );
        assert_eq!(code, 200, "{body}");
        assert_eq!(as_str(get(&parse(&body), "role")), "member", "{body}");
    }

    // A forged invite: the right group, a secret the owner never made.
    let mut inv = skywire::apps::skychat::group::invite::decode(&invite).unwrap();
    inv.secret = Some([0x42; 16]);
    let forged = inv.encode().unwrap();
    let (code, body) = post(
        &x,
        "/groups/join",
        &format!(r#"{{"invite":{}}}"#, json_str(&forged)),
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("refused by the owner"), "{body}");
    let (code, _) = x.http("GET", &format!("/groups/{id}"), None);
    assert_eq!(code, 404);

    let (code, body) = post(
        &o,
        &format!("/groups/{id}/message"),
        r#"{"message":"from the owner"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = post(
        &a,
        &format!("/groups/{id}/message"),
        r#"{"message":"from a member"}"#,
    );
    assert_eq!(code, 200, "{body}");

    let ho = wait_history(&o, &id, 2);
    let ha = wait_history(&a, &id, 2);
    let hb = wait_history(&b, &id, 2);
    assert_eq!(ho.len(), 2, "{ho:?}");
    assert_eq!(ho[0].2, "from the owner");
    assert_eq!(ho[1].2, "from a member");
    assert_eq!(ho[1].1, a.pk);
    assert_eq!(ha, ho);
    assert_eq!(hb, ho);

    // A member cannot promote.
    let (code, body) = roster(&a, &id, "promote", &b.pk);
    assert_eq!(code, 403, "{body}");
    // The owner can; then A adds X.
    let (code, body) = roster(&o, &id, "promote", &a.pk);
    assert_eq!(code, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = a.http("GET", &format!("/groups/{id}"), None);
        if as_str(get(&parse(&body), "role")) == "admin" || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, body) = roster(&a, &id, "add", &x.pk);
    assert_eq!(code, 200, "{body}");
    // The founder cannot be demoted.
    let (code, body) = roster(&o, &id, "demote", &o.pk);
    assert_eq!(code, 403, "{body}");
}

fn create(o: &Node, body: &str) -> (String, String) {
    let (code, r) = post(o, "/groups", body);
    assert_eq!(code, 200, "{r}");
    let id = as_str(get(&parse(&r), "id")).to_string();
    let (code, r) = post(o, &format!("/groups/{id}/invite"), "");
    assert_eq!(code, 200, "{r}");
    (id, as_str(get(&parse(&r), "invite")).to_string())
}

fn join(m: &Node, invite: &str) {
    let (code, r) = post(
        m,
        "/groups/join",
        &format!(r#"{{"invite":{}}}"#, json_str(invite)),
    );
    assert_eq!(code, 200, "{r}");
}

fn say(n: &Node, id: &str, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, r) = post(
            n,
            &format!("/groups/{id}/message"),
            &format!(r#"{{"message":{}}}"#, json_str(text)),
        );
        if code == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "{text}: {code} {r}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every file under `dir` named `name`, concatenated.
fn files_named(dir: &std::path::Path, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_named(&p, name));
            } else if p.file_name().is_some_and(|f| f == name) {
                out.extend(std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

#[test]
fn an_offline_member_catches_up_and_the_owner_survives_kill_9() {
    let (_d, disc, relay) = network();
    let mut o = Node::new("CO", &disc, &relay.arg());
    let mut b = Node::new("CB", &disc, &relay.arg());
    o.start();
    b.start();
    let (id, invite) = create(&o, r#"{"name":"catch-up"}"#);
    join(&b, &invite);
    say(&o, &id, "before");
    assert_eq!(wait_history(&b, &id, 1).len(), 1);
    // B is down while 100 are posted.
    drop(b.visor.take());
    for i in 0..100 {
        say(&o, &id, &format!("m-{i:03}"));
    }
    b.start();
    let hb = wait_history(&b, &id, 101);
    let texts: Vec<&str> = hb.iter().map(|h| h.2.as_str()).collect();
    let want: Vec<String> = std::iter::once("before".to_string())
        .chain((0..100).map(|i| format!("m-{i:03}")))
        .collect();
    assert_eq!(texts, want, "all 100, in order, once");
    // The owner is killed (SIGKILL) and restarted: its feed is intact, the group resumes.
    let before = history(&o, &id);
    drop(o.visor.take());
    o.start();
    assert_eq!(history(&o, &id), before);
    say(&o, &id, "after the restart");
    let hb = wait_history(&b, &id, 102);
    assert_eq!(hb.last().map(|h| h.2.as_str()), Some("after the restart"));
    assert_eq!(hb.len(), 102, "nothing twice");
}

#[test]
fn a_private_group_stores_no_plaintext_and_a_removed_member_reads_nothing_later() {
    let (_d, disc, relay) = network();
    let mut o = Node::new("PO", &disc, &relay.arg());
    let mut a = Node::new("PA", &disc, &relay.arg());
    let mut b = Node::new("PB", &disc, &relay.arg());
    for n in [&mut o, &mut a, &mut b] {
        n.start();
    }
    let (id, invite) = create(&o, r#"{"name":"secret club","mode":"private"}"#);
    join(&a, &invite);
    join(&b, &invite);
    let marker = "MARKER-7f3a-plaintext";
    say(&a, &id, marker);
    assert_eq!(
        wait_history(&b, &id, 1).first().map(|h| h.2.as_str()),
        Some(marker)
    );
    // The owner's feed log holds ciphertext only.
    let log = files_named(&o.dir, "feed.log");
    assert!(!log.is_empty(), "no feed.log under {}", o.dir.display());
    assert!(
        !log.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "the owner's feed.log holds the plaintext"
    );
    // B is removed: the key rotates; a later post reaches A and not B.
    let (code, r) = roster(&o, &id, "remove", &b.pk);
    assert_eq!(code, 200, "{r}");
    say(&o, &id, "after the removal");
    let ha = wait_history(&a, &id, 2);
    assert_eq!(
        ha.last().map(|h| h.2.as_str()),
        Some("after the removal"),
        "{ha:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let hb = history(&b, &id);
    assert!(
        hb.iter().all(|h| h.2 != "after the removal"),
        "a removed member read a later post: {hb:?}"
    );
}

/// The same through `skywire cli skychat group …`, as a user types it.
#[test]
fn the_group_cli_creates_invites_joins_sends_and_reads() {
    let (_d, disc, relay) = network();
    let mut o = Node::new("LO", &disc, &relay.arg());
    let mut a = Node::new("LA", &disc, &relay.arg());
    o.start();
    a.start();
    let ok = |n: &Node, args: &[&str]| {
        let out = n.sc(args);
        let t = common::visor::text(&out);
        assert!(out.status.success(), "{args:?}: {t}");
        t
    };
    let t = ok(&o, &["group", "create", "--name", "board club"]);
    assert!(t.contains("created group board club ("), "{t}");
    let t = ok(&o, &["group", "invite", "board club"]);
    let link = t.trim().to_string();
    assert!(link.starts_with("skychat:invite:"), "{t}");
    let t = ok(&a, &["group", "join", &link]);
    assert!(
        t.contains("joined board club") && t.contains("2 member(s)"),
        "{t}"
    );
    let t = ok(&a, &["group", "list"]);
    assert!(t.contains("board club") && t.contains("member"), "{t}");
    // A live listener on the owner, then a post from the member.
    let (_l, mut lines) = o.sc_spawn(&["group", "listen", "board club", "--count", "1"]);
    std::thread::sleep(Duration::from_millis(500));
    let t = ok(&a, &["group", "send", "board club", "-m", "hello, club"]);
    assert!(t.contains("posted as #"), "{t}");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut lines, &mut line).unwrap();
    assert!(line.contains("hello, club"), "{line}");
    let t = ok(&o, &["group", "history", "board club"]);
    assert!(t.contains(&format!("{}: hello, club", a.pk)), "{t}");
    let t = ok(&o, &["group", "info", "board club", "--json"]);
    assert!(t.contains("\"role\":\"founder\""), "{t}");
    // A member may not promote; an unknown group says what to do.
    let out = a.sc(&["group", "promote", "board club", &o.pk]);
    assert!(!out.status.success());
    assert!(
        common::visor::text(&out).contains("not allowed"),
        "{}",
        common::visor::text(&out)
    );
    let out = a.sc(&["group", "send", "nope", "-m", "x"]);
    assert!(
        common::visor::text(&out).contains("group list"),
        "{}",
        common::visor::text(&out)
    );
}
