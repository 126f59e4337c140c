//! The hypervisor (issue 18) end to end: visor A hosts the embedded network and runs the
//! hypervisor app on a free loopback port; B, C and D join A's relay with A in their
//! `hypervisors`, so they dial A's port 46 and A manages them.
//!
//! - [`the_page_manages_the_fleet`]: the page in a real browser (Debian's chromium, headless,
//!   driven by playwright-core: tests/js/hypervisor_page.js; tests/deps.d/browser.sh
//!   installs both): login, the list, an app stopped and started, a transport added, the
//!   routes/logs/info tabs, the terminal (with `hv-term`), logout. It writes the screenshots
//!   docs/hypervisor.md shows: to `docs/hypervisor/` with `HV_SCREENSHOTS=docs`, else to a
//!   temporary directory.
//! - [`the_api_refuses_what_it_must`]: no browser: the session and CSRF checks, the
//!   Host/Origin guard, the login rate limit, hostile HTTP (and hostile WebSocket frames on
//!   the terminal, with `hv-term`), and that a visor not listing A is not A's to manage.
//!
//! Run: `cargo test --test hypervisor_web` (the default build has the terminal; a build
//! without `hv-term` skips its steps and checks `/term` is 404); `HV_SCREENSHOTS=docs cargo test --test hypervisor_web the_page` rewrites the
//! screenshots.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ChildGuard;
use common::skychat::{dechunk, get, items, parse};
use common::visor::{Visor, free_port, json_field, start_visor, text, tmp, write_config};
use miniserde::json::Value;

// ---- a tiny HTTP/1.1 client (std only) ---------------------------------------------------

/// One answer: status, headers (names lower-cased), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `raw` on a new connection, half-closes nothing, reads to the end (the requests
/// say `Connection: close`). `Err` when the connection failed before a status line came.
fn exchange(port: u16, raw: &[u8]) -> Result<Answer, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    // A write error (the server closed early, e.g. on an oversized header) still lets an
    // answer already sent be read.
    let wrote = s.write_all(raw);
    let mut buf = Vec::new();
    let read = s.read_to_end(&mut buf);
    let t = String::from_utf8_lossy(&buf).into_owned();
    let Some((head, body)) = t.split_once("\r\n\r\n") else {
        return Err(format!(
            "no answer (write: {wrote:?}, read: {read:?}, got {} bytes: {:?})",
            buf.len(),
            &t[..t.len().min(200)]
        ));
    };
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// A request to the hypervisor on `port`: `Host: 127.0.0.1:port` unless `headers` has a
/// `Host`; `Connection: close`; a body with its `Content-Length`.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let mut raw = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        raw.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("Connection: close\r\n");
    if let Some(b) = body {
        raw.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    raw.push_str("\r\n");
    if let Some(b) = body {
        raw.push_str(b);
    }
    exchange(port, raw.as_bytes()).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A logged-in session: the cookie header value (`hv=…`) and the CSRF token.
#[derive(Debug, Clone)]
struct Session {
    cookie: String,
    csrf: String,
}

fn login_body(pw: &str) -> String {
    format!(
        "{{\"password\":{}}}",
        miniserde::json::to_string(&pw.to_string())
    )
}

fn login(port: u16, pw: &str) -> Session {
    let a = http(port, "POST", "/api/login", &[], Some(&login_body(pw)));
    assert_eq!(a.status, 200, "login: {a:?}");
    let set = a
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no Set-Cookie: {a:?}"));
    for want in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(want), "the cookie lacks {want}: {set}");
    }
    let cookie = set.split(';').next().unwrap().trim().to_string();
    assert!(cookie.starts_with("hv=") && cookie.len() > 3 + 32, "{set}");
    let csrf = json_field(&a.body, "csrf");
    Session { cookie, csrf }
}

impl Session {
    fn get(&self, port: u16, path: &str) -> Answer {
        http(port, "GET", path, &[("Cookie", &self.cookie)], None)
    }
    /// A state-changing request with the cookie and the CSRF token.
    fn send(&self, port: u16, method: &str, path: &str, body: Option<&str>) -> Answer {
        http(
            port,
            method,
            path,
            &[("Cookie", &self.cookie), ("X-CSRF-Token", &self.csrf)],
            body,
        )
    }
}

/// `/api/visors` as (pk, online, local).
fn visors(port: u16, s: &Session) -> Vec<(String, bool, bool)> {
    let a = s.get(port, "/api/visors");
    assert_eq!(a.status, 200, "{a:?}");
    let v = parse(&a.body);
    items(get(&v, "items"))
        .iter()
        .map(|x| {
            let b = |k: &str| matches!(get(x, k), Value::Bool(true));
            let pk = match get(x, "pk") {
                Value::String(s) => s.clone(),
                o => panic!("pk: {o:?}"),
            };
            (pk, b("online"), b("local"))
        })
        .collect()
}

// ---- the fleet ---------------------------------------------------------------------------

struct Fleet {
    a: Visor,
    /// B, C, D… (listing A in `hypervisors`).
    remotes: Vec<Visor>,
    /// The hypervisor's web UI port.
    port: u16,
    password: String,
    relay: String,
    dir: PathBuf,
}

/// No skychat on A: its HTTP surface's fixed default port (8001) could be taken; the
/// joined visors run it on ports of their own (the page's chat tab uses it).
const NO_SKYCHAT: &str = r#"{"name": "skychat", "auto_start": false}"#;

/// A joined visor, running skychat on a free port; `hypervisor`: the PK it lists in
/// `hypervisors` (None: none).
fn joined(dir: &Path, relay: &str, hypervisor: Option<&str>) -> Visor {
    let chat = format!(
        r#"{{"name": "skychat", "auto_start": true, "args": ["--addr", "127.0.0.1:{}"]}}"#,
        free_port()
    );
    let cfg = write_config(dir, Some(relay), &format!("[{chat}]"));
    if let Some(hv) = hypervisor {
        let text = std::fs::read_to_string(&cfg).unwrap();
        let empty = "\"hypervisors\": []";
        assert!(
            text.contains(empty),
            "no {empty} in the generated config: {text}"
        );
        std::fs::write(
            &cfg,
            text.replace(empty, &format!("\"hypervisors\": [\"{hv}\"]")),
        )
        .unwrap();
    }
    start_visor(dir, Some(&cfg))
}

/// The password a hypervisor printed on its first start into `log` (its stderr).
fn first_password(log: &Path) -> String {
    let pat = "the web UI password is ";
    let t0 = Instant::now();
    loop {
        let t = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(i) = t.find(pat) {
            let pw: String = t[i + pat.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert_eq!(pw.len(), 16, "{t}");
            return pw;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the hypervisor printed no password in {}:\n{t}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the hypervisor serves and every visor in `want` (and A) is listed online.
fn wait_online(f: &Fleet, s: &Session, want: &[&str]) {
    let t0 = Instant::now();
    loop {
        let vs = visors(f.port, s);
        let ok = vs
            .iter()
            .any(|(pk, on, local)| pk == &f.a.pk && *on && *local)
            && want
                .iter()
                .all(|w| vs.iter().any(|(pk, on, local)| pk == w && *on && !*local));
        if ok {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "not every visor came online at the hypervisor: want {want:?}, have {vs:?}\nA's log:\n{}",
            std::fs::read_to_string(f.dir.join("a/visor.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A (embedded network + hypervisor) and `n` visors listing A; logged in once they are all
/// listed online.
fn fleet(name: &str, n: usize) -> (Fleet, Session) {
    let dir = tmp(name);
    let port = free_port();
    let apps = format!(
        r#"[{{"name": "hypervisor", "auto_start": true, "args": ["--addr", "127.0.0.1:{port}"]}}, {NO_SKYCHAT}]"#
    );
    let ca = write_config(&dir.join("a"), None, &apps);
    let a = start_visor(&dir.join("a"), Some(&ca));
    let password = first_password(&dir.join("a/visor.log"));
    a.wait_state("hypervisor", "running");
    let relay = json_field(&a.info(), "hosted_relay");
    let remotes: Vec<Visor> = (0..n)
        .map(|i| {
            let d = dir.join(format!("r{i}"));
            joined(&d, &relay, Some(&a.pk))
        })
        .collect();
    let f = Fleet {
        a,
        remotes,
        port,
        password,
        relay,
        dir,
    };
    let s = login(f.port, &f.password);
    let want: Vec<&str> = f.remotes.iter().map(|v| v.pk.as_str()).collect();
    wait_online(&f, &s, &want);
    (f, s)
}

fn png_ok(p: &Path) -> Result<u64, String> {
    let b = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    if b.len() < 1000 || !b.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(format!(
            "{}: not a (non-empty) PNG: {} bytes",
            p.display(),
            b.len()
        ));
    }
    Ok(b.len() as u64)
}

// ---- the browser test ----------------------------------------------------------------------

#[test]
fn the_page_manages_the_fleet() {
    let js = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js");
    let have = Path::new("/usr/bin/chromium").exists()
        && Path::new(js).join("node_modules/playwright-core").exists();
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
    let term = cfg!(feature = "hv-term");
    let (f, _s) = fleet("hvweb", 3);
    let shots = match std::env::var("HV_SCREENSHOTS").as_deref() {
        Ok("docs") => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/hypervisor")),
        _ => f.dir.join("shots"),
    };
    std::fs::create_dir_all(&shots).unwrap();
    let mut names = vec![
        "list.png",
        "apps.png",
        "transports.png",
        "routes.png",
        "logs.png",
        "info.png",
        "chat.png",
        "power.png",
        "offline.png",
    ];
    if term {
        names.push("terminal.png");
    }
    for n in &names {
        let _ = std::fs::remove_file(shots.join(n));
    }

    let url = format!("http://127.0.0.1:{}/", f.port);
    let mut args = vec![format!("{js}/hypervisor_page.js"), url, f.password.clone()];
    args.extend(f.remotes.iter().map(|v| v.pk.clone()));
    args.push(shots.to_str().unwrap().to_string());
    if term {
        args.push("term".into());
    }
    let mut child = Command::new("node")
        .args(&args)
        .current_dir(js)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut page = ChildGuard(Some(child));
    // The script's own waits bound it; this bounds a hung browser.
    let pid = page.0.as_ref().unwrap().id();
    let lines: Vec<String> = out
        .lines()
        .map_while(Result::ok)
        .inspect(|l| eprintln!("page: {l}"))
        .collect();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = page.0.as_mut().unwrap().try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the page test (pid {pid}) hung: {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success() && lines.last().map(String::as_str) == Some("ok"),
        "the page test failed ({status}):\n{}\nA's log:\n{}",
        lines.join("\n"),
        std::fs::read_to_string(f.dir.join("a/visor.log")).unwrap_or_default()
    );
    for step in [
        "login",
        "visor list",
        "apps: logserver stopped",
        "edit",
        "chat",
        "power: D restarted",
        "power: D shut down",
        "logout",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("ok {step}"))),
            "no `ok {step}`: {lines:#?}"
        );
    }
    if !term {
        eprintln!(
            "NOTE: the binary is built without `hv-term`: the terminal steps did not run \
             (the default features run them)"
        );
    }
    for n in &names {
        let p = shots.join(n);
        match png_ok(&p) {
            Ok(len) => eprintln!("screenshot {} ({len} bytes)", p.display()),
            Err(e) => panic!("{e}"),
        }
    }
    // D was shut down from the page: its process ended, with status 0.
    let mut f = f;
    let d = f.remotes[2].proc.take();
    let st = common::visor::wait_exit(d, 10).expect("D did not exit after the page's shutdown");
    assert!(st.success(), "D exited with {st:?}");
    let log = std::fs::read_to_string(f.remotes[2].dir.join("visor.log")).unwrap_or_default();
    assert!(
        log.contains("RPC: restarting"),
        "D's log has no restart: {log}"
    );
    // The page's actions happened on B: logserver runs again, the transport to C is there.
    let b = &f.remotes[0];
    b.wait_state("logserver", "running");
    let o = b.cli(&["tp", "ls", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&f.remotes[1].pk),
        "B has no transport to C: {}",
        text(&o)
    );
}

// ---- the API without a browser ---------------------------------------------------------

/// The server still answers a logged-in GET after `what`.
fn still_serves(port: u16, s: &Session, what: &str) {
    let a = s.get(port, "/api/session");
    assert_eq!(
        a.status, 200,
        "after {what} the server no longer answers: {a:?}"
    );
}

/// `raw` on a connection of its own: the answer must be an error status (or the connection
/// just closes); then the server still answers.
fn hostile(port: u16, s: &Session, what: &str, raw: &[u8], statuses: &[u16]) {
    match exchange(port, raw) {
        Ok(a) => assert!(
            statuses.contains(&a.status),
            "{what}: answered {} (want one of {statuses:?} or a closed connection): {a:?}",
            a.status
        ),
        Err(e) => eprintln!("{what}: the connection closed without an answer ({e})"),
    }
    still_serves(port, s, what);
}

#[test]
fn the_api_refuses_what_it_must() {
    let (f, s) = fleet("hvapi", 1);
    let port = f.port;
    let b = &f.remotes[0];
    let bp = |rest: &str| format!("/api/visors/{}{rest}", b.pk);

    // The page itself is served to anyone (it holds no data), with its guards.
    let page = http(port, "GET", "/", &[], None);
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"), "{page:?}");
    assert!(
        page.header("content-security-policy")
            .is_some_and(|c| c.contains("frame-ancestors 'none'")),
        "{page:?}"
    );

    // No cookie: 401 everywhere under /api/ but the login.
    let start_x = bp("/v1/apps/x/start");
    let del_x = bp("/v1/transports/x");
    let no_cookie: [(&str, &str); 5] = [
        ("GET", "/api/visors"),
        ("GET", "/api/session"),
        ("POST", &start_x),
        ("DELETE", &del_x),
        ("POST", "/api/logout"),
    ];
    for (m, p) in no_cookie {
        let a = http(port, m, p, &[], None);
        assert_eq!(a.status, 401, "{m} {p} without a cookie: {a:?}");
        // A made-up cookie is no better.
        let a = http(
            port,
            m,
            p,
            &[("Cookie", &format!("hv={}", "ab".repeat(32)))],
            None,
        );
        assert_eq!(a.status, 401, "{m} {p} with a made-up cookie: {a:?}");
    }

    // The cookie without (or with a wrong) X-CSRF-Token: every POST/DELETE is 403.
    let stop_ls = bp("/v1/apps/logserver/stop");
    let changes: [(&str, &str); 4] = [
        ("POST", &start_x),
        ("DELETE", &del_x),
        ("POST", &stop_ls),
        ("POST", "/api/logout"),
    ];
    for (m, p) in changes {
        let a = http(port, m, p, &[("Cookie", &s.cookie)], None);
        assert_eq!(a.status, 403, "{m} {p} without X-CSRF-Token: {a:?}");
        let a = http(
            port,
            m,
            p,
            &[("Cookie", &s.cookie), ("X-CSRF-Token", &"0".repeat(64))],
            None,
        );
        assert_eq!(a.status, 403, "{m} {p} with a wrong X-CSRF-Token: {a:?}");
    }
    // Nothing happened: logserver on B still runs, the session is still good.
    assert!(b.app_json("logserver").contains("\"state\":\"running\""));
    still_serves(port, &s, "the refused changes");

    // A foreign Host (DNS rebinding) or a foreign Origin (a cross-site page) is 403, with a
    // good session too, and for the login.
    let foreign: [(&str, &str); 4] = [
        ("Host", "evil.example"),
        ("Host", "evil.example:80"),
        ("Origin", "http://evil.example"),
        ("Origin", "null"),
    ];
    let foreign_port_host = format!("127.0.0.1:{}", port + 1);
    for (k, v) in foreign
        .iter()
        .copied()
        .chain([("Host", foreign_port_host.as_str())])
    {
        let a = http(
            port,
            "GET",
            "/api/visors",
            &[("Cookie", &s.cookie), (k, v)],
            None,
        );
        assert_eq!(a.status, 403, "GET /api/visors with {k}: {v}: {a:?}");
        let a = http(
            port,
            "POST",
            &stop_ls,
            &[("Cookie", &s.cookie), ("X-CSRF-Token", &s.csrf), (k, v)],
            None,
        );
        assert_eq!(a.status, 403, "POST stop with {k}: {v}: {a:?}");
        let a = http(
            port,
            "POST",
            "/api/login",
            &[(k, v)],
            Some(&login_body(&f.password)),
        );
        assert_eq!(a.status, 403, "login with {k}: {v}: {a:?}");
    }
    // The page's own origin passes (that is how the browser sends its POSTs).
    let own = format!("http://127.0.0.1:{port}");
    let a = http(
        port,
        "GET",
        "/api/visors",
        &[("Cookie", &s.cookie), ("Origin", &own)],
        None,
    );
    assert_eq!(a.status, 200, "same-origin GET: {a:?}");

    // Managing a listed visor works: through the hypervisor, B's logserver stops and starts.
    let a = s.get(port, &bp("/v1/info"));
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.contains(&b.pk), "{a:?}");
    let a = s.send(port, "POST", &stop_ls, None);
    assert_eq!(a.status, 200, "stop B's logserver: {a:?}");
    b.wait_state("logserver", "stopped");
    let a = s.send(port, "POST", &bp("/v1/apps/logserver/start"), None);
    assert_eq!(a.status, 200, "start B's logserver: {a:?}");
    b.wait_state("logserver", "running");
    // …but never the dial upgrade (streams with B's identity).
    let a = s.send(port, "POST", &bp(&format!("/v1/dial/{}/80", f.a.pk)), None);
    assert_eq!(a.status, 403, "/v1/dial through the hypervisor: {a:?}");
    let a = s.send(port, "POST", &bp("/v1/pty"), None);
    assert_eq!(a.status, 403, "/v1/pty through the hypervisor: {a:?}");
    // A PK that is no key at all.
    let a = s.get(port, "/api/visors/zz/v1/info");
    assert_eq!(a.status, 400, "{a:?}");

    // Visor E joins the same network but does not list A: it never shows up, and A cannot
    // reach its RPC.
    let e = joined(&f.dir.join("e"), &f.relay, None);
    let t0 = Instant::now();
    loop {
        // E is on the relay (A reaches it over dmsg), so it could have dialed A by now.
        let o = f.a.cli(&["ping", &e.pk, "-n", "1"]);
        if o.status.success() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "E never reachable: {}",
            text(&o)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Longer than a listed visor takes to show up (its first redial is 1 s after it starts).
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        let vs = visors(port, &s);
        assert!(
            !vs.iter().any(|(pk, ..)| pk == &e.pk),
            "E, which does not list A, is in /api/visors: {vs:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let a = s.get(port, &format!("/api/visors/{}/v1/info", e.pk));
    assert_eq!(a.status, 404, "E's RPC through A: {a:?}");
    let a = s.send(
        port,
        "POST",
        &format!("/api/visors/{}/v1/apps/logserver/stop", e.pk),
        None,
    );
    assert_eq!(a.status, 404, "stop E's logserver through A: {a:?}");
    assert!(e.app_json("logserver").contains("\"state\":\"running\""));
    // B is still managed.
    let a = s.get(port, &bp("/v1/apps"));
    assert_eq!(a.status, 200, "{a:?}");

    // Hostile HTTP: each gets an error or a closed connection, and the server goes on.
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    let big_header = format!(
        "GET /api/visors HTTP/1.1\r\n{host}Cookie: {}\r\nX-Big: {}\r\n\r\n",
        s.cookie,
        "a".repeat(100 * 1024)
    );
    hostile(
        port,
        &s,
        "a 100 KiB header",
        big_header.as_bytes(),
        &[400, 431],
    );
    hostile(
        port,
        &s,
        "a bad request line",
        format!("GARBAGE\r\n{host}\r\n").as_bytes(),
        &[400],
    );
    hostile(
        port,
        &s,
        "a request line of spaces",
        b"    \r\n\r\n",
        &[400, 408],
    );
    hostile(
        port,
        &s,
        "HTTP/9",
        format!("GET / HTTP/9.9\r\n{host}\r\n").as_bytes(),
        &[400, 505],
    );
    // The login's own limit (1 KiB), then the server's (64 KiB).
    let pw_big = login_body(&"x".repeat(2048));
    let raw = format!(
        "POST /api/login HTTP/1.1\r\n{host}Connection: close\r\nContent-Length: {}\r\n\r\n{pw_big}",
        pw_big.len()
    );
    hostile(port, &s, "a 2 KiB login body", raw.as_bytes(), &[413]);
    let pw_huge = login_body(&"x".repeat(100 * 1024));
    let raw = format!(
        "POST /api/login HTTP/1.1\r\n{host}Connection: close\r\nContent-Length: {}\r\n\r\n{pw_huge}",
        pw_huge.len()
    );
    hostile(port, &s, "a 100 KiB login body", raw.as_bytes(), &[413]);
    let raw = format!(
        "POST /api/login HTTP/1.1\r\n{host}Connection: close\r\nContent-Length: 99999999999\r\n\r\n"
    );
    hostile(
        port,
        &s,
        "a 100 GB Content-Length",
        raw.as_bytes(),
        &[400, 413],
    );
    let raw = format!(
        "POST /api/login HTTP/1.1\r\n{host}Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    hostile(
        port,
        &s,
        "a chunked login body",
        raw.as_bytes(),
        &[400, 411],
    );
    // Garbage, then close (no answer expected).
    {
        let mut g = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let junk: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let _ = g.write_all(&junk);
        let _ = g.shutdown(Shutdown::Both);
    }
    still_serves(port, &s, "garbage bytes then close");
    // A connection that sends half a request and stalls does not hold the server up.
    let mut stall = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stall.write_all(b"GET /api/visors HTTP/1.1\r\nHo").unwrap();
    still_serves(port, &s, "a stalled half request");
    drop(stall);

    // Hostile WebSocket frames on the terminal.
    if cfg!(feature = "hv-term") {
        term_hostile(&f, &s);
    } else {
        // This part needs the terminal (src/apps/hypervisor/term.rs, feature `hv-term`, in
        // the default build).
        eprintln!(
            "NOTE: built without `hv-term`: the hostile WebSocket frames were not sent \
             (the default features send them)"
        );
        let a = s.get(port, &bp("/term?rows=24&cols=80"));
        assert_eq!(a.status, 404, "/term without hv-term: {a:?}");
    }

    // Logout ends the session: the old cookie is 401 afterwards.
    let s2 = login(port, &f.password);
    let a = s2.send(port, "POST", "/api/logout", None);
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        a.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0")),
        "{a:?}"
    );
    let a = s2.get(port, "/api/visors");
    assert_eq!(a.status, 401, "the logged-out cookie: {a:?}");
    still_serves(port, &s, "another session's logout");

    // The login rate limit: 5 wrong passwords are answered 401, then 429 with Retry-After,
    // even for the right password, until the wait is over.
    for i in 1..=5 {
        let a = http(
            port,
            "POST",
            "/api/login",
            &[],
            Some(&login_body(&format!("wrong {i}"))),
        );
        assert_eq!(a.status, 401, "wrong password #{i}: {a:?}");
    }
    let a = http(
        port,
        "POST",
        "/api/login",
        &[],
        Some(&login_body("wrong 6")),
    );
    assert_eq!(a.status, 429, "wrong password #6: {a:?}");
    let wait: u64 = a
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {a:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("Retry-After: {e}: {a:?}"));
    assert!((1..=300).contains(&wait), "{a:?}");
    let a = http(
        port,
        "POST",
        "/api/login",
        &[],
        Some(&login_body(&f.password)),
    );
    assert_eq!(a.status, 429, "the right password while locked out: {a:?}");
    // The sessions that exist go on meanwhile.
    still_serves(port, &s, "the lockout");
    std::thread::sleep(Duration::from_secs(wait) + Duration::from_millis(300));
    let s3 = login(port, &f.password);
    still_serves(port, &s3, "the lockout's end");
}

// ---- hostile WebSocket frames (hv-term) ---------------------------------------------------

/// Opens `/api/visors/<pk>/term` on the hypervisor at `port` as the page does; the stream
/// after the 101.
fn ws_open(port: u16, pk: &str, s: &Session) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let req = format!(
        "GET /api/visors/{}/term?rows=24&cols=80&csrf={} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Origin: http://127.0.0.1:{port}\r\nCookie: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        pk, s.csrf, s.cookie
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match c.read(&mut b) {
            Ok(1) => head.push(b[0]),
            other => panic!(
                "the terminal upgrade: {other:?} after {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
        assert!(
            head.len() < 16 * 1024,
            "{:?}",
            String::from_utf8_lossy(&head)
        );
    }
    let head = String::from_utf8_lossy(&head);
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "the terminal upgrade was refused: {head}"
    );
    // RFC 6455 §1.3's example key and its accept value.
    assert!(
        head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "no or a wrong Sec-WebSocket-Accept: {head}"
    );
    c
}

/// Reads the server's frames until a close frame or the end of the stream; `Err` when
/// neither came within the read timeout.
fn ws_until_closed(c: &mut TcpStream) -> Result<&'static str, String> {
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Whole frames in `buf`: skip data, stop at a close (opcode 8).
        let mut i = 0;
        while buf.len() >= i + 2 {
            let op = buf[i] & 0x0f;
            let (len, hl) = match buf[i + 1] & 0x7f {
                126 if buf.len() >= i + 4 => {
                    (u16::from_be_bytes([buf[i + 2], buf[i + 3]]) as usize, 4)
                }
                127 if buf.len() >= i + 10 => (
                    u64::from_be_bytes(buf[i + 2..i + 10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if op == 8 {
                return Ok("a close frame");
            }
            if buf.len() < i + hl + len {
                break;
            }
            i += hl + len;
        }
        buf.drain(..i);
        match c.read(&mut chunk) {
            Ok(0) => return Ok("the end of the stream"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok("a reset");
            }
            Err(e) => {
                return Err(format!(
                    "neither closed nor a close frame after {:?}: {e}",
                    t0.elapsed()
                ));
            }
        }
    }
}

fn term_hostile(f: &Fleet, s: &Session) {
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let masked = |op: u8, payload: &[u8]| {
        let mut v = vec![0x80 | op, 0x80 | payload.len() as u8];
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        v
    };
    // A good frame first: the bridge takes masked text frames ("i" + input).
    {
        let mut c = ws_open(f.port, &f.remotes[0].pk, s);
        c.write_all(&masked(1, b"iexit\r")).unwrap();
        drop(c);
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // RFC 6455 §5.1: a client frame must be masked.
        ("an unmasked frame", {
            let mut v = vec![0x81, 6];
            v.extend_from_slice(b"iecho\r");
            v
        }),
        // A 2^63 payload length (the top bit must be 0, and it is far over any limit).
        ("a 2^63 length", {
            let mut v = vec![0x82, 0x80 | 127];
            v.extend_from_slice(&(1u64 << 63).to_be_bytes());
            v.extend_from_slice(&mask);
            v
        }),
        // 2^63 - 1: a legal encoding, absurd size.
        ("a 2^63-1 length", {
            let mut v = vec![0x82, 0x80 | 127];
            v.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
            v.extend_from_slice(&mask);
            v
        }),
        // Reserved bits and opcode.
        ("RSV bits and opcode 3", {
            let mut v = masked(3, b"x");
            v[0] |= 0x70;
            v
        }),
        // A control frame longer than 125 bytes.
        ("a 200-byte ping", {
            let mut v = vec![0x89, 0x80 | 126];
            v.extend_from_slice(&200u16.to_be_bytes());
            v.extend_from_slice(&mask);
            v.extend(std::iter::repeat_n(0u8, 200));
            v
        }),
        (
            "garbage",
            (0..2048u32)
                .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
                .collect(),
        ),
    ];
    for (what, bytes) in cases {
        let mut c = ws_open(f.port, &f.remotes[0].pk, s);
        let _ = c.write_all(&bytes);
        match ws_until_closed(&mut c) {
            Ok(how) => eprintln!("terminal, {what}: closed ({how})"),
            Err(e) => panic!("terminal, {what}: {e}"),
        }
        still_serves(f.port, s, &format!("the terminal's {what}"));
    }
    // Without the cookie, or from a foreign page, there is no upgrade.
    let port = f.port;
    let path = format!(
        "/api/visors/{}/term?rows=24&cols=80&csrf={}",
        f.remotes[0].pk, s.csrf
    );
    let ws_headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    let a = http(port, "GET", &path, &ws_headers, None);
    assert_eq!(a.status, 401, "the terminal without a cookie: {a:?}");
    let mut h = ws_headers.to_vec();
    h.push(("Cookie", &s.cookie));
    h.push(("Origin", "http://evil.example"));
    let a = http(port, "GET", &path, &h, None);
    assert_eq!(a.status, 403, "the terminal from a foreign Origin: {a:?}");
}

// ---- a stranger on port 46 ----------------------------------------------------------------

/// A peer that is no visor of ours (a throwaway dmsg key, `skywire dmsg cat <A>:46`) dials
/// the hypervisor's port 46 and then never answers. Without `--visor` keys the hypervisor
/// lists every visor that dials it (as Go's does), so the stranger may appear, offline or
/// with an error; what must hold is that it costs the real visors nothing: the poller reads
/// each visor on a task of its own (`fleet::Fleet::poll`, 5 s per request), so B's readings
/// stay fresh. (`--visor PK` refuses everyone else: `fleet::tests`.)
#[test]
fn a_silent_stranger_on_port_46_does_not_stall_the_others() {
    let (f, s) = fleet("hvstranger", 1);
    let disc = json_field(&f.a.info(), "discovery");
    let stranger = skywire::crypto::Keypair::from_seed(&[46; 32]);
    let sk = common::visor::hex(stranger.seed());
    let target = format!("{}:46", f.a.pk);
    let cat = Command::new(common::skywire_bin())
        .args([
            "dmsg", "cat", &target, "--relay", &f.relay, "--disc", &disc, "--sk", &sk,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _cat = ChildGuard(Some(cat));
    let uptime = |pk: &str| -> u64 {
        let a = s.get(f.port, "/api/visors");
        let v = parse(&a.body);
        items(get(&v, "items"))
            .iter()
            .find(|x| matches!(get(x, "pk"), Value::String(p) if p == pk))
            .map(|x| match get(x, "info") {
                Value::Object(_) => common::skychat::as_u64(get(get(x, "info"), "uptime_secs")),
                _ => 0,
            })
            .unwrap_or(0)
    };
    let b = f.remotes[0].pk.clone();
    let before = uptime(&b);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(12) {
        std::thread::sleep(Duration::from_millis(500));
    }
    let after = uptime(&b);
    assert!(
        after >= before + 6,
        "B's readings went stale while a silent stranger held a link: uptime {before} s, \
         12 s later {after} s"
    );
}

// ---- TCP-standalone ---------------------------------------------------------------------

/// Reads the shell's output from terminal `c` until it contains `want`; `Err` with what
/// came when it did not within 15 s (or the socket closed first).
fn ws_read_until(c: &mut TcpStream, want: &str) -> Result<String, String> {
    let t0 = Instant::now();
    let (mut raw, mut out) = (Vec::new(), String::new());
    let mut chunk = [0u8; 4096];
    while t0.elapsed() < Duration::from_secs(15) {
        // Unmasked server frames, short lengths only (the shell's output comes in pieces).
        while raw.len() >= 2 {
            let (len, hl) = match raw[1] & 0x7f {
                126 if raw.len() >= 4 => (u16::from_be_bytes([raw[2], raw[3]]) as usize, 4),
                126 => break,
                127 => return Err(format!("a 64-bit frame length; output so far {out:?}")),
                n => (n as usize, 2),
            };
            if raw.len() < hl + len {
                break;
            }
            let payload = String::from_utf8_lossy(&raw[hl..hl + len]).into_owned();
            match raw[0] & 0x0f {
                8 => return Err(format!("closed; output {out:?}")),
                1 if payload.starts_with('e') => return Err(format!("error {payload:?}")),
                _ => out.push_str(&payload),
            }
            raw.drain(..hl + len);
        }
        if out.contains(want) {
            return Ok(out);
        }
        match c.read(&mut chunk) {
            Ok(0) => return Err(format!("the end of the stream; output {out:?}")),
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{e}; output {out:?}")),
        }
    }
    Err(format!("no {want:?} within 15 s; output {out:?}"))
}

/// `skywire app hypervisor run --mode tcp`: a hypervisor of its own, no visor. B (hosting
/// its own embedded network, no dmsg in common) lists it as `PK@127.0.0.1:PORT` and links
/// over Noise-XK TCP; the hypervisor lists B online, stops and starts an app on it, and
/// (with `hv-term`) opens a shell on it through the link.
#[test]
fn a_standalone_hypervisor_manages_over_tcp() {
    let dir = tmp("hvtcp");
    let (listen, web) = (free_port(), free_port());
    let hv_dir = dir.join("hv");
    std::fs::create_dir_all(&hv_dir).unwrap();
    let hv_log = hv_dir.join("hv.log");
    let mut child = Command::new(common::skywire_bin())
        .args(["app", "hypervisor", "run", "--mode", "tcp", "--listen"])
        .arg(format!("127.0.0.1:{listen}"))
        .arg("--state-dir")
        .arg(&hv_dir)
        .args(["--", "--addr"])
        .arg(format!("127.0.0.1:{web}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&hv_log).unwrap()))
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let hv = ChildGuard(Some(child));
    let prefix = "hypervisor running (tcp mode) as ";
    assert!(
        line.starts_with(prefix),
        "{line:?}\n{}",
        std::fs::read_to_string(&hv_log).unwrap_or_default()
    );
    let hv_pk = line[prefix.len()..].trim().to_string();
    let password = first_password(&hv_log);

    let cfg = write_config(&dir.join("b"), None, "[]");
    let t = std::fs::read_to_string(&cfg).unwrap();
    let empty = "\"hypervisors\": []";
    assert!(t.contains(empty), "{t}");
    let entry = format!("\"hypervisors\": [\"{hv_pk}@127.0.0.1:{listen}\"]");
    std::fs::write(&cfg, t.replace(empty, &entry)).unwrap();
    let b = start_visor(&dir.join("b"), Some(&cfg));

    let s = login(web, &password);
    let t0 = Instant::now();
    loop {
        let vs = visors(web, &s);
        assert!(
            !vs.iter().any(|(_, _, local)| *local),
            "a standalone hypervisor has no local visor: {vs:?}"
        );
        if vs.iter().any(|(pk, on, _)| pk == &b.pk && *on) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "B never came online at the TCP hypervisor: {vs:?}\nhypervisor:\n{}\nB:\n{}",
            std::fs::read_to_string(&hv_log).unwrap_or_default(),
            std::fs::read_to_string(dir.join("b/visor.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let bp = |rest: &str| format!("/api/visors/{}{rest}", b.pk);
    let a = s.get(web, &bp("/v1/info"));
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.contains(&b.pk), "{a:?}");
    let a = s.send(web, "POST", &bp("/v1/apps/logserver/stop"), None);
    assert_eq!(a.status, 200, "stop B's logserver: {a:?}");
    b.wait_state("logserver", "stopped");
    let a = s.send(web, "POST", &bp("/v1/apps/logserver/start"), None);
    assert_eq!(a.status, 200, "start B's logserver: {a:?}");
    b.wait_state("logserver", "running");

    if cfg!(feature = "hv-term") {
        let mask = [0x5au8, 0x01, 0xc3, 0x7e];
        let masked = |payload: &[u8]| {
            let mut v = vec![0x81, 0x80 | payload.len() as u8];
            v.extend_from_slice(&mask);
            v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            v
        };
        // Twice: the first terminal uses up a link, and B dials a fresh one for the next.
        for round in 0..2 {
            let mut c = ws_open(web, &b.pk, &s);
            c.write_all(&masked(b"iecho $((6*7))\r")).unwrap();
            match ws_read_until(&mut c, "42") {
                Ok(_) => eprintln!("tcp terminal {round}: 42"),
                Err(e) => panic!(
                    "the terminal over the TCP link, round {round}: {e}\nhypervisor:\n{}",
                    std::fs::read_to_string(&hv_log).unwrap_or_default()
                ),
            }
            c.write_all(&masked(b"iexit\r")).unwrap();
            let _ = ws_until_closed(&mut c);
        }
        // B is still managed (its links came back).
        let a = s.get(web, &bp("/v1/info"));
        assert_eq!(a.status, 200, "after the terminals: {a:?}");
    }
    drop(hv);
}
