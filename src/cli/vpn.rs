//! `skywire cli vpn start <pk> | stop | status | list`: the running visor's VPN, through the
//! apps' control surfaces (RPC `POST /v1/apps/vpn-client/control` and
//! `/v1/apps/vpn-server/control`). `start` starts the vpn-client app if it is not running
//! and waits (printing the state as it changes) until the tunnel is up; `list` shows the
//! clients of this visor's own vpn-server (Go Skywire's `vpn list` reads a service discovery
//! of public servers, which this network does not have).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use argh::FromArgs;
use miniserde::json::{Object, Value};

use super::out::{
    human_bytes as bytes, human_secs, obj_str as s, obj_u64 as n, print_json, say, table,
};
use super::rpc::{Rpc, app_control as control, call};
use super::{CmdError, CmdResult};
use crate::apps::vpn::{client, server};
use crate::http::json::{Ordered, Out};
use crate::rpc::Request;

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "vpn")]
/// the VPN: start a tunnel to a vpn-server, stop it, its status, this visor's VPN clients.
pub struct VpnCmd {
    /// visor RPC address (default $SKYWIRE_RPC, else the cli_addr of the visor's config,
    /// else 127.0.0.1:3435)
    #[argh(option)]
    rpc: Option<String>,
    /// the visor's config file, to find its RPC token (as given to 'skywire visor -c')
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// the visor's state directory, to find its RPC token (default $SKYWIRE_STATE_DIR, else
    /// ./local)
    #[argh(option)]
    state_dir: Option<PathBuf>,
    #[argh(subcommand)]
    cmd: VpnSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum VpnSub {
    Start(StartCmd),
    Stop(StopCmd),
    Status(StatusCmd),
    List(ListCmd),
}

impl VpnCmd {
    /// Runs the subcommand.
    pub fn run(self) -> CmdResult {
        let rpc = Rpc {
            addr: self.rpc,
            config: self.config,
            state_dir: self.state_dir,
        };
        match self.cmd {
            VpnSub::Start(c) => c.run(&rpc),
            VpnSub::Stop(c) => c.run(&rpc),
            VpnSub::Status(c) => c.run(&rpc),
            VpnSub::List(c) => c.run(&rpc),
        }
    }
}

/// The tunnel's status, `None` when none runs (or the app is stopped).
fn tunnel(rpc: &Rpc) -> Result<Option<Object>, CmdError> {
    let body = Ordered::new().field("op", Out::Str("status".into()));
    match control(rpc, client::DEF.name, body) {
        Ok(o) => Ok(match o.get("tunnel") {
            Some(Value::Object(t)) => Some(t.clone()),
            _ => None,
        }),
        Err(e) if e.msg.contains(" is stopped") || e.msg.contains(" is failed") => Ok(None),
        Err(e) => Err(e),
    }
}

/// One line: where the tunnel is.
fn summary(t: &Object) -> String {
    match s(t, "state") {
        "up" => format!(
            "VPN up: {} via {} on {} over {} (server {})",
            s(t, "address"),
            s(t, "gateway"),
            s(t, "interface"),
            s(t, "network"),
            s(t, "server")
        ),
        st => format!(
            "VPN {st} (server {}){}",
            s(t, "server"),
            match s(t, "last_error") {
                "" => String::new(),
                e => format!(": {e}"),
            }
        ),
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "start")]
/// start a tunnel to a vpn-server and wait until it is up (starts the vpn-client app).
struct StartCmd {
    /// the vpn-server visor's PK
    #[argh(positional)]
    pk: String,
    /// the server's passcode
    #[argh(option)]
    passcode: Option<String>,
    /// nothing leaves this machine outside the tunnel, even while it is down
    #[argh(switch)]
    killswitch: bool,
    /// point /etc/resolv.conf at this DNS server while the tunnel runs
    #[argh(option)]
    dns: Option<String>,
    /// dial by auto (default), dmsg or skynet
    #[argh(option)]
    via: Option<String>,
    /// seconds to wait for the tunnel (default 30; 0: do not wait)
    #[argh(option, default = "30")]
    wait: u64,
    /// print JSON (the status once up)
    #[argh(switch)]
    json: bool,
}

impl StartCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        if crate::crypto::PublicKey::from_hex(&self.pk).is_err() {
            return Err(CmdError::usage(format!(
                "{:?} is not a public key; give the vpn-server visor's 64-hex-digit PK (its \
                 'skywire cli visor info')",
                self.pk
            )));
        }
        call(rpc, &Request::Start(client::DEF.name.into()))?;
        let mut body = Ordered::new()
            .field("op", Out::Str("start".into()))
            .field("pk", Out::Str(self.pk))
            .field("killswitch", Out::Bool(self.killswitch));
        for (k, v) in [
            ("passcode", self.passcode),
            ("dns", self.dns),
            ("via", self.via),
        ] {
            if let Some(v) = v {
                body = body.field(k, Out::Str(v));
            }
        }
        let mut t = control(rpc, client::DEF.name, body)?;
        let t0 = Instant::now();
        let mut shown = String::new();
        while self.wait > 0 && s(&t, "state") != "up" {
            let line = summary(&t);
            if !self.json && line != shown {
                say(&line);
                shown = line;
            }
            if s(&t, "state") == "refused" {
                return Err(CmdError::fail(format!(
                    "{}; stop it (skywire cli vpn stop), fix the cause and start again",
                    summary(&t)
                )));
            }
            if t0.elapsed() >= Duration::from_secs(self.wait) {
                return Err(CmdError::fail(format!(
                    "the tunnel is not up after {} s ({}); it keeps trying: skywire cli vpn status",
                    self.wait,
                    summary(&t)
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
            t = tunnel(rpc)?.ok_or_else(|| CmdError::fail("the tunnel was stopped"))?;
        }
        if self.json {
            print_json(t);
        } else {
            say(&summary(&t));
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stop")]
/// stop the tunnel and restore routes, DNS and firewall.
struct StopCmd {}

impl StopCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let body = Ordered::new().field("op", Out::Str("stop".into()));
        match control(rpc, client::DEF.name, body) {
            Ok(o) => {
                say(&format!(
                    "stopped the tunnel to {}; routes, DNS and firewall restored",
                    s(&o, "stopped")
                ));
                Ok(())
            }
            Err(e) if e.msg.contains(" is stopped") => Err(CmdError::fail(
                "no tunnel is running (the vpn-client app is stopped)",
            )),
            Err(e) => Err(e),
        }
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
/// the tunnel: server, addresses, route, bytes, round-trip time.
struct StatusCmd {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl StatusCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let t = tunnel(rpc)?;
        if self.json {
            let mut o = Object::new();
            o.insert("tunnel".into(), t.map_or(Value::Null, Value::Object));
            print_json(o);
            return Ok(());
        }
        let Some(t) = t else {
            say("no tunnel (start one: skywire cli vpn start <pk>)");
            return Ok(());
        };
        say(&summary(&t));
        say(&format!(
            "  state {} for {}; {} connect(s); mtu {}; rtt {}",
            s(&t, "state"),
            human_secs(n(&t, "state_secs")),
            n(&t, "connects"),
            n(&t, "mtu"),
            match s(&t, "rtt_ms") {
                "" => "-".to_string(),
                r => format!("{r} ms"),
            }
        ));
        say(&format!(
            "  {} out ({} packets), {} in ({} packets); dropped: {} malformed, {} misaddressed",
            bytes(n(&t, "tx_bytes")),
            n(&t, "tx_packets"),
            bytes(n(&t, "rx_bytes")),
            n(&t, "rx_packets"),
            n(&t, "dropped_malformed"),
            n(&t, "dropped_addr")
        ));
        let pinned = match t.get("pinned") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        };
        say(&format!(
            "  kill-switch {}; dns {}; kept outside the tunnel: {}",
            if matches!(t.get("killswitch"), Some(Value::Bool(true))) {
                "on"
            } else {
                "off"
            },
            match s(&t, "dns") {
                "" => "unchanged",
                d => d,
            },
            if pinned.is_empty() { "-" } else { &pinned }
        ));
        if s(&t, "state") == "up" && !s(&t, "last_error").is_empty() {
            say(&format!("  last error: {}", s(&t, "last_error")));
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
/// the clients of this visor's vpn-server, one line each.
struct ListCmd {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl ListCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let body = Ordered::new().field("op", Out::Str("list".into()));
        let o = match control(rpc, server::DEF.name, body) {
            Ok(o) => o,
            Err(e) if e.msg.contains(" is stopped") || e.msg.contains(" is failed") => {
                return Err(CmdError::fail(format!(
                    "{}; start it to serve VPN clients: skywire cli visor app start vpn-server",
                    e.msg
                )));
            }
            Err(e) => return Err(e),
        };
        if self.json {
            print_json(o);
            return Ok(());
        }
        let items: Vec<&Object> = match o.get("items") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| match v {
                    Value::Object(o) => Some(o),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        say(&format!(
            "vpn-server: {} client(s) (at most {}), NAT out of {}, secure {}, passcode {}",
            items.len(),
            n(&o, "max_clients"),
            s(&o, "egress"),
            if matches!(o.get("secure"), Some(Value::Bool(true))) {
                "on"
            } else {
                "off"
            },
            if matches!(o.get("passcode"), Some(Value::Bool(true))) {
                "on"
            } else {
                "off"
            },
        ));
        if items.is_empty() {
            return Ok(());
        }
        let mut rows = vec![
            [
                "PK",
                "ADDRESS",
                "INTERFACE",
                "SINCE",
                "IN",
                "OUT",
                "DROPPED",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for c in items {
            rows.push(vec![
                s(c, "pk").to_string(),
                s(c, "address").to_string(),
                s(c, "interface").to_string(),
                human_secs(n(c, "since_secs")),
                bytes(n(c, "rx_bytes")),
                bytes(n(c, "tx_bytes")),
                (n(c, "dropped_malformed") + n(c, "dropped_addr")).to_string(),
            ]);
        }
        table(&rows);
        Ok(())
    }
}
