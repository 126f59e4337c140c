//! Skynet through the real binary: five visors on 127.0.0.1 with a separate relay and
//! discovery, stcp and dmsg transports (`transports` in their configs):
//!
//! ```text
//!   A ─stcp─ B ─dmsg─ C ─stcp─ D
//!   └──────dmsg────── E ─stcp──┘
//! ```
//!
//! A 3-hop route A→B→C→D (`via:B,C`) carries [`BIG`] bytes to an echo app on D and back,
//! intact; `route ls` shows the route's rule on every hop and `app routes` the group on both
//! ends; killing B ends the stream of a single route with an error and leaves a `mux:2`
//! stream (legs A–E–D and A–B–C–D) intact; B restarted, its transports come back by
//! themselves. Streams are opened through A's RPC dial upgrade (`POST /v1/dial/<pk>/<port>
//! ?route=P`), the way `skywire cli` tools reach peers. Every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::dmsg::{start_disc, start_relay};
use common::visor::{Visor, free_port, start_visor, text, tmp, write_config};

/// Bytes sent through the 3-hop route (and echoed back).
const BIG: u64 = 100 * 1024 * 1024;
/// The echo port of the test app on every visor.
const ECHO: u16 = 5;
const APPS: &str = r#"[{"name": "test-a", "args": ["--port", "5", "--echo"], "auto_start": true}]"#;

/// A deterministic byte stream (xorshift), so the receiver checks every byte without
/// keeping what was sent.
struct Bytes {
    x: u64,
    word: [u8; 8],
    at: usize,
}

impl Bytes {
    fn new(seed: u64) -> Bytes {
        Bytes {
            x: seed | 1,
            word: [0; 8],
            at: 8,
        }
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            if self.at == 8 {
                self.x ^= self.x << 13;
                self.x ^= self.x >> 7;
                self.x ^= self.x << 17;
                self.word = self.x.to_le_bytes();
                self.at = 0;
            }
            *b = self.word[self.at];
            self.at += 1;
        }
    }
}

struct Node {
    name: &'static str,
    dir: PathBuf,
    config: PathBuf,
    pk: String,
    visor: Option<Visor>,
}

impl Node {
    fn v(&self) -> &Visor {
        self.visor.as_ref().expect("running")
    }
    fn cli(&self, args: &[&str]) -> Output {
        self.v().cli(args)
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("visor.log")).unwrap_or_default()
    }
}

/// Reads one string field of a JSON config (pretty, `"key": "value"`).
fn config_field(cfg: &str, key: &str) -> String {
    let pat = format!("\"{key}\": \"");
    let i = cfg.find(&pat).unwrap_or_else(|| panic!("{key} in {cfg}"));
    let rest = &cfg[i + pat.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn node(name: &'static str, disc: &str, relay: &str) -> Node {
    let dir = tmp(&format!("skynet-{name}"));
    let config = write_config(&dir, None, APPS);
    let mut cfg = std::fs::read_to_string(&config).unwrap();
    for (from, to) in [
        (
            "\"discovery\": \"\"".to_string(),
            format!("\"discovery\": \"{disc}\""),
        ),
        (
            "\"servers\": []".to_string(),
            format!("\"servers\": [\"{relay}\"]"),
        ),
        (
            "\"listen\": \"127.0.0.1:0\"".to_string(),
            format!("\"listen\": \"127.0.0.1:{}\"", free_port()),
        ),
    ] {
        assert!(cfg.contains(&from), "{from} in {cfg}");
        cfg = cfg.replacen(&from, &to, 1);
    }
    std::fs::write(&config, &cfg).unwrap();
    Node {
        name,
        dir,
        pk: config_field(&cfg, "pk"),
        config,
        visor: None,
    }
}

fn set_transports(n: &Node, list: &[(&Node, &str)]) {
    let cfg = std::fs::read_to_string(&n.config).unwrap();
    let items: Vec<String> = list
        .iter()
        .map(|(p, kind)| format!("{{\"pk\": \"{}\", \"type\": \"{kind}\"}}", p.pk))
        .collect();
    let cfg = cfg.replacen(
        "\"transports\": []",
        &format!("\"transports\": [{}]", items.join(", ")),
        1,
    );
    std::fs::write(&n.config, cfg).unwrap();
}

fn start(n: &mut Node) {
    n.visor = Some(start_visor(&n.dir, Some(&n.config)));
}

/// The top-level objects of a JSON array (or of the first array in `json`), as text.
fn objects(json: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut start, mut in_str, mut esc) = (0usize, None, false, false);
    let Some(open) = json.find('[') else {
        return out;
    };
    for (i, ch) in json.char_indices().skip_while(|(i, _)| *i <= open) {
        if in_str {
            match (esc, ch) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match ch {
            '"' => in_str = true,
            '{' | '[' => {
                if depth == 0 && ch == '{' {
                    start = Some(i);
                }
                depth += 1;
            }
            '}' | ']' => {
                if depth == 0 {
                    break;
                }
                depth -= 1;
                if depth == 0
                    && let Some(s) = start.take()
                {
                    out.push(json[s..=i].to_string());
                }
            }
            _ => {}
        }
    }
    out
}

fn compact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_str = false;
    let mut esc = false;
    for ch in s.chars() {
        if in_str {
            out.push(ch);
            match (esc, ch) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
        } else if ch == '"' {
            in_str = true;
            out.push(ch);
        } else if !ch.is_whitespace() {
            out.push(ch);
        }
    }
    out
}

/// `cli visor args… --json`, compacted; panics on failure.
fn json_of(n: &Node, args: &[&str]) -> String {
    let mut a = args.to_vec();
    a.push("--json");
    let o = n.cli(&a);
    assert!(o.status.success(), "{} {args:?}: {}", n.name, text(&o));
    compact(&String::from_utf8_lossy(&o.stdout))
}

/// The transports of `n` that are up, as (peer, type).
fn up_transports(n: &Node) -> Vec<(String, String)> {
    objects(&json_of(n, &["tp", "ls"]))
        .into_iter()
        .filter(|o| o.contains("\"state\":\"up\""))
        .map(|o| (field(&o, "peer"), field(&o, "type")))
        .collect()
}

fn field(obj: &str, key: &str) -> String {
    let pat = format!("\"{key}\":\"");
    match obj.find(&pat) {
        Some(i) => {
            let rest = &obj[i + pat.len()..];
            rest[..rest.find('"').unwrap_or(rest.len())].to_string()
        }
        None => String::new(),
    }
}

/// Waits until `n` has every one of `want` (peer, type) up.
fn wait_transports(n: &Node, want: &[(&Node, &str)], secs: u64) {
    let t0 = Instant::now();
    loop {
        let have = up_transports(n);
        let missing: Vec<String> = want
            .iter()
            .filter(|(p, k)| !have.iter().any(|(pk, kk)| *pk == p.pk && kk == k))
            .map(|(p, k)| format!("{k} to {}", p.name))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{}: transports {missing:?} not up within {secs} s (up: {have:?})\n{}",
            n.name,
            n.log()
        );
        thread::sleep(Duration::from_millis(250));
    }
}

/// A stream from `from`'s RPC to `to`:`port` by route policy `route` (HTTP upgrade).
fn dial(from: &Node, to: &Node, port: u16, route: &str) -> Result<TcpStream, String> {
    let v = from.v();
    let mut s = TcpStream::connect(&v.rpc).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_nodelay(true).unwrap();
    let req = format!(
        "POST /v1/dial/{}/{port}?route={route} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Connection: Upgrade\r\nUpgrade: skywire-stream\r\nContent-Length: 0\r\n\r\n",
        to.pk,
        v.rpc,
        v.token()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    // The answer's head, byte by byte (the stream follows it directly).
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || s.read(&mut b).map_err(|e| e.to_string())? == 0 {
            return Err(format!("bad answer: {}", String::from_utf8_lossy(&head)));
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if !head.starts_with("HTTP/1.1 101") {
        // The error body follows.
        let mut body = vec![0u8; 4096];
        let n = s.read(&mut body).unwrap_or(0);
        return Err(format!(
            "{}{}",
            head.lines().next().unwrap_or(""),
            String::from_utf8_lossy(&body[..n])
        ));
    }
    Ok(s)
}

/// [`dial`], retried for up to `secs` (the graph and entries take a moment to settle).
fn dial_retry(from: &Node, to: &Node, port: u16, route: &str, secs: u64) -> TcpStream {
    let t0 = Instant::now();
    loop {
        match dial(from, to, port, route) {
            Ok(s) => return s,
            Err(e) => {
                assert!(
                    t0.elapsed() < Duration::from_secs(secs),
                    "{}→{} {route}: {e}\n{}",
                    from.name,
                    to.name,
                    from.log()
                );
                thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// What one echo transfer did.
struct Echo {
    sent: Arc<AtomicU64>,
    got: Arc<AtomicU64>,
    done: thread::JoinHandle<Result<u64, String>>,
}

/// Sends `total` bytes of [`Bytes`] on `s` (paced by `pace`, bytes per 10 ms, 0 = no pause)
/// and checks the echo, byte for byte. The result: bytes echoed intact, or why it stopped.
fn echo(s: TcpStream, total: u64, seed: u64, pace: usize) -> Echo {
    let sent = Arc::new(AtomicU64::new(0));
    let got = Arc::new(AtomicU64::new(0));
    let mut w = s.try_clone().unwrap();
    let sent2 = sent.clone();
    let writer = thread::spawn(move || {
        let mut pattern = Bytes::new(seed);
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = total;
        while left > 0 {
            let n = (left as usize).min(if pace > 0 { pace } else { buf.len() });
            pattern.fill(&mut buf[..n]);
            if w.write_all(&buf[..n]).is_err() {
                return;
            }
            sent2.fetch_add(n as u64, Ordering::Relaxed);
            left -= n as u64;
            if pace > 0 {
                thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = w.shutdown(Shutdown::Write);
    });
    let got2 = got.clone();
    let done = thread::spawn(move || {
        let mut r = s;
        let mut pattern = Bytes::new(seed);
        let mut buf = vec![0u8; 64 * 1024];
        let mut want = vec![0u8; 64 * 1024];
        let mut n_got = 0u64;
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return Err(format!("read after {n_got} bytes: {e}")),
            };
            pattern.fill(&mut want[..n]);
            if let Some(i) = (0..n).find(|&i| buf[i] != want[i]) {
                return Err(format!("byte {} differs", n_got + i as u64));
            }
            n_got += n as u64;
            got2.store(n_got, Ordering::Relaxed);
        }
        let _ = writer.join();
        if n_got == total {
            Ok(n_got)
        } else {
            Err(format!("stream ended after {n_got} of {total} bytes"))
        }
    });
    Echo { sent, got, done }
}

/// Waits (at most `secs`) for an echo transfer's result.
fn join_within(e: Echo, secs: u64, what: &str) -> Result<u64, String> {
    let t0 = Instant::now();
    while !e.done.is_finished() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what}: not done within {secs} s (sent {}, echoed {})",
            e.sent.load(Ordering::Relaxed),
            e.got.load(Ordering::Relaxed)
        );
        thread::sleep(Duration::from_millis(50));
    }
    e.done.join().unwrap()
}

fn rules(n: &Node) -> Vec<String> {
    objects(&json_of(n, &["route", "ls"]))
}

#[test]
fn five_visors_routes_survive_and_fail_as_they_should() {
    let (_disc_proc, disc) = start_disc();
    let relay = start_relay(&disc, &[]);
    let relay_arg = relay.arg();
    let mut a = node("A", &disc, &relay_arg);
    let mut b = node("B", &disc, &relay_arg);
    let mut c = node("C", &disc, &relay_arg);
    let mut d = node("D", &disc, &relay_arg);
    let mut e = node("E", &disc, &relay_arg);
    set_transports(&a, &[(&b, "stcp"), (&e, "dmsg")]);
    set_transports(&b, &[(&c, "dmsg")]);
    set_transports(&c, &[(&d, "stcp")]);
    set_transports(&e, &[(&d, "stcp")]);
    for n in [&mut a, &mut b, &mut c, &mut d, &mut e] {
        start(n);
    }
    wait_transports(&a, &[(&b, "stcp"), (&e, "dmsg")], 60);
    wait_transports(&b, &[(&a, "stcp"), (&c, "dmsg")], 60);
    wait_transports(&c, &[(&b, "dmsg"), (&d, "stcp")], 60);
    wait_transports(&d, &[(&c, "stcp"), (&e, "stcp")], 60);
    wait_transports(&e, &[(&a, "dmsg"), (&d, "stcp")], 60);

    // A 3-hop route carries BIG bytes there and back, intact.
    let via = format!("via:{},{}", b.pk, c.pk);
    let s = dial_retry(&a, &d, ECHO, &via, 60);
    let t0 = Instant::now();
    let got = join_within(echo(s, BIG, 7, 0), 600, "3-hop echo").unwrap();
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(got, BIG);
    eprintln!(
        "3-hop route: {} MiB each way in {secs:.1} s ({:.1} MiB/s)",
        BIG >> 20,
        (BIG >> 20) as f64 / secs
    );

    // The route on every hop: a source rule at A, intermediaries at B and C, the
    // destination at D, one group id.
    let src: Vec<String> = rules(&a)
        .into_iter()
        .filter(|r| r.contains("\"kind\":\"source\""))
        .collect();
    assert!(!src.is_empty(), "no source rule at A");
    let gid = |r: &str| {
        let i = r.find("\"group_id\":").expect("group_id") + 11;
        r[i..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
    };
    let group = gid(&src[0]);
    for (n, kind) in [
        (&b, "intermediary"),
        (&c, "intermediary"),
        (&d, "destination"),
    ] {
        let rs = rules(n);
        assert!(
            rs.iter()
                .any(|r| r.contains(&format!("\"kind\":\"{kind}\"")) && gid(r) == group),
            "{}: no {kind} rule of group {group}: {rs:?}",
            n.name
        );
    }
    // `app routes`: the echo app's group at D names A and the three hops.
    // `app routes`: the echo app's group at D names A and the three hops; at A, the group
    // the RPC dial (app `cli`) set up names D, the policy and the hops.
    let groups = json_of(&d, &["app", "routes", "test-a"]);
    assert!(groups.contains(&a.pk), "{groups}");
    for pk in [&b.pk, &c.pk] {
        assert!(groups.contains(pk.as_str()), "{pk} in {groups}");
    }
    let groups = json_of(&a, &["route", "groups"]);
    assert!(groups.contains("\"apps\":[\"cli\"]"), "{groups}");
    for pk in [&b.pk, &c.pk, &d.pk] {
        assert!(groups.contains(pk.as_str()), "{pk} in {groups}");
    }
    assert!(
        groups.contains(&format!("\"policy\":\"{via}\"")),
        "{groups}"
    );

    // An impossible policy fails at once, saying why (no 4-hop path from A to D here).
    let t0 = Instant::now();
    let err = dial(&a, &d, ECHO, "hops:4").expect_err("a 4-hop route to D");
    assert!(
        err.contains("502") && err.contains("4 hops"),
        "hops:4: {err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    eprintln!("hops:4 to D: {err}");

    // Kill B mid-stream: the single route's stream ends with an error; the mux:2 stream
    // (legs A–E–D and A–B–C–D) carries on, intact.
    let single = dial_retry(&a, &d, ECHO, &via, 30);
    let muxed = dial_retry(&a, &d, ECHO, "mux:2", 60);
    let mg = json_of(&a, &["route", "groups"]);
    assert!(
        mg.contains("\"policy\":\"mux:2\"") && mg.contains(&e.pk) && mg.contains(&b.pk),
        "mux:2 legs through E and B: {mg}"
    );
    const PACED: u64 = 16 * 1024 * 1024;
    let one = echo(single, PACED, 11, 32 * 1024);
    let two = echo(muxed, PACED, 13, 32 * 1024);
    let t0 = Instant::now();
    while two.got.load(Ordering::Relaxed) < 2 * 1024 * 1024 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "mux:2 stream stalled"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let mut bv = b.visor.take().unwrap();
    let mut child = bv.proc.take();
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    let r1 = join_within(one, 60, "single route after the kill");
    assert!(
        r1.is_err(),
        "the single route's stream survived its hop's death"
    );
    eprintln!(
        "single route: {} after {:.1} s",
        r1.unwrap_err(),
        killed.elapsed().as_secs_f64()
    );
    let r2 = join_within(two, 300, "mux:2 after the kill");
    assert_eq!(r2, Ok(PACED), "mux:2 stream across the kill");

    // B again: its transports come back without anyone asking (A's and its own
    // persistent ones redial).
    start(&mut b);
    wait_transports(&b, &[(&a, "stcp"), (&c, "dmsg")], 60);
    wait_transports(&a, &[(&b, "stcp")], 60);
    // The mux:2 group got its second leg back (the dead one replaced in the background).
    let t0 = Instant::now();
    loop {
        let groups = objects(&json_of(&a, &["route", "groups"]));
        let mux = groups
            .iter()
            .find(|g| g.contains("\"policy\":\"mux:2\""))
            .cloned()
            .unwrap_or_default();
        if mux.matches("\"state\":\"up\"").count() >= 2 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "mux:2 group without a second leg: {mux}\n{}",
            a.log()
        );
        thread::sleep(Duration::from_millis(250));
    }
    let s = dial_retry(&a, &d, ECHO, &via, 60);
    assert_eq!(
        join_within(echo(s, 1 << 20, 17, 0), 120, "after restart"),
        Ok(1 << 20)
    );

    // `auto` (no route asked for): dmsg at first, a route set up in the background, and the
    // next dial uses it — the echo app at C sees a skynet connection.
    let s = dial_retry(&a, &c, ECHO, "auto", 30);
    assert_eq!(
        join_within(echo(s, 1 << 16, 19, 0), 60, "auto"),
        Ok(1 << 16)
    );
    let t0 = Instant::now();
    loop {
        let groups = objects(&json_of(&a, &["route", "groups"]));
        if groups
            .iter()
            .any(|g| field(g, "peer") == c.pk && g.contains("\"policy\":\"auto\""))
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no auto group to C: {groups:?}\n{}",
            a.log()
        );
        thread::sleep(Duration::from_millis(200));
    }
    let mut s = dial_retry(&a, &c, ECHO, "auto", 30);
    s.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    let conns = compact(&String::from_utf8_lossy(
        &c.cli(&["app", "status", "test-a", "--json"]).stdout,
    ));
    assert!(
        conns.contains(&format!("\"peer\":\"{}\"", a.pk))
            && conns.contains("\"network\":\"skynet\""),
        "the second auto dial did not come over skynet: {conns}"
    );
}
