//! skywire-rs: a small-footprint Skywire visor for Raspberry Pi-class boards.
//!
//! The layers, bottom to top (DESIGN.md §2); each only calls the ones below it:
//!
//! ```text
//!  cli/        argh command trees for `skywire`, `dmsg`, `standalone` (multicall)
//!  apps/       one module per app, each behind its `app-<name>` feature
//!  app/        the app contract, static app table, launcher, Net (the three modes)
//!  visor/      phase-1 core: config, services registry, RPC, dmsgctrl, lifecycle
//!  http/       HTTP/1.1 + JSON helpers (field-path errors, ordered output)
//!  crypto/     identity (Ed25519, strict verify), Noise, encrypted channel
//! ```
//!
//! Invariants:
//! - No `unsafe` outside the one module per unavoidable OS call (`apps::pty::sys` so far).
//! - Library code never spawns on a global executor: `main` owns the one executor.
//! - Parsers of untrusted bytes return errors; they never panic on input.

#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod addr;
pub mod app;
pub mod apps;
pub mod cli;
pub mod crypto;
pub mod dmsg;
pub mod http;
pub mod mux;
pub mod rpc;
pub mod visor;
pub mod wire;

/// The version printed by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
