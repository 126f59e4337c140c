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
#[ignore = "WIP: the owner never sees the group-join (POST /groups/join answers 504); see the h15-svc report"]
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
    let (code, body) = post(
        &a,
        &format!("/groups/{id}/members"),
        &format!(r#"{{"action":"promote","pk":"{}"}}"#, b.pk),
    );
    assert_eq!(code, 403, "{body}");
    // The owner can; then A adds X.
    let (code, body) = post(
        &o,
        &format!("/groups/{id}/members"),
        &format!(r#"{{"action":"promote","pk":"{}"}}"#, a.pk),
    );
    assert_eq!(code, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = a.http("GET", &format!("/groups/{id}"), None);
        if as_str(get(&parse(&body), "role")) == "admin" || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, body) = post(
        &a,
        &format!("/groups/{id}/members"),
        &format!(r#"{{"action":"add","pk":"{}"}}"#, x.pk),
    );
    assert_eq!(code, 200, "{body}");
    // The founder cannot be demoted.
    let (code, body) = post(
        &o,
        &format!("/groups/{id}/members"),
        &format!(r#"{{"action":"demote","pk":"{}"}}"#, o.pk),
    );
    assert_eq!(code, 403, "{body}");
}
