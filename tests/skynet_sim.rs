//! Skynet route setup in the simulation tier (DESIGN.md §9, tier 2): 20 router cores
//! (`skywire::router::core::Core`, nothing else) on a seeded random transport graph, their
//! transports being `skywire::app::sim` links under a virtual clock with an `Arq` on each (the
//! reliable, ordered pipe a transport gives the router). Sources pick paths with
//! `router::path` on the published graph and set up 1–4-hop legs with random policies; a failed
//! setup is retried avoiding the node its reason blames. Sources pace setups 50 ms apart (the
//! 20/s per-transport setup bucket would otherwise drop some, as it should), and legs send a
//! keep-alive every 10 s like route groups do.
//!
//! Checked with exact counts: every setup for which a path exists in the live graph succeeds,
//! every other fails with a reason that says why; the existence oracle is an unpruned
//! brute-force search written here, independent of `router::path`. Runs inject a node that
//! never answers, a node killed mid-setup, and 5 % loss with reordering (data through 4-hop
//! legs must then arrive intact and in order). After the legs close and the idle timeout
//! passes, no rule is left anywhere.
#![cfg(feature = "skynet")]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use skywire::app::sim::{Arq, ArqPacket, Fabric, Link, Rng};
use skywire::crypto::{Keypair, PublicKey};
use skywire::router::core::{Core, CoreConfig, Event, LegRef, SetupError, TpHandle, Verdict};
use skywire::router::path::{Graph, PathSpec, paths, short};
use skywire::router::policy::RoutePolicy;
use skywire::wire::route::{HEADER_LEN, Packet, PacketType, Repr};

const NODES: usize = 20;
/// Node 19 publishes no transports.
const LONER: usize = NODES - 1;
const STEP: Duration = Duration::from_millis(2);
const MAX_HOPS: usize = 4;
const BATCH: usize = 50;
const ATTEMPTS: usize = 4;
const KEEPALIVE: Duration = Duration::from_secs(10);
const PACE: Duration = Duration::from_millis(50);

fn key(i: usize) -> PublicKey {
    *Keypair::from_seed(&[i as u8 + 1; 32]).public()
}

struct Sim {
    fabric: Fabric<ArqPacket>,
    keys: Vec<PublicKey>,
    index: HashMap<PublicKey, usize>,
    cores: Vec<Core>,
    /// (node, peer) → the node's end of their transport.
    arqs: BTreeMap<(usize, usize), Arq>,
    dead: HashSet<usize>,
    silent: HashSet<usize>,
    events: Vec<(usize, Event)>,
    delivered: Vec<(usize, LegRef, Vec<u8>)>,
}

impl Sim {
    fn new(seed: u64, link: Link, repair: bool, edges: &[(usize, usize)]) -> Sim {
        let keys: Vec<PublicKey> = (0..NODES).map(key).collect();
        let mut cores: Vec<Core> = keys
            .iter()
            .map(|k| Core::new(*k, CoreConfig::default()))
            .collect();
        let mut arqs = BTreeMap::new();
        for &(a, b) in edges {
            for (x, y) in [(a, b), (b, a)] {
                let arq = if repair {
                    Arq::new(Duration::from_millis(30))
                } else {
                    Arq::without_repair()
                };
                arqs.insert((x, y), arq);
                cores[x].transport_up(y as TpHandle, keys[y]);
            }
        }
        Sim {
            fabric: Fabric::new(seed, link),
            index: keys.iter().enumerate().map(|(i, k)| (*k, i)).collect(),
            keys,
            cores,
            arqs,
            dead: HashSet::new(),
            silent: HashSet::new(),
            events: Vec::new(),
            delivered: Vec::new(),
        }
    }

    fn now(&self) -> Duration {
        self.fabric.now()
    }

    fn idx(&self, pk: &PublicKey) -> usize {
        self.index[pk]
    }

    fn kill(&mut self, k: usize) {
        self.dead.insert(k);
        let now = self.now();
        let peers: Vec<usize> = self
            .arqs
            .keys()
            .filter(|(a, _)| *a == k)
            .map(|(_, b)| *b)
            .collect();
        for p in peers {
            self.arqs.remove(&(k, p));
            self.arqs.remove(&(p, k));
            self.cores[p].transport_down(k as TpHandle, now);
        }
    }

    fn send(&mut self, node: usize, tp: TpHandle, packet: Vec<u8>) {
        if let Some(arq) = self.arqs.get_mut(&(node, tp as usize)) {
            arq.send(packet);
        }
    }

    /// One step of virtual time.
    fn step(&mut self) {
        let now = self.now();
        while let Some((from, to, p)) = self.fabric.poll_deliver() {
            let (to, from) = (self.idx(&to), self.idx(&from));
            if let Some(arq) = self.arqs.get_mut(&(to, from)) {
                arq.handle(p);
            }
        }
        let ends: Vec<(usize, usize)> = self.arqs.keys().copied().collect();
        for (me, peer) in ends {
            while let Some(mut msg) = self.arqs.get_mut(&(me, peer)).and_then(Arq::poll_recv) {
                if self.silent.contains(&me) || self.dead.contains(&me) {
                    continue;
                }
                match self.cores[me].handle_packet(peer as TpHandle, &mut msg, now) {
                    Verdict::Forward(tp) => self.send(me, tp, msg),
                    Verdict::Deliver(leg) => self.delivered.push((me, leg, msg)),
                    Verdict::Consumed | Verdict::Drop(_) => {}
                }
            }
        }
        for i in 0..NODES {
            if self.dead.contains(&i) {
                continue;
            }
            if self.cores[i].poll_timeout().is_some_and(|t| t <= now) {
                self.cores[i].handle_timeout(now);
            }
            while let Some(ev) = self.cores[i].poll_event() {
                match ev {
                    Event::Send { tp, packet } => self.send(i, tp, packet),
                    other => self.events.push((i, other)),
                }
            }
        }
        for (&(me, peer), arq) in self.arqs.iter_mut() {
            while let Some(p) = arq.poll_transmit(now) {
                self.fabric.send(self.keys[me], self.keys[peer], p);
            }
        }
        self.fabric.advance(STEP);
    }

    /// The node with the most transports (the one whose failure hurts most).
    fn busiest(&self) -> usize {
        (0..NODES)
            .max_by_key(|i| (self.arqs.keys().filter(|(a, _)| a == i).count(), *i))
            .expect("nodes")
    }

    fn rules(&self) -> usize {
        (0..NODES)
            .filter(|i| !self.dead.contains(i))
            .map(|i| self.cores[i].rule_count())
            .sum()
    }
}

/// The independent oracle: does a simple path exist with min..=max hops passing `via` in
/// order, using only `live` nodes? Unpruned depth-first search.
fn exists(
    adj: &[Vec<usize>],
    live: &[bool],
    src: usize,
    dst: usize,
    spec: &PathSpec,
    via: &[usize],
) -> bool {
    fn go(
        adj: &[Vec<usize>],
        live: &[bool],
        path: &mut Vec<usize>,
        dst: usize,
        min: usize,
        max: usize,
        via: &[usize],
    ) -> bool {
        let u = *path.last().unwrap();
        let hops = path.len() - 1;
        if u == dst {
            return hops >= min && via.is_empty();
        }
        if hops == max {
            return false;
        }
        for &v in &adj[u] {
            if !live[v] || path.contains(&v) {
                continue;
            }
            let rest = if via.first() == Some(&v) {
                &via[1..]
            } else {
                via
            };
            if via[..].iter().skip(1).any(|w| *w == v) && via.first() != Some(&v) {
                continue;
            }
            path.push(v);
            let ok = go(adj, live, path, dst, min, max, rest);
            path.pop();
            if ok {
                return true;
            }
        }
        false
    }
    if !live[src] || !live[dst] || spec.min_hops > spec.max_hops {
        return false;
    }
    go(
        adj,
        live,
        &mut vec![src],
        dst,
        spec.min_hops,
        spec.max_hops,
        via,
    )
}

struct Job {
    src: usize,
    dst: usize,
    policy: RoutePolicy,
    spec: PathSpec,
    legs_wanted: usize,
    avoid: Vec<PublicKey>,
    /// Intermediaries of legs already up (later legs must avoid them).
    used: Vec<PublicKey>,
    legs: Vec<(LegRef, Vec<PublicKey>)>,
    attempts: usize,
    /// Attempts after a failure.
    retries: usize,
    waiting: Option<(u32, Vec<PublicKey>)>,
    result: Option<Result<(), String>>,
    possible: bool,
    /// The nodes alive when the job was made.
    live: Vec<bool>,
}

/// The node a failure reason blames: the one named after "from", "to" or, failing that, the
/// reporter (the short key before the first colon).
fn blamed(sim: &Sim, reason: &str) -> Option<PublicKey> {
    let named = ["no answer from ", "transport to ", "no transport to "]
        .iter()
        .find_map(|p| {
            reason
                .find(p)
                .map(|at| &reason[at + p.len()..at + p.len() + 8])
        })
        .or_else(|| reason.split(':').next());
    let named = named?;
    sim.keys.iter().copied().find(|k| short(k) == named)
}

struct Run {
    succeeded: usize,
    failed: usize,
    possible: usize,
    retried: usize,
    leg_downs: Vec<String>,
    reasons: Vec<String>,
    sim: Sim,
    jobs: Vec<Job>,
}

/// Runs `n` setups on the graph of `seed`; `inject` is called at the start of each batch with
/// its index (to silence or kill a node).
fn run(
    seed: u64,
    link: Link,
    repair: bool,
    n: usize,
    inject: &dyn Fn(&mut Sim, usize) -> Option<usize>,
) -> Run {
    let mut rng = Rng::new(seed);
    let mut edges = Vec::new();
    for a in 0..LONER {
        for _ in 0..2 {
            let b = rng.below(LONER as u64) as usize;
            if a != b && !edges.contains(&(a, b)) && !edges.contains(&(b, a)) {
                edges.push((a, b));
            }
        }
    }
    let mut sim = Sim::new(seed, link, repair, &edges);
    let mut graph = Graph::new();
    for i in 0..NODES {
        graph.add_node(sim.keys[i]);
    }
    let mut adj = vec![Vec::new(); NODES];
    for &(a, b) in &edges {
        graph.add_link(sim.keys[a], sim.keys[b], 1);
        adj[a].push(b);
        adj[b].push(a);
    }
    let mut live = vec![true; NODES];
    let mut jobs: Vec<Job> = Vec::new();
    let mut dying: Option<(usize, Duration)> = None;
    let mut leg_downs = Vec::new();
    let mut next_keepalive = KEEPALIVE;
    for batch in 0..n.div_ceil(BATCH) {
        if let Some(k) = inject(&mut sim, batch) {
            // Killed (or silenced) from this batch on: the published graph still has it.
            live[k] = false;
            if !sim.silent.contains(&k) {
                dying = Some((k, sim.now() + Duration::from_millis(3)));
            }
        }
        let first = jobs.len();
        for _ in 0..BATCH.min(n - first) {
            let choose = |rng: &mut Rng| loop {
                let v = rng.below(NODES as u64) as usize;
                if live[v] || sim.silent.contains(&v) || v == LONER {
                    break v;
                }
            };
            let src = loop {
                let s = choose(&mut rng);
                if live[s] && s != LONER {
                    break s;
                }
            };
            let dst = loop {
                let d = choose(&mut rng);
                if d != src {
                    break d;
                }
            };
            let policy = match rng.below(6) {
                0 => RoutePolicy::Auto,
                1 => RoutePolicy::Direct,
                2 => RoutePolicy::Hops(1 + rng.below(5) as u8),
                3 => {
                    let v = loop {
                        let v = rng.below(LONER as u64) as usize;
                        if v != src && v != dst {
                            break v;
                        }
                    };
                    RoutePolicy::Via(vec![sim.keys[v]])
                }
                4 => RoutePolicy::Mux(2),
                _ => RoutePolicy::Hops(2),
            };
            let mut spec = policy.path_spec().expect("a routed policy");
            spec.max_hops = spec.max_hops.min(MAX_HOPS);
            let via: Vec<usize> = spec.via.iter().map(|k| sim.idx(k)).collect();
            let legs_wanted = policy.legs();
            // Mux legs: the first needs a path; the second one avoiding the intermediaries
            // of the first leg actually set up (checked once the run is over).
            let possible = exists(&adj, &live, src, dst, &spec, &via);
            jobs.push(Job {
                src,
                dst,
                policy,
                spec,
                legs_wanted,
                avoid: Vec::new(),
                used: Vec::new(),
                legs: Vec::new(),
                attempts: 0,
                retries: 0,
                waiting: None,
                result: None,
                possible,
                live: live.clone(),
            });
        }
        // Sources pace their setups (one every 50 ms across the batch) so no transport sees
        // more than its setup rate.
        let batch_start = sim.now();
        let mut next = first;
        for _ in 0..100_000 {
            while next < jobs.len() && sim.now() >= batch_start + PACE * (next - first) as u32 {
                start(&mut sim, &graph, &mut jobs[next], next as u64);
                next += 1;
            }
            if next == jobs.len() && jobs[first..].iter().all(|j| j.result.is_some()) {
                break;
            }
            if sim.now() >= next_keepalive {
                keepalive(&mut sim, &jobs);
                next_keepalive += KEEPALIVE;
            }
            if let Some((k, at)) = dying
                && sim.now() >= at
            {
                sim.kill(k);
                dying = None;
            }
            sim.step();
            let events = std::mem::take(&mut sim.events);
            for (node, ev) in events {
                match ev {
                    Event::LegUp {
                        leg,
                        group_id,
                        initiator: true,
                        path,
                        ..
                    } => {
                        let job = &mut jobs[group_id as usize];
                        assert_eq!(node, job.src);
                        job.waiting = None;
                        job.used.extend_from_slice(&path[1..path.len() - 1]);
                        job.legs.push((leg, path));
                        if job.legs.len() == job.legs_wanted {
                            job.result = Some(Ok(()));
                        } else {
                            start(&mut sim, &graph, job, group_id);
                        }
                    }
                    Event::SetupFailed {
                        group_id, reason, ..
                    } => {
                        let job = &mut jobs[group_id as usize];
                        assert_eq!(node, job.src);
                        job.waiting = None;
                        let culprit = blamed(&sim, &reason)
                            .filter(|k| *k != sim.keys[job.src] && *k != sim.keys[job.dst]);
                        match culprit {
                            Some(k) if job.retries < ATTEMPTS => {
                                job.retries += 1;
                                job.avoid.push(k);
                                start(&mut sim, &graph, job, group_id);
                            }
                            _ => job.result = Some(Err(reason)),
                        }
                    }
                    Event::LegDown { reason, .. } => leg_downs.push(reason),
                    _ => {}
                }
            }
        }
        assert!(
            jobs[first..].iter().all(|j| j.result.is_some()),
            "batch {batch} did not finish"
        );
    }
    for j in jobs.iter_mut().filter(|j| j.legs_wanted > 1 && j.possible) {
        let mut live2 = j.live.clone();
        match j.legs.first() {
            Some((_, first)) => {
                for k in &first[1..first.len() - 1] {
                    live2[sim.idx(k)] = false;
                }
                j.possible = exists(&adj, &live2, j.src, j.dst, &j.spec, &[]);
            }
            None => j.possible = false,
        }
    }
    if std::env::var("SIM_DEBUG").is_ok() {
        for j in jobs
            .iter()
            .filter(|j| j.possible != (j.result == Some(Ok(()))))
        {
            eprintln!(
                "{} {} -> {} {} attempts={} avoid={:?} {:?}",
                j.policy,
                j.src,
                j.dst,
                j.possible,
                j.attempts,
                j.avoid.iter().map(|k| sim.idx(k)).collect::<Vec<_>>(),
                j.result
            );
        }
        for (i, c) in sim.cores.iter().enumerate() {
            let d: Vec<_> = c.drops().iter().filter(|(_, n)| *n > 0).collect();
            if !d.is_empty() {
                eprintln!("node {i}: {d:?}");
            }
        }
    }
    let succeeded = jobs.iter().filter(|j| j.result == Some(Ok(()))).count();
    eprintln!(
        "seed {seed}: {} setups, {succeeded} up, {} retried after a failure, virtual {:?}, fabric {:?}",
        jobs.len(),
        jobs.iter().filter(|j| j.retries > 0).count(),
        sim.now(),
        sim.fabric.stats()
    );
    let possible = jobs.iter().filter(|j| j.possible).count();
    let retried = jobs
        .iter()
        .filter(|j| j.retries > 0 && j.result == Some(Ok(())))
        .count();
    let reasons = jobs
        .iter()
        .filter_map(|j| j.result.clone().and_then(Result::err))
        .collect::<Vec<_>>();
    Run {
        succeeded,
        failed: jobs.len() - succeeded,
        possible,
        retried,
        leg_downs,
        reasons,
        sim,
        jobs,
    }
}

/// Starts the job's next setup attempt (or fails it with the path search's reason). A first
/// hop this source has no transport to (the published graph is stale) is avoided like a hop
/// that failed.
fn start(sim: &mut Sim, graph: &Graph, job: &mut Job, group: u64) {
    loop {
        job.attempts += 1;
        let mut avoid = job.avoid.clone();
        avoid.extend_from_slice(&job.used);
        let (src, dst) = (sim.keys[job.src], sim.keys[job.dst]);
        let path = match paths(graph, &src, &dst, &job.spec, &avoid, 1) {
            Err(why) => {
                job.result = Some(Err(why));
                return;
            }
            Ok(found) => found.into_iter().next().expect("at least one"),
        };
        let now = sim.now();
        let leg = job.legs.len() as u8;
        match sim.cores[job.src].start_setup(&path, group, leg, now) {
            Ok(id) => {
                job.waiting = Some((id, path));
                return;
            }
            Err(SetupError::NoTransport(pk)) if pk != dst && job.retries < ATTEMPTS => {
                job.retries += 1;
                job.avoid.push(pk);
            }
            Err(e) => {
                job.result = Some(Err(e.to_string()));
                return;
            }
        }
    }
}

/// Keep-alives on every leg still up, as route groups send them.
fn keepalive(sim: &mut Sim, jobs: &[Job]) {
    let now = sim.now();
    for j in jobs {
        for (leg, _) in &j.legs {
            let mut buf = Repr::new(PacketType::KeepAlive, 0, 0)
                .map(|r| {
                    let mut b = vec![0u8; r.buffer_len()];
                    r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
                    b
                })
                .unwrap();
            if let Some(tp) = sim.cores[j.src].prepare_send(*leg, &mut buf, now) {
                sim.send(j.src, tp, buf);
            }
        }
    }
}

/// Every failure says why: a path-search reason, or a hop's reason naming a node.
fn assert_reasons_say_why(r: &Run, blame: usize) {
    let victim = short(&key(blame));
    for why in &r.reasons {
        let known = ["has no transports", "no path"]
            .iter()
            .any(|k| why.contains(k))
            || why.contains(&format!("no answer from {victim}"))
            || why.contains(&format!("transport to {victim} down"));
        assert!(known, "{why}");
    }
}

fn perfect() -> Link {
    Link::perfect(Duration::from_millis(4))
}

/// Closes every leg at its source and lets the closes travel.
fn close_all(r: &mut Run) {
    let now = r.sim.now();
    for j in &r.jobs {
        for (leg, _) in &j.legs {
            if !r.sim.dead.contains(&j.src) {
                r.sim.cores[j.src].close_leg(*leg, now);
            }
        }
    }
    for _ in 0..500 {
        r.sim.step();
    }
}

fn expire(r: &mut Run) {
    let end = r.sim.now() + Duration::from_secs(32);
    while r.sim.now() < end {
        r.sim.step();
    }
}

#[test]
fn thousand_setups_on_a_clean_fabric() {
    let mut r = run(11, perfect(), true, 1000, &|_, _| None);
    assert_eq!(r.succeeded + r.failed, 1000);
    assert_eq!(
        r.succeeded,
        r.possible,
        "every possible setup succeeds: {:?}",
        &r.reasons[..5.min(r.reasons.len())]
    );
    assert_eq!((r.succeeded, r.retried), (645, 0));
    // Each impossible one fails with the reason the path search gives on the same graph, and
    // that reason names the constraint.
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for j in r.jobs.iter().filter(|j| !j.possible) {
        let why = j.result.clone().unwrap().unwrap_err();
        let kind = [
            "has no transports",
            "no path within",
            "with ≥",
            "via",
            "no path from",
            "avoiding",
        ]
        .into_iter()
        .find(|k| why.contains(k))
        .unwrap_or_else(|| panic!("{:?} {}: {why}", j.policy, j.src));
        *kinds.entry(kind).or_default() += 1;
    }
    eprintln!("impossible setups by reason: {kinds:?}");
    assert!(kinds.len() >= 4, "{kinds:?}");
    // Legs of every length were set up, data crosses them, and closing them leaves no rule.
    let hops: HashSet<usize> = r
        .jobs
        .iter()
        .flat_map(|j| j.legs.iter().map(|(_, p)| p.len() - 1))
        .collect();
    assert_eq!(hops, (1..=4).collect());
    assert!(r.sim.rules() > 0);
    close_all(&mut r);
    assert_eq!(r.sim.rules(), 0);
    let drops: u64 = r.sim.cores.iter().map(|c| c.drops().total()).sum();
    assert_eq!(drops, 0);
}

#[test]
fn a_silent_node_is_routed_around() {
    let mut r = run(12, perfect(), true, 300, &|sim, batch| {
        (batch == 0).then(|| {
            let k = sim.busiest();
            sim.silent.insert(k);
            k
        })
    });
    let silent = *r.sim.silent.iter().next().expect("a silent node");
    assert_eq!(
        r.succeeded,
        r.possible,
        "{:?}",
        &r.reasons[..5.min(r.reasons.len())]
    );
    assert!(r.retried > 0, "some setup met the silent node and retried");
    assert_eq!((r.succeeded, r.failed), (201, 99));
    // A timeout is the last word only when the silent node is the destination itself.
    for j in r.jobs.iter().filter(|j| j.dst != silent) {
        if let Some(Err(why)) = &j.result {
            assert!(!why.contains("no answer from"), "{why}");
        }
    }
    assert_reasons_say_why(&r, silent);
    let s = short(&key(silent));
    let blamed = r
        .reasons
        .iter()
        .filter(|w| w.contains(&format!("no answer from {s}")))
        .count();
    assert!(blamed > 0);
    close_all(&mut r);
    expire(&mut r);
    assert_eq!(r.sim.rules(), 0, "no orphan rule after expiry");
}

#[test]
fn a_node_killed_mid_setup() {
    let mut r = run(13, perfect(), true, 300, &|sim, batch| {
        (batch == 2).then(|| sim.busiest())
    });
    assert_eq!(r.sim.dead.len(), 1);
    assert_eq!(
        r.succeeded,
        r.possible,
        "{:?}",
        &r.reasons[..5.min(r.reasons.len())]
    );
    assert!(
        r.retried > 0,
        "setups in flight through the victim were retried"
    );
    assert!(!r.leg_downs.is_empty(), "legs through the victim went down");
    let victim = *r.sim.dead.iter().next().unwrap();
    let gone = format!("transport to {} down", short(&key(victim)));
    assert!(
        r.leg_downs.iter().all(|w| w.ends_with(&gone)),
        "{:?}",
        r.leg_downs
    );
    assert_reasons_say_why(&r, victim);
    close_all(&mut r);
    expire(&mut r);
    assert_eq!(r.sim.rules(), 0, "no orphan rule after expiry");
}

fn lossy() -> Link {
    Link {
        loss: 0.05,
        reorder: 0.05,
        delay: Duration::from_millis(4),
        jitter: Duration::from_millis(10),
    }
}

/// The checks can fail: the same lossy fabric without the Arq's repair loses setups.
#[test]
fn lossy_fabric_without_repair_fails_setups() {
    let r = run(14, lossy(), false, 300, &|_, _| None);
    assert!(r.sim.fabric.stats().lost > 0);
    assert!(
        r.succeeded < r.possible,
        "{} of {}",
        r.succeeded,
        r.possible
    );
}

#[test]
fn lossy_fabric_with_repair_and_data_through_four_hops() {
    let link = lossy();
    let mut r = run(14, link, true, 1000, &|_, _| None);
    assert_eq!(
        r.succeeded,
        r.possible,
        "{:?}",
        &r.reasons[..5.min(r.reasons.len())]
    );
    assert_eq!(r.succeeded, 692);
    let s = r.sim.fabric.stats();
    assert!(s.lost > 0 && s.reordered > 0, "{s:?}");
    // 20 packets over every 4-hop leg, source to destination.
    let legs: Vec<(usize, usize, LegRef)> = r
        .jobs
        .iter()
        .flat_map(|j| {
            j.legs
                .iter()
                .filter(|(_, p)| p.len() == 5)
                .map(move |(l, _)| (j.src, j.dst, *l))
        })
        .collect();
    assert!(legs.len() >= 10, "{}", legs.len());
    let mut sent = 0;
    for (s, _, leg) in &legs {
        for i in 0..20u32 {
            let payload = [
                (*s as u32).to_be_bytes(),
                leg.0.to_be_bytes(),
                i.to_be_bytes(),
            ]
            .concat();
            let repr = Repr::new(PacketType::Data, 0, payload.len()).unwrap();
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
            buf[HEADER_LEN..].copy_from_slice(&payload);
            let now = r.sim.now();
            let tp = r.sim.cores[*s]
                .prepare_send(*leg, &mut buf, now)
                .expect("leg up");
            r.sim.send(*s, tp, buf);
            sent += 1;
        }
    }
    for _ in 0..5_000 {
        r.sim.step();
    }
    let mut by_leg: HashMap<(usize, u32), Vec<u32>> = HashMap::new();
    for (node, _leg, pkt) in &r.sim.delivered {
        let p = &pkt[HEADER_LEN..];
        let word = |i: usize| u32::from_be_bytes(p[4 * i..4 * i + 4].try_into().unwrap());
        let (src, leg) = (word(0) as usize, word(1));
        let (_, d, _) = legs
            .iter()
            .find(|l| (l.0, l.2.0) == (src, leg))
            .expect("a leg we sent on");
        assert_eq!(node, d, "delivered at the leg's destination");
        by_leg.entry((src, leg)).or_default().push(word(2));
    }
    assert_eq!(by_leg.values().map(Vec::len).sum::<usize>(), sent);
    for seqs in by_leg.values() {
        assert_eq!(*seqs, (0..20).collect::<Vec<_>>());
    }
    close_all(&mut r);
    assert_eq!(r.sim.rules(), 0);
}
