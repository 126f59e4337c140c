//! The visor RPC's admin routes end to end, through the real binary and the CLI (what a
//! hypervisor web UI drives, so the CLI must do it all): the log tail (`cli visor log`,
//! `GET /v1/logs`), app settings edits saved to the config file (`cli visor app set`,
//! `POST /v1/apps/<name>/settings`) and app restarts, and stopping or restarting the visor
//! (`cli visor shutdown|restart`). Bad input is a clear 4xx, checked with raw HTTP.
#![cfg(feature = "test-apps")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ChildGuard;
use common::visor::*;

/// `METHOD path` with the visor's token and `body`; (status, body of the answer).
fn raw(v: &Visor, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(&v.rpc).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        v.rpc,
        v.token(),
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// A number field of compact JSON.
fn json_num(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    let i = json
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} not in {json}"));
    let rest = &json[i + pat.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().unwrap()
}

fn ok_out(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn start(name: &str, apps: &str) -> Visor {
    let dir = tmp(&format!("admin-{name}"));
    let c = write_config(&dir, None, apps);
    start_visor(&dir, Some(&c))
}

#[test]
fn the_log_tail_pages_follows_and_refuses_bad_queries() {
    let v = start("log", "[]");
    // What the visor logged at start is there, as stderr got it.
    let out = ok_out(&v.cli(&["log"]));
    assert!(
        out.contains(" INFO  [skywire::visor::run] started in "),
        "{out}"
    );
    let two = ok_out(&v.cli(&["log", "-n", "2", "--json"]));
    assert_eq!(two.matches("\"seq\":").count(), 2, "{two}");
    let next = json_num(&two, "next");

    // Only the lines after `next`: the start of test-a logs some.
    ok_out(&v.cli(&["app", "start", "test-a"]));
    let (st, body) = raw(&v, "GET", &format!("/v1/logs?since={next}"), "");
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("launcher: test-a running"), "{body}");
    assert!(!body.contains("started in"), "{body}");
    let first = json_num(&body.replace(": ", ":"), "seq");
    assert_eq!(first, next, "{body}");

    // --follow prints lines as they come.
    let mut follow = Command::new(common::skywire_bin())
        .args(["cli", "visor", "--rpc", &v.rpc, "-c"])
        .arg(&v.config)
        .args(["log", "--follow", "-n", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap());
    let _follow = ChildGuard(Some(follow));
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    ok_out(&v.cli(&["app", "stop", "test-a"]));
    let t0 = Instant::now();
    loop {
        line.clear();
        assert!(lines.read_line(&mut line).unwrap() > 0, "follow ended");
        if line.contains("launcher: test-a stopped") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no stop line");
    }

    for (q, want) in [
        ("n=0", "n must be 1-512"),
        ("n=513", "n must be 1-512"),
        ("n=x", "n must be 1-512"),
        ("since=-1", "since must be a line number"),
    ] {
        let (st, body) = raw(&v, "GET", &format!("/v1/logs?{q}"), "");
        assert_eq!(st, 400, "{q}: {body}");
        assert!(body.contains(want), "{q}: {body}");
    }
    let (st, _) = raw(&v, "POST", "/v1/logs", "");
    assert_eq!(st, 405);
    let o = v.cli(&["log", "-n", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn app_settings_are_saved_and_taken_at_the_next_start() {
    // test-a has no launcher.apps entry: the edit makes one.
    let crit = r#"[{"name": "test-crit", "args": [], "auto_start": true}]"#;
    let v = start("settings", crit);
    v.wait_state("test-crit", "running");
    let set = ok_out(&v.cli(&["app", "set", "test-a", "--args", "--fail-start"]));
    assert!(set.contains("test-a: settings saved"), "{set}");
    assert!(set.contains("args --fail-start"), "{set}");
    assert!(
        !set.contains("applies them"),
        "test-a is not running: {set}"
    );
    let cfg = std::fs::read_to_string(&v.config).unwrap();
    assert!(cfg.contains("\"name\": \"test-a\""), "{cfg}");
    assert!(cfg.contains("\"--fail-start\""), "{cfg}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&v.config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The next start takes them.
    let o = v.cli(&["app", "start", "test-a"]);
    assert!(
        text(&o).contains("test-a was told to fail at start"),
        "{}",
        text(&o)
    );

    // Clear them, turn auto-start off, set a route: `app ls` and `status` show it.
    ok_out(&v.cli(&[
        "app",
        "set",
        "test-a",
        "--clear-args",
        "--autostart",
        "off",
        "--route",
        "dmsg",
    ]));
    let ls = ok_out(&v.cli(&["app", "ls"]));
    let row = ls.lines().find(|l| l.starts_with("test-a ")).unwrap();
    assert!(row.contains(" off "), "{ls}");
    let st = ok_out(&v.cli(&["app", "status", "test-a"]));
    assert!(
        st.contains("autostart off") && st.contains("route dmsg"),
        "{st}"
    );
    assert!(!st.contains("args"), "{st}");
    ok_out(&v.cli(&["app", "start", "test-a"]));
    let cfg = std::fs::read_to_string(&v.config).unwrap();
    assert!(cfg.contains("\"route\": \"dmsg\""), "{cfg}");
    assert!(!cfg.contains("--fail-start"), "{cfg}");

    // A running app: the answer says a restart is needed, and a restart applies it.
    let j = ok_out(&v.cli(&[
        "app",
        "set",
        "test-a",
        "--arg",
        "--crash-after-ms",
        "--arg",
        "60000",
        "--json",
    ]));
    assert!(j.contains("\"restart_needed\":true"), "{j}");
    assert!(j.contains(r#""args":["--crash-after-ms","60000"]"#), "{j}");
    let before = json_num(&v.app_json("test-a"), "start_seq");
    let r = ok_out(&v.cli(&["app", "restart", "test-a"]));
    assert!(r.contains("test-a: running"), "{r}");
    assert!(json_num(&v.app_json("test-a"), "start_seq") > before);
    let j = ok_out(&v.cli(&["app", "set", "test-a", "--autostart", "on", "--json"]));
    assert!(j.contains("\"restart_needed\":false"), "{j}");

    // Critical apps restart only with the flag.
    let o = v.cli(&["app", "restart", "test-crit"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--i-know-what-im-doing"), "{}", text(&o));
    ok_out(&v.cli(&["app", "restart", "test-crit", "--i-know-what-im-doing"]));

    // Refusals: what is wrong, and nothing saved.
    let saved = std::fs::read_to_string(&v.config).unwrap();
    let path = "/v1/apps/test-a/settings";
    for (body, status, want) in [
        ("{", 400, "not a JSON object"),
        (r#"{"argz": []}"#, 400, "`argz`: unknown field"),
        (r#"{"args": "a b"}"#, 400, "`args`: expected an array"),
        (r#"{"args": ["a", 1]}"#, 400, "`args[1]`: expected a string"),
        (r#"{"args": ["--nope"]}"#, 400, "args: "),
        (r#"{"route": "hops:99"}"#, 400, r#"route \"hops:99\""#),
        (r#"{"auto_start": 1}"#, 400, "`auto_start`"),
        ("{}", 400, "nothing to change"),
    ] {
        let (st, answer) = raw(&v, "POST", path, body);
        assert_eq!(st, status, "{body}: {answer}");
        assert!(answer.contains(want), "{body}: {answer}");
        assert!(answer.contains("\"error\""), "{answer}");
    }
    let many = format!(r#"{{"args": [{}]}}"#, vec![r#""x""#; 65].join(","));
    let (st, answer) = raw(&v, "POST", path, &many);
    assert_eq!(st, 400);
    assert!(answer.contains("at most 64"), "{answer}");
    let (st, answer) = raw(&v, "POST", "/v1/apps/nope/settings", r#"{"args": []}"#);
    assert_eq!(st, 404, "{answer}");
    let (st, _) = raw(&v, "GET", path, "");
    assert_eq!(st, 405);
    assert_eq!(std::fs::read_to_string(&v.config).unwrap(), saved);
    let o = v.cli(&["app", "set", "test-a"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = v.cli(&["app", "set", "test-a", "--args", "x", "--clear-args"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn restart_keeps_the_identity_and_shutdown_exits_zero() {
    let v = start("restart", "[]");
    // Up long enough that the restarted visor's uptime is smaller.
    std::thread::sleep(Duration::from_millis(2100));
    let before = v.info();
    let up = json_num(&before, "uptime_secs");
    assert!(up >= 2, "{before}");
    let out = ok_out(&v.cli(&["restart", "--wait"]));
    assert!(out.contains("visor restarting"), "{out}");
    assert!(
        out.contains(&format!("visor {} answers again after", v.pk)),
        "{out}"
    );
    let after = v.info();
    assert_eq!(json_field(&after, "pk"), v.pk);
    assert!(json_num(&after, "uptime_secs") < up, "{after}");
    let log = std::fs::read_to_string(v.dir.join("visor.log")).unwrap();
    assert!(log.contains("RPC: restarting"), "{log}");
    assert!(log.contains("stopped in"), "{log}");

    let mut v = v;
    let child = v.proc.take();
    let out = ok_out(&v.cli(&["shutdown", "--wait"]));
    assert!(out.contains("visor shutting down"), "{out}");
    // --wait returns once the RPC no longer answers: the process is gone or ending.
    assert!(out.contains("visor stopped after "), "{out}");
    let st = wait_exit(child, 10).expect("the visor did not exit");
    assert!(st.success(), "{st:?}");
    let o = v.cli(&["info"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no visor answers"), "{}", text(&o));
}

/// `-c FILE` alone finds the visor: the CLI takes the RPC address from the config's
/// `cli_addr` when neither `--rpc` nor `$SKYWIRE_RPC` gives one.
#[test]
fn the_cli_finds_the_rpc_address_in_the_config() {
    let dir = tmp("visor-admin-cli-addr");
    let cfg = write_config(&dir, None, "[]");
    let port = free_port();
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("\"127.0.0.1:3435\""), "{text}");
    std::fs::write(
        &cfg,
        text.replace("\"127.0.0.1:3435\"", &format!("\"127.0.0.1:{port}\"")),
    )
    .unwrap();
    let v = start_visor_on(&dir, Some(&cfg), format!("127.0.0.1:{port}"));
    let o = Command::new(common::skywire_bin())
        .args([
            "cli",
            "visor",
            "-c",
            cfg.to_str().unwrap(),
            "info",
            "--json",
        ])
        .env_remove("SKYWIRE_RPC")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(ok_out(&o).contains(&v.pk), "{}", ok_out(&o));
}
