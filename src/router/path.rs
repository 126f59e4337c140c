//! Path search over the published transport graph (DESIGN.md §3.8).
//!
//! The caller builds a [`Graph`] from discovery entries (each visor publishes its live links;
//! [`Graph::add_link`] records one both ways) and asks [`paths`] for up to `k` simple paths
//! from a source to a destination that honour a [`PathSpec`]: at least `min_hops` and at most
//! `max_hops` transport hops (default [`DEFAULT_MAX_HOPS`]), passing the `via` keys in order,
//! and avoiding the intermediaries in `avoid` (so a retry after a failure, or a second `mux:N`
//! leg, is node-disjoint from the legs it must not share). Shortest paths come first; paths of
//! one length come in key order, so a search is deterministic.
//!
//! The search is a depth-first enumeration by increasing length, pruned by breadth-first
//! distances to the next `via` key and to the destination (a branch that cannot reach them in
//! the hops left is never walked). Its work is capped: at most [`SEARCH_BUDGET`] node
//! expansions per call (per diagnosis step when nothing is found); past that it returns what it
//! found, or says it gave up. When no path exists the error says why: "b has no transports",
//! "no path from a to b", "no path within 4 hops from a to b", "no path via c from a to b",
//! "no path with ≥ 3 hops from a to b", or that the nodes to avoid leave none. Keys are named
//! by their first 8 hex digits ([`short`]).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::crypto::PublicKey;

/// Most transport hops a path may have by default (and at all: a setup carries 9 keys).
pub const DEFAULT_MAX_HOPS: usize = 8;
/// Node expansions one search may make.
pub const SEARCH_BUDGET: usize = 100_000;

/// The first 8 hex digits of a key: how reasons and logs name a node.
pub fn short(pk: &PublicKey) -> String {
    let mut s = pk.to_hex();
    s.truncate(8);
    s
}

/// The transport graph: for each key, its neighbours and the transport type codes of the
/// links to them (1 stcp, 2 dmsg — the type byte of the transport id).
#[derive(Debug, Clone, Default)]
pub struct Graph {
    adj: BTreeMap<PublicKey, BTreeMap<PublicKey, Vec<u8>>>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Records a node (with no links yet).
    pub fn add_node(&mut self, pk: PublicKey) {
        self.adj.entry(pk).or_default();
    }

    /// Records a link of type `kind` between `a` and `b`, both ways (a self-link is ignored).
    pub fn add_link(&mut self, a: PublicKey, b: PublicKey, kind: u8) {
        if a == b {
            return;
        }
        for (x, y) in [(a, b), (b, a)] {
            let kinds = self.adj.entry(x).or_default().entry(y).or_default();
            if !kinds.contains(&kind) {
                kinds.push(kind);
                crate::sort::sort(kinds);
            }
        }
    }

    /// Removes every link between `a` and `b`.
    pub fn remove_link(&mut self, a: &PublicKey, b: &PublicKey) {
        if let Some(n) = self.adj.get_mut(a) {
            n.remove(b);
        }
        if let Some(n) = self.adj.get_mut(b) {
            n.remove(a);
        }
    }

    /// Removes a node and its links.
    pub fn remove_node(&mut self, pk: &PublicKey) {
        if let Some(n) = self.adj.remove(pk) {
            for other in n.keys() {
                if let Some(m) = self.adj.get_mut(other) {
                    m.remove(pk);
                }
            }
        }
    }

    /// Whether the graph knows `pk`.
    pub fn contains(&self, pk: &PublicKey) -> bool {
        self.adj.contains_key(pk)
    }

    /// Nodes known.
    pub fn len(&self) -> usize {
        self.adj.len()
    }

    /// True when no node is known.
    pub fn is_empty(&self) -> bool {
        self.adj.is_empty()
    }

    /// Every node, in key order.
    pub fn nodes(&self) -> impl Iterator<Item = &PublicKey> + '_ {
        self.adj.keys()
    }

    /// The neighbours of `pk` with their link types, in key order.
    pub fn neighbours(&self, pk: &PublicKey) -> impl Iterator<Item = (&PublicKey, &[u8])> + '_ {
        self.adj
            .get(pk)
            .into_iter()
            .flat_map(|n| n.iter().map(|(k, v)| (k, v.as_slice())))
    }

    /// The link types between `a` and `b` (empty if none).
    pub fn link_types(&self, a: &PublicKey, b: &PublicKey) -> &[u8] {
        self.adj
            .get(a)
            .and_then(|n| n.get(b))
            .map_or(&[][..], |v| v.as_slice())
    }

    fn has_links(&self, pk: &PublicKey) -> bool {
        self.adj.get(pk).is_some_and(|n| !n.is_empty())
    }

    /// Hop distances to `to` from every node reachable without entering `avoid`.
    fn distances(&self, to: &PublicKey, avoid: &[PublicKey]) -> HashMap<PublicKey, usize> {
        let mut dist = HashMap::new();
        dist.insert(*to, 0);
        let mut queue = VecDeque::from([*to]);
        while let Some(u) = queue.pop_front() {
            let d = dist[&u];
            for (v, _) in self.neighbours(&u) {
                if !dist.contains_key(v) && !avoid.contains(v) {
                    dist.insert(*v, d + 1);
                    queue.push_back(*v);
                }
            }
        }
        dist
    }
}

/// What a path must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSpec {
    /// Fewest transport hops.
    pub min_hops: usize,
    /// Most transport hops.
    pub max_hops: usize,
    /// Keys the path must pass, in this order.
    pub via: Vec<PublicKey>,
}

impl Default for PathSpec {
    fn default() -> Self {
        PathSpec {
            min_hops: 1,
            max_hops: DEFAULT_MAX_HOPS,
            via: Vec::new(),
        }
    }
}

struct Search<'a> {
    g: &'a Graph,
    dst: PublicKey,
    /// `via` then the destination.
    targets: Vec<PublicKey>,
    /// Distances to each target.
    dist: Vec<HashMap<PublicKey, usize>>,
    /// Hops from target i to the destination through the later targets.
    rest: Vec<usize>,
    avoid: &'a [PublicKey],
    budget: usize,
    found: Vec<Vec<PublicKey>>,
    k: usize,
}

impl Search<'_> {
    fn lower_bound(&self, u: &PublicKey, i: usize) -> Option<usize> {
        Some(self.dist[i].get(u)? + self.rest[i])
    }

    fn dfs(&mut self, path: &mut Vec<PublicKey>, i: usize, len: usize) {
        let u = *path.last().expect("starts at the source");
        if path.len() - 1 == len {
            if u == self.dst && i == self.targets.len() {
                self.found.push(path.clone());
            }
            return;
        }
        let neighbours: Vec<PublicKey> = self.g.neighbours(&u).map(|(v, _)| *v).collect();
        for v in neighbours {
            if self.found.len() >= self.k || self.budget == 0 {
                return;
            }
            if path.contains(&v) || (self.avoid.contains(&v) && v != self.dst) {
                continue;
            }
            let j = if v == self.targets[i] {
                i + 1
            } else if self.targets[i..].contains(&v) {
                continue; // a later target (or the destination) too early
            } else {
                i
            };
            let left = len - path.len();
            if j == self.targets.len() {
                if left != 0 {
                    continue;
                }
            } else if self.lower_bound(&v, j).is_none_or(|lb| lb > left) {
                continue;
            }
            self.budget -= 1;
            path.push(v);
            self.dfs(path, j, len);
            path.pop();
        }
    }
}

/// Up to `k` paths (node lists, `src` first, `dst` last) within `spec`, shortest first, whose
/// intermediaries avoid `avoid`; an empty result is an `Err` saying why (module docs).
pub fn paths(
    g: &Graph,
    src: &PublicKey,
    dst: &PublicKey,
    spec: &PathSpec,
    avoid: &[PublicKey],
    k: usize,
) -> Result<Vec<Vec<PublicKey>>, String> {
    let (a, b) = (short(src), short(dst));
    if src == dst {
        return Err(format!("{a} is both source and destination"));
    }
    if spec.max_hops == 0 || spec.max_hops > DEFAULT_MAX_HOPS {
        return Err(format!(
            "max hops must be 1 to {DEFAULT_MAX_HOPS}, not {}",
            spec.max_hops
        ));
    }
    if spec.min_hops > spec.max_hops {
        return Err(format!(
            "no path with ≥ {} hops within {} hops",
            spec.min_hops, spec.max_hops
        ));
    }
    if let Some(v) = spec.via.iter().find(|v| *v == src || *v == dst) {
        return Err(format!("via names an end of the route ({})", short(v)));
    }
    if let Some((_, v)) = spec
        .via
        .iter()
        .enumerate()
        .find(|(i, v)| spec.via[..*i].contains(v))
    {
        return Err(format!("via names {} twice", short(v)));
    }
    if !g.has_links(dst) {
        return Err(format!("{b} has no transports"));
    }
    if !g.has_links(src) {
        return Err(format!("{a} has no transports"));
    }
    let (found, exhausted) = search(g, src, dst, spec, avoid, k.max(1));
    if !found.is_empty() {
        return Ok(found);
    }
    if exhausted {
        return Err(format!(
            "path search from {a} to {b} gave up after {SEARCH_BUDGET} steps"
        ));
    }
    // Nothing: find the constraint that makes it impossible, loosest first.
    let d = g.distances(dst, &[]).get(src).copied();
    match d {
        None => return Err(format!("no path from {a} to {b}")),
        Some(d) if d > spec.max_hops => {
            return Err(format!(
                "no path within {} hops from {a} to {b}",
                spec.max_hops
            ));
        }
        _ => {}
    }
    if !spec.via.is_empty() {
        let loose = PathSpec {
            min_hops: 1,
            ..spec.clone()
        };
        if search(g, src, dst, &loose, &[], 1).0.is_empty() {
            let names: Vec<String> = spec.via.iter().map(short).collect();
            return Err(format!(
                "no path via {} from {a} to {b} within {} hops",
                names.join(","),
                spec.max_hops
            ));
        }
    }
    if spec.min_hops > 1 && search(g, src, dst, spec, &[], 1).0.is_empty() {
        return Err(format!(
            "no path with ≥ {} hops from {a} to {b} within {} hops",
            spec.min_hops, spec.max_hops
        ));
    }
    Err(format!(
        "no path from {a} to {b} avoiding {} node(s) that failed or are in use",
        avoid.len()
    ))
}

/// The paths found, and whether the budget ran out.
fn search(
    g: &Graph,
    src: &PublicKey,
    dst: &PublicKey,
    spec: &PathSpec,
    avoid: &[PublicKey],
    k: usize,
) -> (Vec<Vec<PublicKey>>, bool) {
    let mut targets = spec.via.clone();
    targets.push(*dst);
    let dist: Vec<HashMap<PublicKey, usize>> =
        targets.iter().map(|t| g.distances(t, avoid)).collect();
    let mut rest = vec![0usize; targets.len()];
    for i in (0..targets.len().saturating_sub(1)).rev() {
        match dist[i + 1].get(&targets[i]) {
            Some(d) => rest[i] = rest[i + 1] + d,
            None => return (Vec::new(), false),
        }
    }
    let mut s = Search {
        g,
        dst: *dst,
        targets,
        dist,
        rest,
        avoid,
        budget: SEARCH_BUDGET,
        found: Vec::new(),
        k,
    };
    let Some(lb) = s.lower_bound(src, 0) else {
        return (Vec::new(), false);
    };
    let mut path = vec![*src];
    for len in spec.min_hops.max(lb).max(1)..=spec.max_hops {
        s.dfs(&mut path, 0, len);
        if s.found.len() >= k || s.budget == 0 {
            break;
        }
    }
    let exhausted = s.budget == 0 && s.found.len() < k;
    (s.found, exhausted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn pk(n: u8) -> PublicKey {
        *Keypair::from_seed(&[n; 32]).public()
    }

    /// 1-2-3-4 in a line, 1-5-4 a shortcut, 6 isolated.
    fn graph() -> Graph {
        let mut g = Graph::new();
        for (a, b) in [(1, 2), (2, 3), (3, 4), (1, 5), (5, 4)] {
            g.add_link(pk(a), pk(b), 1);
        }
        g.add_link(pk(2), pk(3), 2);
        g.add_node(pk(6));
        g
    }

    fn spec(min: usize, max: usize, via: &[u8]) -> PathSpec {
        PathSpec {
            min_hops: min,
            max_hops: max,
            via: via.iter().map(|n| pk(*n)).collect(),
        }
    }

    fn nums(p: &[PublicKey]) -> Vec<u8> {
        p.iter()
            .map(|k| (1..=6).find(|n| pk(*n) == *k).unwrap())
            .collect()
    }

    #[test]
    fn shortest_first_and_link_types() {
        let g = graph();
        let got = paths(&g, &pk(1), &pk(4), &PathSpec::default(), &[], 5).unwrap();
        let got: Vec<Vec<u8>> = got.iter().map(|p| nums(p)).collect();
        assert_eq!(got, vec![vec![1, 5, 4], vec![1, 2, 3, 4]]);
        assert_eq!(g.link_types(&pk(2), &pk(3)), &[1, 2]);
        assert_eq!(g.link_types(&pk(3), &pk(2)), &[1, 2]);
        assert_eq!(g.neighbours(&pk(1)).count(), 2);
        assert!(g.link_types(&pk(1), &pk(4)).is_empty());
    }

    #[test]
    fn min_hops_via_and_avoid() {
        let g = graph();
        let p = paths(&g, &pk(1), &pk(4), &spec(3, 8, &[]), &[], 1).unwrap();
        assert_eq!(nums(&p[0]), vec![1, 2, 3, 4]);
        let p = paths(&g, &pk(1), &pk(4), &spec(1, 8, &[3]), &[], 3).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(nums(&p[0]), vec![1, 2, 3, 4]);
        let p = paths(&g, &pk(1), &pk(4), &PathSpec::default(), &[pk(5)], 3).unwrap();
        assert_eq!(nums(&p[0]), vec![1, 2, 3, 4]);
        let p = paths(&g, &pk(2), &pk(4), &spec(1, 8, &[1, 5]), &[], 3).unwrap();
        assert_eq!(nums(&p[0]), vec![2, 1, 5, 4]);
    }

    #[test]
    fn reasons_say_why() {
        let g = graph();
        let (a, b, c) = (short(&pk(1)), short(&pk(4)), short(&pk(3)));
        let err = |s: PathSpec, avoid: &[PublicKey], dst: u8| {
            paths(&g, &pk(1), &pk(dst), &s, avoid, 1).unwrap_err()
        };
        assert_eq!(
            err(spec(4, 8, &[]), &[], 4),
            format!("no path with ≥ 4 hops from {a} to {b} within 8 hops")
        );
        assert_eq!(
            err(spec(1, 1, &[]), &[], 4),
            format!("no path within 1 hops from {a} to {b}")
        );
        assert_eq!(
            err(spec(1, 2, &[3]), &[], 4),
            format!("no path via {c} from {a} to {b} within 2 hops")
        );
        assert_eq!(
            err(PathSpec::default(), &[], 6),
            format!("{} has no transports", short(&pk(6)))
        );
        assert_eq!(
            err(PathSpec::default(), &[pk(5), pk(2)], 4),
            format!("no path from {a} to {b} avoiding 2 node(s) that failed or are in use")
        );
        let mut split = graph();
        split.add_link(pk(6), pk(7), 1);
        assert_eq!(
            paths(&split, &pk(1), &pk(7), &PathSpec::default(), &[], 1).unwrap_err(),
            format!("no path from {a} to {}", short(&pk(7)))
        );
        assert!(err(spec(1, 8, &[4]), &[], 4).contains("via names an end"));
        assert!(err(spec(1, 8, &[3, 3]), &[], 4).contains("twice"));
        assert!(err(spec(1, 9, &[]), &[], 4).contains("max hops"));
        assert!(paths(&g, &pk(1), &pk(1), &PathSpec::default(), &[], 1).is_err());
    }

    #[test]
    fn work_is_bounded_on_a_dense_graph() {
        // A complete graph on 40 nodes has ~10^13 simple paths of 8 hops; the search must
        // stop at its budget rather than enumerate them.
        let mut g = Graph::new();
        let keys: Vec<PublicKey> = (1..=40).map(pk).collect();
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                g.add_link(keys[i], keys[j], 1);
            }
        }
        let p = paths(&g, &keys[0], &keys[1], &spec(8, 8, &[]), &[], 3).unwrap();
        assert_eq!(p.len(), 3);
        assert!(p.iter().all(|p| p.len() == 9));
        // A destination whose only neighbour is the source has no path of 8 hops, but the
        // distances cannot see that: the search walks the clique until its budget ends.
        let lone = pk(50);
        g.add_link(keys[0], lone, 1);
        let err = paths(&g, &keys[0], &lone, &spec(8, 8, &[]), &[], 1).unwrap_err();
        assert!(err.contains("gave up after 100000 steps"), "{err}");
    }
}
