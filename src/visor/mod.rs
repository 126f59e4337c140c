//! Phase-1 visor core (DESIGN.md §5): configuration, the services registry with dmsgctrl,
//! the RPC server, and the daemon's startup and shutdown order (`run`).

pub mod config;
pub mod rpc;
pub mod run;
pub mod services;
pub mod whitelist;
