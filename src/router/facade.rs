//! [`Control`] for [`Router`]: the node's transports, rules, groups, pings and drop counters as
//! the plain views of [`super::control`].

use std::str::FromStr;
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::control::{BoxFut, Control, GroupView, LegView, RuleHop, RuleInfo, TpView};
use super::core::Hop;
use super::policy::RoutePolicy;
use super::{Router, lock};
use crate::crypto::PublicKey;
use crate::transport::{TpId, TpInfo, TpType};

/// dmsgctrl's port (the visor serves it on every carrier): `ping` uses it.
pub const PING_PORT: u16 = 7;
/// dmsgctrl ping and pong bytes.
const PING: u8 = 0x09;
const PONG: u8 = 0x0A;
/// Longest wait for one pong.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Most round trips one `ping` measures.
pub const MAX_PINGS: u32 = 100;

fn tp_view(t: TpInfo) -> TpView {
    TpView {
        id: t.id.to_string(),
        peer: t.peer.to_hex(),
        kind: t.kind.to_string(),
        state: t.state.to_string(),
        initiator: t.initiator,
        persistent: t.persistent,
        rtt_us: t.rtt.map_or(0, |d| d.as_micros() as u64),
        rx_bytes: t.rx_bytes,
        tx_bytes: t.tx_bytes,
        age_secs: t.age.as_secs(),
        buffer_bytes: t.buffer_bytes as u64,
    }
}

impl Router {
    fn hop_view(&self, h: Option<Hop>, peer: Option<PublicKey>) -> Option<RuleHop> {
        let h = h?;
        let t = self.inner.mgr().by_handle(h.tp);
        Some(RuleHop {
            tp: t.as_ref().map(|t| t.id().to_string()).unwrap_or_default(),
            peer: peer
                .or_else(|| t.map(|t| t.peer()))
                .map(|p| p.to_hex())
                .unwrap_or_default(),
            route_id: h.id,
        })
    }

    /// The transport type of each hop of `path`: the live transport for our own first hop,
    /// the published links for the others (`?` when unknown).
    fn hop_types(
        &self,
        path: &[PublicKey],
        first: Option<TpType>,
        g: &super::path::Graph,
    ) -> Vec<String> {
        path.windows(2)
            .enumerate()
            .map(|(i, w)| {
                if i == 0
                    && let Some(k) = first
                {
                    return k.to_string();
                }
                g.link_types(&w[0], &w[1])
                    .first()
                    .and_then(|b| TpType::from_byte(*b))
                    .map_or_else(|| "?".to_string(), |k| k.to_string())
            })
            .collect()
    }
}

impl Control for Router {
    fn transports(&self) -> Vec<TpView> {
        self.inner.mgr().list().into_iter().map(tp_view).collect()
    }

    fn transport_types(&self) -> Vec<String> {
        self.inner
            .mgr()
            .types()
            .into_iter()
            .map(|t| t.to_string())
            .collect()
    }

    fn add_transport(
        &self,
        pk: PublicKey,
        kind: String,
        persistent: bool,
    ) -> BoxFut<'_, Result<TpView, String>> {
        Box::pin(async move {
            let kind = TpType::from_str(&kind)?;
            self.inner
                .mgr()
                .add(pk, kind, persistent)
                .await
                .map(tp_view)
                .map_err(|e| e.to_string())
        })
    }

    fn remove_transport(&self, id: &str) -> Result<(), String> {
        let id = TpId::from_str(id)?;
        self.inner.mgr().remove(&id).map_err(|e| e.to_string())
    }

    fn rules(&self) -> Vec<RuleInfo> {
        let now = self.inner.now();
        let rows: Vec<_> = lock(&self.inner.core).rules(now).collect();
        rows.into_iter()
            .map(|r| RuleInfo {
                id: r.id,
                kind: r.kind.to_string(),
                state: if r.pending { "pending" } else { "ready" }.to_string(),
                towards_src: self.hop_view(r.towards_src, r.src_peer),
                towards_dst: self.hop_view(r.towards_dst, r.dst_peer),
                group_id: r.group_id,
                leg: r.leg_index,
                age_secs: r.age.as_secs(),
                idle_secs: r.idle.as_secs(),
                packets: r.packets,
                bytes: r.bytes,
            })
            .collect()
    }

    fn groups(&self, app: Option<&str>) -> Vec<GroupView> {
        let graph = self.inner.graph.peek();
        // Our end of each leg: the transport its rule sends on.
        let now = self.inner.now();
        let first: std::collections::HashMap<u32, Option<u32>> = lock(&self.inner.core)
            .rules(now)
            .map(|r| (r.id, r.towards_dst.or(r.towards_src).map(|h| h.tp)))
            .collect();
        let mut out: Vec<(super::GroupKey, GroupView)> = {
            let st = lock(&self.inner.st);
            st.groups
                .iter()
                .filter(|(_, e)| app.is_none_or(|a| e.apps.contains(a)))
                .map(|(k, e)| {
                    let info = e.group.info();
                    let legs = e
                        .legs
                        .iter()
                        .map(|m| {
                            let gi = info.legs.iter().find(|l| l.leg.0 == m.leg.0);
                            let kind = first
                                .get(&m.leg.0)
                                .copied()
                                .flatten()
                                .and_then(|h| self.inner.mgr().by_handle(h))
                                .map(|t| t.kind());
                            // The path as this end sees it: from here to the peer.
                            let mut hops = m.path.clone();
                            if hops.first() != Some(&self.inner.local) {
                                hops.reverse();
                            }
                            LegView {
                                id: m.leg.0,
                                tp_types: self.hop_types(&hops, kind, &graph),
                                hops: hops.iter().map(|p| p.to_hex()).collect(),
                                rtt_us: gi.and_then(|l| l.rtt).map_or(0, |d| d.as_micros() as u64),
                                state: match (&m.down, gi) {
                                    (Some(why), _) => format!("down: {why}"),
                                    (None, Some(l)) => l.state.clone(),
                                    (None, None) => "down".to_string(),
                                },
                            }
                        })
                        .collect();
                    let view = GroupView {
                        peer: k.peer.to_hex(),
                        policy: e.policy.to_string(),
                        initiator: k.initiator,
                        apps: e.apps.iter().cloned().collect(),
                        state: match &info.failure {
                            Some(f) => format!("failed: {f}"),
                            None => info.state.to_string(),
                        },
                        legs,
                        rx_bytes: info.bytes_in,
                        tx_bytes: info.bytes_out,
                        age_secs: info.age.as_secs(),
                        streams: info.streams as u64,
                    };
                    (*k, view)
                })
                .collect()
        };
        crate::sort::sort_by_key(&mut out, |a| a.0);
        out.into_iter().map(|(_, v)| v).collect()
    }

    fn ping(
        &self,
        pk: PublicKey,
        policy: String,
        count: u32,
    ) -> BoxFut<'_, Result<Vec<Duration>, String>> {
        Box::pin(async move {
            let policy = RoutePolicy::from_str(&policy).map_err(|e| e.to_string())?;
            let policy = if policy == RoutePolicy::Dmsg {
                return Err("ping over skynet needs a route policy other than dmsg".into());
            } else {
                policy
            };
            let mut s = self
                .dial(pk, PING_PORT, 0, &policy, "ping", &[])
                .await
                .map_err(|e| e.to_string())?
                .stream;
            let mut rtts = Vec::new();
            for _ in 0..count.clamp(1, MAX_PINGS) {
                let t = Instant::now();
                let once = async {
                    s.write_all(&[PING]).await?;
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).await?;
                    Ok::<u8, std::io::Error>(b[0])
                };
                let got = future::or(once, async {
                    Timer::after(PING_TIMEOUT).await;
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no pong within {} s", PING_TIMEOUT.as_secs()),
                    ))
                })
                .await
                .map_err(|e| format!("ping {pk}: {e}"))?;
                if got != PONG {
                    return Err(format!(
                        "ping {pk}: answered 0x{got:02x}, expected pong 0x0a"
                    ));
                }
                rtts.push(t.elapsed());
            }
            let _ = s.close().await;
            Ok(rtts)
        })
    }

    fn drops(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = lock(&self.inner.core)
            .drops()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.to_string(), n))
            .collect();
        v.extend(
            lock(&self.inner.drops)
                .iter()
                .map(|(k, n)| (k.to_string(), *n)),
        );
        v.extend(
            self.inner
                .mgr()
                .counters()
                .into_iter()
                .map(|(k, n)| (format!("transport: {k}"), n)),
        );
        let groups: Vec<_> = lock(&self.inner.st)
            .groups
            .values()
            .map(|e| e.group.clone())
            .collect();
        let mut per: std::collections::BTreeMap<String, u64> = Default::default();
        for g in groups {
            for (k, n) in g.info().drops {
                *per.entry(format!("group: {k}")).or_default() += n;
            }
        }
        v.extend(per);
        crate::sort::sort(&mut v);
        v
    }
}
