//! skychat (`app-skychat`, overlay port 1): direct messages between visors with delivery
//! acks, over dmsg, skynet routes or TCP direct; an HTTP surface for the CLI and a web page.
//!
//! - [`proto`]: the peer protocol (frames, envelopes, message ids), sans-IO;
//! - [`events`]: the event hub (seq, ring, bounded subscribers);
//! - [`chat`]: the engine (connections per peer, send/ack/retry/fallback, inbound checks);
//! - [`store`], [`writer`]: the crash-safe history (append-only log, RAM index) and its
//!   writer thread (group commit);
//! - [`aliases`]: the alias book;
//! - [`group`]: groups as signed feeds (sans-IO);
//! - [`pair`]: pairing (`--pair-enable`): invites, pairs and their messages;
//! - [`app`]: the app definition and its start in each mode.

pub mod aliases;
pub mod app;
pub mod auth;
pub mod chat;
pub mod events;
pub mod group;
pub mod groups;
pub mod http;
pub mod pair;
pub mod proto;
pub mod store;
pub mod web;
pub mod writer;

pub use aliases::Aliases;
pub use chat::{Chat, ChatConfig, NetChoice, SendOutcome, SendReq, Status};
pub use events::{Channel, Dir, Event, Hub, Kind};
pub use proto::{Envelope, MAX_FRAME, MsgId};

/// The overlay port.
pub const PORT: u16 = 1;
/// The HTTP surface's address inside a visor.
pub const HTTP_VISOR: &str = "127.0.0.1:8001";
/// The HTTP surface's address standalone.
pub const HTTP_STANDALONE: &str = "127.0.0.1:8002";
/// Where TCP mode listens by default.
pub const TCP_DEFAULT: &str = ":8800";
