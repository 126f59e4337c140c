//! The command tree as a user drives it: the real binary, real files.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("skywire-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .output()
        .expect("spawn skywire")
}

fn sky(args: &[&str]) -> Output {
    run(&common::skywire_bin(), args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn version_and_help() {
    let o = sky(&["--version"]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with(&format!(
        "skywire (skywire-rs) {}",
        env!("CARGO_PKG_VERSION")
    )));
    let o = sky(&["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("keygen"));
    let o = sky(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("skywire --help"), "{}", stderr(&o));
    let o = sky(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn multicall_names() {
    let dir = TempDir::new("multicall");
    for name in ["dmsg", "standalone"] {
        let link = dir.0.join(name);
        std::os::unix::fs::symlink(common::skywire_bin(), &link).unwrap();
        let o = run(&link, &["--version"]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(stdout(&o).starts_with(&format!("{name} (skywire-rs) ")));
        let o = run(&link, &["--help"]);
        assert!(
            stdout(&o).starts_with(&format!("Usage: {name}")),
            "{}",
            stdout(&o)
        );
    }
}

#[test]
fn keygen_prints_and_writes() {
    let o = sky(&["keygen"]);
    assert!(o.status.success());
    let out = stdout(&o);
    let pk = out.lines().next().unwrap().strip_prefix("pk: ").unwrap();
    let sk = out.lines().nth(1).unwrap().strip_prefix("sk: ").unwrap();
    let kp = skywire::crypto::Keypair::from_hex(sk, None).unwrap();
    assert_eq!(kp.public().to_hex(), pk);

    let o = sky(&["keygen", "--json"]);
    let j = skywire::http::json::parse_object(&stdout(&o)).unwrap();
    assert!(j.contains_key("pk") && j.contains_key("sk"));

    let dir = TempDir::new("keygen");
    let f = dir.0.join("id.json");
    let fs = f.to_str().unwrap();
    let o = sky(&["keygen", "-o", fs]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(mode(&f), 0o600);
    assert!(
        !stdout(&o).contains("sk:"),
        "secret must not be printed with -o"
    );
    let first = std::fs::read_to_string(&f).unwrap();
    let o = sky(&["keygen", "-o", fs]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        first,
        "refused run changed the file"
    );
    let o = sky(&["keygen", "-o", fs, "--force"]);
    assert!(o.status.success());
    assert_ne!(std::fs::read_to_string(&f).unwrap(), first);
}

#[test]
fn config_gen_then_check() {
    let dir = TempDir::new("cfg");
    let f = dir.0.join("skywire-config.json");
    let fs = f.to_str().unwrap();
    let o = sky(&["config", "gen", "-o", fs]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(mode(&f), 0o600);
    let pk = stdout(&o).lines().next().unwrap()[4..].to_string();

    let o = sky(&["config", "check", "-c", fs, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = skywire::http::json::parse_object(&stdout(&o)).unwrap();
    let field = |k: &str| match &j[k] {
        miniserde::json::Value::String(s) => s.clone(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(field("pk"), pk);
    assert_eq!(field("cli_addr"), "127.0.0.1:3435");

    let o = sky(&["config", "gen", "-o", fs]);
    assert_eq!(o.status.code(), Some(1));
    let o = sky(&["config", "gen", "-o", fs, "--force"]);
    assert!(o.status.success());
    assert_ne!(stdout(&o).lines().next().unwrap()[4..], pk);

    // --join and --hypervisor land in the file and load back.
    let relay = skywire::crypto::Keypair::generate().unwrap();
    let join = format!("{}@10.0.0.1:8080", relay.public());
    let o = sky(&[
        "config",
        "gen",
        "-o",
        fs,
        "--force",
        "--join",
        &join,
        "--hypervisor",
        &relay.public().to_hex(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = skywire::visor::config::Config::load(&f).unwrap();
    assert_eq!(cfg.dmsg.servers[0].to_string(), join);
    assert_eq!(cfg.hypervisors, vec![*relay.public()]);
    let o = sky(&["config", "gen", "-o", "-", "--join", "nonsense"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--join"));
}

#[test]
fn config_check_names_the_problem() {
    let dir = TempDir::new("bad");
    let f = dir.0.join("c.json");
    let fs = f.to_str().unwrap();

    let o = sky(&["config", "check", "-c", fs]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains(fs) && e.contains("config gen"), "{e}");

    let o = sky(&["config", "gen", "-o", fs]);
    assert!(o.status.success());
    let good = std::fs::read_to_string(&f).unwrap();

    let cases: [(&str, &str, &str); 5] = [
        (
            "\"sessions_count\": 1",
            "\"sessions_count\": true",
            "dmsg.sessions_count",
        ),
        ("\"cli_addr\"", "\"cli_adr\"", "cli_adr"),
        (
            "\"log_level\": \"info\"",
            "\"log_level\": \"loud\"",
            "log_level",
        ),
        ("{", "[", "not valid JSON"),
        ("\"version\": \"1\",", "", "version"),
    ];
    for (from, to, want) in cases {
        std::fs::write(&f, good.replacen(from, to, 1)).unwrap();
        let o = sky(&["config", "check", "-c", fs]);
        assert_eq!(o.status.code(), Some(1), "{from} -> {to}");
        let e = stderr(&o);
        assert!(e.contains(want) && e.contains(fs), "{from} -> {to}: {e}");
        assert_eq!(e.lines().count(), 1, "one-line error: {e}");
    }

    // A secret key that belongs to another public key is refused.
    let other = skywire::crypto::Keypair::generate().unwrap();
    let sk_line = good.lines().find(|l| l.contains("\"sk\"")).unwrap();
    std::fs::write(
        &f,
        good.replacen(
            sk_line,
            &format!("  \"sk\": \"{}\",", other.secret_hex()),
            1,
        ),
    )
    .unwrap();
    let o = sky(&["config", "check", "-c", fs]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("does not produce the public key"),
        "{}",
        stderr(&o)
    );
}

/// Runs the binary with stdout on `out` and returns (exit code, stderr).
fn run_to(bin: &Path, args: &[&str], out: std::process::Stdio) -> (Option<i32>, String) {
    let o = Command::new(bin)
        .args(args)
        .stdout(out)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("spawn skywire");
    (o.status.code(), stderr(&o))
}

fn dev_full() -> std::process::Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full (Linux)")
        .into()
}

/// Finding 10: a failed write on stdout is an error (exit 1, one line), not a panic
/// (134 in release builds); a closed pipe ends the output quietly.
#[test]
fn stdout_write_errors_are_reported_not_panics() {
    let dir = TempDir::new("devfull");
    let cfg = dir.0.join("c.json");
    let o = sky(&["config", "gen", "-o", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bin = common::skywire_bin();
    let dmsg = dir.0.join("dmsg");
    std::os::unix::fs::symlink(&bin, &dmsg).unwrap();
    let cases: Vec<(&Path, Vec<&str>)> = vec![
        (&bin, vec!["keygen"]),
        (&bin, vec!["keygen", "--json"]),
        (&bin, vec!["--version"]),
        (&bin, vec!["--help"]),
        (&bin, vec!["app", "pty", "run", "--help"]),
        (&bin, vec!["config", "gen", "-o", "-"]),
        (&bin, vec!["config", "check", "-c", cfg.to_str().unwrap()]),
        (&dmsg, vec!["pty", "--help"]),
    ];
    for (b, args) in &cases {
        let (code, err) = run_to(b, args, dev_full());
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert_eq!(
            err.trim_end(),
            format!(
                "{}: error: cannot write to stdout: No space left on device",
                b.file_name().unwrap().to_str().unwrap()
            ),
            "{args:?}"
        );
    }
    // EPIPE: the reader went away (`| head -0`): quiet, and the command's own status.
    for (b, args) in &cases {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let (code, err) = run_to(b, args, writer.into());
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert_eq!(err, "", "{args:?}");
    }
    // A command that fails for its own reason still says so with stdout full.
    let (code, err) = run_to(&bin, &["config", "check", "-c", "/nonexistent"], dev_full());
    assert_eq!(code, Some(1));
    assert!(err.contains("no such file"), "{err}");
}

/// Finding 10: `skywire app <name> run --help` names the app; the multicall entries'
/// help does not offer (or require) `--mode`, which their name sets.
#[test]
fn run_help_names_the_app_and_multicall_help_has_no_mode() {
    let o = sky(&["app", "pty", "run", "--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("Usage: skywire app pty run --mode <mode>"),
        "{}",
        stdout(&o)
    );
    let o = sky(&["app", "logserver", "status", "--help"]);
    assert!(
        stdout(&o).starts_with("Usage: skywire app logserver status"),
        "{}",
        stdout(&o)
    );
    // Without --mode, `run` says what is missing.
    let o = sky(&["app", "pty", "run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--mode"), "{}", stderr(&o));
    let dir = TempDir::new("multicall-help");
    for (name, app) in [
        ("standalone", "pty"),
        ("dmsg", "pty"),
        ("dmsg", "logserver"),
    ] {
        let link = dir.0.join(name);
        if !link.exists() {
            std::os::unix::fs::symlink(common::skywire_bin(), &link).unwrap();
        }
        for help in [vec![app, "--help"], vec![app, "host", "--help"]] {
            let o = run(&link, &help);
            assert!(o.status.success(), "{name} {help:?}: {}", stderr(&o));
            let out = stdout(&o);
            assert!(
                out.starts_with(&format!("Usage: {name} {app} [--sk <sk>]")),
                "{out}"
            );
            assert!(!out.contains("--mode"), "{name} {help:?}: {out}");
        }
        // And --mode is not taken either: the entry's name is the mode.
        let o = run(&link, &[app, "--mode", "tcp"]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    }
}
