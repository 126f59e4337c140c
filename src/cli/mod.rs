//! Command trees (argh), dispatched by the name the binary was invoked as (multicall):
//! `skywire` is the full tree, `dmsg` the dmsg-standalone entry, `standalone` the
//! TCP-standalone entry. Every command that exists works; later layers add theirs.
//!
//! Errors print one line saying what failed and what to do, and exit non-zero.

mod app;
mod cat;
mod dmsg;
mod dmsg_tools;
mod keys;
#[cfg(feature = "app-pty")]
mod pty;
mod visor;

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

fn run_parsed<T: FromArgs>(name: &str, rest: &[&str], run: impl FnOnce(T) -> CmdResult) -> i32 {
    match T::from_args(&[name], rest) {
        Ok(cmd) => match run(cmd) {
            Ok(()) => 0,
            Err(e) => {
                // An empty message passes an exit code through (e.g. a remote command's).
                if !e.msg.is_empty() {
                    eprintln!("{name}: error: {}", e.msg);
                }
                e.code
            }
        },
        Err(early) => {
            if early.status.is_ok() {
                println!("{}", early.output);
                0
            } else {
                eprintln!("{}", early.output);
                eprintln!("Run '{name} --help' for usage.");
                EXIT_USAGE
            }
        }
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
    let _ = simple_logger::SimpleLogger::new().with_level(filter).init();
    Ok(())
}

/// Prints a line on stdout, ignoring a closed pipe: a long-running command must not die
/// because whoever read its first line went away.
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// [`say`] on stderr.
pub fn say_err(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn print_version(tool: &str) -> CmdResult {
    println!(
        "{tool} (skywire-rs) {} {}-{}",
        crate::VERSION,
        std::env::consts::ARCH,
        std::env::consts::OS
    );
    Ok(())
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
    Cli(visor::CliCmd),
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
