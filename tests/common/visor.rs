//! Helpers for tests that run visors: start them on free loopback ports, talk to them
//! through the CLI, read their JSON.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::ChildGuard;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn sw(args: &[&str]) -> Output {
    Command::new(super::skywire_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Reads one JSON string field out of compact JSON (good enough for our own output).
pub fn json_field(json: &str, key: &str) -> String {
    let pat = format!("\"{key}\":\"");
    let i = json
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} not in {json}"));
    let rest = &json[i + pat.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// `skywire args…` with `$SKYWIRE_STATE_DIR` set (how `skywire app <name> …` finds the
/// visor's RPC token).
pub fn sw_in(state_dir: &Path, args: &[&str]) -> Output {
    Command::new(super::skywire_bin())
        .args(args)
        .env("SKYWIRE_STATE_DIR", state_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub struct Visor {
    pub proc: ChildGuard,
    pub rpc: String,
    pub pk: String,
    pub dir: PathBuf,
    /// The config file it runs with (its RPC token is found through it).
    pub config: PathBuf,
}

impl Visor {
    /// `skywire cli visor --rpc … -c <its config> args…`.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut v = vec![
            "cli",
            "visor",
            "--rpc",
            &self.rpc,
            "-c",
            self.config.to_str().unwrap(),
        ];
        v.extend_from_slice(args);
        sw(&v)
    }
    /// `skywire cli pty --rpc … -c <its config> args…`.
    pub fn pty(&self, args: &[&str]) -> Output {
        let mut v = vec![
            "cli",
            "pty",
            "--rpc",
            &self.rpc,
            "-c",
            self.config.to_str().unwrap(),
        ];
        v.extend_from_slice(args);
        sw(&v)
    }
    /// `skywire args…` finding this visor's token through `$SKYWIRE_STATE_DIR`.
    pub fn sw(&self, args: &[&str]) -> Output {
        sw_in(&self.dir, args)
    }
    /// The RPC token it wrote.
    pub fn token(&self) -> String {
        let cfg = std::fs::read_to_string(&self.config).unwrap();
        let local = json_field(&cfg.replace("\": \"", "\":\""), "local_path");
        let file = self.config.parent().unwrap().join(local).join("rpc.token");
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .trim()
            .to_string()
    }
    pub fn info(&self) -> String {
        let o = self.cli(&["info", "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    pub fn app_json(&self, name: &str) -> String {
        let o = self.cli(&["app", "status", name, "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    pub fn wait_state(&self, name: &str, state: &str) -> String {
        let t0 = Instant::now();
        loop {
            let j = self.app_json(name);
            if json_field(&j, "state") == state {
                return j;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "{name} never {state}: {j}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Writes a config: `apps` is the `launcher.apps` JSON array; `join` a relay or `None` to
/// host the embedded network on free loopback ports.
pub fn write_config(dir: &Path, join: Option<&str>, apps: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("skywire-config.json");
    let mut args = vec!["config", "gen", "-o", file.to_str().unwrap(), "--force"];
    if let Some(j) = join {
        args.extend(["--join", j]);
    }
    let o = sw(&args);
    assert!(o.status.success(), "{}", text(&o));
    let mut cfg = std::fs::read_to_string(&file).unwrap();
    cfg = cfg.replace(
        "\"relay_addr\": \":8080\"",
        "\"relay_addr\": \"127.0.0.1:0\"",
    );
    cfg = cfg.replace(
        "\"disc_addr\": \"127.0.0.1:9090\"",
        "\"disc_addr\": \"127.0.0.1:0\"",
    );
    // Skynet's stcp listener on loopback too (its default is every interface, :7777).
    cfg = cfg.replace(
        "\"listen\": \"0.0.0.0:7777\"",
        "\"listen\": \"127.0.0.1:0\"",
    );
    cfg = cfg.replace("\"apps\": []", &format!("\"apps\": {apps}"));
    std::fs::write(&file, cfg).unwrap();
    file
}

pub fn start_visor(dir: &Path, config: Option<&Path>) -> Visor {
    start_visor_on(dir, config, format!("127.0.0.1:{}", free_port()))
}

/// [`start_visor`] with its RPC on `rpc`.
pub fn start_visor_on(dir: &Path, config: Option<&Path>, rpc: String) -> Visor {
    let mut cmd = Command::new(super::skywire_bin());
    cmd.arg("visor")
        .args(["--rpc", &rpc, "--log-level", "info"]);
    match config {
        Some(c) => cmd.args(["-c", c.to_str().unwrap()]),
        None => cmd.args(["--state-dir", dir.to_str().unwrap()]),
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("visor.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("visor "),
        "visor did not start: {line} {}",
        std::fs::read_to_string(dir.join("visor.log")).unwrap_or_default()
    );
    let pk = line.split_whitespace().nth(1).unwrap().to_string();
    // Keep reading stdout so the visor never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    Visor {
        proc: ChildGuard(Some(child)),
        rpc,
        pk,
        dir: dir.to_path_buf(),
        config: config
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.join("skywire-config.json")),
    }
}

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("skywire-visor-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn wait_exit(mut c: Child, secs: u64) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        if let Some(s) = c.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
    None
}

pub fn sigterm(c: &Child) {
    let pid = rustix::process::Pid::from_child(c);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

/// Hex of a secret key seed, for `--sk`.
#[allow(unused_imports)] // only some test crates use it
pub use skywire::crypto::hex::encode as hex;

/// Starts `program args…` with stdout piped and returns it with its first stdout line
/// (trimmed): what a standalone app prints once it runs.
pub fn spawn_first_line(
    program: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
) -> (ChildGuard, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (ChildGuard(Some(child)), line.trim().to_string())
}
