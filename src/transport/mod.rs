//! Skynet transports (DESIGN.md §3.7): authenticated, encrypted visor-to-visor links that carry
//! routing packets — `stcp` (direct TCP with Noise KK) and `dmsg` (a dmsg stream to the peer's
//! port 45) — and the manager that keeps them up.
//!
//! Files: [`id`] (types and the deterministic id), `stcp` (the stcp handshake), `link` (one
//! live link: queue, codec, keep-alive), [`manager`] (dial, accept, redial, duplicates,
//! publication in discovery). Wire formats: docs/protocol.md "Skynet: transports" and
//! [`crate::wire::transport`].

pub mod id;
mod link;
pub mod manager;
mod stcp;

pub use id::{TpId, TpType};
pub use link::{SendError, TpInfo, Transport};
pub use manager::{DMSG_PORT, Manager, PacketSink, TpConfig, TpError};

#[cfg(test)]
mod tests;
