//! The services registry (DESIGN.md §5): every inbound overlay port of the visor is
//! dispatched through one `port → owner` table. A port nobody registered is refused (the
//! dmsg client answers "no listener"); the remote-RPC port is never registered. Apps reach
//! the table through [`VisorNet`], the visor-mode implementation of `Net`.
//!
//! dmsgctrl (port 7) is served here too: a peer sends ping `0x09`, we answer pong `0x0A`, as
//! many times as it likes on one stream.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_executor::Executor;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::BoxFut;
use crate::app::conn::{Conn, ConnTable, Direction};
use crate::app::net::{DmsgListen, Listen, Net, NetError, dmsg_conn};
use crate::crypto::PublicKey;
use crate::dmsg::client::DmsgClient;

/// dmsgctrl's overlay port.
pub const DMSGCTRL_PORT: u16 = 7;
/// The remote visor RPC port: never registered (DESIGN.md §4, §5).
pub const RPC_PORT: u16 = 65;
/// dmsgctrl ping.
pub const PING: u8 = 0x09;
/// dmsgctrl pong.
pub const PONG: u8 = 0x0A;

/// One registered port.
#[derive(Debug, Clone)]
pub struct Service {
    /// The port.
    pub port: u16,
    /// Who serves it (an app name, or `dmsgctrl`).
    pub owner: String,
    /// The network it is reachable on.
    pub network: &'static str,
    /// Since when.
    pub since: Instant,
}

/// Connections from this visor to one of its own ports, waiting for `accept`.
#[derive(Debug, Default)]
struct LocalQueue {
    items: std::collections::VecDeque<Conn>,
    waker: Option<std::task::Waker>,
}

/// Most local connections waiting on one port.
const LOCAL_BACKLOG: usize = 64;

/// The registry.
#[derive(Debug, Clone)]
pub struct Services {
    dmsg: DmsgClient,
    table: Arc<Mutex<BTreeMap<u16, Service>>>,
    local: Arc<Mutex<BTreeMap<u16, Arc<Mutex<LocalQueue>>>>>,
    conns: ConnTable,
}

impl Services {
    /// A registry over the visor's dmsg client; connections are tagged in `conns`.
    pub fn new(dmsg: DmsgClient, conns: ConnTable) -> Services {
        Services {
            dmsg,
            table: Arc::new(Mutex::new(BTreeMap::new())),
            local: Arc::new(Mutex::new(BTreeMap::new())),
            conns,
        }
    }

    /// The visor's dmsg client.
    pub fn dmsg(&self) -> &DmsgClient {
        &self.dmsg
    }

    /// Registers `port` for `owner`; the listener unregisters when dropped.
    pub fn register(&self, port: u16, owner: &str) -> Result<ServiceListener, NetError> {
        if port == RPC_PORT {
            return Err(NetError(format!(
                "port {RPC_PORT} is the remote visor RPC port; it is never served to the overlay"
            )));
        }
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = t.get(&port) {
            return Err(NetError(format!(
                "port {port} is already served by {}",
                s.owner
            )));
        }
        let l = self.dmsg.listen(port)?;
        let queue = Arc::new(Mutex::new(LocalQueue::default()));
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(port, queue.clone());
        t.insert(
            port,
            Service {
                port,
                owner: owner.to_string(),
                network: "dmsg",
                since: Instant::now(),
            },
        );
        Ok(ServiceListener {
            inner: DmsgListen(l),
            table: self.table.clone(),
            local: self.local.clone(),
            queue,
        })
    }

    /// Opens a connection to `pk`:`port`: over dmsg, or, when `pk` is this visor's own,
    /// straight to the local service (a socket pair; a dmsg client cannot dial itself).
    pub async fn dial(&self, pk: PublicKey, port: u16) -> Result<Conn, NetError> {
        if pk != *self.dmsg.pk() {
            let s = self.dmsg.dial(&pk, port).await?;
            return Ok(dmsg_conn(s, Direction::Out));
        }
        let queue = self
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&port)
            .cloned()
            .ok_or_else(|| NetError(format!("this visor has no listener on port {port}")))?;
        let (a, b) = async_net::unix::UnixStream::pair()
            .map_err(|e| NetError(format!("local connection: {e}")))?;
        let local_port = 49152 + (rand_u16() % 16384);
        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.items.len() >= LOCAL_BACKLOG {
            return Err(NetError(format!("port {port} is busy; try again")));
        }
        q.items.push_back(Conn::new(
            Box::new(b),
            pk,
            local_port,
            port,
            "local",
            Direction::In,
        ));
        if let Some(w) = q.waker.take() {
            w.wake();
        }
        Ok(Conn::new(
            Box::new(a),
            pk,
            port,
            local_port,
            "local",
            Direction::Out,
        ))
    }

    /// The registered ports, in order.
    pub fn list(&self) -> Vec<Service> {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The network an app gets inside the visor.
    pub fn net_for(&self, app: &'static str) -> Arc<dyn Net> {
        Arc::new(VisorNet {
            services: self.clone(),
            owner: app,
        })
    }

    /// Serves dmsgctrl on port 7 until the returned task is dropped.
    pub fn serve_dmsgctrl(
        &self,
        ex: &Arc<Executor<'static>>,
    ) -> Result<async_executor::Task<()>, NetError> {
        let l = self.register(DMSGCTRL_PORT, "dmsgctrl")?;
        let ex2 = ex.clone();
        let conns = self.conns.clone();
        Ok(ex.spawn(async move {
            while let Ok(c) = l.accept().await {
                let c = conns.adopt(c, "dmsgctrl");
                ex2.spawn(pong_loop(c)).detach();
            }
        }))
    }

    /// Pings `pk` over dmsgctrl `count` times on one stream; returns each round trip.
    pub async fn ping(&self, pk: PublicKey, count: u32) -> Result<Vec<Duration>, NetError> {
        let t0 = Instant::now();
        let c = self.dial(pk, DMSGCTRL_PORT).await?;
        let setup = t0.elapsed();
        let mut c = self.conns.adopt(c, "dmsgctrl");
        log::debug!("dmsgctrl: stream to {pk} open in {} µs", setup.as_micros());
        let mut rtts = Vec::new();
        for _ in 0..count.max(1) {
            let t = Instant::now();
            let once = async {
                c.write_all(&[PING]).await?;
                let mut b = [0u8; 1];
                c.read_exact(&mut b).await?;
                Ok::<u8, std::io::Error>(b[0])
            };
            let r = future::or(once, async {
                async_io::Timer::after(Duration::from_secs(5)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no pong within 5 s",
                ))
            })
            .await
            .map_err(|e| NetError(format!("ping {pk}: {e}")))?;
            if r != PONG {
                return Err(NetError(format!(
                    "ping {pk}: answered 0x{r:02x}, expected pong 0x0a"
                )));
            }
            rtts.push(t.elapsed());
        }
        let _ = c.close().await;
        Ok(rtts)
    }
}

async fn pong_loop(mut c: Conn) {
    let mut b = [0u8; 64];
    loop {
        let n = match future::or(c.read(&mut b), async {
            async_io::Timer::after(Duration::from_secs(60)).await;
            Ok(0)
        })
        .await
        {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // One pong per ping; anything else ends the stream.
        if b[..n].iter().any(|&x| x != PING) {
            log::debug!("dmsgctrl: {} sent a byte that is not a ping", c.peer());
            break;
        }
        let pongs = vec![PONG; n];
        if c.write_all(&pongs).await.is_err() {
            break;
        }
    }
    let _ = c.close().await;
}

/// A registered port; unregisters when dropped.
#[derive(Debug)]
pub struct ServiceListener {
    inner: DmsgListen,
    table: Arc<Mutex<BTreeMap<u16, Service>>>,
    local: Arc<Mutex<BTreeMap<u16, Arc<Mutex<LocalQueue>>>>>,
    queue: Arc<Mutex<LocalQueue>>,
}

impl Drop for ServiceListener {
    fn drop(&mut self) {
        let port = self.inner.0.port();
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&port);
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&port);
    }
}

impl Listen for ServiceListener {
    fn port(&self) -> u16 {
        self.inner.port()
    }
    fn accept(&self) -> BoxFut<'_, Result<Conn, NetError>> {
        let local = future::poll_fn(move |cx| {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            match q.items.pop_front() {
                Some(c) => std::task::Poll::Ready(Ok(c)),
                None => {
                    q.waker = Some(cx.waker().clone());
                    std::task::Poll::Pending
                }
            }
        });
        Box::pin(future::or(self.inner.accept(), local))
    }
}

/// A little randomness for local port numbers (they are labels, not security).
fn rand_u16() -> u16 {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    u16::from_be_bytes(b)
}

/// The visor's network as one app sees it: listens go through the registry under the
/// app's name; dials use the visor's dmsg client.
#[derive(Debug)]
pub struct VisorNet {
    services: Services,
    owner: &'static str,
}

impl Net for VisorNet {
    fn local_pk(&self) -> PublicKey {
        *self.services.dmsg.pk()
    }
    fn network(&self) -> &'static str {
        "dmsg"
    }
    fn listen(&self, port: u16) -> Result<Box<dyn Listen>, NetError> {
        Ok(Box::new(self.services.register(port, self.owner)?))
    }
    fn dial(&self, pk: PublicKey, port: u16) -> BoxFut<'_, Result<Conn, NetError>> {
        Box::pin(self.services.dial(pk, port))
    }
}
