//! `skywire cli visor proxies`: the running visor's .dmsg/.skynet resolvers and their
//! counters, through the resolver app's control surface (RPC
//! `POST /v1/apps/resolver/control`, `{"op":"list"}`).

use argh::FromArgs;
use miniserde::json::{Number, Object, Value};

use super::CmdResult;
use super::out::{obj_str as s, print_json, row, say, table};
use super::rpc::{Rpc, call};
use crate::apps::resolver::DEF;
use crate::rpc::Request;

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "proxies")]
/// the .dmsg/.skynet resolvers (local SOCKS5 servers) and their counters.
pub struct ProxiesCmd {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

fn n(o: &Object, k: &str) -> String {
    match o.get(k) {
        Some(Value::Number(Number::U64(n))) => n.to_string(),
        _ => "-".into(),
    }
}

impl ProxiesCmd {
    /// Runs the command.
    pub fn run(self, rpc: &Rpc) -> CmdResult {
        let req = Request::Control {
            app: DEF.name.into(),
            body: r#"{"op":"list"}"#.into(),
        };
        let o: Object = match call(rpc, &req) {
            Ok(o) => o,
            Err(e) if e.msg.contains(" is stopped") || e.msg.contains(" is failed") => {
                if self.json {
                    let mut o = Object::new();
                    o.insert("upstream".into(), Value::Null);
                    o.insert("items".into(), Value::Array(miniserde::json::Array::new()));
                    print_json(o);
                } else {
                    say("no resolvers running (start them: skywire cli visor app start resolver)");
                }
                return Ok(());
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
        let mut rows = vec![row(&[
            "NAME",
            "ADDR",
            "OPEN",
            "CONNECTIONS",
            "REFUSED",
            "UPSTREAMED",
            "FAILED",
            "BYTES-UP",
            "BYTES-DOWN",
        ])];
        for i in items {
            rows.push(vec![
                format!(".{}", s(i, "name")),
                s(i, "addr").into(),
                n(i, "active"),
                n(i, "connections"),
                n(i, "refused"),
                n(i, "upstreamed"),
                n(i, "failed"),
                n(i, "bytes_up"),
                n(i, "bytes_down"),
            ]);
        }
        table(&rows);
        match o.get("upstream") {
            Some(Value::String(u)) => say(&format!("other names go to the SOCKS5 server {u}")),
            _ => say("other names are refused (no --upstream)"),
        }
        Ok(())
    }
}
