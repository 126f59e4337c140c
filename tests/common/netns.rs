//! A VPN test bed of three network namespaces the test creates and removes itself (CI runs
//! as root; nothing touches the machine's own network):
//!
//! ```text
//!   <tag>c (client)          <tag>s (server)                 <tag>o (outside)
//!   c0 10.99.1.2/24 ──veth── s0 10.99.1.1/24
//!   default via 10.99.1.1    lo 10.99.3.1/32 (relay, discovery, stcp, TCP mode)
//!                            s1 10.99.2.1/24 ──────veth───── o0 10.99.2.2/24
//!                            default via 10.99.2.2           lo 10.99.9.1/32 (HTTP :8080)
//! ```
//!
//! The client reaches the server's 10.99.3.1 through its default route (so the VPN client must
//! pin it outside the tunnel), and cannot reach the outside 10.99.9.1: the server forwards
//! nothing until vpn-server turns forwarding on, and the outside has no route back to
//! 10.99.1.0/24, so only masqueraded traffic gets answers. The outside's HTTP server answers
//! every GET with the address the request came from. 10.99.2.2 is on the server's LAN, which
//! `--secure` keeps clients out of.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use miniserde::json::{Number, Value};

use super::ChildGuard;
use super::visor::text;

/// The outside HTTP server's URL (it answers with the caller's address).
pub const OUTSIDE_URL: &str = "http://10.99.9.1:8080/";
/// An address on the server's LAN (`--secure` keeps clients out of it).
pub const LAN_URL: &str = "http://10.99.2.2:8080/";
/// The server's address as the outside sees masqueraded traffic.
pub const SERVER_EGRESS: &str = "10.99.2.1";
/// A DNS server address the client is pointed at (never asked: only /etc/resolv.conf is
/// checked).
pub const LAB_DNS: &str = "10.99.9.53";
/// Where the relay, discovery, stcp and TCP-mode listeners are (on the server's loopback).
pub const SERVICES: &str = "10.99.3.1";

/// True if this process may create network namespaces (root). Without it a test fails when
/// `$CI` is set and is skipped (with a line saying so) otherwise.
pub fn can_run() -> bool {
    let root = is_root();
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "the VPN tests need root (network namespaces, TUN devices); CI runs as root"
        );
        eprintln!("skipped: the VPN tests need root (network namespaces, TUN devices)");
    }
    root
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Where `prog` is on this `PATH` (`command -v`), if anywhere.
pub fn which(prog: &str) -> Option<String> {
    let o = Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let full = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (o.status.success() && !full.is_empty()).then_some(full)
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(args: &[&str]) -> String {
    let o = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args.join(" ")));
    assert!(o.status.success(), "{}: {}", args.join(" "), text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The three namespaces; removed (with everything in them) when dropped.
pub struct Lab {
    pub tag: String,
    pub dir: PathBuf,
    /// The relay's PID, once [`Lab::relay`] started it.
    pub relay_pid: u32,
    procs: Vec<ChildGuard>,
}

impl Lab {
    /// Creates the namespaces for `tag` (2-6 lowercase letters, unique per test).
    pub fn new(tag: &str) -> Lab {
        let tag = format!("{tag}{}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("skywire-vpn-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let lab = Lab {
            tag,
            dir,
            relay_pid: 0,
            procs: Vec::new(),
        };
        for n in ["c", "s", "o"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &lab.ns(n)])
                .stderr(Stdio::null())
                .status();
            sh(&["ip", "netns", "add", &lab.ns(n)]);
            lab.ip(n, &["link", "set", "lo", "up"]);
        }
        let (c, s, o) = (lab.ns("c"), lab.ns("s"), lab.ns("o"));
        sh(&[
            "ip", "link", "add", "c0", "netns", &c, "type", "veth", "peer", "name", "s0", "netns",
            &s,
        ]);
        sh(&[
            "ip", "link", "add", "s1", "netns", &s, "type", "veth", "peer", "name", "o0", "netns",
            &o,
        ]);
        for (n, args) in [
            ("c", "addr add 10.99.1.2/24 dev c0"),
            ("c", "link set c0 up"),
            ("c", "route add default via 10.99.1.1"),
            ("s", "addr add 10.99.1.1/24 dev s0"),
            ("s", "link set s0 up"),
            ("s", "addr add 10.99.2.1/24 dev s1"),
            ("s", "link set s1 up"),
            ("s", "addr add 10.99.3.1/32 dev lo"),
            ("s", "route add default via 10.99.2.2"),
            ("o", "addr add 10.99.2.2/24 dev o0"),
            ("o", "link set o0 up"),
            ("o", "addr add 10.99.9.1/32 dev lo"),
        ] {
            let a: Vec<&str> = args.split(' ').collect();
            lab.ip(n, &a);
        }
        lab
    }

    /// The namespace's name: `<tag>c`, `<tag>s` or `<tag>o`.
    pub fn ns(&self, which: &str) -> String {
        format!("{}{which}", self.tag)
    }

    /// `ip -n <ns> args…`.
    pub fn ip(&self, which: &str, args: &[&str]) -> String {
        let ns = self.ns(which);
        let mut a = vec!["ip", "-n", &ns];
        a.extend_from_slice(args);
        sh(&a)
    }

    /// A command inside namespace `which`.
    pub fn cmd(&self, which: &str, prog: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(which)]).arg(prog);
        c.stdin(Stdio::null());
        c
    }

    /// Runs `prog args…` inside `which` and returns its output (whatever its status).
    pub fn run(&self, which: &str, prog: &str, args: &[&str]) -> Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(which), prog])
            .args(args)
            .stdin(Stdio::null());
        c.output().unwrap()
    }

    /// `skywire args…` inside `which`.
    pub fn sw(&self, which: &str, args: &[&str]) -> Output {
        let mut c = self.cmd(which, &super::skywire_bin());
        c.args(args).output().unwrap()
    }

    /// curl inside `which` (3 s at most): the body, or `None` if it failed.
    pub fn curl(&self, which: &str, url: &str) -> Option<String> {
        let o = self.run(which, "curl", &["-sS", "--fail", "--max-time", "3", url]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Keeps `child` until the lab goes (killed by PID then).
    pub fn keep(&mut self, child: Child) {
        self.procs.push(ChildGuard(Some(child)));
    }

    /// Spawns `skywire args…` in `which` with stderr to `<dir>/<log>`, and returns the first
    /// line of its stdout (the rest is drained) and the child.
    pub fn spawn_sw(&self, which: &str, args: &[&str], log: &str) -> (String, Child) {
        self.spawn_sw_env(which, args, log, &[])
    }

    /// [`Lab::spawn_sw`] with `env` set for the process (e.g. a `PATH` without `nft`).
    pub fn spawn_sw_env(
        &self,
        which: &str,
        args: &[&str],
        log: &str,
        env: &[(&str, &str)],
    ) -> (String, Child) {
        let mut c = self.cmd(which, &super::skywire_bin());
        c.envs(env.iter().copied());
        let mut child = c
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.join(log)).unwrap(),
            ))
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = out.read_to_string(&mut sink);
        });
        assert!(
            !line.is_empty(),
            "skywire {args:?} printed nothing: {}",
            self.log(log)
        );
        (line, child)
    }

    /// Spawns `skywire args…` in `which` (a standalone app), stdout discarded, stderr to
    /// `<dir>/<log>`.
    pub fn spawn_app(&self, which: &str, args: &[&str], log: &str) -> Child {
        self.cmd(which, &super::skywire_bin())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.join(log)).unwrap(),
            ))
            .spawn()
            .unwrap()
    }

    /// A log file's text.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Starts the relay with discovery on 10.99.3.1 in the server namespace: `pk@addr`.
    pub fn relay(&mut self) -> String {
        let (line, child) = self.spawn_sw(
            "s",
            &[
                "dmsg",
                "server",
                "--addr",
                "10.99.3.1:8080",
                "--disc-addr",
                "10.99.3.1:9090",
            ],
            "relay.log",
        );
        self.relay_pid = child.id();
        self.keep(child);
        let pk = line.split_whitespace().nth(1).unwrap().to_string();
        format!("{pk}@10.99.3.1:8080")
    }

    /// Starts the outside HTTP server (answers with the caller's address).
    pub fn outside_http(&mut self) {
        let script = r#"import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = self.client_address[0].encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()
"#;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("o"), "python3", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.keep(child);
        wait_until(10, "the outside HTTP server", || {
            self.run(
                "o",
                "curl",
                &["-sS", "--max-time", "1", "http://127.0.0.1:8080/"],
            )
            .status
            .success()
        });
    }

    /// A visor config in `<dir>/<name>/` joined to `relay`, with `apps` (JSON array) as
    /// `launcher.apps` and `extra` (pairs of text to replace) applied.
    pub fn config(&self, name: &str, relay: &str, apps: &str, extra: &[(&str, &str)]) -> PathBuf {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("skywire-config.json");
        let o = self.sw(
            "c",
            &[
                "config",
                "gen",
                "-o",
                f.to_str().unwrap(),
                "--force",
                "--join",
                relay,
                "--discovery",
                "http://10.99.3.1:9090",
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
        let mut cfg = std::fs::read_to_string(&f).unwrap();
        let local = format!("\"local_path\": \"{}\"", d.join("local").display());
        let apps = format!("\"apps\": {apps}");
        let mut reps = vec![
            ("\"local_path\": \"./local\"", local.as_str()),
            ("\"apps\": []", apps.as_str()),
        ];
        reps.extend_from_slice(extra);
        for (from, to) in reps {
            assert!(cfg.contains(from), "{from} not in {cfg}");
            cfg = cfg.replacen(from, to, 1);
        }
        std::fs::write(&f, cfg).unwrap();
        f
    }

    /// Starts a visor with `cfg` in `which`; its PK and the process.
    pub fn visor(&self, which: &str, cfg: &Path, log: &str) -> (String, Child) {
        self.visor_env(which, cfg, log, &[])
    }

    /// [`Lab::visor`] with `env` set for the visor.
    pub fn visor_env(
        &self,
        which: &str,
        cfg: &Path,
        log: &str,
        env: &[(&str, &str)],
    ) -> (String, Child) {
        let (line, child) =
            self.spawn_sw_env(which, &["visor", "-c", cfg.to_str().unwrap()], log, env);
        assert!(line.starts_with("visor "), "{line}: {}", self.log(log));
        (line.split_whitespace().nth(1).unwrap().to_string(), child)
    }

    /// A directory of `<lab>/<name>` holding links to `progs` (found on this `PATH`), for a
    /// process that must see only those besides `/usr/bin:/bin`: returns its `PATH`.
    pub fn path_with(&self, name: &str, progs: &[&str]) -> String {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for p in progs {
            let full =
                which(p).unwrap_or_else(|| panic!("{p} is not installed (tests/deps.d/vpn.sh)"));
            let _ = std::fs::remove_file(d.join(p));
            std::os::unix::fs::symlink(&full, d.join(p)).unwrap();
        }
        format!("{}:/usr/bin:/bin", d.display())
    }

    /// The nftables ruleset of `which`.
    pub fn nft(&self, which: &str) -> String {
        let o = self.run(which, "nft", &["list", "ruleset"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `net.ipv4.ip_forward` in `which`.
    pub fn forwarding(&self, which: &str) -> String {
        let o = self.run(which, "cat", &["/proc/sys/net/ipv4/ip_forward"]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.procs.clear();
        for n in ["c", "s", "o"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(n)])
                .status();
        }
        let _ = std::fs::remove_dir_all(std::path::Path::new("/etc/netns").join(self.ns("c")));
    }
}

/// Waits until `f` holds, at most `secs`, polling every 200 ms.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Parses JSON output.
pub fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    miniserde::json::from_str(&String::from_utf8_lossy(&o.stdout))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// `v.k1.k2…` of a JSON value (`Null` where missing).
pub fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    static NULL: Value = Value::Null;
    let mut cur = v;
    for k in path {
        cur = match cur {
            Value::Object(o) => o.get(*k).unwrap_or(&NULL),
            _ => &NULL,
        };
    }
    cur
}

/// A string at `path` ("" where not a string).
pub fn st(v: &Value, path: &[&str]) -> String {
    match at(v, path) {
        Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

/// A number at `path` (0 where not one).
pub fn num(v: &Value, path: &[&str]) -> u64 {
    match at(v, path) {
        Value::Number(Number::U64(n)) => *n,
        _ => 0,
    }
}
