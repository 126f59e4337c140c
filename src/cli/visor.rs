//! `skywire visor` (the daemon: the CLI owns its executor and prints what it started) and
//! `skywire cli visor …` (info, ping, ports, apps over the visor's RPC, `super::rpc`).

use std::path::PathBuf;

use argh::FromArgs;

use super::out::{dash, human_secs, row, say, table};
use super::rpc::{Rpc, app_start, app_status, app_stop, fetch};
use super::{CmdError, CmdResult};
use crate::rpc::{App, Info, Items, Pong, Port, Request};
use crate::visor::run::{self, VisorOptions};

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "visor")]
/// run the visor daemon: with no -c, its config lives in the state directory (created with
/// fresh keys on first start) and, with no network configured, it hosts an embedded relay +
/// discovery.
pub struct VisorCmd {
    /// config file (default: <state dir>/skywire-config.json, created if missing)
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// state directory when -c is not given (default $SKYWIRE_STATE_DIR, else ./local)
    #[argh(option)]
    state_dir: Option<PathBuf>,
    /// RPC address (overrides the config's cli_addr)
    #[argh(option)]
    rpc: Option<String>,
    /// log level: error, warn, info, debug, trace (overrides the config)
    #[argh(option)]
    log_level: Option<String>,
}

impl VisorCmd {
    /// Runs the daemon until SIGINT/SIGTERM or `cli visor shutdown` (exit 0); `cli visor
    /// restart` runs it again in this process.
    pub fn run(self) -> CmdResult {
        let ex = std::sync::Arc::new(async_executor::Executor::new());
        let visor = run::start(
            VisorOptions {
                config: self.config,
                state_dir: self.state_dir,
                rpc: self.rpc,
                log_level: self.log_level,
            },
            ex.clone(),
        )
        .map_err(CmdError::fail)?;
        let s = &visor.started;
        say(&format!("visor {} up; RPC on http://{}", s.pk, s.rpc_addr));
        match (&s.hosted_relay, s.join_hint()) {
            (Some(r), Some(hint)) => {
                say(&format!(
                    "hosting the embedded relay ({r}) and discovery ({})",
                    s.discovery.as_deref().unwrap_or("")
                ));
                say(&format!("another board joins with: {hint}"));
            }
            _ => say(&format!("network: {}", s.network)),
        }
        match async_io::block_on(ex.run(visor.run())) {
            run::StopKind::Shutdown => Ok(()),
            run::StopKind::Restart => {
                // Returns only when the exec failed.
                let why = run::reexec();
                log::error!("restart: {why}");
                Err(CmdError {
                    msg: format!(
                        "restart: {why}; exiting {} so that the service manager starts the \
                         visor again",
                        run::EXIT_REEXEC_FAILED
                    ),
                    code: run::EXIT_REEXEC_FAILED,
                })
            }
        }
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "visor")]
/// the visor: info, ping, ports, apps, log, shutdown, restart (and, with skynet, tp and
/// route).
pub struct CliVisor {
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
    cmd: CliVisorSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum CliVisorSub {
    Info(InfoCmd),
    Ping(PingCmd),
    Ports(PortsCmd),
    App(CliAppCmd),
    #[cfg(feature = "app-hypervisor")]
    Hv(super::hv::HvCmd),
    Log(super::visor_admin::LogCmd),
    Shutdown(super::visor_admin::ShutdownCmd),
    Restart(super::visor_admin::RestartCmd),
    #[cfg(feature = "app-resolver")]
    Proxies(super::proxies::ProxiesCmd),
    #[cfg(feature = "skynet")]
    Tp(super::skynet::TpCmd),
    #[cfg(feature = "skynet")]
    Route(super::skynet::RouteCmd),
}

impl CliVisor {
    /// Runs the subcommand.
    pub fn run(self) -> CmdResult {
        let rpc = Rpc {
            addr: self.rpc,
            config: self.config,
            state_dir: self.state_dir,
        };
        match self.cmd {
            CliVisorSub::Info(c) => c.run(&rpc),
            #[cfg(feature = "skynet")]
            CliVisorSub::Tp(c) => c.run(&rpc),
            #[cfg(feature = "skynet")]
            CliVisorSub::Route(c) => c.run(&rpc),
            CliVisorSub::Ping(c) => c.run(&rpc),
            CliVisorSub::Ports(c) => c.run(&rpc),
            CliVisorSub::App(c) => c.run(&rpc),
            #[cfg(feature = "app-hypervisor")]
            CliVisorSub::Hv(c) => c.run(&rpc),
            CliVisorSub::Log(c) => c.run(&rpc),
            CliVisorSub::Shutdown(c) => c.run(&rpc),
            CliVisorSub::Restart(c) => c.run(&rpc),
            #[cfg(feature = "app-resolver")]
            CliVisorSub::Proxies(c) => c.run(&rpc),
        }
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "info")]
/// the visor's identity, network and uptime.
struct InfoCmd {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl InfoCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let Some(v) = fetch::<Info>(rpc, &Request::Info, self.json)? else {
            return Ok(());
        };
        say(&format!("pk:        {}", v.pk));
        say(&format!("version:   {}", v.version));
        say(&format!("uptime:    {}", human_secs(v.uptime_secs)));
        say(&format!("network:   {}", v.network));
        if !v.hosted_relay.is_empty() {
            say(&format!("hosting:   relay {}", v.hosted_relay));
            say(&format!(
                "join with: skywire config gen --join {}",
                v.hosted_relay
            ));
        }
        if !v.discovery.is_empty() {
            say(&format!("discovery: {}", v.discovery));
        }
        let r = v.relays.join(",");
        say(&format!(
            "relays:    {}",
            if r.is_empty() { "none connected" } else { &r }
        ));
        say(&format!(
            "apps:      {} running of {}",
            v.apps_running, v.apps
        ));
        say(&format!("rss:       {} KiB", v.rss_kib));
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ping")]
#[cfg_attr(
    feature = "skynet",
    doc = "round trips to a peer through the visor: to its dmsgctrl (port 7), or with --route \
           over a skynet route."
)]
#[cfg_attr(
    not(feature = "skynet"),
    doc = "round trips to a peer's dmsgctrl (port 7) through the visor."
)]
struct PingCmd {
    /// the peer's public key
    #[argh(positional)]
    pk: String,
    /// how many pings (default 3, at most 100)
    #[argh(option, short = 'n', default = "3")]
    count: u32,
    /// over a skynet route of this policy (auto, direct, hops:K, via:<pk>[,<pk>…], mux:N;
    /// dmsg: the dmsgctrl ping)
    #[cfg(feature = "skynet")]
    #[argh(option)]
    route: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl PingCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        crate::crypto::PublicKey::from_hex(&self.pk)
            .map_err(|e| CmdError::usage(format!("{}: {e}", self.pk)))?;
        #[cfg(feature = "skynet")]
        let route = self.route.clone();
        #[cfg(feature = "skynet")]
        super::skynet::check_route(route.as_deref())?;
        #[cfg(not(feature = "skynet"))]
        let route = None;
        let req = Request::Ping {
            pk: self.pk.clone(),
            count: self.count,
            route,
        };
        let Some(v) = fetch::<Pong>(rpc, &req, self.json)? else {
            return Ok(());
        };
        let over = if v.route == "dmsg" {
            String::new()
        } else {
            format!(" over {}", v.route)
        };
        for (i, r) in v.rtt_us.iter().enumerate() {
            say(&format!(
                "pong from {}{over}: seq={} rtt={} ms",
                self.pk,
                i + 1,
                super::out::decimal(*r, 1000, 3)
            ));
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ports")]
/// the overlay ports this visor serves, and who serves them.
struct PortsCmd {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl PortsCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let Some(Items(ports)) = fetch::<Items<Port>>(rpc, &Request::Ports, self.json)? else {
            return Ok(());
        };
        let mut rows = vec![row(&["PORT", "SERVED BY", "NETWORK", "SINCE"])];
        for p in ports {
            rows.push(vec![
                p.port.to_string(),
                p.owner,
                p.network,
                human_secs(p.since_secs),
            ]);
        }
        table(&rows);
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "app")]
/// the visor's apps: ls, start, stop, restart, status, set.
struct CliAppCmd {
    #[argh(subcommand)]
    cmd: CliAppSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum CliAppSub {
    Ls(LsCmd),
    Start(NamedStart),
    Stop(NamedStop),
    Restart(super::visor_admin::AppRestartCmd),
    Status(NamedStatus),
    Set(super::visor_admin::AppSetCmd),
    #[cfg(feature = "skynet")]
    Routes(super::skynet::AppRoutes),
}

impl CliAppCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        match self.cmd {
            CliAppSub::Ls(c) => c.run(rpc),
            CliAppSub::Start(c) => app_start(rpc.clone(), &c.name, c.json),
            CliAppSub::Stop(c) => app_stop(rpc.clone(), &c.name, c.i_know_what_im_doing, c.json),
            CliAppSub::Restart(c) => c.run(rpc),
            CliAppSub::Status(c) => app_status(rpc.clone(), &c.name, c.json),
            CliAppSub::Set(c) => c.run(rpc),
            #[cfg(feature = "skynet")]
            CliAppSub::Routes(c) => super::skynet::groups(rpc, Some(&c.name), c.json),
        }
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ls")]
/// every app: name, mode, state, auto-start, port, uptime, restarts, last error.
struct LsCmd {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl LsCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let Some(Items(apps)) = fetch::<Items<App>>(rpc, &Request::Apps, self.json)? else {
            return Ok(());
        };
        let mut rows = vec![row(&[
            "NAME",
            "MODE",
            "STATE",
            "AUTO",
            "PORT",
            "UPTIME",
            "RESTARTS",
            "LAST ERROR",
        ])];
        for a in apps {
            let running = a.state == "running";
            rows.push(vec![
                a.name,
                a.mode,
                a.state,
                if a.auto_start { "on" } else { "off" }.into(),
                dash(&a.port),
                if running {
                    human_secs(a.uptime_secs)
                } else {
                    "-".into()
                },
                a.restarts.to_string(),
                a.last_error,
            ]);
        }
        table(&rows);
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "start")]
/// start an app (and what it depends on).
struct NamedStart {
    /// the app
    #[argh(positional)]
    name: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stop")]
/// stop an app (and what requires it).
struct NamedStop {
    /// the app
    #[argh(positional)]
    name: String,
    /// stop it even if it is critical (you may lose remote access)
    #[argh(switch)]
    i_know_what_im_doing: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
/// one app's state and its connections.
struct NamedStatus {
    /// the app
    #[argh(positional)]
    name: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}
