//! The skychat web page in a real browser (issue 14): Debian's chromium, headless, driven by
//! playwright-core (tests/js/skychat_page.js; tests/deps.d/browser.sh installs both). The
//! page is opened through the login URL `skywire cli skychat web` prints; a message sent
//! from the page is acked and arrives at the peer, and the peer's answer appears on the page
//! without a reload.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ChildGuard;
use common::skychat::*;
use common::visor::text;

#[test]
fn the_page_sends_and_shows_incoming_messages() {
    let js = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js");
    let have = std::path::Path::new("/usr/bin/chromium").exists()
        && std::path::Path::new(js)
            .join("node_modules/playwright-core")
            .exists();
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium or playwright-core missing under CI: tests/deps.d/browser.sh installs them"
        );
        eprintln!(
            "SKIPPED: no /usr/bin/chromium or tests/js/node_modules (run tests/deps.d/browser.sh)"
        );
        return;
    }
    let (_d, disc, relay) = network();
    let mut a = Node::new("WA", &disc, &relay.arg());
    let mut b = Node::new("WB", &disc, &relay.arg());
    a.start();
    b.start();
    // The network is up both ways before the page tries (the page's own send waits 5 s).
    send_acked(&a, &b.pk, "warm up", "dmsg");
    send_acked(&b, &a.pk, "warm up back", "dmsg");

    let o = a.sc(&["web"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    let url = out
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.contains("/login?token="))
        .unwrap_or_else(|| panic!("no login URL in {out}"))
        .to_string();

    let mut child = Command::new("node")
        .arg(format!("{js}/skychat_page.js"))
        .args([&url, &b.pk, "from the page", "reply to the page"])
        .current_dir(js)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut page = ChildGuard(Some(child));
    let mut lines = Vec::new();
    let mut replied = false;
    for l in out.lines().map_while(Result::ok) {
        eprintln!("page: {l}");
        if l == "sent" && !replied {
            // It arrived at B; B answers.
            let (code, h) = b.http("GET", &format!("/history?peer={}", a.pk), None);
            assert_eq!(code, 200, "{h}");
            assert!(h.contains("from the page"), "{h}");
            let body = format!(
                r#"{{"recipient": "{}", "message": "reply to the page", "network": "dmsg", "wait_ms": 10000}}"#,
                a.pk
            );
            let (code, r) = b.http("POST", "/message", Some(&body));
            assert_eq!(code, 200, "{r}");
            replied = true;
        }
        lines.push(l);
    }
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = page.0.as_mut().unwrap().try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the page test hung: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success() && lines.iter().any(|l| l == "ok"),
        "{lines:#?}"
    );
    assert!(replied, "{lines:#?}");
}
