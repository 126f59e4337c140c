//! The services registry (DESIGN.md §5): the visor's one port table. Every inbound overlay
//! port of the visor is dispatched through it, `port → owner`, whichever carrier the stream
//! arrived on: carriers (the dmsg client, and the skynet router with the `skynet` feature)
//! hand each arrived stream to it through [`crate::accept::PortSink`] (see [`Feed`]), and a
//! dial from this visor to one of its own ports is delivered the same way. A port nobody
//! registered is refused (the carrier answers "no listener"); the remote-RPC port is never
//! registered. A carrier may also take one dmsg port for itself ([`Services::divert_dmsg`]:
//! skynet's dmsg transports arrive on port 45). Apps reach the table through [`VisorNet`], the
//! visor-mode implementation of `Net`, which dials by the app's route policy: `auto` (a live
//! route group, else dmsg now and a route set up in the background; a route when dmsg
//! cannot reach the peer), `dmsg`, or a route of the policy's shape.
//!
//! dmsgctrl (port 7) is served here too: a peer sends ping `0x09`, we answer pong `0x0A`, as
//! many times as it likes on one stream.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_executor::Executor;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::BoxFut;
use super::conn::{Conn, ConnTable, Direction, Network};
use super::net::{Listen, Net, NetError, accept_queued, dmsg_conn};
use crate::accept::{AcceptQueue, Ephemeral, PortSink, Refusal, Reservation, Slot};
use crate::crypto::PublicKey;
use crate::dmsg::client::{DmsgClient, DmsgStream};
#[cfg(feature = "skynet")]
use crate::router::{RouteError, RouteStream, Router, policy::RoutePolicy};
use crate::spawn::Spawn;

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
    pub network: Network,
    /// Since when.
    pub since: Instant,
}

/// Most streams waiting on one port, whichever carrier brought them.
pub const BACKLOG: usize = 64;

#[derive(Debug)]
struct Entry {
    service: Service,
    queue: Arc<AcceptQueue<Conn>>,
}

/// The table itself, shared by the registry, its listeners and the carriers' feeds.
#[derive(Debug, Default)]
pub struct Ports {
    table: Mutex<BTreeMap<u16, Entry>>,
    ephemeral: Ephemeral,
}

impl Ports {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u16, Entry>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a stream to `port`.
    pub fn reserve(&self, port: u16) -> Result<Reservation<Conn>, Refusal> {
        let q = self.lock().get(&port).map(|e| e.queue.clone());
        q.ok_or(Refusal::Closed)?.reserve()
    }

    /// True if `port` is registered.
    pub fn serves(&self, port: u16) -> bool {
        self.lock().contains_key(&port)
    }

    /// A dialling port no service uses.
    pub fn ephemeral(&self) -> u16 {
        self.ephemeral.next(|p| self.serves(p))
    }
}

/// A carrier's way into the table: streams of type `S` arrive, `wrap` turns each into a
/// connection (naming its network), and it waits in the queue of the port it asked for.
pub struct Feed<S> {
    ports: Arc<Ports>,
    wrap: fn(S) -> Conn,
}

impl<S> std::fmt::Debug for Feed<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").field("ports", &self.ports).finish()
    }
}

impl<S> Feed<S> {
    /// A feed into `ports`.
    pub fn new(ports: Arc<Ports>, wrap: fn(S) -> Conn) -> Feed<S> {
        Feed { ports, wrap }
    }
}

struct FeedSlot<S> {
    place: Reservation<Conn>,
    wrap: fn(S) -> Conn,
}

impl<S: Send> Slot<S> for FeedSlot<S> {
    fn deliver(self: Box<Self>, stream: S) {
        // A listener that went away meanwhile drops the connection, which ends it.
        let _ = self.place.deliver((self.wrap)(stream));
    }
}

impl<S: Send + 'static> PortSink<S> for Feed<S> {
    fn reserve(&self, port: u16) -> Result<Box<dyn Slot<S>>, Refusal> {
        Ok(Box::new(FeedSlot {
            place: self.ports.reserve(port)?,
            wrap: self.wrap,
        }))
    }
    fn serves(&self, port: u16) -> bool {
        self.ports.serves(port)
    }
}

fn dmsg_in(s: DmsgStream) -> Conn {
    dmsg_conn(s, Direction::In)
}

/// A dmsg stream to a port a carrier took for itself.
pub type DmsgTaker = Arc<dyn Fn(DmsgStream) + Send + Sync>;

/// dmsg ports taken by a carrier: port → (owner, taker).
#[derive(Default)]
struct DivertMap(Mutex<BTreeMap<u16, (String, DmsgTaker)>>);

impl std::fmt::Debug for DivertMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(diverted(self).keys()).finish()
    }
}

type Diverted = Arc<DivertMap>;

fn diverted(d: &DivertMap) -> MutexGuard<'_, BTreeMap<u16, (String, DmsgTaker)>> {
    d.0.lock().unwrap_or_else(|p| p.into_inner())
}

/// The dmsg client's way in: the ports carriers took, then the table.
struct DmsgSink {
    feed: Feed<DmsgStream>,
    diverted: Diverted,
}

impl std::fmt::Debug for DmsgSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmsgSink")
            .field("feed", &self.feed)
            .finish()
    }
}

struct TakerSlot(DmsgTaker);

impl Slot<DmsgStream> for TakerSlot {
    fn deliver(self: Box<Self>, stream: DmsgStream) {
        (self.0)(stream)
    }
}

impl PortSink<DmsgStream> for DmsgSink {
    fn reserve(&self, port: u16) -> Result<Box<dyn Slot<DmsgStream>>, Refusal> {
        if let Some((_, t)) = diverted(&self.diverted).get(&port) {
            return Ok(Box::new(TakerSlot(t.clone())));
        }
        self.feed.reserve(port)
    }
    fn serves(&self, port: u16) -> bool {
        diverted(&self.diverted).contains_key(&port) || self.feed.serves(port)
    }
}

/// A route group's stream as a connection (like `dmsg_conn`).
#[cfg(feature = "skynet")]
fn route_conn(s: RouteStream, direction: Direction) -> Conn {
    let (peer, rp, lp) = (s.peer, s.remote_port, s.local_port);
    Conn::new(Box::new(s.stream), peer, rp, lp, Network::Skynet, direction)
}

/// A stream a peer opened in a route group, as a connection.
#[cfg(feature = "skynet")]
fn route_in(s: RouteStream) -> Conn {
    route_conn(s, Direction::In)
}

#[cfg(feature = "skynet")]
fn route_err(e: RouteError) -> NetError {
    match e {
        RouteError::NoRoute(m) => NetError::NoRoute(m),
        RouteError::NoListener(m) => NetError::NoListener(m),
        RouteError::Busy(m) => NetError::Busy(m),
        RouteError::Timeout(m) => NetError::Timeout(m),
        RouteError::Failed(m) => NetError::Io(m),
    }
}

/// The registry.
#[derive(Debug, Clone)]
pub struct Services {
    dmsg: DmsgClient,
    ports: Arc<Ports>,
    conns: ConnTable,
    diverted: Diverted,
    #[cfg(feature = "skynet")]
    router: Option<Router>,
}

impl Services {
    /// A registry fed by the visor's dmsg client (which from now on hands every arrived
    /// stream to it); connections are tagged in `conns`.
    pub fn new(dmsg: DmsgClient, conns: ConnTable) -> Services {
        let s = Services {
            dmsg,
            ports: Arc::new(Ports::default()),
            conns,
            diverted: Arc::default(),
            #[cfg(feature = "skynet")]
            router: None,
        };
        s.dmsg.set_port_sink(Arc::new(DmsgSink {
            feed: Feed::new(s.ports.clone(), dmsg_in),
            diverted: s.diverted.clone(),
        }));
        s
    }

    /// Hands every dmsg stream to `port` to `take` instead of the table (a carrier's own
    /// port, e.g. skynet's dmsg transports on 45); `list` shows it under `owner`.
    pub fn divert_dmsg(&self, port: u16, owner: &str, take: DmsgTaker) -> Result<(), NetError> {
        if let Some(e) = self.ports.lock().get(&port) {
            return Err(NetError::CannotListen(format!(
                "port {port} is already served by {}",
                e.service.owner
            )));
        }
        diverted(&self.diverted).insert(port, (owner.to_string(), take));
        Ok(())
    }

    /// Makes `router` the second carrier: streams peers open in route groups go to the
    /// table, and dials follow the route policy. Call before the registry is cloned.
    #[cfg(feature = "skynet")]
    pub fn attach_router(&mut self, router: Router) {
        let ports = self.ports.clone();
        router.set_port_sink(
            self.feed(route_in),
            Box::new(move |port| ports.lock().get(&port).map(|e| e.service.owner.clone())),
        );
        self.router = Some(router);
    }

    /// The skynet node, if attached.
    #[cfg(feature = "skynet")]
    pub fn router(&self) -> Option<&Router> {
        self.router.as_ref()
    }

    /// The way in for a carrier whose streams are `S`: it hands each arrived stream to the
    /// returned sink, `wrap` makes it a connection (naming its network), and it waits for the
    /// service registered on its port. The dmsg client is attached this way; so will the
    /// skynet router be.
    pub fn feed<S: Send + 'static>(&self, wrap: fn(S) -> Conn) -> Arc<dyn PortSink<S>> {
        Arc::new(Feed::new(self.ports.clone(), wrap))
    }

    /// The visor's dmsg client.
    pub fn dmsg(&self) -> &DmsgClient {
        &self.dmsg
    }

    /// The table, for carriers to feed.
    pub fn ports(&self) -> &Arc<Ports> {
        &self.ports
    }

    /// Registers `port` for `owner`; the listener unregisters when dropped.
    pub fn register(&self, port: u16, owner: &str) -> Result<ServiceListener, NetError> {
        if port == RPC_PORT {
            return Err(NetError::CannotListen(format!(
                "port {RPC_PORT} is the remote visor RPC port; it is never served to the overlay"
            )));
        }
        if let Some((owner, _)) = diverted(&self.diverted).get(&port) {
            return Err(NetError::CannotListen(format!(
                "port {port} is already served by {owner}"
            )));
        }
        let mut t = self.ports.lock();
        if let Some(e) = t.get(&port) {
            return Err(NetError::CannotListen(format!(
                "port {port} is already served by {}",
                e.service.owner
            )));
        }
        let queue = Arc::new(AcceptQueue::new(BACKLOG));
        t.insert(
            port,
            Entry {
                service: Service {
                    port,
                    owner: owner.to_string(),
                    network: Network::Dmsg,
                    since: Instant::now(),
                },
                queue: queue.clone(),
            },
        );
        Ok(ServiceListener {
            port,
            ports: self.ports.clone(),
            queue,
        })
    }

    /// Opens a connection to `pk`:`port`: by the `auto` route policy (with the `skynet`
    /// feature; see [`Services::dial_by`]), else over dmsg; when `pk` is this visor's own,
    /// straight to the local service (a socket pair; a dmsg client cannot dial itself).
    pub async fn dial(&self, pk: PublicKey, port: u16) -> Result<Conn, NetError> {
        #[cfg(feature = "skynet")]
        return self.dial_by(pk, port, &RoutePolicy::Auto, "", &[]).await;
        #[cfg(not(feature = "skynet"))]
        return self.dial_dmsg(pk, port, &[]).await;
    }

    /// Opens a connection to `pk`:`port` by `route`, naming `app` in the route group's view:
    /// `dmsg` over dmsg; `auto` over a live route group to the peer, else over dmsg (and a
    /// route is set up in the background for the next dial), else — when dmsg cannot reach
    /// the peer — over a route set up now; any other policy over a route group of that shape
    /// (an open one, or one set up now). Without a router, always dmsg. `first` (may be
    /// empty) is sent behind the port header, before the answer ([`Net::dial_first`]).
    #[cfg(feature = "skynet")]
    pub async fn dial_by(
        &self,
        pk: PublicKey,
        port: u16,
        route: &RoutePolicy,
        app: &str,
        first: &[u8],
    ) -> Result<Conn, NetError> {
        let Some(r) = self.router.as_ref().filter(|_| pk != *self.dmsg.pk()) else {
            return self.dial_dmsg(pk, port, first).await;
        };
        let src = self.ports.ephemeral();
        match route {
            RoutePolicy::Dmsg => self.dial_dmsg(pk, port, first).await,
            RoutePolicy::Auto => {
                if r.has_live(&pk) {
                    match r.dial(pk, port, src, route, app, first).await {
                        Ok(s) => return Ok(route_conn(s, Direction::Out)),
                        Err(e @ (RouteError::NoListener(_) | RouteError::Busy(_))) => {
                            return Err(route_err(e));
                        }
                        Err(e) => log::debug!("auto dial {pk}:{port}: route failed ({e}); dmsg"),
                    }
                }
                match self.dial_dmsg(pk, port, first).await {
                    Ok(c) => {
                        r.prepare(pk, app);
                        Ok(c)
                    }
                    Err(NetError::NoRoute(m)) => r
                        .dial(pk, port, src, route, app, first)
                        .await
                        .map(|s| route_conn(s, Direction::Out))
                        .map_err(|e| NetError::NoRoute(format!("{m}; over skynet: {e}"))),
                    Err(e) => Err(e),
                }
            }
            p => r
                .dial(pk, port, src, p, app, first)
                .await
                .map(|s| route_conn(s, Direction::Out))
                .map_err(route_err),
        }
    }

    /// [`Services::dial`] over dmsg (or to ourselves), `first` behind the port header.
    async fn dial_dmsg(&self, pk: PublicKey, port: u16, first: &[u8]) -> Result<Conn, NetError> {
        if pk != *self.dmsg.pk() {
            let s = self.dmsg.dial_first(&pk, port, first).await?;
            return Ok(dmsg_conn(s, Direction::Out));
        }
        let place = self.ports.reserve(port).map_err(|r| match r {
            Refusal::Closed => {
                NetError::NoListener(format!("this visor has no listener on port {port}"))
            }
            Refusal::Busy => NetError::Busy(format!("port {port} is busy; try again")),
        })?;
        let (a, b) = async_net::unix::UnixStream::pair()
            .map_err(|e| NetError::Io(format!("local connection: {e}")))?;
        let local_port = self.ports.ephemeral();
        let inbound = Conn::new(
            Box::new(b),
            pk,
            local_port,
            port,
            Network::Local,
            Direction::In,
        );
        if place.deliver(inbound).is_err() {
            return Err(NetError::NoListener(format!(
                "this visor has no listener on port {port}"
            )));
        }
        let mut out = Conn::new(
            Box::new(a),
            pk,
            port,
            local_port,
            Network::Local,
            Direction::Out,
        );
        if !first.is_empty() {
            out.write_all(first)
                .await
                .map_err(|e| NetError::Io(format!("local connection: {e}")))?;
        }
        Ok(out)
    }

    /// The registered ports (and those carriers took), in order.
    pub fn list(&self) -> Vec<Service> {
        let mut v: Vec<Service> = self
            .ports
            .lock()
            .values()
            .map(|e| e.service.clone())
            .collect();
        v.extend(
            diverted(&self.diverted)
                .iter()
                .map(|(port, (owner, _))| Service {
                    port: *port,
                    owner: owner.clone(),
                    network: Network::Dmsg,
                    since: Instant::now(),
                }),
        );
        v.sort_by_key(|s| s.port);
        v
    }

    /// The network an app gets inside the visor (route policy `auto`).
    pub fn net_for(&self, app: &'static str) -> Arc<dyn Net> {
        Arc::new(VisorNet {
            services: self.clone(),
            owner: app,
            #[cfg(feature = "skynet")]
            route: RoutePolicy::Auto,
        })
    }

    /// The network an app with route policy `route` gets inside the visor.
    #[cfg(feature = "skynet")]
    pub fn net_with_route(&self, app: &'static str, route: RoutePolicy) -> Arc<dyn Net> {
        Arc::new(VisorNet {
            services: self.clone(),
            owner: app,
            route,
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
        Ok(ex.spawn_boxed(async move {
            while let Ok(c) = l.accept().await {
                let c = conns.adopt(c, "dmsgctrl");
                ex2.spawn_boxed(pong_loop(c)).detach();
            }
        }))
    }

    /// Pings `pk` over dmsgctrl `count` times on one stream (over dmsg); returns each round
    /// trip.
    pub async fn ping(&self, pk: PublicKey, count: u32) -> Result<Vec<Duration>, NetError> {
        let t0 = Instant::now();
        // Over dmsg, always: this measures dmsg (a route is pinged by the router).
        let c = self.dial_dmsg(pk, DMSGCTRL_PORT, &[]).await?;
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
            .map_err(|e| {
                let m = format!("ping {pk}: {e}");
                if e.kind() == std::io::ErrorKind::TimedOut {
                    NetError::Timeout(m)
                } else {
                    NetError::Io(m)
                }
            })?;
            if r != PONG {
                return Err(NetError::Io(format!(
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
    port: u16,
    ports: Arc<Ports>,
    queue: Arc<AcceptQueue<Conn>>,
}

impl Drop for ServiceListener {
    fn drop(&mut self) {
        let mut t = self.ports.lock();
        if t.get(&self.port)
            .is_some_and(|e| Arc::ptr_eq(&e.queue, &self.queue))
        {
            t.remove(&self.port);
        }
        drop(t);
        self.queue.close();
    }
}

impl Listen for ServiceListener {
    fn port(&self) -> u16 {
        self.port
    }
    fn accept(&self) -> BoxFut<'_, Result<Conn, NetError>> {
        accept_queued(&self.queue, self.port)
    }
}

/// The visor's network as one app sees it: listens go through the registry under the
/// app's name; dials go by the app's route policy ([`Services::dial_by`]).
#[derive(Debug)]
pub struct VisorNet {
    services: Services,
    owner: &'static str,
    #[cfg(feature = "skynet")]
    route: RoutePolicy,
}

impl Net for VisorNet {
    fn local_pk(&self) -> PublicKey {
        *self.services.dmsg.pk()
    }
    fn network(&self) -> Network {
        Network::Dmsg
    }
    fn listen(&self, port: u16) -> Result<Box<dyn Listen>, NetError> {
        Ok(Box::new(self.services.register(port, self.owner)?))
    }
    fn dial(&self, pk: PublicKey, port: u16) -> BoxFut<'_, Result<Conn, NetError>> {
        #[cfg(feature = "skynet")]
        return Box::pin(
            self.services
                .dial_by(pk, port, &self.route, self.owner, &[]),
        );
        #[cfg(not(feature = "skynet"))]
        return Box::pin(self.services.dial(pk, port));
    }
    fn underlay(&self) -> Vec<String> {
        self.services
            .dmsg
            .discovery()
            .map(|d| vec![d.url().authority.clone()])
            .unwrap_or_default()
    }
    fn dial_via(
        &self,
        pk: PublicKey,
        port: u16,
        via: super::net::Via,
    ) -> BoxFut<'_, Result<Conn, NetError>> {
        self.dial_first(pk, port, via, Vec::new())
    }
    fn dial_first(
        &self,
        pk: PublicKey,
        port: u16,
        via: super::net::Via,
        first: Vec<u8>,
    ) -> BoxFut<'_, Result<Conn, NetError>> {
        use super::net::Via;
        #[cfg(feature = "skynet")]
        {
            let route = match via {
                Via::Auto => self.route.clone(),
                Via::Dmsg => RoutePolicy::Dmsg,
                // The app's own route shape if it has one, else any route.
                Via::Skynet => match &self.route {
                    RoutePolicy::Auto | RoutePolicy::Dmsg => RoutePolicy::Hops(1),
                    p => p.clone(),
                },
            };
            Box::pin(async move {
                self.services
                    .dial_by(pk, port, &route, self.owner, &first)
                    .await
            })
        }
        #[cfg(not(feature = "skynet"))]
        match via {
            Via::Skynet => Box::pin(async move {
                Err(NetError::NoRoute(
                    "this build has no skynet (the skynet feature is off); use dmsg".into(),
                ))
            }),
            _ => Box::pin(async move { self.services.dial_dmsg(pk, port, &first).await }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::dmsg::client::ClientConfig;
    use async_net::unix::UnixStream;
    use futures_lite::future::block_on;

    fn registry() -> (Services, PublicKey) {
        let ex = Arc::new(Executor::new());
        let keys = Keypair::from_seed(&[4; 32]);
        let pk = *keys.public();
        let dmsg = DmsgClient::start(ex, keys, None, ClientConfig::default());
        (Services::new(dmsg, ConnTable::default()), pk)
    }

    /// A carrier of Unix sockets, standing in for the router.
    fn unix_in(s: UnixStream) -> Conn {
        let peer = *Keypair::from_seed(&[9; 32]).public();
        Conn::new(Box::new(s), peer, 50000, 80, Network::Local, Direction::In)
    }

    #[test]
    fn every_carrier_feeds_the_one_table() {
        let (services, _) = registry();
        let carrier = services.feed(unix_in);
        assert_eq!(carrier.reserve(80).err(), Some(Refusal::Closed));
        let l = services.register(80, "web").unwrap();
        assert!(carrier.serves(80));
        assert!(
            services.dmsg().listen(81).is_err(),
            "the registry serves the dmsg ports"
        );
        let (a, _b) = UnixStream::pair().unwrap();
        carrier.reserve(80).unwrap().deliver(a);
        let c = block_on(l.accept()).unwrap();
        assert_eq!((c.remote_port(), c.local_port()), (50000, 80));
        let rows = services.list();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].port, rows[0].owner.as_str()), (80, "web"));
        assert_eq!(String::from(rows[0].network), "dmsg");
        // The backlog holds BACKLOG streams, whichever carrier brought them.
        let held: Vec<_> = (0..BACKLOG).map(|_| carrier.reserve(80).unwrap()).collect();
        assert_eq!(carrier.reserve(80).err(), Some(Refusal::Busy));
        drop(held);
        drop(l);
        assert!(!carrier.serves(80));
        assert_eq!(carrier.reserve(80).err(), Some(Refusal::Closed));
    }

    #[test]
    fn a_carrier_takes_a_dmsg_port() {
        let (services, _) = registry();
        let _held = services.register(46, "app").unwrap();
        let take: DmsgTaker = Arc::new(|_s| {});
        assert!(matches!(
            services.divert_dmsg(46, "transports", take.clone()),
            Err(NetError::CannotListen(m)) if m == "port 46 is already served by app"
        ));
        services.divert_dmsg(45, "transports", take).unwrap();
        assert!(matches!(
            services.register(45, "x"),
            Err(NetError::CannotListen(m)) if m == "port 45 is already served by transports"
        ));
        let rows: Vec<(u16, String)> = services
            .list()
            .into_iter()
            .map(|s| (s.port, s.owner))
            .collect();
        assert_eq!(rows, vec![(45, "transports".into()), (46, "app".into())]);
    }

    #[test]
    fn registration_rules_and_local_dials() {
        let (services, pk) = registry();
        assert!(matches!(
            services.register(RPC_PORT, "x"),
            Err(NetError::CannotListen(m)) if m.contains("remote visor RPC port")
        ));
        let l = services.register(5, "a").unwrap();
        assert!(matches!(
            services.register(5, "b"),
            Err(NetError::CannotListen(m)) if m == "port 5 is already served by a"
        ));
        let err = block_on(services.dial(pk, 6)).unwrap_err();
        assert_eq!(
            err,
            NetError::NoListener("this visor has no listener on port 6".into())
        );
        let out = block_on(services.dial(pk, 5)).unwrap();
        let inc = block_on(l.accept()).unwrap();
        assert_eq!(out.info().network, Network::Local);
        assert_eq!(out.local_port(), inc.remote_port());
        assert!(out.local_port() >= crate::accept::EPHEMERAL_START);
    }
}
