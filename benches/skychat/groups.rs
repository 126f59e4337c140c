//! The group half of the skychat bench (issue 15): one post to a group of `members`
//! TCP-direct skychats (`skywire app skychat run --mode tcp`, each a process of its own), the
//! time until every member's `/events` stream shows it; then the owner's feed filled with
//! `catch_up` posts and a fresh member joining: the time until it holds them all and its peak
//! RSS (VmHWM).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use skywire::crypto::Keypair;

use super::common::{Proc, free_port};
use super::{http, spawn, wait_file};

/// One TCP-direct skychat.
struct Sa {
    proc: Proc,
    pk: String,
    http: u16,
    tcp: u16,
    token: String,
}

impl Sa {
    fn call(&self, method: &str, path: &str, body: &str) -> String {
        let (code, r) = http(self.http, &self.token, method, path, body);
        assert_eq!(code, 200, "{method} {path}: {r}");
        r
    }
}

/// Starts a skychat named `name` under `dir`, with a TCP-direct peer (the owner) if given.
fn start(dir: &Path, name: &str, owner: Option<&Sa>) -> Sa {
    let keys = Keypair::generate().unwrap();
    let (http_port, tcp) = (free_port(), free_port());
    let state = dir.join(name);
    let sk = skywire::crypto::hex::encode(keys.seed());
    let listen = format!("127.0.0.1:{tcp}");
    let addr = format!("127.0.0.1:{http_port}");
    let peer = owner.map(|o| format!("tcp://{}@127.0.0.1:{}", o.pk, o.tcp));
    let mut args = vec![
        "app",
        "skychat",
        "run",
        "--mode",
        "tcp",
        "--sk",
        &sk,
        "--listen",
        &listen,
        "--state-dir",
        state.to_str().unwrap(),
        "--log-level",
        "warn",
        "--",
        "--addr",
        &addr,
    ];
    if let Some(p) = &peer {
        args.extend(["--tcp-peer", p]);
    }
    let (proc, line) = spawn(&args, &dir.join(format!("{name}.log")));
    assert!(line.contains("skychat running"), "{line}");
    let token = wait_file(&state.join(format!("skychat-http-{http_port}.token")));
    Sa {
        proc,
        pk: keys.public().to_hex(),
        http: http_port,
        tcp,
        token,
    }
}

/// A number field of a JSON object, found by name (the bench's JSON is flat enough).
fn num(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    let i = json.find(&pat).unwrap_or_else(|| panic!("{key} in {json}"));
    json[i + pat.len()..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

fn string(json: &str, key: &str) -> String {
    let pat = format!("\"{key}\":\"");
    let i = json.find(&pat).unwrap_or_else(|| panic!("{key} in {json}"));
    let rest = &json[i + pat.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// Peak resident set size of `pid`, KiB.
fn hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Follows `m`'s `/events?channel=group` and reports (member, post number, when) for every
/// event whose text carries a `grp-lat-<k>-end` marker.
fn follow(m: &Sa, idx: usize, tx: mpsc::Sender<(usize, usize, Instant)>) {
    let mut s = TcpStream::connect(("127.0.0.1", m.http)).unwrap();
    write!(
        s,
        "GET /events?channel=group HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\r\n",
        m.http, m.token
    )
    .unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(s).lines().map_while(Result::ok) {
            if let Some(k) = line
                .split("grp-lat-")
                .nth(1)
                .and_then(|r| r.split("-end").next())
                .and_then(|k| k.parse().ok())
                && tx.send((idx, k, Instant::now())).is_err()
            {
                return;
            }
        }
    });
}

/// Waits (≤ `secs`) until `f` is true.
fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The bench's rows (markdown table lines).
pub fn run(dir: &Path, members: usize, posts: usize, catch_up: usize) -> String {
    let owner = start(dir, "g-owner", None);
    let r = owner.call("POST", "/groups", r#"{"name":"bench"}"#);
    let gid = string(&r, "id");
    let invite = string(
        &owner.call("POST", &format!("/groups/{gid}/invite"), ""),
        "invite",
    );
    let join = format!(r#"{{"invite":"{invite}"}}"#);
    let t0 = Instant::now();
    let ms: Vec<Sa> = (0..members)
        .map(|i| start(dir, &format!("g-member-{i}"), Some(&owner)))
        .collect();
    for m in &ms {
        m.call("POST", "/groups/join", &join);
    }
    until("every member subscribed", 120, || {
        let (_, i) = http(
            owner.http,
            &owner.token,
            "GET",
            &format!("/groups/{gid}"),
            "",
        );
        i.contains(&format!("\"subscribers\":{members}"))
    });
    let setup = t0.elapsed();

    let (tx, rx) = mpsc::channel();
    for (i, m) in ms.iter().enumerate() {
        follow(m, i, tx.clone());
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut all_ms = Vec::new();
    let mut first_ms = Vec::new();
    for k in 0..posts {
        let t = Instant::now();
        owner.call(
            "POST",
            &format!("/groups/{gid}/message"),
            &format!(r#"{{"message":"grp-lat-{k}-end"}}"#),
        );
        let mut seen = vec![false; members];
        let mut first = None;
        let mut n = 0;
        while n < members {
            let (i, kk, at) = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("post {k}: {n} of {members} members got it in 30 s"));
            if kk == k && !seen[i] {
                seen[i] = true;
                n += 1;
                first.get_or_insert(at);
                if n == members {
                    all_ms.push(at.duration_since(t).as_secs_f64() * 1e3);
                }
            }
        }
        first_ms.push(first.unwrap().duration_since(t).as_secs_f64() * 1e3);
    }
    drop(ms);
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (v[v.len() / 2], v[v.len() - 1])
    };
    let (all50, allmax) = med(&mut all_ms);
    let (first50, _) = med(&mut first_ms);

    // Fill the feed, then time a fresh member's catch-up.
    let t = Instant::now();
    for k in 0..catch_up {
        owner.call(
            "POST",
            &format!("/groups/{gid}/message"),
            &format!(r#"{{"message":"catch-up entry {k} of the group bench"}}"#),
        );
    }
    let fill = t.elapsed();
    let last = num(
        &owner.call("GET", &format!("/groups/{gid}"), ""),
        "last_seq",
    );
    let late = start(dir, "g-late", Some(&owner));
    let t = Instant::now();
    late.call("POST", "/groups/join", &join);
    // Every entry costs the member two Ed25519 verifications (author and owner): the time
    // this takes is what the row measures, so the limit is generous.
    until("the late member caught up", 900, || {
        let (_, i) = http(late.http, &late.token, "GET", &format!("/groups/{gid}"), "");
        i.contains("\"last_seq\":") && num(&i, "last_seq") >= last
    });
    let caught = t.elapsed();
    let hwm = hwm_kib(late.proc.pid());
    let hist = late.call("GET", &format!("/groups/{gid}/history?limit=10000"), "");
    let held = hist.matches("\"seq\":").count();
    drop(late);
    let owner_hwm = hwm_kib(owner.proc.pid());
    format!(
        "| one post to a {members}-member group (TCP-direct, each member its own process): every member's `/events` shows it, p50 / max of {posts} posts | {all50:.1} / {allmax:.1} ms |\n\
         | … the first member to show it, p50 | {first50:.1} ms |\n\
         | {members} members started, joined and subscribed | {:.1} s |\n\
         | owner: {catch_up} posts one at a time (`POST /groups/<id>/message`, each signed and synced) | {:.0} posts/s |\n\
         | a fresh member joining a feed of {last} entries: holding all (`last_seq`), {held} posts in its history | {:.2} s |\n\
         | that member's peak RSS (VmHWM) | {hwm} KiB |\n\
         | owner's peak RSS (VmHWM), the whole run | {owner_hwm} KiB |",
        setup.as_secs_f64(),
        catch_up as f64 / fill.as_secs_f64().max(1e-9),
        caught.as_secs_f64(),
    )
}
