//! Skynet routing (DESIGN.md §3.7–3.9): the rule table, zero-copy forwarding, source-driven
//! route setup and route groups, driven over the transports of [`crate::transport`].
//!
//! - [`core`]: the sans-IO rule table and setup state machine (packets and `now` in, actions
//!   out).
//! - [`path`]: path search over the published transport graph.
//! - [`policy`]: the per-app route policy (`auto`, `dmsg`, `direct`, `hops:K`, `via:…`,
//!   `mux:N`).
//! - [`group`]: route groups (Noise KK end to end, the mux inside, `mux:N` legs).
//! - [`control`]: the control facade the RPC server and the CLI use.

pub mod control;
pub mod core;
pub mod group;
pub mod path;
pub mod policy;
