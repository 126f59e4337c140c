//! dmsg, the relayed overlay (DESIGN.md §3.4–3.6, §7): signed discovery entries and the
//! discovery service; the relay server and client build on the mux.

pub mod admission;
pub mod client;
pub mod disc;
pub mod disc_client;
pub mod disc_rate;
pub mod entry;
pub mod relay;
pub mod relay_book;
