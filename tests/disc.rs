//! `skywire dmsg disc` driven as a user would: the real binary on 127.0.0.1, curl and our
//! discovery client against it. Signed entries are accepted; forged, replayed, stale,
//! malformed and oversize ones are refused with a status and a JSON error; entries survive a
//! restart with --store; a stalled client does not block others.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use skywire::crypto::Keypair;
use skywire::dmsg::disc::unix_now;
use skywire::dmsg::disc_client::{DiscClient, DiscClientError};
use skywire::dmsg::entry::{Deletion, Entry};

/// Starts discovery on a free port; returns the guard and its URL.
fn start(store: Option<&Path>) -> (common::ChildGuard, String) {
    start_with(store, &[])
}

/// [`start`] with more flags.
fn start_with(store: Option<&Path>, flags: &[&str]) -> (common::ChildGuard, String) {
    let mut cmd = Command::new(common::skywire_bin());
    cmd.args([
        "dmsg",
        "disc",
        "--addr",
        "127.0.0.1:0",
        "--log-level",
        "warn",
    ]);
    cmd.args(flags);
    if let Some(s) = store {
        cmd.arg("--store").arg(s);
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("discovery listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (common::ChildGuard(Some(child)), url)
}

/// curl: returns (status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is needed (Debian package curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// POSTs `body` (fed to curl on stdin) to /entries.
fn post(url: &str, body: &str) -> (u16, String) {
    let mut child = Command::new("curl")
        .args(["-s", "-m", "10", "-w", "\n%{http_code}", "-X", "POST"])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
        ])
        .arg(format!("{url}/entries"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl is needed (Debian package curl)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn entries_accepted_and_refused_over_http() {
    let (_d, url) = start(None);
    let k = Keypair::generate().unwrap();
    let relay = Keypair::generate().unwrap();
    let now = unix_now();

    // A signed entry is stored and served back byte for byte (as JSON).
    let e = Entry::client(&k, 1, now, vec![*relay.public()], vec![]).unwrap();
    let json = e.to_json().to_compact();
    assert_eq!(
        post(&url, &json),
        (200, r#"{"stored":true,"seq":1}"#.into())
    );
    let (st, body) = curl(&[&format!("{url}/entries/{}", k.public())]);
    assert_eq!((st, body.as_str()), (200, json.as_str()));

    // Replayed and out-of-order sequences.
    let (st, body) = post(&url, &json);
    assert_eq!(st, 409, "{body}");
    assert!(body.contains("not above the stored 1"), "{body}");

    // Forged: a field changed after signing.
    let forged = json.replace("\"seq\":1", "\"seq\":2");
    let (st, body) = post(&url, &forged);
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("signature"), "{body}");

    // Signed by someone else for this pk.
    let mut other = Entry::client(&relay, 5, now, vec![], vec![]).unwrap();
    other.pk = *k.public();
    let (st, _) = post(&url, &other.to_json().to_compact());
    assert_eq!(st, 400);

    // Stale and future timestamps.
    let stale = Entry::client(&k, 2, now - 3600, vec![], vec![]).unwrap();
    let (st, body) = post(&url, &stale.to_json().to_compact());
    assert_eq!(st, 422, "{body}");
    assert!(body.contains("behind") && body.contains("NTP"), "{body}");
    let future = Entry::client(&k, 2, now + 3600, vec![], vec![]).unwrap();
    assert_eq!(post(&url, &future.to_json().to_compact()).0, 422);

    // Malformed bodies: each names what is wrong.
    for (bad, want) in [
        ("not json", "JSON"),
        ("[]", "object"),
        (r#"{"pk":"zz","seq":1}"#, "pk"),
        (&json.replace("\"seq\":1", "\"seq\":-1"), "seq"),
        (&json.replace("\"client\"", "\"clients\""), "client"),
    ] {
        let (st, body) = post(&url, bad);
        assert_eq!(st, 400, "{bad}: {body}");
        assert!(
            body.contains("\"error\"") && body.contains(want),
            "{bad}: {body}"
        );
    }
    // Oversize body: refused before reading it.
    let huge = "x".repeat(200 * 1024);
    assert_eq!(post(&url, &huge).0, 413);
    // Unknown pk, bad pk, unknown path, wrong method.
    let nobody = Keypair::generate().unwrap();
    assert_eq!(
        curl(&[&format!("{url}/entries/{}", nobody.public())]).0,
        404
    );
    assert_eq!(curl(&[&format!("{url}/entries/xyz")]).0, 400);
    assert_eq!(curl(&[&format!("{url}/nothing")]).0, 404);
    assert_eq!(curl(&["-X", "PUT", &format!("{url}/relays")]).0, 405);

    // The newer entry is accepted.
    let e2 = Entry::client(&k, 2, now, vec![], vec!["192.0.2.1:7777".into()]).unwrap();
    assert_eq!(post(&url, &e2.to_json().to_compact()).0, 200);

    // Our client sees the same, verified.
    let c = DiscClient::new(&url).unwrap();
    let got = block_on(c.entry(k.public())).unwrap().unwrap();
    assert_eq!(got, e2);
    assert!(block_on(c.entry(nobody.public())).unwrap().is_none());
    match block_on(c.put(&e2)) {
        Err(DiscClientError::Refused(409, m)) => assert!(m.contains("replayed"), "{m}"),
        other => panic!("{other:?}"),
    }

    // Signed deletion: a replayed (old) one is refused, a newer one deletes.
    assert!(block_on(c.delete(&Deletion::new(&k, 2, now))).is_err());
    block_on(c.delete(&Deletion::new(&k, 3, now))).unwrap();
    assert!(block_on(c.entry(k.public())).unwrap().is_none());
}

#[test]
fn relays_listed_by_free_sessions() {
    let (_d, url) = start(None);
    let c = DiscClient::new(&url).unwrap();
    let now = unix_now();
    let (r1, r2, r3) = (
        Keypair::generate().unwrap(),
        Keypair::generate().unwrap(),
        Keypair::generate().unwrap(),
    );
    block_on(c.put(&Entry::relay(&r1, 1, now, "127.0.0.1:8081".into(), 10).unwrap())).unwrap();
    block_on(c.put(&Entry::relay(&r2, 1, now, "127.0.0.1:8082".into(), 0).unwrap())).unwrap();
    block_on(c.put(&Entry::relay(&r3, 1, now, "127.0.0.1:8083".into(), 50).unwrap())).unwrap();
    let relays = block_on(c.relays()).unwrap();
    let pks: Vec<_> = relays.iter().map(|e| e.pk).collect();
    assert_eq!(pks, vec![*r3.public(), *r1.public()]);
    let (st, body) = curl(&[&format!("{url}/relays?all=1")]);
    assert_eq!(st, 200);
    assert_eq!(body.matches("\"addr\"").count(), 3);
    let (_, health) = curl(&[&format!("{url}/health")]);
    assert!(
        health.contains("\"entries\":3") && health.contains("\"relays\":3"),
        "{health}"
    );
}

#[test]
fn store_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("skywire-disc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("disc.json");
    let k = Keypair::generate().unwrap();
    let e = Entry::client(&k, 7, unix_now(), vec![], vec![]).unwrap();
    {
        let (mut d, url) = start(Some(&store));
        assert_eq!(post(&url, &e.to_json().to_compact()).0, 200);
        // The store is written within a second; then the process is killed, not stopped.
        let t0 = std::time::Instant::now();
        while !std::fs::read_to_string(&store).is_ok_and(|t| t.contains(&k.public().to_hex())) {
            assert!(t0.elapsed() < Duration::from_secs(5), "store not written");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut c = d.take();
        c.kill().unwrap();
        c.wait().unwrap();
    }
    let (_d, url) = start(Some(&store));
    let (st, body) = curl(&[&format!("{url}/entries/{}", k.public())]);
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("\"seq\":7"));
    // The sequence survived too: a replay is still refused.
    assert_eq!(post(&url, &e.to_json().to_compact()).0, 409);
    // A store that is not ours is a clear error at startup.
    std::fs::write(&store, "garbage").unwrap();
    let out = Command::new(common::skywire_bin())
        .args(["dmsg", "disc", "--addr", "127.0.0.1:0", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a discovery store"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stalled_clients_do_not_block_others() {
    let (_d, url) = start(None);
    let addr = url.strip_prefix("http://").unwrap().to_string();
    // Ten connections that send half a request and stop.
    let stalled: Vec<_> = (0..10)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"POST /entries HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
                .unwrap();
            s
        })
        .collect();
    for _ in 0..20 {
        let (st, _) = curl(&[&format!("{url}/health")]);
        assert_eq!(st, 200);
    }
    drop(stalled);
    // Port-in-use is a clear error.
    let out = Command::new(common::skywire_bin())
        .args(["dmsg", "disc", "--addr", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

/// One keep-alive HTTP/1.1 connection for many requests in a row (curl per request would
/// take minutes for thousands).
struct KeepAlive {
    r: BufReader<std::net::TcpStream>,
    w: std::net::TcpStream,
}

impl KeepAlive {
    fn connect(url: &str) -> KeepAlive {
        let s = std::net::TcpStream::connect(url.strip_prefix("http://").unwrap()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        KeepAlive {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    /// POSTs `body` to /entries: (status, headers, body).
    fn post(&mut self, body: &str) -> (u16, String, String) {
        // One write (and no Nagle): a request in pieces would wait for delayed ACKs.
        let req = format!(
            "POST /entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.w.write_all(req.as_bytes()).unwrap();
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert!(self.r.read_line(&mut line).unwrap() > 0, "closed: {head}");
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let mut b = vec![0u8; len];
        self.r.read_exact(&mut b).unwrap();
        (status, head, String::from_utf8(b).unwrap())
    }
}

/// Finding 8: one address registering throwaway keys as fast as it can gets 429 after the
/// burst; an existing key still updates and a new key from another address still registers.
#[test]
fn throwaway_keys_from_one_address_are_rate_limited() {
    // Loopback is exempt by default (tests start hundreds of clients from 127.0.0.1):
    // --limit-loopback makes 127.0.0.1 and 127.0.0.2 two ordinary addresses.
    let burst = 32;
    let (_d, url) = start_with(
        None,
        &[
            "--limit-loopback",
            "--new-keys-burst",
            "32",
            "--new-keys-per-min",
            "1",
        ],
    );
    let now = unix_now();
    let mut conn = KeepAlive::connect(&url);
    let t0 = Instant::now();
    let (mut stored, mut limited, mut first) = (Vec::new(), 0usize, None);
    for n in 0..2000u32 {
        if t0.elapsed() > Duration::from_secs(120) {
            break;
        }
        let mut seed = [7u8; 32];
        seed[..4].copy_from_slice(&n.to_be_bytes());
        let k = Keypair::from_seed(&seed);
        let e = Entry::client(&k, 1, now, vec![], vec![]).unwrap();
        let (st, head, body) = conn.post(&e.to_json().to_compact());
        match st {
            200 => stored.push(k),
            429 => {
                limited += 1;
                first.get_or_insert((head, body));
            }
            other => panic!("key {n}: {other} {body}"),
        }
    }
    // One token a minute may have come back while the loop ran.
    let refill = t0.elapsed().as_secs() as usize / 60 + 1;
    assert!(
        stored.len() >= burst && stored.len() <= burst + refill,
        "{} stored, {limited} limited",
        stored.len()
    );
    assert!(limited >= 2000 - burst - refill - 1, "{limited}");
    let (head, body) = first.unwrap();
    assert!(
        head.to_ascii_lowercase().contains("retry-after: "),
        "{head}"
    );
    assert!(
        body.contains("too many new keys from this address"),
        "{body}"
    );
    // An existing key still updates, on the same connection, many times.
    for seq in 2..20 {
        let e = Entry::client(&stored[0], seq, now, vec![], vec![]).unwrap();
        let (st, _, body) = conn.post(&e.to_json().to_compact());
        assert_eq!(st, 200, "{body}");
    }
    // A new key from another address registers (127.0.0.2 is loopback on Linux).
    let k = Keypair::from_seed(&[200; 32]);
    let e = Entry::client(&k, 1, now, vec![], vec![]).unwrap();
    let (st, body) = post_from(&url, "127.0.0.2", &e.to_json().to_compact());
    assert_eq!(st, 200, "{body}");
    // ... and the flooding address is still refused.
    let k = Keypair::from_seed(&[201; 32]);
    let e = Entry::client(&k, 1, now, vec![], vec![]).unwrap();
    assert_eq!(post(&url, &e.to_json().to_compact()).0, 429);
    let (_, health) = curl(&[&format!("{url}/health")]);
    assert!(
        health.contains(&format!("\"entries\":{}", stored.len() + 1)),
        "{health}"
    );
    assert!(health.contains("\"rate_limited\":"), "{health}");
}

/// The default exempts loopback: hundreds of local clients register at once.
#[test]
fn loopback_is_exempt_by_default() {
    let (_d, url) = start(None);
    let now = unix_now();
    let mut conn = KeepAlive::connect(&url);
    for n in 0..300u32 {
        let mut seed = [9u8; 32];
        seed[..4].copy_from_slice(&n.to_be_bytes());
        let e = Entry::client(&Keypair::from_seed(&seed), 1, now, vec![], vec![]).unwrap();
        let (st, _, body) = conn.post(&e.to_json().to_compact());
        assert_eq!(st, 200, "key {n}: {body}");
    }
}

/// POSTs from the local address `from` (curl --interface).
fn post_from(url: &str, from: &str, body: &str) -> (u16, String) {
    let mut child = Command::new("curl")
        .args(["-s", "-m", "10", "-w", "\n%{http_code}", "-X", "POST"])
        .args(["--interface", from, "--data-binary", "@-"])
        .arg(format!("{url}/entries"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl is needed (Debian package curl)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Finding 10: a deleted entry replayed (its old signed form) does not come back.
#[test]
fn deleted_entry_replayed_stays_deleted() {
    let (_d, url) = start(None);
    let c = DiscClient::new(&url).unwrap();
    let k = Keypair::generate().unwrap();
    let now = unix_now();
    let old = Entry::client(&k, 5, now, vec![], vec![]).unwrap();
    block_on(c.put(&old)).unwrap();
    block_on(c.delete(&Deletion::new(&k, 6, now))).unwrap();
    let (st, body) = post(&url, &old.to_json().to_compact());
    assert_eq!(st, 409, "{body}");
    assert!(body.contains("deletion"), "{body}");
    assert!(block_on(c.entry(k.public())).unwrap().is_none());
    let (_, health) = curl(&[&format!("{url}/health")]);
    assert!(health.contains("\"tombstones\":1"), "{health}");
    // The owner signs a newer entry: back.
    block_on(c.put(&Entry::client(&k, 7, now, vec![], vec![]).unwrap())).unwrap();
    assert!(block_on(c.entry(k.public())).unwrap().is_some());
}

/// Finding 10: the identity point (`0100…00`) verifies a "signature" (R = identity, S = 0)
/// for every message, so salty alone lets anyone store an entry for it; it is no identity.
#[test]
fn small_order_pk_entry_is_refused() {
    let (_d, url) = start(None);
    let mut pk = [0u8; 32];
    pk[0] = 1;
    let mut sig = [0u8; 64];
    sig[0] = 1;
    let now = unix_now();
    // The forgery works against salty alone (what discovery checked before).
    let salty_pk = salty::PublicKey::try_from(&pk).unwrap();
    assert!(
        salty_pk
            .verify(b"any message at all", &salty::Signature::from(&sig))
            .is_ok()
    );
    let json = format!(
        r#"{{"pk":"{}","seq":1,"timestamp":{now},"client":{{"relays":[]}},"sig":"{}"}}"#,
        skywire::crypto::hex::encode(&pk),
        skywire::crypto::hex::encode(&sig)
    );
    let (st, body) = post(&url, &json);
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("small order"), "{body}");
    let (st, body) = curl(&[&format!(
        "{url}/entries/{}",
        skywire::crypto::hex::encode(&pk)
    )]);
    assert_eq!(st, 400, "{body}");
    // A 64-hex PK that is no point says so; bad hex says what a PK looks like.
    let mut two = [0u8; 32];
    two[0] = 2;
    let (_, body) = curl(&[&format!(
        "{url}/entries/{}",
        skywire::crypto::hex::encode(&two)
    )]);
    assert!(
        body.contains("not a valid public key: not a point on the curve"),
        "{body}"
    );
    let (_, body) = curl(&[&format!("{url}/entries/abc")]);
    assert!(body.contains("not a public key (64 hex digits)"), "{body}");
}
