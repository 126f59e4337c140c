//! The pty app end to end, in each of its three modes, through the real binary:
//! - visor-app: visor B hosts it, visor A's user runs `skywire cli pty` through A's RPC;
//! - dmsg-standalone: `dmsg pty …` with its own key, the client with `--dmsg`;
//! - TCP-standalone: `standalone pty --listen …`, the client with `--via tcp://…`.
//!
//! In each: `exec` prints 42 for `echo $((6*7))`, passes exit status 3 through, a PK not on
//! the whitelist is refused, killing the client leaves no process behind on the host, and an
//! interactive session (pexpect, tests/py/pty_interactive.py) sees a tty, follows a resize,
//! is interrupted by Ctrl-C and ends with the shell's status.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::visor::*;
use skywire::crypto::Keypair;

fn symlink(dir: &Path, name: &str) -> String {
    let link = dir.join(name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(common::skywire_bin(), &link).unwrap();
    link.to_str().unwrap().to_string()
}

fn run(cmd: &[String]) -> std::process::Output {
    Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn with(base: &[String], extra: &[&str]) -> Vec<String> {
    let mut v = base.to_vec();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// exec, exit status, refusal, no orphans and the interactive session, for one mode.
/// `exec_base` is the client command up to (not including) `--`; `start_cmd` the
/// interactive one; `refused_base` an exec prefix with a PK the host does not admit.
fn check_mode(mode: &str, exec_base: &[String], start_cmd: &[String], refused_base: &[String]) {
    let o = run(&with(exec_base, &["--", "echo $((6*7))"]));
    assert!(o.status.success(), "{mode}: {}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "42\n", "{mode}");

    let o = run(&with(exec_base, &["--", "sh", "-c", "exit 3"]));
    assert_eq!(o.status.code(), Some(3), "{mode}: {}", text(&o));

    let o = run(&with(refused_base, &["--", "true"]));
    assert_eq!(o.status.code(), Some(1), "{mode}: {}", text(&o));
    assert!(text(&o).contains("not whitelisted"), "{mode}: {}", text(&o));

    // Kill the client mid-session: the remote process (reported by PID) must go away.
    let mut c = Command::new(&exec_base[0])
        .args(&with(exec_base, &["--", "echo pid=$$; exec sleep 60"])[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(c.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: i32 = line
        .trim()
        .strip_prefix("pid=")
        .unwrap_or_else(|| panic!("{mode}: {line:?}"))
        .parse()
        .unwrap();
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "{mode}: remote sleep runs"
    );
    c.kill().unwrap();
    c.wait().unwrap();
    let t0 = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true);
        assert!(
            t0.elapsed() < Duration::from_secs(5) || zombie,
            "{mode}: remote process {pid} still alive 5 s after the client died"
        );
        if zombie && t0.elapsed() > Duration::from_secs(5) {
            panic!("{mode}: remote process {pid} left a zombie");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // Interactive, through a real terminal.
    let script = format!("{}/tests/py/pty_interactive.py", env!("CARGO_MANIFEST_DIR"));
    let o = Command::new(common::venv_python())
        .arg(script)
        .args(start_cmd)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{mode}: interactive: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn pty_in_all_three_modes() {
    let bin = common::skywire_bin().to_str().unwrap().to_string();
    let dir = tmp("pty");
    // A: the embedded network and the user's visor; B: joined, hosts the shell A's user opens.
    let ca = write_config(&dir.join("a"), None, "[]");
    let a = start_visor(&dir.join("a"), Some(&ca));
    let info = a.info();
    let relay = json_field(&info, "hosted_relay");
    let disc = json_field(&info, "discovery");
    let cb = write_config(&dir.join("b"), Some(&relay), "[]");
    let b = start_visor(&dir.join("b"), Some(&cb));
    b.wait_state("pty", "running");

    // visor-app mode. Before A is on B's whitelist, B refuses it.
    let exec_a = vec![
        bin.clone(),
        "cli".into(),
        "pty".into(),
        "--rpc".into(),
        a.rpc.clone(),
        "-c".into(),
        ca.to_str().unwrap().into(),
        "exec".into(),
        b.pk.clone(),
    ];
    let t0 = Instant::now();
    loop {
        let o = run(&with(&exec_a, &["--", "true"]));
        if text(&o).contains("not whitelisted") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{}", text(&o));
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = b.pty(&["whitelist", "add", &a.pk]);
    assert!(o.status.success(), "{}", text(&o));
    // B refuses a PK that is not on the list: a throwaway one on its own dmsg client.
    let refused_visor = vec![
        bin.clone(),
        "cli".into(),
        "pty".into(),
        "exec".into(),
        b.pk.clone(),
        "--dmsg".into(),
        "--relay".into(),
        relay.clone(),
        "--disc".into(),
        disc.clone(),
    ];
    let start_a = vec![
        bin.clone(),
        "cli".into(),
        "pty".into(),
        "--rpc".into(),
        a.rpc.clone(),
        "-c".into(),
        ca.to_str().unwrap().into(),
        "start".into(),
        b.pk.clone(),
    ];
    check_mode("visor", &exec_a, &start_a, &refused_visor);
    // The session was tagged with the app on B.
    let o = b.cli(&["app", "status", "pty"]);
    assert!(o.status.success(), "{}", text(&o));

    // dmsg-standalone mode: `dmsg pty` with its own key, admitting one client key.
    let host = Keypair::from_seed(&[21; 32]);
    let client = Keypair::from_seed(&[22; 32]);
    let dmsg_link = symlink(&dir, "dmsg");
    let (mut h, line) = spawn_first_line(
        &dmsg_link,
        &[
            "pty",
            "--sk",
            &hex(host.seed()),
            "--relay",
            &relay,
            "--disc",
            &disc,
            "--whitelist",
            &client.public().to_hex(),
        ],
    );
    assert_eq!(
        line,
        format!("pty running (dmsg mode) as {}", host.public())
    );
    let net = |sk: &str| -> Vec<String> {
        vec![
            "--dmsg".into(),
            "--sk".into(),
            sk.into(),
            "--relay".into(),
            relay.clone(),
            "--disc".into(),
            disc.clone(),
        ]
    };
    let mut exec_d = vec![
        bin.clone(),
        "cli".into(),
        "pty".into(),
        "exec".into(),
        host.public().to_hex(),
    ];
    exec_d.extend(net(&hex(client.seed())));
    let mut start_d = vec![
        bin.clone(),
        "cli".into(),
        "pty".into(),
        "start".into(),
        host.public().to_hex(),
    ];
    start_d.extend(net(&hex(client.seed())));
    let mut refused_d = vec![
        bin.clone(),
        "cli".into(),
        "pty".into(),
        "exec".into(),
        host.public().to_hex(),
    ];
    refused_d.extend(net(&hex(&[23; 32])));
    check_mode("dmsg", &exec_d, &start_d, &refused_d);
    drop(h.take().kill());

    // TCP-standalone mode: `standalone pty --listen`, reached with --via.
    let port = free_port();
    let st_link = symlink(&dir, "standalone");
    let (mut t, line) = spawn_first_line(
        &st_link,
        &[
            "pty",
            "host",
            "--sk",
            &hex(host.seed()),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--whitelist",
            &client.public().to_hex(),
        ],
    );
    assert_eq!(line, format!("pty running (tcp mode) as {}", host.public()));
    let via = format!("tcp://{}@127.0.0.1:{port}", host.public());
    let tcp = |verb: &str, sk: &str| -> Vec<String> {
        vec![
            bin.clone(),
            "cli".into(),
            "pty".into(),
            verb.into(),
            host.public().to_hex(),
            "--via".into(),
            via.clone(),
            "--sk".into(),
            sk.into(),
        ]
    };
    check_mode(
        "tcp",
        &tcp("exec", &hex(client.seed())),
        &tcp("start", &hex(client.seed())),
        &tcp("exec", &hex(&[24; 32])),
    );
    sigterm(t.0.as_ref().unwrap());
    assert!(wait_exit(t.take(), 5).unwrap().success());

    // The pty app is critical in the visor: stopping it needs the flag.
    let o = b.sw(&["app", "pty", "stop", "--rpc", &b.rpc]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--i-know-what-im-doing"), "{}", text(&o));
}
