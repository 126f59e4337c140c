//! `skywire cli visor log|shutdown|restart` and `skywire cli visor app set|restart`: the
//! visor's log tail, stopping or restarting it, and editing an app's settings, over the
//! visor's RPC (`super::rpc`).

use std::time::{Duration, Instant};

use argh::FromArgs;

use super::out::{print_app, print_line, say, say_err, utc};
use super::rpc::{Rpc, fetch};
use super::{CmdError, CmdResult};
use crate::rpc::{
    App, AppSettings, AppSettingsSaved, Body, Health, Info, LOGS_MAX, LogLine, Logs, Request,
    Status,
};

/// How often `log --follow` asks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How long `restart --wait` waits for the visor to answer again.
const RESTART_WAIT: Duration = Duration::from_secs(30);

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "log")]
/// the visor's last log lines (what it wrote to stderr, at its log level).
pub struct LogCmd {
    /// how many lines (default 100, at most 512)
    #[argh(option, short = 'n', default = "100")]
    n: u32,
    /// then print new lines as they come (polling every second) until Ctrl-C
    #[argh(switch)]
    follow: bool,
    /// print JSON (with --follow: one line object per line)
    #[argh(switch)]
    json: bool,
}

fn print_log_line(l: &LogLine, json: bool) -> CmdResult {
    if json {
        print_line(&l.to_json().to_compact())
    } else {
        print_line(&format!("{} {:<5} {}", utc(l.time * 1000), l.level, l.text))
    }
}

impl LogCmd {
    /// Runs it.
    pub fn run(self, rpc: &Rpc) -> CmdResult {
        if !(1..=LOGS_MAX).contains(&self.n) {
            return Err(CmdError::usage(format!("-n must be 1-{LOGS_MAX}")));
        }
        let first = Request::Logs {
            since: None,
            n: Some(self.n),
        };
        if !self.follow {
            if let Some(logs) = fetch::<Logs>(rpc, &first, self.json)? {
                for l in &logs.lines {
                    print_log_line(l, false)?;
                }
            }
            return Ok(());
        }
        let mut next = None;
        let mut lost = false;
        loop {
            let req = match next {
                None => first.clone(),
                Some(s) => Request::Logs {
                    since: Some(s),
                    n: Some(LOGS_MAX),
                },
            };
            match fetch::<Logs>(rpc, &req, false) {
                Ok(Some(logs)) => {
                    if lost {
                        say_err("visor answers again");
                        lost = false;
                    }
                    for l in &logs.lines {
                        print_log_line(l, self.json)?;
                    }
                    next = Some(logs.next);
                }
                Ok(None) => {}
                // A restarting visor: say so once and keep polling.
                Err(e) if !lost && next.is_some() => {
                    say_err(&format!("{}; still polling", e.msg));
                    lost = true;
                }
                Err(e) if next.is_none() => return Err(e),
                Err(_) => {}
            }
            std::thread::sleep(FOLLOW_EVERY);
        }
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "shutdown")]
/// stop the visor (as SIGTERM does: apps stop in reverse wave order, exit 0).
pub struct ShutdownCmd {
    /// wait (at most 30 s) until the visor no longer answers
    #[argh(switch)]
    wait: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// A progress line: on stdout, or on stderr when stdout carries `--json`.
fn progress(json: bool, line: &str) {
    if json {
        say_err(line);
    } else {
        say(line);
    }
}

impl ShutdownCmd {
    /// Runs it.
    pub fn run(self, rpc: &Rpc) -> CmdResult {
        let status = fetch::<Status>(rpc, &Request::Shutdown, self.json)?;
        if let Some(s) = &status {
            progress(self.json, &format!("visor {}", s.status));
        }
        if !self.wait {
            return Ok(());
        }
        let t0 = Instant::now();
        while fetch::<Health>(rpc, &Request::Health, false).is_ok() {
            if t0.elapsed() > RESTART_WAIT {
                return Err(CmdError::fail(format!(
                    "the visor still answers after {} s; see its log (journalctl -u skywire-visor, or its stderr)",
                    RESTART_WAIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let took = t0.elapsed().as_millis() as u64;
        progress(
            self.json,
            &format!(
                "visor stopped after {}.{} s",
                took / 1000,
                took % 1000 / 100
            ),
        );
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "restart")]
/// stop the visor as SIGTERM does and run it again (same process, arguments and config).
pub struct RestartCmd {
    /// wait (at most 30 s) until the restarted visor answers
    #[argh(switch)]
    wait: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl RestartCmd {
    /// Runs it.
    pub fn run(self, rpc: &Rpc) -> CmdResult {
        let before = if self.wait {
            fetch::<Health>(rpc, &Request::Health, false)?
        } else {
            None
        };
        let status = fetch::<Status>(rpc, &Request::Restart, self.json)?;
        if let Some(s) = &status {
            progress(self.json, &format!("visor {}", s.status));
        }
        let Some(before) = before else {
            return Ok(());
        };
        let t0 = Instant::now();
        let mut down = false;
        loop {
            std::thread::sleep(Duration::from_millis(250));
            match fetch::<Health>(rpc, &Request::Health, false) {
                Ok(Some(h)) if h.boot != before.boot || (h.boot.is_empty() && down) => break,
                Ok(_) => {}
                Err(_) if !down => {
                    progress(self.json, "stopped; waiting for it to answer again");
                    down = true;
                }
                Err(_) => {}
            }
            if t0.elapsed() > RESTART_WAIT {
                return Err(CmdError::fail(format!(
                    "the visor did not answer again within {} s{}; see its log (journalctl -u \
                     skywire-visor, or its stderr)",
                    RESTART_WAIT.as_secs(),
                    if down {
                        ""
                    } else {
                        " (it did not stop either)"
                    }
                )));
            }
        }
        let took = t0.elapsed().as_millis() as u64;
        // The new visor wrote a new token; `fetch` reads it again.
        match fetch::<Info>(rpc, &Request::Info, false)? {
            Some(i) => progress(
                self.json,
                &format!(
                    "visor {} answers again after {}.{} s (version {})",
                    i.pk,
                    took / 1000,
                    took % 1000 / 100,
                    i.version
                ),
            ),
            None => progress(self.json, "visor answers again"),
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "set")]
#[cfg_attr(
    feature = "skynet",
    doc = "change an app's arguments, auto-start or route: saved to the config file \
           (launcher.apps), used at its next start."
)]
#[cfg_attr(
    not(feature = "skynet"),
    doc = "change an app's arguments or auto-start: saved to the config file (launcher.apps), \
           used at its next start."
)]
pub struct AppSetCmd {
    /// the app
    #[argh(positional)]
    pub name: String,
    /// all its arguments, split at spaces ("--port 9 --echo")
    #[argh(option)]
    args: Option<String>,
    /// one argument (repeat for each; for arguments with spaces)
    #[argh(option)]
    arg: Vec<String>,
    /// no arguments
    #[argh(switch)]
    clear_args: bool,
    /// its route policy: auto, dmsg, direct, hops:K, via:<pk>[,<pk>…], mux:N
    #[cfg(feature = "skynet")]
    #[argh(option)]
    route: Option<String>,
    /// start it with the visor: on or off
    #[argh(option)]
    autostart: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl AppSetCmd {
    fn settings(&self) -> Result<AppSettings, CmdError> {
        let given = usize::from(self.args.is_some())
            + usize::from(!self.arg.is_empty())
            + usize::from(self.clear_args);
        if given > 1 {
            return Err(CmdError::usage(
                "give one of --args, --arg (repeated) and --clear-args",
            ));
        }
        let args = if self.clear_args {
            Some(Vec::new())
        } else if let Some(a) = &self.args {
            Some(a.split_whitespace().map(String::from).collect())
        } else if !self.arg.is_empty() {
            Some(self.arg.clone())
        } else {
            None
        };
        let auto_start = match self.autostart.as_deref() {
            None => None,
            Some("on" | "true" | "yes") => Some(true),
            Some("off" | "false" | "no") => Some(false),
            Some(o) => {
                return Err(CmdError::usage(format!(
                    "--autostart {o:?}: give on or off"
                )));
            }
        };
        #[cfg(feature = "skynet")]
        let route = {
            super::skynet::check_route(self.route.as_deref())?;
            self.route.clone()
        };
        #[cfg(not(feature = "skynet"))]
        let route = None;
        let s = AppSettings {
            args,
            auto_start,
            route,
        };
        if s.is_empty() {
            return Err(CmdError::usage(
                "nothing to change: give --args, --arg, --clear-args, --autostart or --route",
            ));
        }
        Ok(s)
    }

    /// Runs it.
    pub fn run(self, rpc: &Rpc) -> CmdResult {
        let req = Request::SetApp {
            name: self.name.clone(),
            settings: self.settings()?,
        };
        let Some(saved) = fetch::<AppSettingsSaved>(rpc, &req, self.json)? else {
            return Ok(());
        };
        say(&format!("{}: settings saved", self.name));
        print_app(&saved.app);
        if saved.restart_needed {
            say(&format!(
                "it still runs with the old ones: 'skywire cli visor app restart {}' applies them",
                self.name
            ));
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "restart")]
/// stop an app (and what requires it) and start them again.
pub struct AppRestartCmd {
    /// the app
    #[argh(positional)]
    pub name: String,
    /// restart it even if it is critical (you may lose remote access for a moment)
    #[argh(switch)]
    i_know_what_im_doing: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl AppRestartCmd {
    /// Runs it.
    pub fn run(self, rpc: &Rpc) -> CmdResult {
        let req = Request::RestartApp {
            name: self.name.clone(),
            force: self.i_know_what_im_doing,
        };
        if let Some(a) = fetch::<App>(rpc, &req, self.json)? {
            say(&format!("{}: {}", a.name, a.state));
        }
        Ok(())
    }
}
