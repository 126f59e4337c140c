//! `skywire cli pty …`: the remote shell's client side and its whitelist.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;
use async_executor::Executor;

use super::netflags::{resolve, start_client};
use super::rpc::{Rpc, dial_via_visor, fetch};
use super::{CmdError, CmdResult, init_logging, say};
use crate::app::conn::{AsyncIo, Conn};
use crate::app::net::{DmsgNet, Net, TcpNet, parse_tcp_peer};
use crate::apps::pty::{PORT, client};
use crate::crypto::PublicKey;
use crate::dmsg::client::DmsgClient;
use crate::rpc::{Request, Whitelist};

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "pty")]
/// remote shells: `exec <pk> -- cmd`, `start <pk>` (interactive), and the whitelist.
pub struct PtyCmd {
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
    cmd: PtySub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum PtySub {
    Exec(ExecCmd),
    Start(StartCmd),
    Whitelist(WhitelistCmd),
}

impl PtyCmd {
    /// Runs the subcommand.
    pub fn run(self) -> CmdResult {
        let rpc = Rpc {
            addr: self.rpc,
            config: self.config,
            state_dir: self.state_dir,
        };
        match self.cmd {
            PtySub::Exec(c) => c.run(&rpc),
            PtySub::Start(c) => c.run(&rpc),
            PtySub::Whitelist(c) => c.run(&rpc),
        }
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "whitelist")]
/// the PKs allowed a shell on this visor (besides its own PK and its hypervisors):
/// `ls`, `add <pk>`, `rm <pk>`. Changes apply at once and are saved to the config file.
struct WhitelistCmd {
    /// ls, add or rm
    #[argh(positional)]
    action: String,
    /// the PK (add, rm)
    #[argh(positional)]
    pk: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl WhitelistCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let pk = || -> Result<String, CmdError> {
            let pk = self.pk.clone().ok_or_else(|| {
                CmdError::usage(format!("whitelist {}: give the PK", self.action))
            })?;
            crate::crypto::PublicKey::from_hex(&pk)
                .map_err(|e| CmdError::usage(format!("{pk}: {e}")))?;
            Ok(pk)
        };
        let req = match self.action.as_str() {
            "ls" => Request::Whitelist,
            "add" | "rm" => Request::WhitelistEdit {
                pk: pk()?,
                add: self.action == "add",
            },
            other => {
                return Err(CmdError::usage(format!(
                    "whitelist {other:?}: expected ls, add <pk> or rm <pk>"
                )));
            }
        };
        let Some(w) = fetch::<Whitelist>(rpc, &req, self.json)? else {
            return Ok(());
        };
        if w.whitelist.is_empty() {
            say("(empty: only this visor's own PK and its hypervisors are admitted)");
        }
        for pk in w.whitelist.iter().filter(|s| !s.is_empty()) {
            say(pk);
        }
        Ok(())
    }
}

/// Where a pty client's stream comes from.
struct Reach<'a> {
    rpc: &'a Rpc,
    via: &'a Option<String>,
    dmsg: bool,
    sk: &'a Option<String>,
    config: &'a Option<PathBuf>,
    disc: &'a Option<String>,
    relay: &'a [String],
    /// `--route`: the policy the visor dials by.
    route: Option<&'a str>,
}

/// Opens the stream to `pk`'s pty: through the running visor (default; the visor's
/// identity), over direct TCP (`--via tcp://pk@host:port`), or on a dmsg client of its own
/// (`--dmsg`); the last two use `--sk`, `-c`, or a throwaway key.
async fn connect(
    ex: &Arc<Executor<'static>>,
    pk: PublicKey,
    r: &Reach<'_>,
) -> Result<(Box<dyn AsyncIo>, Option<DmsgClient>), CmdError> {
    #[cfg(feature = "skynet")]
    super::skynet::check_route(r.route)?;
    if r.route.is_some() && (r.via.is_some() || r.dmsg) {
        return Err(CmdError::usage(
            "--route is the policy the visor dials by; --via and --dmsg do not go through the              visor",
        ));
    }
    if let Some(via) = r.via {
        let (vpk, addr) =
            parse_tcp_peer(via).map_err(|e| CmdError::usage(format!("--via: {e}")))?;
        if vpk != pk {
            return Err(CmdError::usage(format!(
                "--via names {vpk}, but the host asked for is {pk}"
            )));
        }
        let id = resolve(r.sk, r.config, &None, &[])?;
        let net = TcpNet::new(id.keys, None, ex.clone());
        net.add_peer(pk, addr);
        let c: Conn = net
            .dial(pk, PORT)
            .await
            .map_err(|e| CmdError::fail(e.to_string()))?;
        return Ok((Box::new(c), None));
    }
    if r.dmsg {
        let client = start_client(ex, resolve(r.sk, r.config, r.disc, r.relay)?)?;
        client
            .wait_ready(Duration::from_secs(15))
            .await
            .map_err(|e| CmdError::fail(e.to_string()))?;
        let net = DmsgNet {
            client: client.clone(),
        };
        let c = net
            .dial(pk, PORT)
            .await
            .map_err(|e| CmdError::fail(e.to_string()))?;
        return Ok((Box::new(c), Some(client)));
    }
    if r.sk.is_some() || r.config.is_some() {
        return Err(CmdError::usage(
            "--sk/-c after exec/start set the identity of --via or --dmsg; through the visor \
             its own is used (name the visor's config before the subcommand: 'cli pty -c FILE \
             exec …')",
        ));
    }
    let s = dial_via_visor(r.rpc, &pk, PORT, r.route).await?;
    Ok((Box::new(s), None))
}

fn parse_pk(s: &str) -> Result<PublicKey, CmdError> {
    PublicKey::from_hex(s).map_err(|e| CmdError::usage(format!("{s}: {e}")))
}

/// Maps a client result to the process exit: the remote status passes through.
fn finish(r: Result<i32, crate::apps::pty::PtyError>) -> CmdResult {
    match r {
        Ok(0) => Ok(()),
        Ok(code) => Err(CmdError {
            msg: String::new(),
            code,
        }),
        Err(e) => Err(CmdError::fail(e.to_string())),
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "exec")]
/// run a command on <pk> and exit with its status: `exec <pk> -- cmd args…` (one argument
/// is run by the remote shell, several directly); 124 when --timeout expires.
struct ExecCmd {
    /// the host's public key
    #[argh(positional)]
    pk: String,
    /// the command (after --)
    #[argh(positional, greedy)]
    cmd: Vec<String>,
    /// give up (and kill the remote command) after this many seconds
    #[argh(option)]
    timeout: Option<u64>,
    /// reach a TCP-standalone host directly: tcp://<pk>@<host>:<port>
    #[argh(option)]
    via: Option<String>,
    /// use a dmsg client of our own instead of the visor's
    #[argh(switch)]
    dmsg: bool,
    /// through the visor: dial by this route policy (auto, dmsg, direct, hops:K,
    /// via:<pk>[,<pk>…], mux:N; default: the visor's, auto)
    #[cfg(feature = "skynet")]
    #[argh(option)]
    route: Option<String>,
    /// identity for --via/--dmsg: secret key (hex)
    #[argh(option)]
    sk: Option<String>,
    /// identity (and network) for --via/--dmsg from this skywire-config.json
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// with --dmsg: discovery URL
    #[argh(option)]
    disc: Option<String>,
    /// with --dmsg: a relay, <pk>@<host>:<port> (repeatable)
    #[argh(option)]
    relay: Vec<String>,
    /// log level (default warn)
    #[argh(option, default = "String::from(\"warn\")")]
    log_level: String,
}

impl ExecCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        init_logging(&self.log_level)?;
        let pk = parse_pk(&self.pk)?;
        if self.cmd.is_empty() {
            return Err(CmdError::usage(
                "give the command after --: exec <pk> -- cmd args…",
            ));
        }
        let reach = Reach {
            rpc,
            via: &self.via,
            dmsg: self.dmsg,
            sk: &self.sk,
            config: &self.config,
            disc: &self.disc,
            relay: &self.relay,
            #[cfg(feature = "skynet")]
            route: self.route.as_deref(),
            #[cfg(not(feature = "skynet"))]
            route: None,
        };
        let opts = client::ExecOptions {
            timeout: self.timeout.map(Duration::from_secs),
            ..client::ExecOptions::default()
        };
        let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
        let work = async {
            let (stream, dmsg) = connect(&ex, pk, &reach).await?;
            let mut out = futures_lite::io::AssertAsync::new(std::io::stdout());
            let r = client::exec(stream, self.cmd.clone(), &opts, &mut out).await;
            if let Some(d) = dmsg {
                d.shutdown(Duration::from_secs(1)).await;
            }
            finish(r)
        };
        async_io::block_on(ex.run(work))
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "start")]
/// open an interactive shell on <pk> in this terminal (raw mode, resize forwarded; Ctrl-C
/// goes to the remote program); exits with the shell's status.
struct StartCmd {
    /// the host's public key
    #[argh(positional)]
    pk: String,
    /// reach a TCP-standalone host directly: tcp://<pk>@<host>:<port>
    #[argh(option)]
    via: Option<String>,
    /// use a dmsg client of our own instead of the visor's
    #[argh(switch)]
    dmsg: bool,
    /// through the visor: dial by this route policy (auto, dmsg, direct, hops:K,
    /// via:<pk>[,<pk>…], mux:N; default: the visor's, auto)
    #[cfg(feature = "skynet")]
    #[argh(option)]
    route: Option<String>,
    /// identity for --via/--dmsg: secret key (hex)
    #[argh(option)]
    sk: Option<String>,
    /// identity (and network) for --via/--dmsg from this skywire-config.json
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// with --dmsg: discovery URL
    #[argh(option)]
    disc: Option<String>,
    /// with --dmsg: a relay, <pk>@<host>:<port> (repeatable)
    #[argh(option)]
    relay: Vec<String>,
    /// log level (default warn)
    #[argh(option, default = "String::from(\"warn\")")]
    log_level: String,
}

impl StartCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        init_logging(&self.log_level)?;
        let pk = parse_pk(&self.pk)?;
        let reach = Reach {
            rpc,
            via: &self.via,
            dmsg: self.dmsg,
            sk: &self.sk,
            config: &self.config,
            disc: &self.disc,
            relay: &self.relay,
            #[cfg(feature = "skynet")]
            route: self.route.as_deref(),
            #[cfg(not(feature = "skynet"))]
            route: None,
        };
        let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
        let work = async {
            let (stream, dmsg) = connect(&ex, pk, &reach).await?;
            let r = client::interactive(stream).await;
            if let Some(d) = dmsg {
                d.shutdown(Duration::from_secs(1)).await;
            }
            finish(r)
        };
        async_io::block_on(ex.run(work))
    }
}
