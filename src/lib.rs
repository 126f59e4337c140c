//! skywire-rs: a small-footprint Skywire visor for Raspberry Pi-class boards.
//!
//! The layers, top to bottom (DESIGN.md §2); each imports only the ones below it, and
//! `make lint` (`scripts/layers.sh`) fails on an import that goes up or a circle:
//!
//! ```text
//!  cli/        argh command trees for `skywire`, `dmsg`, `standalone` (multicall); owns the
//!              executor, prints what the visor started; may import every layer
//!  visor/      phase-1 core: config, RPC server, dmsgctrl, lifecycle
//!  apps/       one module per app, each behind its `app-<name>` feature; the APPS table
//!  rpc/        the typed visor RPC: requests, answer bodies, client
//!  app/        the app contract, per-app settings, launcher (handed a table), Net (modes),
//!              the services registry (the one port table), in-memory Net + simulation
//!  router/     skynet: rule table, zero-copy forwarding, route setup, route groups
//!  transport/  skynet links between visors: stcp (TCP + Noise KK) and dmsg (port 45)
//!  dmsg/       relay, client, discovery
//!  mux/        sans-IO stream multiplexer and its session driver
//!  http/       HTTP/1.1 + JSON helpers (field-path errors, ordered output)
//!  addr        `pk@host:port` (PkAddr), host:port checks, bind addresses
//!  crypto/     identity (Ed25519, strict verify), Noise, encrypted channel
//!  logger      the stderr logger (`LEVEL [target] message`)
//!  spawn       the one way library code spawns a task (boxed: one task type per output)
//!  accept      the one accept queue (bounded backlog + waker) every listener uses
//!  wire/       zero-copy views of every wire format (golden bytes)
//!  sort        the one sort (heapsort, one small copy per element type)
//! ```
//!
//! `main.rs` imports only `cli`.
//!
//! Invariants:
//! - No `unsafe` outside the one module per unavoidable OS call (`apps::pty::sys` so far).
//! - Library code never spawns on a global executor, and spawns boxed (`spawn::Spawn`): the CLI owns the executor and hands it
//!   in (`visor::run::start`, `DmsgClient::start`, the launcher).
//! - Parsers of untrusted bytes return errors; they never panic on input.

#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod accept;
pub mod addr;
pub mod app;
pub mod apps;
pub mod cli;
pub mod crypto;
pub mod dmsg;
pub mod http;
pub mod logger;
pub mod mux;
#[cfg(feature = "skynet")]
pub mod router;
pub mod rpc;
pub mod sort;
pub mod spawn;
#[cfg(feature = "skynet")]
pub mod transport;
pub mod visor;
pub mod wire;

/// The version printed by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
