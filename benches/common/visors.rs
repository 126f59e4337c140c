//! Real `skywire visor` processes for the benches that need whole visors (skynet, skysocks):
//! a config from `skywire config gen` with the bench's stcp listener, peers, transports and
//! apps, the visor started on a free RPC port, and its CLI.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use miniserde::json::{Array, Object, Value};
use skywire::http::json::parse_object;
use skywire::rpc::skynet::{RuleInfo, TpView};
use skywire::rpc::{Body, Items};

use crate::common::{Proc, free_port, spawn_first_line};

/// The binary under test: this build's, or `SKYWIRE_BENCH_BIN` (another build of the same
/// source, e.g. one with symbols for a profiler), as in the dmsg bench.
pub fn bin() -> String {
    std::env::var("SKYWIRE_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_skywire").into())
}

/// Starts `skywire <args>` and returns it with its first stdout line (kept draining).
pub fn start_tool(args: &[&str]) -> (Proc, String) {
    spawn_first_line(&bin(), args, None)
}

/// One visor of the bench.
pub struct Visor {
    pub proc: Proc,
    pub rpc: String,
    pub cfg: PathBuf,
    pub pk: String,
    pub token: String,
}

impl Visor {
    /// `skywire cli visor --rpc … -c … args…`: its stdout, or a panic naming the failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let o = Command::new(bin())
            .args(["cli", "visor", "--rpc", &self.rpc, "-c"])
            .arg(&self.cfg)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "cli visor {args:?}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    }

    /// Its transports (`tp ls --json`).
    pub fn transports(&self) -> Vec<TpView> {
        let o = parse_object(&self.cli(&["tp", "ls", "--json"])).unwrap();
        Items::<TpView>::from_object(&o).unwrap().0
    }

    /// Its rule table (`route ls --json`).
    pub fn rules(&self) -> Vec<RuleInfo> {
        let o = parse_object(&self.cli(&["route", "ls", "--json"])).unwrap();
        Items::<RuleInfo>::from_object(&o).unwrap().0
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

pub fn s(v: &str) -> Value {
    Value::String(v.into())
}

/// Generates a config in `dir` on the discovery `disc` and the relay `relay` (`pk@addr`;
/// both `None`: hosting the embedded network on free loopback ports) and returns it
/// parsed, for [`write_config`].
pub fn gen_config(dir: &Path, net: Option<(&str, &str)>) -> (PathBuf, Object) {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("skywire-config.json");
    let o = Command::new(bin())
        .args(["config", "gen", "-o", file.to_str().unwrap(), "--force"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\":8080\"", "\"127.0.0.1:0\"")
        .replace("\"127.0.0.1:9090\"", "\"127.0.0.1:0\"");
    if let Some((disc, relay)) = net {
        text = text
            .replacen(
                "\"discovery\": \"\"",
                &format!("\"discovery\": \"{disc}\""),
                1,
            )
            .replacen("\"servers\": []", &format!("\"servers\": [\"{relay}\"]"), 1);
    }
    (file, parse_object(&text).unwrap())
}

/// Sets the config's log level, stcp listener and peers (`pk`, port on 127.0.0.1), persistent
/// stcp transports to `dial` and, when given, `launcher.apps`, and writes it.
pub fn write_config(
    file: &Path,
    mut cfg: Object,
    stcp_port: u16,
    peers: &[(String, u16)],
    dial: &[String],
    apps: Option<Array>,
) {
    cfg.insert("log_level".into(), s("warn"));
    let mut stcp = Object::new();
    stcp.insert("listen".into(), s(&format!("127.0.0.1:{stcp_port}")));
    let mut book = Array::new();
    for (pk, port) in peers {
        book.push(s(&format!("{pk}@127.0.0.1:{port}")));
    }
    stcp.insert("peers".into(), Value::Array(book));
    cfg.insert("stcp".into(), Value::Object(stcp));
    let mut tps = Array::new();
    for pk in dial {
        let mut t = Object::new();
        t.insert("pk".into(), s(pk));
        t.insert("type".into(), s("stcp"));
        tps.push(Value::Object(t));
    }
    cfg.insert("transports".into(), Value::Array(tps));
    if let Some(apps) = apps {
        let mut l = Object::new();
        l.insert("apps".into(), Value::Array(apps));
        cfg.insert("launcher".into(), Value::Object(l));
    }
    std::fs::write(file, miniserde::json::to_string(&Value::Object(cfg))).unwrap();
}

pub fn str_field(o: &Object, k: &str) -> String {
    match o.get(k) {
        Some(Value::String(v)) => v.clone(),
        other => panic!("config field {k}: {other:?}"),
    }
}

/// Starts `skywire visor -c cfg` on a free RPC port and waits (≤ 15 s) for its token.
pub fn start_visor(cfg: &Path) -> Visor {
    let rpc = format!("127.0.0.1:{}", free_port());
    let (proc, line) = start_tool(&["visor", "-c", cfg.to_str().unwrap(), "--rpc", &rpc]);
    assert!(line.starts_with("visor "), "visor did not start: {line:?}");
    let pk = line.split_whitespace().nth(1).unwrap().to_string();
    let c = parse_object(&std::fs::read_to_string(cfg).unwrap()).unwrap();
    let token_file = cfg
        .parent()
        .unwrap()
        .join(str_field(&c, "local_path"))
        .join("rpc.token");
    let t0 = Instant::now();
    let token = loop {
        match std::fs::read_to_string(&token_file) {
            Ok(t) if !t.trim().is_empty() => break t.trim().to_string(),
            _ => {
                assert!(t0.elapsed() < Duration::from_secs(15), "no RPC token");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    Visor {
        proc,
        rpc,
        cfg: cfg.to_path_buf(),
        pk,
        token,
    }
}

/// Waits (≤ `limit`) until `v` has an up transport to each of `peers`.
pub fn wait_transports(v: &Visor, peers: &[&str], limit: Duration) {
    let t0 = Instant::now();
    loop {
        let tps = v.transports();
        let up = |p: &&str| tps.iter().any(|t| t.peer == *p && t.state == "up");
        if peers.iter().all(up) {
            return;
        }
        assert!(
            t0.elapsed() < limit,
            "transports of {} to {peers:?} not all up within {limit:?}: {tps:?}",
            v.pk
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
