//! `skywire dmsg …`: the dmsg deployment services (discovery, relay) and tools (cat, probe,
//! curl, iperf; in `dmsg_tools`).

use std::path::PathBuf;
use std::sync::Arc;

use argh::FromArgs;
use async_executor::Executor;

use super::dmsg_tools;
use super::netflags::discovery_service;
use super::{CmdError, CmdResult, init_logging, say};
use crate::dmsg::disc::DiscLimits;
use crate::dmsg::disc_rate::RateLimit;
use crate::http::server::{self, Limits};
use crate::spawn::Spawn;

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
    /// most entries held (default 100000); when full, a new key evicts a throwaway or stale
    /// entry (never a fresh relay or a client it confirms), else gets 503
    #[argh(option, default = "100_000")]
    max_entries: usize,
    /// new keys one source address (an IPv6 /64) may register at once; each further one
    /// waits for a token, answered 429 with Retry-After meanwhile (default 32; 0 turns the
    /// limit off). Updates of registered keys are free.
    #[argh(option, default = "32")]
    new_keys_burst: u32,
    /// tokens a source address gets back a minute, up to the burst (default 4)
    #[argh(option, default = "4")]
    new_keys_per_min: u32,
    /// apply the new-key limit to loopback addresses too (127.0.0.0/8 and ::1 are exempt by
    /// default: local clients are as trusted as the host)
    #[argh(switch)]
    limit_loopback: bool,
    /// log level: error, warn, info, debug, trace (default info)
    #[argh(option, default = "String::from(\"info\")")]
    log_level: String,
}

impl DiscCmd {
    fn run(self) -> CmdResult {
        init_logging(&self.log_level)?;
        if self.new_keys_burst > 0 && self.new_keys_per_min == 0 {
            return Err(CmdError::usage(
                "--new-keys-per-min must be at least 1 (--new-keys-burst 0 turns the limit off)",
            ));
        }
        if self.max_entries == 0 {
            return Err(CmdError::usage("--max-entries must be at least 1"));
        }
        let limits = DiscLimits {
            max_entries: self.max_entries,
            ttl_secs: self.ttl,
            new_keys: RateLimit {
                burst: self.new_keys_burst,
                per_minute: self.new_keys_per_min,
                limit_loopback: self.limit_loopback,
                ..RateLimit::default()
            },
            ..DiscLimits::default()
        };
        let (listener, handler, flusher) = discovery_service(&self.addr, self.store, limits)?;
        let local = listener.local_addr()?;
        // The one line a script (or a test) can wait for.
        say(&format!("discovery listening on http://{local}"));
        let ex = Arc::new(Executor::new());
        ex.spawn_boxed(flusher).detach();
        async_io::block_on(ex.run(server::serve(
            listener,
            ex.clone(),
            handler,
            Limits::default(),
        )))
        .map_err(|e| CmdError::fail(format!("discovery stopped: {e}")))
    }
}
