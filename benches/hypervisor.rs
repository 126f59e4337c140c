//! The hypervisor (issue 18): the page's compressed transfer size and its time to first render
//! in headless Chromium, and the hypervisor's RSS with 10 visors attached.
//!
//! Visor A hosts the embedded network and runs the hypervisor app; ten visors join A's relay
//! with A in `hypervisors`. A's RSS is read before the hypervisor starts, with it running and
//! no visor linked, and with the ten linked after 20 s of polling (every visor every 2 s) and
//! the page open. The page is measured by tests/js/hypervisor_bench.js (playwright-core with
//! Debian's chromium: a fresh context per run, so nothing is cached): bytes on the wire
//! (`transferSize`) and compressed bodies (`encodedBodySize`) of the list page, then of the
//! terminal tab's extra assets; first contentful paint and the time until the visor list shows
//! all eleven rows, median of 5. The armv7 marginal sizes are `make size`'s rows
//! (`app-hypervisor`, `hv-term`).
//!
//! `cargo bench --bench hypervisor -- --bench --write docs/benchmarks.md`

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, free_port, rss_kib_of, spawn_first_line};

const BIN: &str = env!("CARGO_BIN_EXE_skywire");
const VISORS: usize = 10;

fn sw(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// A config in `dir` on loopback ports; `join` a relay, `hv` a hypervisor PK, `apps` JSON.
fn config(dir: &Path, join: Option<&str>, hv: Option<&str>, apps: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("skywire-config.json");
    let f = file.to_str().unwrap();
    let mut args = vec!["config", "gen", "-o", f, "--force", "--log-level", "warn"];
    if let Some(j) = join {
        args.extend(["--join", j]);
    }
    if let Some(h) = hv {
        args.extend(["--hypervisor", h]);
    }
    let o = sw(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg = std::fs::read_to_string(&file)
        .unwrap()
        .replace(
            "\"relay_addr\": \":8080\"",
            "\"relay_addr\": \"127.0.0.1:0\"",
        )
        .replace(
            "\"disc_addr\": \"127.0.0.1:9090\"",
            "\"disc_addr\": \"127.0.0.1:0\"",
        )
        .replace(
            "\"listen\": \"0.0.0.0:7777\"",
            "\"listen\": \"127.0.0.1:0\"",
        )
        .replace("\"apps\": []", &format!("\"apps\": {apps}"));
    std::fs::write(&file, cfg).unwrap();
    f.to_string()
}

/// The visor's apps that would fight over fixed loopback ports on one machine, off.
const QUIET: &str = r#"{"name":"skychat","auto_start":false},{"name":"resolver","auto_start":false},{"name":"skysocks-client","auto_start":false}"#;

fn get(port: u16, path: &str, cookie: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: hv={cookie}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    out
}

fn login(port: u16, pw: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = format!("{{\"password\":\"{pw}\"}}");
    write!(
        s,
        "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: hv="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("login failed: {out}"))
        .to_string()
}

fn main() {
    let full = common::full_run();
    let js = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js");
    let browser = Path::new("/usr/bin/chromium").exists()
        && Path::new(js).join("node_modules/playwright-core").exists();
    let dir = std::env::temp_dir().join(format!("skywire-bench-hv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let hv_port = free_port();
    let hv_app =
        format!(r#"[{{"name":"hypervisor","args":["--addr","127.0.0.1:{hv_port}"]}},{QUIET}]"#);
    let a_cfg = config(&dir.join("a"), None, None, &hv_app);
    let a_rpc = format!("127.0.0.1:{}", free_port());
    let (a, line) = spawn_first_line(
        BIN,
        &["visor", "-c", &a_cfg, "--rpc", &a_rpc],
        Some(&dir.join("a.log")),
    );
    let a_pk = line.split_whitespace().nth(1).unwrap().to_string();
    // The join line comes later on stdout, which the helper drains: read it from the log of
    // `cli visor info` instead (the relay A hosts).
    std::thread::sleep(Duration::from_secs(3));
    let info = String::from_utf8(
        sw(&[
            "cli", "visor", "--rpc", &a_rpc, "-c", &a_cfg, "info", "--json",
        ])
        .stdout,
    )
    .unwrap();
    let relay = info
        .split("\"hosted_relay\":")
        .nth(1)
        .and_then(|s| s.split('"').nth(1))
        .expect("hosted_relay in info")
        .to_string();
    let rss_before = rss_kib_of(&a.pid().to_string());
    let o = sw(&["app", "hypervisor", "start", "--rpc", &a_rpc, "-c", &a_cfg]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::thread::sleep(Duration::from_secs(3));
    let rss_idle = rss_kib_of(&a.pid().to_string());
    let pw = std::fs::read_to_string(dir.join("a.log"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.split("the web UI password is ")
                .nth(1)
                .map(str::to_string)
        })
        .expect("the first-start password in A's log");
    let cookie = login(hv_port, &pw);

    let mut visors: Vec<Proc> = Vec::new();
    for i in 0..VISORS {
        let cfg = config(
            &dir.join(format!("v{i}")),
            Some(&relay),
            Some(&a_pk),
            &format!("[{QUIET}]"),
        );
        let rpc = format!("127.0.0.1:{}", free_port());
        let (p, _) = spawn_first_line(BIN, &["visor", "-c", &cfg, "--rpc", &rpc], None);
        visors.push(p);
    }
    let t0 = Instant::now();
    let online = loop {
        let list = get(hv_port, "/api/visors", &cookie);
        let n = list.matches("\"online\":true").count();
        if n == VISORS + 1 || t0.elapsed() > Duration::from_secs(60) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(online, VISORS + 1, "visors online after 60 s");
    let attach = t0.elapsed();

    let runs = if full { 5 } else { 1 };
    let page = if browser {
        let out = Command::new("node")
            .arg(format!("{js}/hypervisor_bench.js"))
            .args([
                &format!("http://127.0.0.1:{hv_port}"),
                &pw,
                &(VISORS + 1).to_string(),
                &runs.to_string(),
                // The terminal tab only when it is built in.
                &if cfg!(feature = "hv-term") {
                    visors_pk_of_first(&get(hv_port, "/api/visors", &cookie), &a_pk)
                } else {
                    String::new()
                },
            ])
            .current_dir(js)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "hypervisor_bench.js failed");
        Some(String::from_utf8(out.stdout).unwrap())
    } else {
        println!("no chromium/playwright-core: page rows skipped (tests/deps.d/browser.sh)");
        None
    };
    std::thread::sleep(Duration::from_secs(if full { 20 } else { 4 }));
    let rss_ten = rss_kib_of(&a.pid().to_string());

    let field = |k: &str| -> String {
        page.as_deref()
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix(&format!("{k} "))))
            .unwrap_or("–")
            .to_string()
    };
    let cmd = "cargo bench --bench hypervisor -- --bench --write docs/benchmarks.md";
    let body = format!(
        "### Hypervisor\n\n`{cmd}` on {} (release build; one visor A runs the hypervisor app, \
         {VISORS} visors on the same machine link to it over dmsg through A's relay; page \
         numbers are the median of {runs} fresh headless-Chromium loads).\n\n\
         | what | value |\n|---|---:|\n\
         | the list page: bytes on the wire (headers included) / compressed bodies | {} / {} B |\n\
         | the terminal tab's extra assets (xterm.js, its CSS, fit addon), on the wire | {} B |\n\
         | first contentful paint (logged in, cold cache) | {} ms |\n\
         | the visor list showing all {} visors (from navigation start) | {} ms |\n\
         | {VISORS} visors online after they started | {:.1} s |\n\
         | A's RSS before the hypervisor starts | {rss_before} KiB |\n\
         | A's RSS with the hypervisor, no visor linked | {rss_idle} KiB |\n\
         | A's RSS with {VISORS} visors linked, polled every 2 s, the page open | {rss_ten} KiB |\n\
         | so the hypervisor with {VISORS} visors costs | {} KiB |\n\n\
         The armv7 marginal sizes (`app-hypervisor`, and `hv-term` which adds the terminal) are \
         in the size table above (`make size`).",
        common::machine(),
        field("page_transfer"),
        field("page_encoded"),
        field("term_transfer"),
        field("fcp_ms"),
        VISORS + 1,
        field("list_ms"),
        attach.as_secs_f64(),
        rss_ten.saturating_sub(rss_before),
    );
    println!("{body}");
    if let Some(f) = common::write_target() {
        common::write_section(&f, "hypervisor", &body).unwrap();
    }
    drop(visors);
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A remote visor's PK from `/api/visors` (the first that is not `local`).
fn visors_pk_of_first(list: &str, local: &str) -> String {
    list.split("\"pk\":\"")
        .skip(1)
        .filter_map(|s| s.get(..64))
        .find(|pk| *pk != local)
        .unwrap_or(local)
        .to_string()
}
