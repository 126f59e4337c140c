//! `skywire dmsg …`: the dmsg deployment services (discovery, relay) and tools (cat, probe,
//! curl, iperf; in `dmsg_tools`).

use std::path::PathBuf;
use std::sync::Arc;

use argh::FromArgs;
use async_executor::Executor;
use async_net::TcpListener;

use super::dmsg_tools;
use super::{CmdError, CmdResult, init_logging, say};
use crate::dmsg::disc::{self, DiscLimits};
use crate::http::server::{self, Limits};

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "dmsg")]
/// dmsg: discovery and relay services, and tools to reach peers by public key.
pub struct DmsgCmd {
    #[argh(subcommand)]
    cmd: DmsgSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum DmsgSub {
    Disc(DiscCmd),
    Server(dmsg_tools::ServerCmd),
    Cat(dmsg_tools::CatCmd),
    Probe(dmsg_tools::ProbeCmd),
    Curl(dmsg_tools::CurlCmd),
    Iperf(dmsg_tools::IperfCmd),
}

impl DmsgCmd {
    /// Runs the subcommand.
    pub fn run(self) -> CmdResult {
        match self.cmd {
            DmsgSub::Disc(c) => c.run(),
            DmsgSub::Server(c) => c.run(),
            DmsgSub::Cat(c) => c.run(),
            DmsgSub::Probe(c) => c.run(),
            DmsgSub::Curl(c) => c.run(),
            DmsgSub::Iperf(c) => c.run(),
        }
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "disc")]
/// run the discovery service: signed entries of relays and clients over HTTP/JSON.
struct DiscCmd {
    /// listen address (default 127.0.0.1:9090; port 0 picks a free one and prints it)
    #[argh(option, default = "String::from(\"127.0.0.1:9090\")")]
    addr: String,
    /// keep the entries in this file (written atomically at most once a second) so they
    /// survive a restart
    #[argh(option)]
    store: Option<PathBuf>,
    /// seconds an entry lives unless re-published (default 300)
    #[argh(option, default = "300")]
    ttl: u64,
    /// most entries held (default 100000)
    #[argh(option, default = "100_000")]
    max_entries: usize,
    /// log level: error, warn, info, debug, trace (default info)
    #[argh(option, default = "String::from(\"info\")")]
    log_level: String,
}

impl DiscCmd {
    fn run(self) -> CmdResult {
        init_logging(&self.log_level)?;
        let limits = DiscLimits {
            max_entries: self.max_entries,
            ttl_secs: self.ttl,
            ..DiscLimits::default()
        };
        let (listener, handler, flusher) = discovery_service(&self.addr, self.store, limits)?;
        let local = listener.local_addr()?;
        // The one line a script (or a test) can wait for.
        say(&format!("discovery listening on http://{local}"));
        let ex = Arc::new(Executor::new());
        ex.spawn(flusher).detach();
        async_io::block_on(ex.run(server::serve(
            listener,
            ex.clone(),
            handler,
            Limits::default(),
        )))
        .map_err(|e| CmdError::fail(format!("discovery stopped: {e}")))
    }
}

/// The discovery service on `addr` (shared by `disc` and `server --disc-addr`).
pub(super) fn discovery_service(
    addr: &str,
    store: Option<PathBuf>,
    limits: DiscLimits,
) -> Result<
    (
        TcpListener,
        server::Handler,
        impl Future<Output = ()> + use<>,
    ),
    CmdError,
> {
    disc::service(&crate::visor::config::bind_addr(addr), store, limits)
        .map_err(|e| CmdError::fail(format!("{e}; pick another address")))
}
