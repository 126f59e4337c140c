//! `make bench` — the pty app beside dropbear, same machine, same run:
//! - connect + exec: `skywire cli pty exec <pk> --via tcp://… -- true` (a fresh TCP
//!   connection and Noise XK handshake each time) against `dbclient … true`, median of 30,
//!   timed by `../shared/peer-bench/conn_bench.py`;
//! - interactive round trips: 1,000 `echo` commands through a shell and 1,000 keystroke
//!   echoes (`../shared/peer-bench/pty_bench.py`), `skywire cli pty start` against
//!   `dbclient -t … /bin/sh -i`.
//!
//! Both servers run on 127.0.0.1 ports this bench picks and are stopped by PID. dropbear logs
//! in as root with a key this bench makes: inside a private mount namespace (`unshare -m`)
//! a tmpfs over /root holds the authorized key, so nothing outside the bench changes. Under
//! `cargo test --all-targets` it runs small, without dropbear, as a smoke test.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Proc, free_port};
use skywire::crypto::hex::encode as hex;

const BIN: &str = env!("CARGO_BIN_EXE_skywire");

fn peer_bench() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/peer-bench");
    d.join("pty_bench.py").exists().then_some(d)
}

/// Runs a peer-bench script and returns its JSON line.
fn script(dir: &Path, name: &str, label: &str, n: usize, cmd: &[String]) -> String {
    let o = Command::new("python3")
        .arg(dir.join(name))
        .args([label, &n.to_string(), "--"])
        .args(cmd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{name} {label}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out.lines().last().unwrap_or("").to_string()
}

/// A number field of a flat or one-level JSON object: `key` or `outer.key`.
fn num(json: &str, path: &str) -> f64 {
    let (scope, key) = match path.split_once('.') {
        Some((o, k)) => (
            &json[json
                .find(&format!("\"{o}\""))
                .unwrap_or_else(|| panic!("{o} in {json}"))..],
            k,
        ),
        None => (json, path),
    };
    let pat = format!("\"{key}\": ");
    let i = scope
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} in {json}"))
        + pat.len();
    scope[i..]
        .split([',', '}'])
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn main() {
    let full = common::full_run();
    let (execs, rounds) = if full { (30, 1000) } else { (3, 20) };
    let Some(pb) = peer_bench() else {
        println!("pty bench skipped: ../shared/peer-bench not found");
        return;
    };
    let dir = std::env::temp_dir().join(format!("skywire-bench-pty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Our side: a TCP-standalone host admitting one client key.
    let host_seed = [31u8; 32];
    let client_seed = [32u8; 32];
    let host_pk = skywire::crypto::Keypair::from_seed(&host_seed)
        .public()
        .to_hex();
    let client_pk = skywire::crypto::Keypair::from_seed(&client_seed)
        .public()
        .to_hex();
    let port = free_port();
    let mut host = Proc(
        Command::new(BIN)
            .args(["app", "pty", "run", "--mode", "tcp", "--log-level", "error"])
            .args(["--sk", &hex(&host_seed), "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--whitelist", &client_pk])
            // The same shell dropbear is asked for (`/bin/sh -i`), not root's login shell.
            .args(["--", "--shell", "/bin/sh"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(host.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("pty running"), "{line}");
    let via = format!("tcp://{host_pk}@127.0.0.1:{port}");
    let client = |verb: &str| -> Vec<String> {
        vec![
            BIN.into(),
            "cli".into(),
            "pty".into(),
            verb.into(),
            host_pk.clone(),
            "--via".into(),
            via.clone(),
            "--sk".into(),
            hex(&client_seed),
        ]
    };
    let mut exec = client("exec");
    exec.extend(["--".into(), "true".into()]);
    let ours_exec = script(&pb, "conn_bench.py", "skywire-pty-exec", execs, &exec);
    let ours_rt = script(&pb, "pty_bench.py", "skywire-pty", rounds, &client("start"));
    drop(host);

    // dropbear, same run.
    let mut theirs: Option<(String, String)> = None;
    if full {
        let key = dir.join("db_client");
        let ok = Command::new("dropbearkey")
            .args(["-t", "ed25519", "-f"])
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let pubkey = Command::new("dropbearkey")
            .args(["-y", "-f"])
            .arg(&key)
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find(|l| l.starts_with("ssh-"))
                    .map(String::from)
            });
        let dport = free_port();
        if let (true, Some(pubkey)) = (ok, pubkey)
            && let Some(db) = common::start_dropbear(&dir, dport, &pubkey)
        {
            let base = |tty: bool| -> Vec<String> {
                let mut v: Vec<String> = vec!["dbclient".into()];
                if tty {
                    v.push("-t".into());
                }
                v.extend([
                    "-y".into(),
                    "-y".into(),
                    "-i".into(),
                    key.display().to_string(),
                    "-p".into(),
                    dport.to_string(),
                    "root@127.0.0.1".into(),
                ]);
                v
            };
            let mut e = base(false);
            e.push("true".into());
            let db_exec = script(&pb, "conn_bench.py", "dropbear-exec", execs, &e);
            let mut i = base(true);
            i.extend(["/bin/sh".into(), "-i".into()]);
            let db_rt = script(&pb, "pty_bench.py", "dropbear", rounds, &i);
            theirs = Some((db_exec, db_rt));
            drop(db);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    let row = |what: &str, exec: &str, rt: &str| {
        format!(
            "| {what} | {:.1} | {:.3} | {:.3} | {:.3} | {:.3} |",
            num(exec, "median_ms"),
            num(rt, "command.median_ms"),
            num(rt, "command.p90_ms"),
            num(rt, "keystroke.median_ms"),
            num(rt, "keystroke.p90_ms"),
        )
    };
    let mut body = format!(
        "Machine: {}. Both on 127.0.0.1: `standalone pty` (TCP mode, Noise XK per connection) \
         and dropbear {}; the remote shell is `/bin/sh` for both (pty `--shell /bin/sh`, `dbclient … /bin/sh -i`). connect + exec: \
         median of {execs} fresh connections running `true`; round trips: {rounds} each.\n\n\
         | server | connect + exec `true`, ms | `echo` round trip median, ms | p90, ms | keystroke echo median, ms | p90, ms |\n\
         |---|---:|---:|---:|---:|---:|\n{}",
        common::machine(),
        if theirs.is_some() {
            "(Debian dropbear-bin)"
        } else {
            "(not measured in this run)"
        },
        row(
            "skywire pty (`cli pty exec|start --via tcp://…`)",
            &ours_exec,
            &ours_rt
        ),
    );
    if let Some((e, r)) = &theirs {
        body.push('\n');
        body.push_str(&row("dropbear (`dbclient`)", e, r));
        body.push_str(&format!(
            "\n\nRatios (ours / dropbear's, same run): connect + exec {:.2}×, `echo` round trip {:.2}×, keystroke {:.2}×. Budget (DESIGN.md §8): shell round trip ≤ dropbear's.",
            num(&ours_exec, "median_ms") / num(e, "median_ms"),
            num(&ours_rt, "command.median_ms") / num(r, "command.median_ms"),
            num(&ours_rt, "keystroke.median_ms") / num(r, "keystroke.median_ms"),
        ));
    }
    println!("{body}");
    if let Some(f) = common::write_target() {
        common::write_section(&f, "pty", &body).unwrap();
        println!("wrote the results to {f}");
    }
}
