//! The visor RPC against a web page in a browser on the same board (issue 11, finding 1) and
//! its smaller HTTP rules (finding 10): the real `skywire visor` on 127.0.0.1, driven with raw
//! HTTP as a browser would send it, and with the CLI as a user would.
//!
//! - DNS rebinding (`Host: evil.example:<port>`) and cross-site requests (`Origin`,
//!   `Sec-Fetch-Site`) are refused with 403, with or without the token;
//! - the cross-site "simple" `POST /v1/whitelist/<pk>` (`Content-Type: text/plain`) without the
//!   token is 401 and the whitelist (running and saved) is unchanged;
//! - the token file is 0600; the CLI finds it through `-c`, `--state-dir` and
//!   `$SKYWIRE_STATE_DIR`, and says which file when it cannot;
//! - `HEAD` answers like `GET` without the body, a wrong method is 405 with `Allow`,
//!   `Content-Length: +5` is 400;
//! - the whitelist holds at most 1,024 keys (409 beyond), and an edit whose config file
//!   cannot be read yet does not stall the executor (the RPC keeps answering).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::visor::*;
use skywire::crypto::Keypair;

/// Sends `req` verbatim on a fresh connection; returns (status, the whole answer).
fn raw(addr: &str, req: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

/// `METHOD path` with `headers` (each `Name: value`), `Connection: close`, empty body.
fn req(method: &str, path: &str, headers: &[&str]) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    r
}

fn start(name: &str) -> Visor {
    let dir = tmp(&format!("guard-{name}"));
    let c = write_config(&dir, None, "[]");
    start_visor(&dir, Some(&c))
}

fn whitelist_json(v: &Visor) -> String {
    let o = v.pty(&["whitelist", "ls", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn browser_requests_are_refused_and_the_cli_is_served() {
    let v = start("browser");
    let token = v.token();
    let host = format!("Host: {}", v.rpc);
    let auth = format!("Authorization: Bearer {token}");
    let port = v.rpc.rsplit_once(':').unwrap().1;
    let evil_host = format!("Host: evil.example:{port}");
    let victim = Keypair::from_seed(&[66; 32]).public().to_hex();

    // The token file: 0600, 64 hex digits.
    use std::os::unix::fs::PermissionsExt;
    let token_file = v.dir.join("local/rpc.token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", token_file.display());
    assert!(
        token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );

    // DNS rebinding: a page on evil.example re-pointed at 127.0.0.1 reads /v1/info. Refused,
    // even with the token (a browser never has it; the Host check stands on its own).
    for headers in [vec![evil_host.as_str()], vec![evil_host.as_str(), &auth]] {
        let (st, out) = raw(&v.rpc, &req("GET", "/v1/info", &headers));
        assert_eq!(st, 403, "{out}");
        assert!(
            out.contains("DNS rebinding") && !out.contains(&v.pk),
            "{out}"
        );
    }
    let (st, out) = raw(&v.rpc, &req("GET", "/health", &["Host: evil.example"]));
    assert_eq!(st, 403, "{out}");
    let (st, out) = raw(&v.rpc, &req("GET", "/health", &[]));
    assert_eq!(st, 403, "no Host: {out}");

    // Cross-site: the "simple" POST a page can send without a preflight, with and without
    // the token, from a foreign origin and from the RPC's own (which serves no page).
    let simple = |extra: &[&str]| {
        let mut h = vec![host.as_str(), "Content-Type: text/plain"];
        h.extend_from_slice(extra);
        raw(&v.rpc, &req("POST", &format!("/v1/whitelist/{victim}"), &h))
    };
    let own_origin = format!("Origin: http://{}", v.rpc);
    for extra in [
        vec!["Origin: http://evil.example"],
        vec!["Origin: http://evil.example", &auth],
        vec!["Origin: null", &auth],
        vec![own_origin.as_str(), &auth],
        vec!["Sec-Fetch-Site: cross-site", &auth],
        vec!["Sec-Fetch-Site: same-site", &auth],
    ] {
        let (st, out) = simple(&extra);
        assert_eq!(st, 403, "{extra:?}: {out}");
        assert!(out.contains("web pages"), "{out}");
    }
    // No Origin (a client that is not a browser) but no token: 401, naming the token file.
    let (st, out) = simple(&[]);
    assert_eq!(st, 401, "{out}");
    assert!(out.contains("WWW-Authenticate: Bearer"), "{out}");
    assert!(out.contains("rpc.token"), "{out}");
    let (st, out) = simple(&["Authorization: Bearer 0000"]);
    assert_eq!(st, 401, "{out}");
    // None of it reached the whitelist, running or saved.
    assert!(whitelist_json(&v).contains("\"whitelist\":[]"));
    assert!(
        !std::fs::read_to_string(&v.config)
            .unwrap()
            .contains(&victim)
    );
    // Reads need the token too; /health does not.
    let (st, out) = raw(&v.rpc, &req("GET", "/v1/info", &[&host]));
    assert_eq!(st, 401, "{out}");
    let (st, out) = raw(&v.rpc, &req("GET", "/health", &[&host]));
    assert_eq!(st, 200, "{out}");
    let (st, out) = raw(&v.rpc, &req("GET", "/v1/info", &[&host, &auth]));
    assert!(st == 200 && out.contains(&v.pk), "{out}");
    let loopback = format!("Host: localhost:{port}");
    let (st, out) = raw(&v.rpc, &req("GET", "/v1/info", &[&loopback, &auth]));
    assert_eq!(st, 200, "{out}");

    // The CLI, through each way of naming the visor's state.
    let o = v.cli(&["info", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json_field(&String::from_utf8_lossy(&o.stdout), "pk"), v.pk);
    let o = sw(&[
        "cli",
        "visor",
        "--rpc",
        &v.rpc,
        "--state-dir",
        v.dir.to_str().unwrap(),
        "info",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = v.sw(&["app", "pty", "status", "--rpc", &v.rpc]);
    assert!(o.status.success(), "{}", text(&o));
    // `skywire app` names the visor the way `cli visor` does (no $SKYWIRE_STATE_DIR here).
    let cfg = v.config.to_str().unwrap();
    let o = sw(&["app", "pty", "status", "--rpc", &v.rpc, "-c", cfg]);
    assert!(o.status.success(), "{}", text(&o));
    let o = sw(&[
        "app",
        "pty",
        "status",
        "--rpc",
        &v.rpc,
        "--state-dir",
        v.dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = v.pty(&["whitelist", "add", &victim]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        std::fs::read_to_string(&v.config)
            .unwrap()
            .contains(&victim)
    );
    // Through the visor's dial upgrade (the visor serves its own PK locally).
    v.wait_state("pty", "running");
    let o = v.pty(&["exec", &v.pk, "--", "echo through-the-visor"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "through-the-visor\n");
    // ... which without the token is refused before anything is dialled.
    let (st, out) = raw(
        &v.rpc,
        &req(
            "POST",
            &format!("/v1/dial/{}/22", v.pk),
            &[&host, "Upgrade: skywire-stream", "Connection: Upgrade"],
        ),
    );
    assert_eq!(st, 401, "{out}");

    // When the CLI cannot have the token it says which file and what to do.
    let elsewhere = tmp("guard-elsewhere");
    let o = sw(&[
        "cli",
        "visor",
        "--rpc",
        &v.rpc,
        "--state-dir",
        elsewhere.to_str().unwrap(),
        "info",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains(elsewhere.join("skywire-config.json").to_str().unwrap())
            && msg.contains("--state-dir")
            && msg.lines().count() == 1,
        "{msg}"
    );
    let other = write_config(&elsewhere, None, "[]");
    let o = sw(&[
        "cli",
        "visor",
        "--rpc",
        &v.rpc,
        "-c",
        other.to_str().unwrap(),
        "info",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(elsewhere.join("local/rpc.token").to_str().unwrap()),
        "{}",
        text(&o)
    );
    std::fs::create_dir_all(elsewhere.join("local")).unwrap();
    std::fs::write(elsewhere.join("local/rpc.token"), "0".repeat(64)).unwrap();
    let o = sw(&[
        "cli",
        "visor",
        "--rpc",
        &v.rpc,
        "-c",
        other.to_str().unwrap(),
        "info",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("refused the token"), "{}", text(&o));
}

#[test]
fn head_405_and_content_length() {
    let v = start("methods");
    let host = format!("Host: {}", v.rpc);
    let auth = format!("Authorization: Bearer {}", v.token());
    let h = [host.as_str(), auth.as_str()];

    // HEAD: GET's status and headers, no body.
    for path in ["/health", "/v1/info", "/v1/apps", "/v1/whitelist"] {
        let (st, out) = raw(&v.rpc, &req("HEAD", path, &h));
        assert_eq!(st, 200, "{path}: {out}");
        let len: usize = out
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(len > 0 && out.ends_with("\r\n\r\n"), "{path}: {out}");
    }
    // A known path with a method it does not serve: 405 and Allow.
    let wl = format!("/v1/whitelist/{}", v.pk);
    for (method, path, allow) in [
        ("PUT", "/v1/info", "GET, HEAD"),
        ("DELETE", "/v1/apps", "GET, HEAD"),
        ("GET", "/v1/apps/pty/start", "POST"),
        ("GET", wl.as_str(), "POST, DELETE"),
        ("OPTIONS", "/health", "GET, HEAD"),
    ] {
        let (st, out) = raw(&v.rpc, &req(method, path, &h));
        assert_eq!(st, 405, "{method} {path}: {out}");
        assert!(out.contains(&format!("Allow: {allow}\r\n")), "{out}");
    }
    let (st, out) = raw(&v.rpc, &req("GET", "/v1/nothing", &h));
    assert_eq!(st, 404, "{out}");
    // A bad key says why (the parser's message), not a fixed text.
    let (st, out) = raw(&v.rpc, &req("POST", "/v1/whitelist/zz", &h));
    assert!(
        st == 400 && out.contains(r#"\"zz\" is not a public key (64 hex digits): "#),
        "{out}"
    );

    // Content-Length is 1*DIGIT.
    for cl in ["+5", "5 5", "-5", "5,5", "0x5", "5;", " +0"] {
        let r = format!(
            "POST /v1/apps/pty/start HTTP/1.1\r\n{host}\r\n{auth}\r\nContent-Length: {cl}\r\n\r\nhello"
        );
        let (st, out) = raw(&v.rpc, &r);
        assert_eq!(st, 400, "Content-Length {cl:?}: {out}");
        assert!(out.contains("invalid Content-Length"), "{out}");
    }
}

/// `n` distinct PKs.
fn pks(n: u32) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut seed = [9u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            Keypair::from_seed(&seed).public().to_hex()
        })
        .collect()
}

#[test]
fn whitelist_is_capped() {
    let dir = tmp("guard-cap");
    let c = write_config(&dir, None, "[]");
    let keys = pks(1025);
    let list = keys[..1024]
        .iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let cfg = std::fs::read_to_string(&c).unwrap();
    assert!(cfg.contains("\"whitelist\": []"), "{cfg}");
    std::fs::write(
        &c,
        cfg.replace("\"whitelist\": []", &format!("\"whitelist\": [{list}]")),
    )
    .unwrap();
    let v = start_visor(&dir, Some(&c));
    let o = v.pty(&["whitelist", "add", &keys[1024]]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("pty.whitelist is full (1024 keys)"),
        "{}",
        text(&o)
    );
    let auth = format!("Authorization: Bearer {}", v.token());
    let (st, _) = raw(
        &v.rpc,
        &req(
            "POST",
            &format!("/v1/whitelist/{}", keys[1024]),
            &[&format!("Host: {}", v.rpc), &auth],
        ),
    );
    assert_eq!(st, 409);
    assert!(!std::fs::read_to_string(&c).unwrap().contains(&keys[1024]));
    // Room made, the add goes through.
    let o = v.pty(&["whitelist", "rm", &keys[0]]);
    assert!(o.status.success(), "{}", text(&o));
    let o = v.pty(&["whitelist", "add", &keys[1024]]);
    assert!(o.status.success(), "{}", text(&o));
    let saved = std::fs::read_to_string(&c).unwrap();
    assert!(saved.contains(&keys[1024]) && !saved.contains(&keys[0]));
}

#[test]
fn a_slow_whitelist_save_does_not_stall_the_rpc() {
    let v = start("slow-save");
    let text_before = std::fs::read_to_string(&v.config).unwrap();
    let (rpc, host, auth) = (
        v.rpc.clone(),
        format!("Host: {}", v.rpc),
        format!("Authorization: Bearer {}", v.token()),
    );
    let friend = Keypair::from_seed(&[77; 32]).public().to_hex();
    // The config file becomes a FIFO: the edit's re-read of it blocks until we write.
    std::fs::remove_file(&v.config).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &v.config,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let path = format!("/v1/whitelist/{friend}");
    let (h2, a2) = (host.clone(), auth.clone());
    let edit = std::thread::spawn(move || raw(&rpc, &req("POST", &path, &[&h2, &a2])));
    // Wait until the visor has the FIFO open for reading (a non-blocking open for writing
    // fails with ENXIO until then), and keep it open without writing: the read blocks.
    let t0 = Instant::now();
    let mut fifo = loop {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&v.config)
        {
            Ok(f) => break f,
            Err(e) => {
                assert!(t0.elapsed() < Duration::from_secs(10), "never opened: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    // The edit is stuck in its read; the RPC (and so the executor) still answers. (Raw
    // requests: the CLI would itself read the config, now a FIFO, to find the token.)
    for path in ["/v1/info", "/v1/whitelist", "/health"] {
        let (st, out) = raw(&v.rpc, &req("GET", path, &[&host, &auth]));
        assert_eq!(st, 200, "{path} while an edit is saved: {out}");
    }
    assert!(!edit.is_finished());
    // Let the read finish: the edit is saved (the FIFO replaced by the file) and answered.
    fifo.write_all(text_before.as_bytes()).unwrap();
    drop(fifo);
    let (st, out) = edit.join().unwrap();
    assert_eq!(st, 200, "{out}");
    assert!(out.contains(&friend), "{out}");
    let meta = std::fs::metadata(&v.config).unwrap();
    assert!(meta.is_file());
    assert!(
        std::fs::read_to_string(&v.config)
            .unwrap()
            .contains(&friend)
    );
    assert!(whitelist_json(&v).contains(&friend));
}
