//! The stream multiplexer (DESIGN.md §3.4): a sans-IO core in the yamux v0 layout
//! ([`core`]), the codecs that carry its frames on a byte stream ([`codec`]: plain yamux,
//! inside an encrypted channel, or the sealed session layout), and the async driver that
//! offers `open`/`accept` of streams implementing `AsyncRead + AsyncWrite` ([`session`]), the
//! channel codec over such a stream ([`chunked`]: a dmsg channel through a relay), and
//! the owned-frame forwarder between two streams that relays and routers run ([`forward`]).

pub mod chunked;
pub mod codec;
pub mod core;
pub mod forward;
pub mod pool;
pub mod session;

pub use self::core::{Config, MuxError, Side};
pub use session::{Session, Stream};
