//! Phase-1 visor core (DESIGN.md §5): configuration, the RPC server, and the daemon's startup
//! and shutdown order (`run`). The services registry with dmsgctrl is `crate::app::services`.

pub mod config;
pub mod config_writer;
pub mod hvlink;
pub mod rpc;
pub mod run;
pub mod stop;
pub mod whitelist;
