//! Helpers for the skychat tests: a visor with skychat on its own HTTP port, driven through
//! `skywire cli skychat` and plain HTTP; the sseclient-py child; JSON accessors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ChildGuard;
use super::dmsg::{start_disc, start_relay};
use super::visor::{Visor, free_port, start_visor, sw, text, tmp, write_config};
use miniserde::json::{Number, Value};

/// One visor with skychat on its own HTTP port.
pub struct Node {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub pk: String,
    pub port: u16,
    pub visor: Option<Visor>,
}

pub fn config_field(cfg: &str, key: &str) -> String {
    let pat = format!("\"{key}\": \"");
    let i = cfg.find(&pat).unwrap_or_else(|| panic!("{key} in {cfg}"));
    let rest = &cfg[i + pat.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

impl Node {
    pub fn new(name: &str, disc: &str, relay: &str) -> Node {
        Node::with_args(name, disc, relay, &[])
    }

    /// A node whose skychat gets `extra` app arguments after `--addr`.
    pub fn with_args(name: &str, disc: &str, relay: &str, extra: &[&str]) -> Node {
        let dir = tmp(&format!("skychat-{name}"));
        let port = free_port();
        let extra: String = extra.iter().map(|a| format!(", {}", json_str(a))).collect();
        let apps = format!(
            r#"[{{"name": "skychat", "args": ["--addr", "127.0.0.1:{port}"{extra}], "auto_start": true}}]"#
        );
        let config = write_config(&dir, None, &apps);
        let mut cfg = std::fs::read_to_string(&config).unwrap();
        for (from, to) in [
            (
                "\"discovery\": \"\"".to_string(),
                format!("\"discovery\": \"{disc}\""),
            ),
            (
                "\"servers\": []".to_string(),
                format!("\"servers\": [\"{relay}\"]"),
            ),
            (
                "\"listen\": \"127.0.0.1:0\"".to_string(),
                format!("\"listen\": \"127.0.0.1:{}\"", free_port()),
            ),
        ] {
            assert!(cfg.contains(&from), "{from} in {cfg}");
            cfg = cfg.replacen(&from, &to, 1);
        }
        std::fs::write(&config, &cfg).unwrap();
        Node {
            pk: config_field(&cfg, "pk"),
            dir,
            config,
            port,
            visor: None,
        }
    }

    /// A persistent stcp transport to `to`, from the config.
    pub fn transport_to(&self, to: &Node) {
        let cfg = std::fs::read_to_string(&self.config).unwrap();
        let cfg = cfg.replacen(
            "\"transports\": []",
            &format!(
                "\"transports\": [{{\"pk\": \"{}\", \"type\": \"stcp\"}}]",
                to.pk
            ),
            1,
        );
        std::fs::write(&self.config, cfg).unwrap();
    }

    pub fn start(&mut self) {
        self.visor = Some(start_visor(&self.dir, Some(&self.config)));
        self.wait_skychat();
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skywire cli skychat --addr <ours> -c <config> args…`.
    pub fn sc(&self, args: &[&str]) -> Output {
        let addr = self.addr();
        let mut v = vec![
            "cli",
            "skychat",
            "--addr",
            &addr,
            "-c",
            self.config.to_str().unwrap(),
        ];
        v.extend_from_slice(args);
        sw(&v)
    }

    /// The same, as a child with stdout piped.
    pub fn sc_spawn(&self, args: &[&str]) -> (ChildGuard, BufReader<std::process::ChildStdout>) {
        let mut child = Command::new(super::skywire_bin())
            .args(["cli", "skychat", "--addr", &self.addr(), "-c"])
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        (ChildGuard(Some(child)), out)
    }

    /// The skychat surface's token (0600, written at every start).
    pub fn token(&self) -> String {
        wait_token(&self.token_path())
    }

    /// One request to the surface with the token; (status, body).
    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http_to(self.port, method, path, body, Some(&self.token()))
    }

    /// Waits (≤ 20 s) until skychat answers /status.
    pub fn wait_skychat(&self) {
        let t0 = Instant::now();
        loop {
            // A token file of an earlier run may still be there: the port must answer too.
            if std::fs::metadata(self.token_path()).is_ok()
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                let (code, _) = self.http("GET", "/status", None);
                if code == 200 {
                    return;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "skychat on {} never answered: {}",
                self.addr(),
                std::fs::read_to_string(self.dir.join("visor.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn token_path(&self) -> PathBuf {
        let cfg = std::fs::read_to_string(&self.config).unwrap();
        let local = config_field(&cfg, "local_path");
        self.config
            .parent()
            .unwrap()
            .join(local)
            .join(format!("skychat-http-{}.token", self.port))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("visor.log")).unwrap_or_default()
    }
}

/// A plain HTTP/1.1 request (Connection: close) to 127.0.0.1:`port`; (status, body).
pub fn http_to(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(70))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let b = body.unwrap_or("");
    if body.is_some() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(b);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (code, body)
}

pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn parse(s: &str) -> Value {
    miniserde::json::from_str::<Value>(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

pub fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    match v {
        Value::Object(o) => o.get(key).unwrap_or_else(|| panic!("{key} not in {v:?}")),
        _ => panic!("not an object: {v:?}"),
    }
}

pub fn as_str(v: &Value) -> &str {
    match v {
        Value::String(s) => s,
        _ => panic!("not a string: {v:?}"),
    }
}

pub fn as_u64(v: &Value) -> u64 {
    match v {
        Value::Number(Number::U64(n)) => *n,
        Value::Number(Number::I64(n)) => *n as u64,
        _ => panic!("not a number: {v:?}"),
    }
}

pub fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        _ => panic!("not an array: {v:?}"),
    }
}

pub fn json_str(s: &str) -> String {
    miniserde::json::to_string(&s.to_string())
}

/// An sseclient-py child reading `path` of `n`'s surface; its JSON lines arrive on the
/// returned list as they are printed.
pub fn sse(
    n: &Node,
    path: &str,
    count: usize,
    last_id: &str,
    matching: &str,
) -> (ChildGuard, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(super::venv_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/skychat_sse.py"
        ))
        .args([
            "127.0.0.1",
            &n.port.to_string(),
            path,
            &n.token(),
            &count.to_string(),
            last_id,
            matching,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            l2.lock().unwrap().push(l);
        }
    });
    (ChildGuard(Some(child)), lines)
}

/// Waits (≤ `secs`) until `lines` holds a line containing each of `want`.
pub fn wait_lines(lines: &Arc<Mutex<Vec<String>>>, want: &[&str], secs: u64) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        let got = lines.lock().unwrap().clone();
        if want.iter().all(|w| got.iter().any(|l| l.contains(w))) {
            return got;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "never saw all of {want:?} in {got:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `send` retried (≤ 40 s) while the network is still coming up; the last output.
pub fn send_until_acked(from: &Node, args: &[&str]) -> String {
    let t0 = Instant::now();
    loop {
        let o = from.sc(args);
        let t = text(&o);
        if o.status.success() {
            return t;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "send {args:?} never acked: {t}\n--- sender log:\n{}",
            from.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn network() -> (ChildGuard, String, super::dmsg::RelayProc) {
    let (disc_proc, disc) = start_disc();
    let relay = start_relay(&disc, &[]);
    (disc_proc, disc, relay)
}

/// The token in `file`, once the app has written it (≤ 10 s).
pub fn wait_token(file: &Path) -> String {
    let t0 = Instant::now();
    loop {
        if let Ok(t) = std::fs::read_to_string(file)
            && !t.trim().is_empty()
        {
            return t.trim().to_string();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{} never written",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `send -t <to> -m <msg> -n <network> -w 10s` from `from`, retried until acked.
pub fn send_acked(from: &Node, to: &str, msg: &str, network: &str) -> String {
    send_until_acked(
        from,
        &["send", "-t", to, "-m", msg, "-n", network, "-w", "10s"],
    )
}

/// A standalone skychat (`skywire app skychat run --mode <mode>`) with a fresh key, its own
/// state directory and HTTP port.
pub struct Standalone {
    pub _proc: ChildGuard,
    pub pk: skywire::crypto::PublicKey,
    pub http: u16,
    pub token: String,
}

/// Starts one: `run_args` go before `--` (network options), `app_args` after `--addr`.
pub fn standalone(mode: &str, name: &str, run_args: &[&str], app_args: &[&str]) -> Standalone {
    let state = tmp(name);
    let http = free_port();
    let keys = skywire::crypto::Keypair::generate().unwrap();
    let sk = skywire::crypto::hex::encode(keys.seed());
    let addr = format!("127.0.0.1:{http}");
    let mut args = vec![
        "app",
        "skychat",
        "run",
        "--mode",
        mode,
        "--sk",
        &sk,
        "--state-dir",
        state.to_str().unwrap(),
    ];
    args.extend_from_slice(run_args);
    args.extend(["--", "--addr", &addr]);
    args.extend_from_slice(app_args);
    let (proc, line) = super::visor::spawn_first_line(super::skywire_bin(), &args);
    assert!(
        line.contains(&format!("skychat running ({mode} mode)"))
            && line.contains(&keys.public().to_hex()),
        "{line}"
    );
    let token = wait_token(&state.join(format!("skychat-http-{http}.token")));
    Standalone {
        _proc: proc,
        pk: *keys.public(),
        http,
        token,
    }
}
