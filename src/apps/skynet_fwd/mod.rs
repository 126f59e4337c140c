//! Skynet port forwarding (`app-skynet-fwd`), like `ssh -R` / `ssh -L` over the overlay:
//! **skynet-srv** (overlay port 57) exposes local TCP ports (`127.0.0.1:<port>`) to peers,
//! each exposure with an optional PK whitelist; **skynet-client** binds a local TCP port
//! whose every connection becomes one overlay stream to a server's port 57 asking for one
//! exposed port. Each stream opens with the forwarding header ([`proto`], docs/protocol.md):
//! a request for a port that is not exposed, or not to this PK, is refused with a status
//! and a reason, which the client logs and shows in its status (`skywire cli skynet status`)
//! before closing the local connection. Then [`crate::app::splice`] carries the bytes.
//!
//! Both apps hold named instances driven at run time by `skywire cli skynet srv
//! start|status|stop` and `skywire cli skynet start|status|stop` through their control
//! surfaces (`POST /v1/apps/skynet-srv/control`, `/v1/apps/skynet-client/control`: `{"op":
//! "start"|"stop"|"list", …}`); their arguments (`launcher.apps[].args`) start one
//! instance each at launch, so persistent forwards are restarted by the launcher like any app.
//!
//! One feature for the two: they share the header and the instance plumbing, the client is
//! a few hundred bytes on top, and a board that is forwarded to is usually one that forwards.
//!
//! Budgets (docs/architecture.md): skynet-srv serves at most [`MAX_CONNS`] streams at once
//! ([`MAX_CONNS_PER_PEER`] per PK), more answered `busy`; the header within
//! [`HEADER_TIMEOUT`] (the server's local connect and the client's dial each within it
//! too); at most [`MAX_INSTANCES`] exposures or forwards per app; each
//! skynet-client forward at most [`MAX_CONNS`] local connections; two splice buffers per
//! forwarded connection.

pub mod client;
pub mod proto;
pub mod srv;

use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncReadExt};

/// skynet-srv's overlay port (DESIGN.md §4).
pub const PORT: u16 = 57;
/// Most streams (skynet-srv) or local connections (per skynet-client forward) at once.
pub const MAX_CONNS: usize = 256;
/// Most streams from one PK at once (skynet-srv).
pub const MAX_CONNS_PER_PEER: usize = 64;
/// Most exposures (skynet-srv) or forwards (skynet-client).
pub const MAX_INSTANCES: usize = 16;
/// How long the header exchange may take.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks an instance name.
pub fn check_name(n: &str) -> Result<(), String> {
    if (1..=32).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(format!("name {n:?}: 1-32 of a-z, 0-9, '-' and '_'"))
    }
}

/// Reads one message parsed by `p`, byte by byte up to `max` bytes (nothing past it is
/// consumed: the TCP bytes that follow stay in the stream).
pub async fn read_msg<S, T>(
    s: &mut S,
    max: usize,
    p: impl Fn(&[u8]) -> proto::Parsed<T>,
) -> Result<T, String>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(8);
    loop {
        match p(&buf) {
            Ok(Some((t, _))) => return Ok(t),
            Ok(None) if buf.len() < max => {}
            Ok(None) => return Err("forwarding header too long".into()),
            Err(e) => return Err(e.to_string()),
        }
        let mut b = [0u8; 1];
        match s.read(&mut b).await {
            Ok(0) => return Err("stream closed during the forwarding header".into()),
            Ok(_) => buf.push(b[0]),
            Err(e) => return Err(e.to_string()),
        }
    }
}
