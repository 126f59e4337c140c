//! Command trees (argh), dispatched by the name the binary was invoked as (multicall):
//! `skywire` is the full tree, `dmsg` the dmsg-standalone entry, `standalone` the
//! TCP-standalone entry. Every command that exists works; later layers add theirs.
//!
//! Errors print one line saying what failed and what to do, and exit non-zero.
//!
//! The files: `out` (output), `rpc` (the visor RPC client side), `netflags` (the network
//! flags of the tools with a dmsg client of their own), then one file per command tree; no
//! two of them import each other, directly or in a circle (`make lint` checks).
//!
//! Output goes through [`print_out`]/[`print_line`] (one-shot output: a write error ends the
//! command) or [`say`] (the lines of long-running commands: the command goes on, the failure
//! is reported when it ends). Either way a command whose stdout could not be written exits 1
//! with `<tool>: error: cannot write to stdout: <reason>` (e.g. `No space left on device`
//! for `>/dev/full`), never a panic. A closed pipe (EPIPE: the reader, say `head -1`, went
//! away) ends output quietly and does not change the exit status, as for a tool killed by
//! SIGPIPE under a shell that ignores it: the reader chose to stop reading, and a
//! `set -o pipefail` pipeline does not fail because of it.

mod app;
mod cat;
mod dmsg;
mod dmsg_tools;
#[cfg(feature = "app-hypervisor")]
mod hv;
mod keys;
mod netflags;
mod out;
#[cfg(any(feature = "app-skychat", feature = "app-hypervisor"))]
mod prompt;
#[cfg(feature = "app-resolver")]
mod proxies;
#[cfg(feature = "app-skysocks-client")]
mod proxy;
#[cfg(feature = "app-pty")]
mod pty;
mod rpc;
#[cfg(feature = "app-skychat")]
mod skychat;
#[cfg(feature = "app-skychat")]
mod skychat_group;
#[cfg(feature = "app-skychat")]
mod skychat_http;
#[cfg(feature = "app-skychat")]
mod skychat_pair;
#[cfg(feature = "app-skychat")]
mod skychat_tui;
#[cfg(feature = "skynet")]
mod skynet;
#[cfg(feature = "app-skynet-fwd")]
mod skynet_fwd;
mod visor;
mod visor_admin;
#[cfg(feature = "app-vpn")]
mod vpn;

/// Opens a byte stream to a peer's port through the running visor (RPC `POST /v1/dial`), the
/// way `skywire cli pty` does; public so that `benches/hostile.rs` can move data through a
/// visor with the same client code (`Rpc` names the visor: its address and config).
#[cfg(feature = "app-pty")]
pub use rpc::{Rpc, dial_via_visor};

pub use out::{print_line, print_out, say, say_err};
use out::{stdout_failure, take_stdout_error, write_stdout};

use argh::FromArgs;

/// Exit code for a failed command.
pub const EXIT_FAIL: i32 = 1;
/// Exit code for bad usage.
pub const EXIT_USAGE: i32 = 2;

/// Runs the command line `args` (argv[0] first) and returns the process exit code.
pub fn main(args: Vec<String>) -> i32 {
    let argv0 = args.first().map(String::as_str).unwrap_or("skywire");
    let name = std::path::Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("skywire");
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    match name {
        "dmsg" => run_parsed::<DmsgTop>("dmsg", &rest, |t| t.run()),
        "standalone" => run_parsed::<StandaloneTop>("standalone", &rest, |t| t.run()),
        _ => run_parsed::<Skywire>("skywire", &rest, |t| t.run()),
    }
}

/// `<name> <the subcommands given> --help`: the leading words of `rest` (up to the first
/// option, and before a word argh did not recognize), so the hint names the command whose
/// usage the user needs rather than the top level.
fn help_hint(name: &str, rest: &[&str], err: &str) -> String {
    let bad = err
        .lines()
        .find_map(|l| l.strip_prefix("Unrecognized argument: "))
        .map(str::trim);
    let mut hint = name.to_string();
    for w in rest {
        if w.starts_with('-') || Some(*w) == bad {
            break;
        }
        hint.push(' ');
        hint.push_str(w);
    }
    hint.push_str(" --help");
    hint
}

fn run_parsed<T: FromArgs>(name: &str, rest: &[&str], run: impl FnOnce(T) -> CmdResult) -> i32 {
    let res = match T::from_args(&[name], rest) {
        Ok(cmd) => run(cmd),
        Err(early) if early.status.is_ok() => print_line(&name_the_app(&early.output, rest)),
        Err(early) => {
            say_err(&name_the_app(&early.output, rest));
            say_err(&format!(
                "Run '{}' for usage.",
                help_hint(name, rest, &early.output)
            ));
            return EXIT_USAGE;
        }
    };
    // Anything still buffered, and a failure `say` met on the way.
    let _ = write_stdout(b"");
    let lost = take_stdout_error();
    match res {
        Ok(()) => match lost {
            Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                say_err(&format!("{name}: error: {}", stdout_failure(&e)));
                EXIT_FAIL
            }
            _ => 0,
        },
        Err(e) => {
            // An empty message passes an exit code through (e.g. a remote command's).
            if !e.msg.is_empty() {
                say_err(&format!("{name}: error: {}", e.msg));
            }
            e.code
        }
    }
}

/// argh names a subcommand of `skywire app <name>` without the name (`skywire app run`):
/// put it back in the usage line.
fn name_the_app(output: &str, rest: &[&str]) -> String {
    match rest {
        ["app", app, sub, ..] if !app.starts_with('-') && !sub.starts_with('-') => output.replacen(
            &format!("Usage: skywire app {sub}"),
            &format!("Usage: skywire app {app} {sub}"),
            1,
        ),
        _ => output.to_string(),
    }
}

/// A command failure: the one-line message and the exit code.
#[derive(Debug)]
pub struct CmdError {
    /// What failed and what to do.
    pub msg: String,
    /// Process exit code.
    pub code: i32,
}

impl CmdError {
    /// A failure with exit code 1.
    pub fn fail(msg: impl Into<String>) -> Self {
        CmdError {
            msg: msg.into(),
            code: EXIT_FAIL,
        }
    }

    /// A usage error with exit code 2.
    pub fn usage(msg: impl Into<String>) -> Self {
        CmdError {
            msg: msg.into(),
            code: EXIT_USAGE,
        }
    }
}

impl<E: std::error::Error> From<E> for CmdError {
    fn from(e: E) -> Self {
        CmdError::fail(e.to_string())
    }
}

/// What a command returns.
pub type CmdResult = Result<(), CmdError>;

/// Starts logging to stderr at `level` (error, warn, info, debug, trace).
pub fn init_logging(level: &str) -> CmdResult {
    let filter: log::LevelFilter = level.parse().map_err(|_| {
        CmdError::usage(format!(
            "log level {level:?} is not one of error, warn, info, debug, trace"
        ))
    })?;
    // A second call (tests running commands in one process) keeps the first logger.
    crate::logger::init(filter);
    Ok(())
}

fn print_version(tool: &str) -> CmdResult {
    print_line(&format!(
        "{tool} (skywire-rs) {} {}-{}",
        crate::VERSION,
        std::env::consts::ARCH,
        std::env::consts::OS
    ))
}

#[derive(FromArgs, Debug)]
/// skywire: a small-footprint Skywire visor for Raspberry Pi-class boards.
struct Skywire {
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    #[argh(subcommand)]
    cmd: Option<SkywireCmd>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum SkywireCmd {
    Visor(visor::VisorCmd),
    App(app::AppCmd),
    Cli(CliCmd),
    Keygen(keys::KeygenCmd),
    Config(keys::ConfigCmd),
    Dmsg(dmsg::DmsgCmd),
}

impl Skywire {
    fn run(self) -> CmdResult {
        match self.cmd {
            _ if self.version => print_version("skywire"),
            Some(SkywireCmd::Visor(c)) => c.run(),
            Some(SkywireCmd::App(c)) => c.run(),
            Some(SkywireCmd::Cli(c)) => c.run(),
            Some(SkywireCmd::Keygen(c)) => c.run(),
            Some(SkywireCmd::Config(c)) => c.run(),
            Some(SkywireCmd::Dmsg(c)) => c.run(),
            None => Err(CmdError::usage(
                "no command given; run 'skywire --help' to list the commands",
            )),
        }
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "cli")]
/// talk to a running visor over its RPC.
pub struct CliCmd {
    #[argh(subcommand)]
    cmd: CliSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum CliSub {
    Visor(visor::CliVisor),
    // One arm per app's command tree.
    #[cfg(feature = "app-pty")]
    Pty(pty::PtyCmd),
    #[cfg(feature = "app-skychat")]
    Skychat(skychat::SkychatCmd),
    #[cfg(feature = "app-skysocks-client")]
    Proxy(proxy::ProxyCmd),
    #[cfg(feature = "app-skynet-fwd")]
    Skynet(skynet_fwd::SkynetCmd),
    #[cfg(feature = "app-vpn")]
    Vpn(vpn::VpnCmd),
}

impl CliCmd {
    /// Runs the subcommand.
    pub fn run(self) -> CmdResult {
        match self.cmd {
            CliSub::Visor(c) => c.run(),
            #[cfg(feature = "app-pty")]
            CliSub::Pty(c) => c.run(),
            #[cfg(feature = "app-skychat")]
            CliSub::Skychat(c) => c.run(),
            #[cfg(feature = "app-skysocks-client")]
            CliSub::Proxy(c) => c.run(),
            #[cfg(feature = "app-skynet-fwd")]
            CliSub::Skynet(c) => c.run(),
            #[cfg(feature = "app-vpn")]
            CliSub::Vpn(c) => c.run(),
        }
    }
}

#[derive(FromArgs, Debug)]
/// dmsg: run a skywire app standalone on its own dmsg client (multicall entry of `skywire`):
/// `dmsg <app> [--sk HEX | -c CONFIG] [--disc URL] [--relay PK@HOST:PORT] [-- app args]`.
struct DmsgTop {
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    /// the app to run, then the options of 'skywire app <app> run' (without --mode), then
    /// -- and the app's own arguments
    #[argh(positional, greedy)]
    args: Vec<String>,
}

impl DmsgTop {
    fn run(self) -> CmdResult {
        if self.version {
            return print_version("dmsg");
        }
        let Some((a, rest)) = self.args.split_first() else {
            return Err(CmdError::usage(format!(
                "name an app to run; apps with a dmsg mode: {}",
                app::apps_with(crate::app::Mode::Dmsg)
            )));
        };
        app::multicall("dmsg", crate::app::Mode::Dmsg, a, rest)
    }
}

#[derive(FromArgs, Debug)]
/// standalone: run a skywire app standalone over direct encrypted TCP (multicall entry of
/// `skywire`): `standalone <app> [--listen ADDR] [--peer tcp://PK@HOST:PORT] [-- app args]`.
struct StandaloneTop {
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    /// the app to run, then the options of 'skywire app <app> run' (without --mode), then
    /// -- and the app's own arguments
    #[argh(positional, greedy)]
    args: Vec<String>,
}

impl StandaloneTop {
    fn run(self) -> CmdResult {
        if self.version {
            return print_version("standalone");
        }
        let Some((a, rest)) = self.args.split_first() else {
            return Err(CmdError::usage(format!(
                "name an app to run; apps with a TCP mode: {}",
                app::apps_with(crate::app::Mode::Tcp)
            )));
        };
        app::multicall("standalone", crate::app::Mode::Tcp, a, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::help_hint;

    #[test]
    fn the_usage_hint_names_the_subcommand() {
        let e = "Unrecognized argument: peers\n";
        assert_eq!(
            help_hint("skywire", &["cli", "skychat", "peers"], e),
            "skywire cli skychat --help"
        );
        assert_eq!(
            help_hint(
                "skywire",
                &["cli", "skychat", "--state-dir", "/x", "peers"],
                e
            ),
            "skywire cli skychat --help"
        );
        assert_eq!(
            help_hint(
                "skywire",
                &["cli", "skychat", "send", "-m", "x"],
                "Required options not provided:\n    --to\n"
            ),
            "skywire cli skychat send --help"
        );
        assert_eq!(help_hint("dmsg", &[], ""), "dmsg --help");
    }
}
