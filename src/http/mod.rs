//! HTTP/1.1 and JSON helpers shared by discovery, the RPC server and the apps; with `hv-term`,
//! the server side of WebSocket (`ws`) for the hypervisor's browser terminal.

pub mod client;
pub mod conns;
pub mod guard;
pub mod json;
pub mod server;
pub mod stream;
#[cfg(feature = "hv-term")]
pub mod ws;
