//! `skynet` commands of `skywire cli visor` (over the visor's RPC; a build without the
//! `skynet` feature has none of them): `tp add|rm|ls|types`, `route ls|groups|drops`,
//! `app routes <name>`. `ping --route` is in `visor`, `--route` on dials in `pty`.

use argh::FromArgs;

use super::out::{decimal, human_secs, row, say, table};
use super::rpc::{Rpc, fetch};
use super::{CmdError, CmdResult};
use crate::crypto::PublicKey;
use crate::router::policy::RoutePolicy;
use crate::rpc::skynet::{Drops, GroupView, Removed, RuleHop, RuleInfo, TpTypes, TpView};
use crate::rpc::{Items, Request};

/// Checks a `--route` policy here, so that a typo is a usage error naming what is accepted
/// (the visor checks it again).
pub fn check_route(route: Option<&str>) -> Result<(), CmdError> {
    match route {
        Some(r) => r
            .parse::<RoutePolicy>()
            .map(|_| ())
            .map_err(|e| CmdError::usage(format!("--route {r}: {e}"))),
        None => Ok(()),
    }
}

/// `3f2a9c1b` for a hex PK (its first 8 digits, as the router names nodes).
fn short(pk: &str) -> &str {
    pk.get(..8).unwrap_or(pk)
}

/// A round trip in ms, `-` for none measured.
pub fn rtt(us: u64) -> String {
    if us == 0 {
        "-".into()
    } else {
        format!("{} ms", decimal(us, 1000, 2))
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "tp")]
/// skynet transports: add, rm, ls, types.
pub struct TpCmd {
    #[argh(subcommand)]
    cmd: TpSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum TpSub {
    Add(TpAdd),
    Rm(TpRm),
    Ls(TpLs),
    Types(TpTypesCmd),
}

impl TpCmd {
    /// Runs the subcommand.
    pub fn run(self, rpc: &Rpc) -> CmdResult {
        match self.cmd {
            TpSub::Add(c) => c.run(rpc),
            TpSub::Rm(c) => c.run(rpc),
            TpSub::Ls(c) => c.run(rpc),
            TpSub::Types(c) => c.run(rpc),
        }
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "add")]
/// dial a transport to a visor and keep it up (redialed when it drops).
struct TpAdd {
    /// the peer's public key
    #[argh(positional)]
    pk: String,
    /// stcp or dmsg (default: each type the visor dials, stcp first)
    #[argh(option, short = 't')]
    r#type: Option<String>,
    /// do not redial it when it drops
    #[argh(switch)]
    once: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl TpAdd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        PublicKey::from_hex(&self.pk).map_err(|e| CmdError::usage(format!("{}: {e}", self.pk)))?;
        if let Some(t) = self
            .r#type
            .as_deref()
            .filter(|t| !matches!(*t, "stcp" | "dmsg"))
        {
            return Err(CmdError::usage(format!(
                "--type {t}: a transport type is stcp or dmsg"
            )));
        }
        let req = Request::TpAdd {
            pk: self.pk,
            kind: self.r#type,
            persistent: !self.once,
        };
        if let Some(t) = fetch::<TpView>(rpc, &req, self.json)? {
            say(&format!("{} {} to {}: {}", t.id, t.kind, t.peer, t.state));
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "rm")]
/// close a transport and stop redialing it.
struct TpRm {
    /// the transport id (32 hex digits, as 'tp ls' shows)
    #[argh(positional)]
    id: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl TpRm {
    fn run(self, rpc: &Rpc) -> CmdResult {
        if self.id.len() != 32 || !self.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CmdError::usage(format!(
                "{}: a transport id is 32 hex digits, as 'tp ls' shows",
                self.id
            )));
        }
        if let Some(r) = fetch::<Removed>(rpc, &Request::TpRm(self.id), self.json)? {
            say(&format!("removed {}", r.removed));
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ls")]
/// every transport: id, type, peer, state, RTT, bytes each way, age.
struct TpLs {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl TpLs {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let Some(Items(tps)) = fetch::<Items<TpView>>(rpc, &Request::Transports, self.json)? else {
            return Ok(());
        };
        if tps.is_empty() {
            say("no transports (add one with 'tp add <pk>', or list them in the config)");
            return Ok(());
        }
        let mut rows = vec![row(&[
            "ID", "TYPE", "PEER", "STATE", "DIR", "RTT", "RX", "TX", "AGE",
        ])];
        for t in tps {
            let dir = match (t.initiator, t.persistent) {
                (true, true) => "out, kept",
                (true, false) => "out",
                (false, _) => "in",
            };
            rows.push(vec![
                t.id,
                t.kind,
                t.peer,
                t.state,
                dir.into(),
                rtt(t.rtt_us),
                t.rx_bytes.to_string(),
                t.tx_bytes.to_string(),
                human_secs(t.age_secs),
            ]);
        }
        table(&rows);
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "types")]
/// the transport types the visor dials.
struct TpTypesCmd {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl TpTypesCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        if let Some(t) = fetch::<TpTypes>(rpc, &Request::TpTypes, self.json)? {
            for t in t.types {
                say(&t);
            }
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "route")]
/// skynet routes: the rule table (ls), the route groups (groups), drop counters (drops).
pub struct RouteCmd {
    #[argh(subcommand)]
    cmd: RouteSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum RouteSub {
    Ls(RouteLs),
    Groups(RouteGroups),
    Drops(RouteDrops),
}

impl RouteCmd {
    /// Runs the subcommand.
    pub fn run(self, rpc: &Rpc) -> CmdResult {
        match self.cmd {
            RouteSub::Ls(c) => c.run(rpc),
            RouteSub::Groups(c) => groups(rpc, None, c.json),
            RouteSub::Drops(c) => c.run(rpc),
        }
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ls")]
/// the rule table: each rule's local route id, kind, where it sends each way, use, age.
struct RouteLs {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// `3f2a9c1b:17` (the next node and the route id it allocated), `-` for none.
fn hop(h: &Option<RuleHop>) -> String {
    match h {
        Some(h) => format!("{}:{}", short(&h.peer), h.route_id),
        None => "-".into(),
    }
}

impl RouteLs {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let Some(Items(rules)) = fetch::<Items<RuleInfo>>(rpc, &Request::Routes, self.json)? else {
            return Ok(());
        };
        if rules.is_empty() {
            say("no rules (no route starts, ends or passes here)");
            return Ok(());
        }
        let mut rows = vec![row(&[
            "ID", "KIND", "STATE", "TO SRC", "TO DST", "GROUP", "PACKETS", "BYTES", "AGE", "IDLE",
        ])];
        for r in rules {
            rows.push(vec![
                r.id.to_string(),
                r.kind,
                r.state,
                hop(&r.towards_src),
                hop(&r.towards_dst),
                format!("{:x}/{}", r.group_id, r.leg),
                r.packets.to_string(),
                r.bytes.to_string(),
                human_secs(r.age_secs),
                human_secs(r.idle_secs),
            ]);
        }
        table(&rows);
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "groups")]
/// every route group: peer, policy, legs (hops, transport types, RTT), bytes, age.
struct RouteGroups {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "drops")]
/// packets the router dropped, by reason.
struct RouteDrops {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl RouteDrops {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let Some(Drops(d)) = fetch::<Drops>(rpc, &Request::Drops, self.json)? else {
            return Ok(());
        };
        let d: Vec<_> = d.into_iter().filter(|(_, n)| *n > 0).collect();
        if d.is_empty() {
            say("no packets dropped");
            return Ok(());
        }
        let mut rows = vec![row(&["REASON", "PACKETS"])];
        rows.extend(d.into_iter().map(|(r, n)| vec![r, n.to_string()]));
        table(&rows);
        Ok(())
    }
}

/// `app routes <name>` (`app` = Some) and `route groups`: each group, then its legs.
pub fn groups(rpc: &Rpc, app: Option<&str>, json: bool) -> CmdResult {
    let req = Request::Groups(app.map(String::from));
    let Some(Items(groups)) = fetch::<Items<GroupView>>(rpc, &req, json)? else {
        return Ok(());
    };
    if groups.is_empty() {
        say(&match app {
            Some(a) => format!("{a}: no route groups (its streams, if any, go over dmsg)"),
            None => "no route groups".into(),
        });
        return Ok(());
    }
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            say("");
        }
        print_group(g);
    }
    Ok(())
}

fn print_group(g: &GroupView) {
    let apps = if g.apps.is_empty() {
        String::new()
    } else {
        format!(", apps {}", g.apps.join(","))
    };
    say(&format!(
        "{} {}: policy {}, {}, {} stream{}, up {}{apps}",
        if g.initiator { "to" } else { "from" },
        g.peer,
        g.policy,
        g.state,
        g.streams,
        if g.streams == 1 { "" } else { "s" },
        human_secs(g.age_secs),
    ));
    say(&format!("  rx {} B, tx {} B", g.rx_bytes, g.tx_bytes));
    if g.legs.is_empty() {
        say("  no legs");
        return;
    }
    let mut rows = vec![row(&["  LEG", "STATE", "RTT", "HOPS"])];
    for l in &g.legs {
        let mut path = String::new();
        for (i, pk) in l.hops.iter().enumerate() {
            if i > 0 {
                let t = l.tp_types.get(i - 1).map_or("?", String::as_str);
                path.push_str(&format!(" -{t}-> "));
            }
            path.push_str(short(pk));
        }
        rows.push(vec![
            format!("  {}", l.id),
            l.state.clone(),
            rtt(l.rtt_us),
            path,
        ]);
    }
    table(&rows);
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "routes")]
/// the route groups an app initiates or accepts: peer, policy, each leg's hops (PKs,
/// transport types), RTT, bytes each way, age.
pub struct AppRoutes {
    /// the app
    #[argh(positional)]
    pub name: String,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}
