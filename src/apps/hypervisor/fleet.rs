//! The visors this hypervisor manages, and how a request reaches each.
//!
//! A visor that lists our PK in its `hypervisors` dials our overlay port 46 and serves its
//! RPC on that stream (`visor::hvlink`): we are the HTTP client on a connection the visor
//! opened, so nothing on the visor listens for management. It keeps [`LINKS_PER_VISOR`]
//! such links, so a slow request (an app's stop) does not hold up the polling on the other.
//! The visor we run in (visor-app mode) is reached in-process through its RPC handler and is
//! always listed.
//!
//! A visor whose last link dropped is shown offline, with when it was last seen; it is not
//! forgotten. At most [`MAX_VISORS`] are remembered: a new one beyond that replaces the
//! offline visor seen longest ago, and is refused when every one is online.
//!
//! [`Fleet::poll`] refreshes each online visor's info, apps, transports and routes every
//! [`POLL_EVERY`]; the pages read those (raw JSON as the visor sent it), so a page showing
//! ten visors costs the visors nothing extra.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_io::Timer;
use futures_lite::future;

use crate::app::conn::Conn;
use crate::crypto::PublicKey;
use crate::http::client::{HttpResponse, request_keep_alive};
use crate::http::server::{Handler, Request};
use crate::spawn::Spawn;

/// Links one visor keeps open to us (`visor::hvlink` dials this many).
pub const LINKS_PER_VISOR: usize = 2;
/// Most visors remembered.
pub const MAX_VISORS: usize = 256;
/// How often the online visors are polled.
pub const POLL_EVERY: Duration = Duration::from_secs(2);
/// Time for one of the poller's requests.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for one forwarded request (an app stop waits up to 10 s for the app).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest answer body taken from a visor.
pub const MAX_ANSWER: usize = 1 << 20;
/// How long a request waits for a free link before it is answered 503.
const LINK_WAIT: Duration = Duration::from_secs(10);

/// What the poller last read from a visor (the RPC's JSON bodies, as sent).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `GET /v1/info`.
    pub info: Option<String>,
    /// `GET /v1/apps`.
    pub apps: Option<String>,
    /// `GET /v1/transports`.
    pub transports: Option<String>,
    /// `GET /v1/routes`.
    pub routes: Option<String>,
    /// The last poll's error, if it failed.
    pub error: Option<String>,
}

#[derive(Debug)]
struct Visor {
    /// Idle links.
    idle: Vec<Conn>,
    /// Links taken by a request now.
    busy: usize,
    /// When its first link arrived.
    since: SystemTime,
    /// When a link last answered (or arrived).
    seen: SystemTime,
    seen_at: Instant,
    snap: Snapshot,
}

impl Visor {
    fn online(&self) -> bool {
        !self.idle.is_empty() || self.busy > 0
    }
}

/// One visor as the pages list it.
#[derive(Debug, Clone)]
pub struct Row {
    /// Its PK.
    pub pk: PublicKey,
    /// The visor this hypervisor runs in.
    pub local: bool,
    /// A link is up (always, for the local visor).
    pub online: bool,
    /// Unix seconds of its first link, and of when it was last heard from.
    pub since: u64,
    /// See `since`.
    pub seen: u64,
    /// Open links.
    pub links: usize,
    /// The poller's last reading.
    pub snap: Snapshot,
}

/// Why a request to a visor failed (HTTP status, one line).
pub type Refused = (u16, String);

/// The fleet.
pub struct Fleet {
    local: Option<(PublicKey, Handler)>,
    /// `--visor` PKs: when any are given, only they are adopted.
    allow: Vec<PublicKey>,
    local_snap: Mutex<Snapshot>,
    visors: Mutex<HashMap<PublicKey, Visor>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("local", &self.local.as_ref().map(|l| l.0))
            .finish_non_exhaustive()
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Fleet {
    /// A fleet; `local` is the visor we run in and its in-process RPC handler.
    /// `allow`, when not empty, is the only visors adopted (`--visor`).
    pub fn new(local: Option<(PublicKey, Handler)>, allow: Vec<PublicKey>) -> Arc<Fleet> {
        Arc::new(Fleet {
            local,
            allow,
            local_snap: Mutex::new(Snapshot::default()),
            visors: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PublicKey, Visor>> {
        self.visors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The local visor's PK, if we run in one.
    pub fn local_pk(&self) -> Option<PublicKey> {
        self.local.as_ref().map(|l| l.0)
    }

    /// Takes a link a visor dialed. Refused (the link is dropped) when it would be more than
    /// [`LINKS_PER_VISOR`] + 1 links for the visor or the fleet is full of online visors.
    pub fn adopt(&self, conn: Conn) -> Result<PublicKey, String> {
        let pk = *conn.peer();
        if Some(pk) == self.local_pk() {
            return Err("the local visor is served in-process".into());
        }
        if !self.allow.is_empty() && !self.allow.contains(&pk) {
            return Err("not one of this hypervisor's --visor keys".into());
        }
        let now = SystemTime::now();
        let mut v = self.lock();
        if !v.contains_key(&pk) && v.len() >= MAX_VISORS {
            let oldest = v
                .iter()
                .filter(|(_, x)| !x.online())
                .min_by_key(|(_, x)| x.seen_at)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    v.remove(&k);
                }
                None => return Err(format!("{MAX_VISORS} visors are online already")),
            }
        }
        let e = v.entry(pk).or_insert_with(|| Visor {
            idle: Vec::new(),
            busy: 0,
            since: now,
            seen: now,
            seen_at: Instant::now(),
            snap: Snapshot::default(),
        });
        if !e.online() {
            e.since = now;
        }
        if e.idle.len() + e.busy > LINKS_PER_VISOR {
            // A visor redialing after we lost track: the oldest idle link is likely dead.
            if !e.idle.is_empty() {
                e.idle.remove(0);
            } else {
                return Err(format!("{pk} has {LINKS_PER_VISOR} links busy already"));
            }
        }
        e.idle.push(conn);
        e.seen = now;
        e.seen_at = Instant::now();
        Ok(pk)
    }

    /// Every visor: the local one first, then by PK.
    pub fn rows(&self) -> Vec<Row> {
        let mut out = Vec::new();
        if let Some((pk, _)) = &self.local {
            let now = unix(SystemTime::now());
            out.push(Row {
                pk: *pk,
                local: true,
                online: true,
                since: now,
                seen: now,
                links: 0,
                snap: self
                    .local_snap
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            });
        }
        let v = self.lock();
        let mut rest: Vec<Row> = v
            .iter()
            .map(|(pk, x)| Row {
                pk: *pk,
                local: false,
                online: x.online(),
                since: unix(x.since),
                seen: unix(x.seen),
                links: x.idle.len() + x.busy,
                snap: x.snap.clone(),
            })
            .collect();
        rest.sort_by_key(|r| r.pk.to_hex());
        out.extend(rest);
        out
    }

    /// Whether `pk` is a visor of this fleet (online or not).
    pub fn knows(&self, pk: &PublicKey) -> bool {
        Some(*pk) == self.local_pk() || self.lock().contains_key(pk)
    }

    /// Sends one RPC request to `pk` and returns its answer (status, body).
    pub async fn call(
        &self,
        pk: &PublicKey,
        method: &str,
        path_and_query: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), Refused> {
        self.call_within(pk, method, path_and_query, body, REQUEST_TIMEOUT)
            .await
    }

    async fn call_within(
        &self,
        pk: &PublicKey,
        method: &str,
        path_and_query: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), Refused> {
        if let Some((local, handler)) = &self.local
            && local == pk
        {
            let (path, query) = match path_and_query.split_once('?') {
                Some((p, q)) => (p.to_string(), Some(q.to_string())),
                None => (path_and_query.to_string(), None),
            };
            let req = Request {
                method: method.to_string(),
                path,
                query,
                headers: Vec::new(),
                body: body.unwrap_or_default().to_vec(),
                peer: None,
                peer_pk: None,
            };
            let resp = handler(req).await;
            return Ok((resp.status, resp.body));
        }
        let mut conn = self.take(pk).await?;
        let r = future::or(
            async {
                Some(
                    request_keep_alive(
                        &mut conn,
                        method,
                        "visor",
                        path_and_query,
                        body,
                        MAX_ANSWER,
                    )
                    .await,
                )
            },
            async {
                Timer::after(timeout).await;
                None
            },
        )
        .await;
        match r {
            Some(Ok(HttpResponse { status, body, .. })) => {
                self.give_back(pk, Some(conn));
                Ok((status, body))
            }
            Some(Err(e)) => {
                self.give_back(pk, None);
                Err((502, format!("visor {pk}: the link failed: {e}")))
            }
            None => {
                self.give_back(pk, None);
                Err((
                    504,
                    format!("visor {pk} did not answer within {REQUEST_TIMEOUT:?}"),
                ))
            }
        }
    }

    /// A stream to the pty app of remote visor `pk`: one of its links, switched by `POST
    /// /v1/pty` (`visor::hvlink`), so the terminal reaches a visor however it linked (dmsg
    /// or TCP). The link is the pty's from then on; the visor dials a fresh one.
    #[cfg(feature = "hv-term")]
    pub async fn open_pty(
        &self,
        pk: &PublicKey,
        timeout: Duration,
    ) -> Result<crate::http::client::Switched<Conn>, Refused> {
        use crate::http::client::{Upgrade, upgrade_on};
        let conn = self.take(pk).await?;
        let proto = crate::rpc::DIAL_UPGRADE;
        let r = future::or(
            async { Some(upgrade_on(conn, "POST", "visor", "/v1/pty", proto, &[], 4096).await) },
            async {
                Timer::after(timeout).await;
                None
            },
        )
        .await;
        // Whatever the answer, the link is used up: switched, or closed by `upgrade_on`.
        self.give_back(pk, None);
        match r {
            Some(Ok(Upgrade::Switched(s))) => Ok(s),
            Some(Ok(Upgrade::Refused(resp))) => {
                let why = crate::http::json::parse_object(&resp.text())
                    .ok()
                    .and_then(|o| match o.get("error") {
                        Some(miniserde::json::Value::String(m)) => Some(m.clone()),
                        _ => None,
                    })
                    .unwrap_or_else(|| format!("HTTP {}", resp.status));
                Err((resp.status, format!("visor {pk}: {why}")))
            }
            Some(Err(e)) => Err((502, format!("visor {pk}: the link failed: {e}"))),
            None => Err((504, format!("visor {pk}: no pty answer within {timeout:?}"))),
        }
    }

    /// An idle link to `pk`, waiting up to [`LINK_WAIT`] while all are busy.
    async fn take(&self, pk: &PublicKey) -> Result<Conn, Refused> {
        let until = Instant::now() + LINK_WAIT;
        loop {
            {
                let mut v = self.lock();
                let Some(x) = v.get_mut(pk) else {
                    return Err((404, format!("{pk} is not a visor of this hypervisor")));
                };
                // The least recently used first, so both links carry requests and neither
                // reaches the visor's idle timeout.
                if !x.idle.is_empty() {
                    x.busy += 1;
                    return Ok(x.idle.remove(0));
                }
                if x.busy == 0 {
                    return Err((503, format!("visor {pk} is offline")));
                }
            }
            if Instant::now() >= until {
                return Err((503, format!("visor {pk}: every link is busy")));
            }
            Timer::after(Duration::from_millis(20)).await;
        }
    }

    fn give_back(&self, pk: &PublicKey, conn: Option<Conn>) {
        let mut v = self.lock();
        if let Some(x) = v.get_mut(pk) {
            x.busy = x.busy.saturating_sub(1);
            if let Some(c) = conn {
                x.idle.push(c);
                x.seen = SystemTime::now();
                x.seen_at = Instant::now();
            }
        }
    }

    /// Reads one visor's snapshot.
    async fn snapshot(&self, pk: &PublicKey) -> Snapshot {
        let mut s = Snapshot::default();
        for (path, slot) in [
            ("/v1/info", &mut s.info),
            ("/v1/apps", &mut s.apps),
            ("/v1/transports", &mut s.transports),
            ("/v1/routes", &mut s.routes),
        ] {
            match self.call_within(pk, "GET", path, None, POLL_TIMEOUT).await {
                Ok((200, body)) => *slot = Some(String::from_utf8_lossy(&body).into_owned()),
                // A visor without skynet answers 501/503 for transports and routes.
                Ok((501 | 503, _)) => {}
                Ok((st, body)) => {
                    s.error = Some(format!("{path}: {st} {}", String::from_utf8_lossy(&body)));
                }
                Err((_, e)) => {
                    s.error = Some(e);
                    break;
                }
            }
        }
        s
    }

    /// Polls every online visor forever, every [`POLL_EVERY`], each on a task of its own
    /// (a visor that does not answer holds up only its own reading, for [`POLL_TIMEOUT`]).
    pub async fn poll(self: Arc<Self>, ex: Arc<async_executor::Executor<'static>>) {
        loop {
            let mut tasks = Vec::new();
            if let Some(pk) = self.local_pk() {
                let f = self.clone();
                tasks.push(ex.spawn_boxed(async move {
                    let s = f.snapshot(&pk).await;
                    *f.local_snap.lock().unwrap_or_else(|p| p.into_inner()) = s;
                }));
            }
            let online: Vec<PublicKey> = self
                .lock()
                .iter()
                .filter(|(_, x)| x.online())
                .map(|(k, _)| *k)
                .collect();
            for pk in online {
                let f = self.clone();
                tasks.push(ex.spawn_boxed(async move {
                    let s = f.snapshot(&pk).await;
                    if let Some(x) = f.lock().get_mut(&pk) {
                        // Keep the last good reading of a visor that just went away.
                        if s.info.is_some() || x.snap.info.is_none() {
                            x.snap = s;
                        } else {
                            x.snap.error = s.error;
                        }
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
            Timer::after(POLL_EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::conn::{Direction, Network};
    use crate::crypto::Keypair;
    use crate::http::server::{Peer, Response, serve_connection_from, sync_handler};

    /// A link from `pk`: our end, and the visor's end (a loopback TCP pair).
    async fn link(pk: PublicKey) -> (Conn, async_net::TcpStream) {
        let l = async_net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        let (visor, ours) = future::zip(async_net::TcpStream::connect(a), l.accept()).await;
        let conn = Conn::new(
            Box::new(ours.unwrap().0),
            pk,
            46,
            46,
            Network::Mem,
            Direction::In,
        );
        (conn, visor.unwrap())
    }

    fn pk(n: u8) -> PublicKey {
        *Keypair::from_seed(&[n; 32]).public()
    }

    #[test]
    fn with_visor_keys_only_they_are_adopted() {
        async_io::block_on(async {
            let f = Fleet::new(None, vec![pk(1)]);
            let (c1, _v1) = link(pk(1)).await;
            let (c2, _v2) = link(pk(2)).await;
            assert_eq!(f.adopt(c1), Ok(pk(1)));
            assert!(f.adopt(c2).unwrap_err().contains("--visor"));
            let rows = f.rows();
            assert_eq!(rows.len(), 1);
            assert!(rows[0].online && rows[0].links == 1);
            // Without keys every visor is adopted, up to LINKS_PER_VISOR + 1 links each.
            let open = Fleet::new(None, Vec::new());
            let mut ends = Vec::new();
            for _ in 0..LINKS_PER_VISOR + 2 {
                let (c, v) = link(pk(3)).await;
                ends.push(v);
                open.adopt(c).unwrap();
            }
            assert_eq!(open.rows()[0].links, LINKS_PER_VISOR + 1);
        });
    }

    #[test]
    fn a_silent_visor_holds_up_only_its_own_reading() {
        let ex = Arc::new(async_executor::Executor::new());
        let ex2 = ex.clone();
        std::thread::spawn(move || async_io::block_on(ex2.run(future::pending::<()>())));
        async_io::block_on(async {
            let f = Fleet::new(None, Vec::new());
            // A visor that answers every route with `{}`, and one that never answers.
            let (c1, v1) = link(pk(1)).await;
            let answer = sync_handler(|_| Response::json(200, "{}".into()));
            ex.spawn_boxed(serve_connection_from(
                v1,
                Peer::Key(pk(9)),
                answer,
                Default::default(),
            ))
            .detach();
            let (c2, _silent) = link(pk(2)).await;
            f.adopt(c1).unwrap();
            f.adopt(c2).unwrap();
            ex.spawn_boxed(f.clone().poll(ex.clone())).detach();
            let t0 = Instant::now();
            loop {
                let rows = f.rows();
                let answered = rows.iter().find(|r| r.pk == pk(1)).unwrap();
                if answered.snap.info.is_some() {
                    break;
                }
                assert!(
                    t0.elapsed() < POLL_TIMEOUT,
                    "the answering visor was not read while the silent one held its request"
                );
                Timer::after(Duration::from_millis(20)).await;
            }
        });
    }
}
