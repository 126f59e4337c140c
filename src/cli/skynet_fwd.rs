//! `skywire cli skynet`: skynet port forwarding on the running visor, through the control
//! surfaces of its skynet-srv and skynet-client apps (each started if it is not):
//! `srv start --port P [--name] [--wl pk,…] | srv status | srv stop [--name]` expose a local
//! port; `start --pk <pk> --remote P --local L [--name] | status | stop [--name]` forward a
//! local port to one.

use std::path::PathBuf;

use argh::FromArgs;
use miniserde::json::{Object, Value};

use super::out::{print_json, say};
use super::rpc::{Rpc, app_control as control, call};
use super::{CmdError, CmdResult};
use crate::apps::skynet_fwd::{client, srv};
use crate::http::json::{Ordered, Out};
use crate::rpc::Request;

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "skynet")]
/// skynet port forwarding: srv start|status|stop (expose), start|status|stop (forward).
pub struct SkynetCmd {
    /// visor RPC address (default $SKYWIRE_RPC, else the cli_addr of the visor's config,
    /// else 127.0.0.1:3435)
    #[argh(option)]
    rpc: Option<String>,
    /// the visor's config file, to find its RPC token
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// the visor's state directory, to find its RPC token
    #[argh(option)]
    state_dir: Option<PathBuf>,
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Sub {
    Srv(SrvCmd),
    Start(StartCmd),
    Status(StatusCmd),
    Stop(StopCmd),
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "srv")]
/// the ports this visor exposes (skynet-srv).
struct SrvCmd {
    #[argh(subcommand)]
    cmd: SrvSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum SrvSub {
    Start(SrvStart),
    Status(StatusCmd),
    Stop(StopCmd),
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "start")]
/// expose 127.0.0.1:<port> to peers on overlay port 57.
struct SrvStart {
    /// the local port
    #[argh(option)]
    port: u16,
    /// the exposure's name (default port-<port>)
    #[argh(option)]
    name: Option<String>,
    /// only these PKs, comma-separated
    #[argh(option)]
    wl: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "start")]
/// bind 127.0.0.1:<local>, forwarding to port <remote> exposed by <pk>.
struct StartCmd {
    /// the skynet-srv visor's PK
    #[argh(option)]
    pk: String,
    /// the port exposed there
    #[argh(option)]
    remote: u16,
    /// the local port
    #[argh(option)]
    local: u16,
    /// the forward's name (default fwd-<remote>)
    #[argh(option)]
    name: Option<String>,
    /// dial by skynet (default), dmsg or auto
    #[argh(option)]
    via: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
/// list them, with counters.
struct StatusCmd {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stop")]
/// stop one (the only one, or --name).
struct StopCmd {
    /// its name
    #[argh(option)]
    name: Option<String>,
}

fn op(o: &str) -> Ordered {
    Ordered::new().field("op", Out::Str(o.into()))
}

fn items(o: &Object) -> Vec<Object> {
    match o.get("items") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| match v {
                Value::Object(o) => Some(o.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn field(o: &Object, k: &str) -> String {
    match o.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Null) | None => "-".into(),
        Some(Value::Array(a)) => format!("{} PK(s)", a.len()),
        Some(_) => "?".into(),
    }
}

fn status(rpc: &Rpc, app: &str, json: bool, keys: &[&str]) -> CmdResult {
    let o = match control(rpc, app, op("list")) {
        Ok(o) => o,
        Err(e) if e.msg.contains(" is stopped") || e.msg.contains(" is failed") => Object::new(),
        Err(e) => return Err(e),
    };
    if json {
        print_json(o);
        return Ok(());
    }
    let list = items(&o);
    if list.is_empty() {
        say(&format!("none running ({app})"));
    }
    for i in &list {
        let parts: Vec<String> = keys
            .iter()
            .map(|k| format!("{k} {}", field(i, k)))
            .collect();
        say(&parts.join(", "));
    }
    Ok(())
}

impl SkynetCmd {
    /// Runs the subcommand.
    pub fn run(self) -> CmdResult {
        let rpc = Rpc {
            addr: self.rpc,
            config: self.config,
            state_dir: self.state_dir,
        };
        let (s, c) = (srv::DEF.name, client::DEF.name);
        match self.cmd {
            Sub::Srv(SrvCmd {
                cmd: SrvSub::Start(a),
            }) => {
                call(&rpc, &Request::Start(s.into()))?;
                let mut b = op("start").field("port", Out::U64(a.port.into()));
                if let Some(n) = a.name {
                    b = b.field("name", Out::Str(n));
                }
                if let Some(w) = a.wl {
                    b = b.field("wl", Out::Str(w));
                }
                let o = control(&rpc, s, b)?;
                if a.json {
                    print_json(o);
                } else {
                    say(&format!(
                        "exposing 127.0.0.1:{} as {} on overlay port 57",
                        field(&o, "port"),
                        field(&o, "name")
                    ));
                }
                Ok(())
            }
            Sub::Srv(SrvCmd {
                cmd: SrvSub::Status(a),
            }) => status(
                &rpc,
                s,
                a.json,
                &[
                    "name",
                    "port",
                    "whitelist",
                    "served",
                    "refused",
                    "bytes_in",
                    "bytes_out",
                ],
            ),
            Sub::Srv(SrvCmd {
                cmd: SrvSub::Stop(a),
            }) => stop(&rpc, s, a.name),
            Sub::Start(a) => {
                if crate::crypto::PublicKey::from_hex(&a.pk).is_err() {
                    return Err(CmdError::usage(format!(
                        "--pk {:?} is not a public key (64 hex digits)",
                        a.pk
                    )));
                }
                call(&rpc, &Request::Start(c.into()))?;
                let mut b = op("start")
                    .field("pk", Out::Str(a.pk))
                    .field("remote", Out::U64(a.remote.into()))
                    .field("local", Out::U64(a.local.into()));
                if let Some(n) = a.name {
                    b = b.field("name", Out::Str(n));
                }
                if let Some(v) = a.via {
                    b = b.field("via", Out::Str(v));
                }
                let o = control(&rpc, c, b)?;
                if a.json {
                    print_json(o);
                } else {
                    say(&format!(
                        "forward {}: {} -> {}:{} (via {})",
                        field(&o, "name"),
                        field(&o, "local"),
                        field(&o, "server"),
                        field(&o, "remote"),
                        field(&o, "via")
                    ));
                }
                Ok(())
            }
            Sub::Status(a) => status(
                &rpc,
                c,
                a.json,
                &[
                    "name",
                    "local",
                    "server",
                    "remote",
                    "active",
                    "total",
                    "failed",
                    "last_error",
                ],
            ),
            Sub::Stop(a) => stop(&rpc, c, a.name),
        }
    }
}

fn stop(rpc: &Rpc, app: &str, name: Option<String>) -> CmdResult {
    let mut b = op("stop");
    if let Some(n) = name {
        b = b.field("name", Out::Str(n));
    }
    let o = control(rpc, app, b)?;
    say(&format!("stopped {}", field(&o, "stopped")));
    Ok(())
}
