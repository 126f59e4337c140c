//! The network options of the tools that run a dmsg client of their own (`dmsg cat|probe|
//! curl|iperf`, `app <name> run`, `cli pty … --dmsg`): identity, discovery and relays from
//! the flags and an optional config ([`resolve`]), the client ([`start_client`]), the one
//! declaration of the flags the dmsg tools share (`dmsg_tool!`), and the
//! discovery service `dmsg disc` and `dmsg server --disc-addr` host.

use std::path::PathBuf;
use std::sync::Arc;

use async_executor::Executor;
use async_net::TcpListener;

use super::CmdError;
use crate::addr::PkAddr;
use crate::crypto::{Keypair, PublicKey};
use crate::dmsg::client::{ClientConfig, DmsgClient};
use crate::dmsg::disc::{self, DiscLimits};
use crate::dmsg::disc_client::DiscClient;
use crate::http::server;
use crate::visor::config::Config;

/// Declares a dmsg tool's argh struct with its own fields first, then the network flags
/// every dmsg tool takes (`--disc`, `--relay`, `--sk`, `-c`, `--log-level`, default warn),
/// and `net()`, their [`resolve`]d network.
macro_rules! dmsg_tool {
    // The type is taken apart (`Option`, `<`, inner, `>`) because argh recognises optional
    // and repeated options by the literal `Option`/`Vec`, which an opaque `$ty:ty` hides.
    ($(#[$sattr:meta])* pub struct $name:ident {
        $( $(#[$attr:meta])* $field:ident : $outer:ident $(<$inner:ty>)?, )*
    }) => {
        $(#[$sattr])*
        pub struct $name {
            $( $(#[$attr])* $field: $outer $(<$inner>)?, )*
            /// discovery URL (default: from -c, else http://127.0.0.1:9090)
            #[argh(option)]
            disc: Option<String>,
            /// a relay to use, <pk>@<host>:<port> (repeatable)
            #[argh(option)]
            relay: Vec<String>,
            /// secret key (hex); default: from -c, else a throwaway key
            #[argh(option)]
            sk: Option<String>,
            /// identity and network from this skywire-config.json
            #[argh(option, short = 'c')]
            config: Option<PathBuf>,
            /// log level (default warn)
            #[argh(option, default = "String::from(\"warn\")")]
            log_level: String,
        }

        impl $name {
            /// The network flags, [`resolve`](super::netflags::resolve)d.
            fn net(&self) -> Result<super::netflags::Net, CmdError> {
                super::netflags::resolve(&self.sk, &self.config, &self.disc, &self.relay)
            }
        }
    };
}
pub(super) use dmsg_tool;

/// Where the tools look for discovery when neither `--disc` nor `-c` says.
pub(super) const DEFAULT_DISC: &str = "http://127.0.0.1:9090";

/// Identity, discovery and relays for a tool, from its flags and an optional config.
pub(super) struct Net {
    pub(super) keys: Keypair,
    pub(super) disc: Option<String>,
    pub(super) relays: Vec<(PublicKey, String)>,
}

/// The identity (`--sk`, else `-c`'s, else a throwaway key), discovery (`--disc`, else `-c`'s,
/// else [`DEFAULT_DISC`]) and relays (`--relay` and `-c`'s) of a tool.
pub(super) fn resolve(
    sk: &Option<String>,
    config: &Option<PathBuf>,
    disc: &Option<String>,
    relays: &[String],
) -> Result<Net, CmdError> {
    let cfg = match config {
        Some(p) => Some(Config::load(p).map_err(|e| CmdError::fail(e.to_string()))?),
        None => None,
    };
    let keys = match (sk, &cfg) {
        (Some(hex), _) => {
            Keypair::from_hex(hex, None).map_err(|e| CmdError::usage(format!("--sk: {e}")))?
        }
        (None, Some(c)) => Keypair::from_seed(c.keys.seed()),
        (None, None) => Keypair::generate().map_err(|e| CmdError::fail(e.to_string()))?,
    };
    let disc = match (disc, &cfg) {
        (Some(d), _) => Some(d.clone()),
        (None, Some(c)) if !c.dmsg.discovery.is_empty() => Some(c.dmsg.discovery.clone()),
        _ => Some(DEFAULT_DISC.to_string()),
    };
    let mut list = Vec::new();
    for r in relays {
        let a = PkAddr::parse(r).map_err(|e| CmdError::usage(format!("--relay: {e}")))?;
        list.push((a.pk, a.addr));
    }
    if let Some(c) = &cfg {
        list.extend(c.dmsg.servers.iter().map(|a| (a.pk, a.addr.clone())));
    }
    Ok(Net {
        keys,
        disc,
        relays: list,
    })
}

/// Starts a dmsg client on `ex` for `net`.
pub(super) fn start_client(ex: &Arc<Executor<'static>>, net: Net) -> Result<DmsgClient, CmdError> {
    let disc = match &net.disc {
        Some(u) => Some(DiscClient::new(u).map_err(|e| CmdError::usage(format!("--disc: {e}")))?),
        None => None,
    };
    // Every relay named is kept (at least one session either way).
    let cfg = ClientConfig {
        sessions: net.relays.len().max(1),
        relays: net.relays,
        ..ClientConfig::default()
    };
    Ok(DmsgClient::start(ex.clone(), net.keys, disc, cfg))
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
    disc::service(&crate::addr::bind_addr(addr), store, limits)
        .map_err(|e| CmdError::fail(format!("{e}; pick another address")))
}
