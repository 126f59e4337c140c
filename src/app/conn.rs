//! Connections as apps see them: a byte stream to a peer PK, tagged with the app that owns
//! it and counted, so `skywire cli visor app status <name>` can list who is connected to
//! what (DESIGN.md §5: every connection is tagged with its app).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_lite::io::{AsyncRead, AsyncWrite};

use crate::crypto::PublicKey;

/// A byte stream an app can use.
pub trait AsyncIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncIo for T {}

/// The network a connection runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    /// dmsg: end-to-end channels through relays.
    Dmsg,
    /// Noise XK over direct TCP.
    Tcp,
    /// Inside the visor: a dial to one of its own ports.
    Local,
    /// Skynet: a stream in a route group over transports and routing hops.
    Skynet,
    /// The in-memory network of tests and simulations.
    Mem,
}

impl Network {
    /// The name shown in status output and RPC answers.
    pub const fn as_str(self) -> &'static str {
        match self {
            Network::Dmsg => "dmsg",
            Network::Tcp => "tcp",
            Network::Local => "local",
            Network::Skynet => "skynet",
            Network::Mem => "mem",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Network> for String {
    fn from(n: Network) -> String {
        n.as_str().to_string()
    }
}

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We dialled.
    Out,
    /// We accepted.
    In,
}

/// What is known about one connection; shared with the table.
#[derive(Debug)]
pub struct ConnInfo {
    /// Table id.
    pub id: u64,
    /// Owning app (empty until tagged).
    pub app: String,
    /// The peer.
    pub peer: PublicKey,
    /// The peer's port.
    pub remote_port: u16,
    /// Our port.
    pub local_port: u16,
    /// The network it runs on.
    pub network: Network,
    /// Who opened it.
    pub direction: Direction,
    /// When it opened.
    pub opened: Instant,
    /// Bytes received.
    pub rx: AtomicU64,
    /// Bytes sent.
    pub tx: AtomicU64,
}

/// A connection: the stream plus its tag. Dropping it closes the stream and removes it from
/// the table.
pub struct Conn {
    io: Box<dyn AsyncIo>,
    info: Arc<ConnInfo>,
    table: Option<ConnTable>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn").field("info", &self.info).finish()
    }
}

impl Conn {
    /// Wraps a stream (untagged).
    pub fn new(
        io: Box<dyn AsyncIo>,
        peer: PublicKey,
        remote_port: u16,
        local_port: u16,
        network: Network,
        direction: Direction,
    ) -> Conn {
        Conn {
            io,
            info: Arc::new(ConnInfo {
                id: 0,
                app: String::new(),
                peer,
                remote_port,
                local_port,
                network,
                direction,
                opened: Instant::now(),
                rx: AtomicU64::new(0),
                tx: AtomicU64::new(0),
            }),
            table: None,
        }
    }

    /// The peer's PK.
    pub fn peer(&self) -> &PublicKey {
        &self.info.peer
    }

    /// The peer's port.
    pub fn remote_port(&self) -> u16 {
        self.info.remote_port
    }

    /// Our port.
    pub fn local_port(&self) -> u16 {
        self.info.local_port
    }

    /// The tag.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(t) = &self.table {
            t.remove(self.info.id);
        }
    }
}

/// Overlay connections are HTTP server streams (no TCP options to set).
impl crate::http::server::Stream for Conn {}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.info.rx.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.info.tx.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_close(cx)
    }
}

/// The last id handed out, and the live connections by id.
type Rows = (u64, BTreeMap<u64, Arc<ConnInfo>>);

/// The live connections of every app, by id.
#[derive(Debug, Clone, Default)]
pub struct ConnTable {
    inner: Arc<Mutex<Rows>>,
}

/// A row of [`ConnTable::list`].
#[derive(Debug, Clone)]
pub struct ConnRow {
    /// Owning app.
    pub app: String,
    /// The peer.
    pub peer: PublicKey,
    /// The peer's port.
    pub remote_port: u16,
    /// Our port.
    pub local_port: u16,
    /// The network it runs on.
    pub network: Network,
    /// `in` or `out`.
    pub direction: Direction,
    /// Bytes received.
    pub rx: u64,
    /// Bytes sent.
    pub tx: u64,
    /// Seconds open.
    pub age_secs: u64,
}

impl ConnTable {
    /// Tags `conn` with `app` and starts listing it.
    pub fn adopt(&self, mut conn: Conn, app: &str) -> Conn {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        let id = g.0;
        let old = &conn.info;
        let info = Arc::new(ConnInfo {
            id,
            app: app.to_string(),
            peer: old.peer,
            remote_port: old.remote_port,
            local_port: old.local_port,
            network: old.network,
            direction: old.direction,
            opened: old.opened,
            rx: AtomicU64::new(old.rx.load(Ordering::Relaxed)),
            tx: AtomicU64::new(old.tx.load(Ordering::Relaxed)),
        });
        g.1.insert(id, info.clone());
        conn.info = info;
        conn.table = Some(self.clone());
        conn
    }

    fn remove(&self, id: u64) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .remove(&id);
    }

    /// The live connections of `app` (all apps when `None`), oldest first.
    pub fn list(&self, app: Option<&str>) -> Vec<ConnRow> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.1.values()
            .filter(|i| app.is_none_or(|a| a == i.app))
            .map(|i| ConnRow {
                app: i.app.clone(),
                peer: i.peer,
                remote_port: i.remote_port,
                local_port: i.local_port,
                network: i.network,
                direction: i.direction,
                rx: i.rx.load(Ordering::Relaxed),
                tx: i.tx.load(Ordering::Relaxed),
                age_secs: i.opened.elapsed().as_secs(),
            })
            .collect()
    }

    /// How many connections `app` has open.
    pub fn count(&self, app: &str) -> usize {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.1.values().filter(|i| i.app == app).count()
    }
}
