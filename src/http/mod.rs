//! HTTP/1.1 and JSON helpers shared by discovery, the RPC server and the apps.

pub mod client;
pub mod conns;
pub mod guard;
pub mod json;
pub mod server;
pub mod stream;
