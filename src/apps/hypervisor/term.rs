//! The browser terminal (`hv-term`): `GET /api/visors/<pk>/term?rows=R&cols=C&csrf=T` with a
//! WebSocket upgrade (`crate::http::ws`) becomes a shell through that visor's pty app (port
//! 22), which admits the hypervisor's PK as one of the visor's `hypervisors`. A remote
//! visor's pty is reached through one of its links (`POST /v1/pty`, `visor::hvlink`), so
//! it works over a dmsg and a TCP link alike; the local visor's is dialed with our key.
//!
//! Messages from the page are text: `i<bytes>` is input for the shell (Ctrl-C is the byte
//! 0x03, which the pty turns into SIGINT), `r<rows>,<cols>` a new size. To the page: binary
//! messages are the shell's output; text `x<status>` is the exit, `e<reason>` an error
//! before or during the session; then the socket closes.
//!
//! The upgrade is a GET, so besides the session cookie and the same-origin check of the
//! guard it carries the session's CSRF token in the query. At most [`MAX_TERMS`] run at
//! once; a message is at most [`MAX_MESSAGE`] bytes; output is sent as it comes, each frame
//! within the WebSocket writer's timeout (a page that stops reading ends its session).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::future;
use futures_lite::io::{AsyncWriteExt, split};

use super::web::Hv;
use crate::app::conn::AsyncIo;
use crate::apps::pty::proto::{self, MAX_PAYLOAD_LEN, Repr, Request as PtyRequest};
use crate::crypto::PublicKey;
use crate::http::guard::ct_eq;
use crate::http::server::{Request, Response, Upgraded};
use crate::http::ws::{self, CLOSE_NORMAL, CLOSE_POLICY, Event, WsReader, WsWriter};

/// Terminals open at once.
pub const MAX_TERMS: usize = 8;
/// Largest message from the page.
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Time for the visor's pty to answer the session request.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The overlay port of the pty app.
const PTY_PORT: u16 = 22;

/// The upgrade answer, or why not.
pub fn open(hv: &Arc<Hv>, pk: PublicKey, req: &Request, csrf: &str) -> Response {
    if !req
        .query_param("csrf")
        .is_some_and(|t| ct_eq(t.as_bytes(), csrf.as_bytes()))
    {
        return Response::error(403, "the terminal needs the session's CSRF token (?csrf=)");
    }
    let accept = match ws::check_upgrade(req) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if !hv.fleet.knows(&pk) {
        return Response::error(404, format!("{pk} is not a visor of this hypervisor"));
    }
    let size = |k: &str, d: u16| {
        req.query_param(k)
            .and_then(|v| v.parse::<u16>().ok())
            .filter(|n| (1..=1000).contains(n))
            .unwrap_or(d)
    };
    let (rows, cols) = (size("rows", 24), size("cols", 80));
    if hv.terms.load(Ordering::Acquire) >= MAX_TERMS {
        return Response::error(503, format!("{MAX_TERMS} terminals are open already"));
    }
    let hv = hv.clone();
    ws::upgrade_response(
        &accept,
        Box::new(move |conn| Box::pin(async move { bridge(hv, pk, rows, cols, conn).await })),
    )
}

/// Counts an open terminal while it lives.
struct Open(Arc<Hv>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.terms.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn bridge(hv: Arc<Hv>, pk: PublicKey, rows: u16, cols: u16, conn: Upgraded) {
    hv.terms.fetch_add(1, Ordering::AcqRel);
    let _open = Open(hv.clone());
    let (rd, wr) = split(conn);
    let mut page_in = WsReader::new(rd, MAX_MESSAGE);
    let mut page_out = WsWriter::new(wr);
    let why = match session(&hv, pk, rows, cols, &mut page_in, &mut page_out).await {
        Ok(status) => {
            let _ = page_out.send_text(&format!("x{status}")).await;
            None
        }
        Err(e) => {
            let _ = page_out.send_text(&format!("e{e}")).await;
            Some(e)
        }
    };
    match why {
        None => {
            let _ = page_out.close(CLOSE_NORMAL, "").await;
        }
        Some(e) => {
            log::info!("hypervisor: terminal on {pk} ended: {e}");
            let _ = page_out.close(CLOSE_POLICY, "").await;
        }
    }
}

/// Runs one shell; `Ok` is its exit status as text.
async fn session<R, W>(
    hv: &Hv,
    pk: PublicKey,
    rows: u16,
    cols: u16,
    page_in: &mut WsReader<R>,
    page_out: &mut WsWriter<W>,
) -> Result<String, String>
where
    R: futures_lite::io::AsyncRead + Unpin,
    W: futures_lite::io::AsyncWrite + Unpin,
{
    let stream: Box<dyn AsyncIo> = if hv.fleet.local_pk() == Some(pk) {
        // The visor we run in: dialed with our key, as any peer would.
        let dial = future::or(async { Some(hv.net.dial(pk, PTY_PORT).await) }, async {
            async_io::Timer::after(ACCEPT_TIMEOUT).await;
            None
        });
        match dial.await {
            Some(Ok(s)) => Box::new(s),
            Some(Err(e)) => return Err(format!("cannot reach the pty of {pk}: {e}")),
            None => return Err(format!("the pty of {pk} did not answer in time")),
        }
    } else {
        // A remote visor: through one of its links (over dmsg or TCP alike).
        match hv.fleet.open_pty(&pk, ACCEPT_TIMEOUT).await {
            Ok(s) => Box::new(s),
            Err((_, e)) => return Err(format!("cannot reach the pty: {e}")),
        }
    };
    let (mut prd, mut pwr) = split(stream);
    let req =
        PtyRequest::shell(rows, cols).with_env(vec![("TERM".into(), "xterm-256color".into())]);
    let io = |e: crate::apps::pty::PtyError| e.to_string();
    proto::write_frame(&mut pwr, &Repr::Request(req))
        .await
        .map_err(io)?;
    pwr.flush().await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let first = future::or(
        async { Some(proto::read_frame(&mut prd, &mut buf, MAX_PAYLOAD_LEN).await) },
        async {
            async_io::Timer::after(ACCEPT_TIMEOUT).await;
            None
        },
    )
    .await;
    match first {
        Some(Ok(Some(Repr::Accepted))) => {}
        Some(Ok(Some(Repr::Refused(why)))) => return Err(format!("the pty refused: {why}")),
        Some(Ok(Some(other))) => return Err(format!("the pty sent {other} first")),
        Some(Ok(None)) => return Err("the pty closed the session".into()),
        Some(Err(e)) => return Err(io(e)),
        None => return Err("the pty did not accept the session in time".into()),
    }

    // Page → shell, until the page closes (then the shell gets end-of-input).
    let up = async {
        loop {
            match page_in.read_event().await {
                Ok(Some(Event::Text(t))) => {
                    if let Some(input) = t.strip_prefix('i') {
                        for chunk in input.as_bytes().chunks(MAX_PAYLOAD_LEN) {
                            proto::write_frame(&mut pwr, &Repr::Stdin(chunk))
                                .await
                                .map_err(io)?;
                        }
                    } else if let Some((r, c)) = t.strip_prefix('r').and_then(|s| s.split_once(','))
                    {
                        let (Ok(rows), Ok(cols)) = (r.parse::<u16>(), c.parse::<u16>()) else {
                            return Err(format!("bad resize {t:?}"));
                        };
                        if rows == 0 || cols == 0 {
                            return Err(format!("bad resize {t:?}"));
                        }
                        proto::write_frame(&mut pwr, &Repr::Resize { rows, cols })
                            .await
                            .map_err(io)?;
                    } else {
                        return Err("unknown message (expected i… or r…)".into());
                    }
                    pwr.flush().await.map_err(|e| e.to_string())?;
                }
                Ok(Some(Event::Binary(b))) => {
                    for chunk in b.chunks(MAX_PAYLOAD_LEN) {
                        proto::write_frame(&mut pwr, &Repr::Stdin(chunk))
                            .await
                            .map_err(io)?;
                    }
                    pwr.flush().await.map_err(|e| e.to_string())?;
                }
                // The page's pings need no answer here (browsers do not send them); its
                // close ends the session.
                Ok(Some(Event::Ping(_) | Event::Pong(_))) => {}
                Ok(Some(Event::Close(..)) | None) => {
                    let _ = proto::write_frame(&mut pwr, &Repr::StdinEof).await;
                    let _ = pwr.flush().await;
                    return Err("the page closed the terminal".into());
                }
                Err(e) => return Err(format!("the page sent a bad frame: {e}")),
            }
        }
    };
    // Shell → page, until it exits.
    let down = async {
        loop {
            match proto::read_frame(&mut prd, &mut buf, MAX_PAYLOAD_LEN).await {
                Ok(Some(Repr::Stdout(data))) => page_out
                    .send_binary(data)
                    .await
                    .map_err(|e| format!("the page stopped reading: {e}"))?,
                Ok(Some(Repr::Exit(st))) => return Ok(st.to_string()),
                Ok(Some(other)) => return Err(format!("the pty sent {other}")),
                Ok(None) => return Err("the pty closed the session".into()),
                Err(e) => return Err(io(e)),
            }
        }
    };
    future::or(down, up).await
}
