//! The transport graph a source searches paths in, built from discovery: breadth first from
//! this node, each node's signed entry naming its live links (`Entry::links`, read through a
//! [`LinkSource`]: the router reaches dmsg's discovery only through the visor), up to
//! [`DEFAULT_MAX_HOPS`] hops and [`MAX_NODES`] entries, cached for [`CACHE_FOR`] (a setup
//! that fails asks for a fresh one). Our own links come from the transport manager, never
//! from our (possibly older) entry.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_executor::Executor;
use futures_lite::future;

use super::lock;
use super::path::{DEFAULT_MAX_HOPS, Graph};
use crate::crypto::PublicKey;
use crate::spawn::Spawn;

/// A boxed future that owns what it needs.
pub type LinksFut = std::pin::Pin<
    Box<dyn std::future::Future<Output = Option<Vec<(PublicKey, u8)>>> + Send + 'static>,
>;

/// Where the published links of a node come from (the visor: its discovery entry's `links`,
/// `(peer, transport type byte)`); `None` when it has no entry.
pub trait LinkSource: Send + Sync {
    /// The links `pk` publishes.
    fn links(&self, pk: PublicKey) -> LinksFut;
}

/// How long a built graph is used.
pub const CACHE_FOR: Duration = Duration::from_secs(5);
/// Most entries fetched for one graph.
pub const MAX_NODES: usize = 512;
/// Entries fetched at once.
pub const PARALLEL: usize = 16;
/// Longest wait for one entry.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// The cached graph.
pub(super) struct GraphCache {
    disc: Option<Arc<dyn LinkSource>>,
    cached: Mutex<Option<(Instant, Graph)>>,
}

impl GraphCache {
    pub(super) fn new(disc: Option<Arc<dyn LinkSource>>) -> GraphCache {
        GraphCache {
            disc,
            cached: Mutex::new(None),
        }
    }

    /// The next [`GraphCache::get`] builds a new graph.
    pub(super) fn invalidate(&self) {
        *lock(&self.cached) = None;
    }

    /// The last graph built (empty if none), for views.
    pub(super) fn peek(&self) -> Graph {
        lock(&self.cached)
            .as_ref()
            .map(|(_, g)| g.clone())
            .unwrap_or_default()
    }

    /// The graph around `local`, whose own live links are `own` (peer, type byte); rebuilt
    /// when older than [`CACHE_FOR`] or when `fresh`.
    pub(super) async fn get(
        &self,
        ex: &Arc<Executor<'static>>,
        local: PublicKey,
        own: Vec<(PublicKey, u8)>,
        fresh: bool,
    ) -> Graph {
        if !fresh
            && let Some((at, g)) = lock(&self.cached).as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return g.clone();
        }
        let g = self.build(ex, local, own).await;
        *lock(&self.cached) = Some((Instant::now(), g.clone()));
        g
    }

    async fn build(
        &self,
        ex: &Arc<Executor<'static>>,
        local: PublicKey,
        own: Vec<(PublicKey, u8)>,
    ) -> Graph {
        let mut g = Graph::new();
        g.add_node(local);
        let mut seen: HashSet<PublicKey> = HashSet::from([local]);
        let mut level: Vec<PublicKey> = Vec::new();
        for (peer, kind) in own {
            g.add_link(local, peer, kind);
            if seen.insert(peer) {
                level.push(peer);
            }
        }
        let Some(disc) = &self.disc else {
            return g;
        };
        let mut fetched = 0usize;
        for _depth in 1..DEFAULT_MAX_HOPS {
            if level.is_empty() || fetched >= MAX_NODES {
                break;
            }
            let mut queue: VecDeque<PublicKey> = level.drain(..).collect();
            while !queue.is_empty() && fetched < MAX_NODES {
                let n = queue.len().min(PARALLEL).min(MAX_NODES - fetched);
                let batch: Vec<PublicKey> = queue.drain(..n).collect();
                fetched += batch.len();
                let tasks: Vec<_> = batch
                    .into_iter()
                    .map(|pk| {
                        let fetch = disc.links(pk);
                        ex.spawn_boxed(async move {
                            let got = future::or(fetch, async {
                                async_io::Timer::after(FETCH_TIMEOUT).await;
                                None
                            })
                            .await;
                            (pk, got)
                        })
                    })
                    .collect();
                for t in tasks {
                    let (pk, links) = t.await;
                    let Some(links) = links else { continue };
                    g.add_node(pk);
                    for (peer, kind) in &links {
                        // Our own links are known first hand.
                        if *peer == local || pk == local {
                            continue;
                        }
                        g.add_link(pk, *peer, *kind);
                        if seen.insert(*peer) {
                            level.push(*peer);
                        }
                    }
                }
            }
        }
        g
    }
}
