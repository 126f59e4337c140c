//! pty: a remote shell on headless boards (feature `app-pty`, overlay port 22).
//!
//! This is the transport-independent core; the app framework hands it byte streams.
//!
//! - [`proto`] — the session protocol: `type u8 ‖ len u16be ‖ payload` frames (request,
//!   accepted/refused, stdin, stdin-eof, stdout, resize, signal, exit), documented with golden
//!   bytes in `docs/protocol.md`, "pty sessions".
//! - [`host`] — [`host::serve_session`]: authorises the peer (the caller passes the whitelist's
//!   verdict), enforces [`host::Limits`], runs the command or the login shell on a real pty
//!   as a session leader with the pty as its controlling terminal, pumps bytes both ways
//!   without blocking the executor, reports the exit status; a dropped stream kills the
//!   session's processes (SIGHUP, then SIGKILL) and reaps the child.
//! - [`client`] — [`client::exec`] (non-interactive, exit code of the remote command, 124 on
//!   timeout) and [`client::interactive`] (local terminal in raw mode, restored on every
//!   path; window-size changes forwarded).
//! - `sys` — the only module with `unsafe`: pty allocation, spawning on a pty, process-group
//!   and session signalling, waiting for exit without blocking, raw mode.
//!
//! Every exec runs on a pty too (so `tty` works and programs line-buffer their output), in
//! a quiet mode: no echo and no output post-processing, so the bytes a command writes arrive
//! unchanged (`42\n`, not `42\r\n`). Stdout and stderr are therefore one stream.

pub mod app;
pub mod client;
pub mod host;
pub mod proto;
mod sys;
#[cfg(test)]
mod tests;

use core::fmt;
use std::io;

pub use proto::{ExitStatus, ProtoError, Repr, Request, Sig};

/// The overlay port pty listens on (DESIGN.md §4).
pub const PORT: u16 = 22;
/// The TCP-standalone default port (DESIGN.md §4).
pub const TCP_PORT: u16 = 2022;

/// Everything that can end a pty session early, on either side.
#[derive(Debug)]
pub enum PtyError {
    /// The stream or a local file descriptor failed.
    Io(io::Error),
    /// The peer sent a frame that does not parse.
    Proto(ProtoError),
    /// The host refused the session; the text says why (`not whitelisted: <pk>`).
    Refused(String),
    /// A frame longer than the limit for its place in the session.
    TooLarge {
        /// Which frame.
        frame: &'static str,
        /// Its payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame that is valid but has no business where it arrived.
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// The frame that arrived.
        got: &'static str,
    },
    /// The peer closed the stream before the session ended (no exit status).
    Closed,
    /// The peer did not answer in time.
    Timeout(&'static str),
    /// `pty start` needs a terminal on stdin.
    NotATerminal,
    /// The local client got a terminating signal (name without `SIG`).
    Interrupted(&'static str),
}

impl fmt::Display for PtyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PtyError::Io(e) => write!(f, "pty: {e}"),
            PtyError::Proto(e) => write!(f, "pty: {e}"),
            PtyError::Refused(why) => write!(f, "pty: refused by the host: {why}"),
            PtyError::TooLarge { frame, len, max } => {
                write!(
                    f,
                    "pty: {frame} frame too large: {len} bytes, at most {max}"
                )
            }
            PtyError::Unexpected { expected, got } => {
                write!(f, "pty: expected {expected}, got a {got} frame")
            }
            PtyError::Closed => f.write_str("pty: the connection closed before the session ended"),
            PtyError::Timeout(what) => write!(f, "pty: timed out waiting for {what}"),
            PtyError::NotATerminal => {
                f.write_str("pty: stdin is not a terminal (use `pty exec` for commands)")
            }
            PtyError::Interrupted(sig) => write!(f, "pty: interrupted by SIG{sig}"),
        }
    }
}

impl std::error::Error for PtyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PtyError::Io(e) => Some(e),
            PtyError::Proto(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for PtyError {
    fn from(e: io::Error) -> Self {
        PtyError::Io(e)
    }
}

impl From<ProtoError> for PtyError {
    fn from(e: ProtoError) -> Self {
        PtyError::Proto(e)
    }
}

impl From<rustix::io::Errno> for PtyError {
    fn from(e: rustix::io::Errno) -> Self {
        PtyError::Io(e.into())
    }
}

/// Runs `f` for at most `limit`: `None` if the time ran out first (`f` is then dropped).
pub(crate) async fn with_timeout<F: core::future::Future>(
    limit: std::time::Duration,
    f: F,
) -> Option<F::Output> {
    futures_lite::future::or(async { Some(f.await) }, async {
        async_io::Timer::after(limit).await;
        None
    })
    .await
}
