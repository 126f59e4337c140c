//! The one sort of the binary: an in-place heapsort behind a `dyn` comparator.
//!
//! `slice::sort*` is fast, but each element type and comparator instantiates its own copy of
//! driftsort or ipnsort (1.5–6 KiB of armv7 code each; ~27 KiB in the minimal build, where
//! none of the sorted lists is hot). A heapsort is O(n log n) in the worst case, needs no
//! buffer, and with the comparator behind `&mut dyn FnMut` it is instantiated once per
//! element type, ~200 bytes. It is not stable: use it where equal keys are indistinguishable
//! or their order does not matter (every caller so far). Tests and benches may use std's.

use core::cmp::Ordering;

/// Sorts `v` ascending by `less` (a strict weak order: `less(a, b)` means a goes before b).
pub fn sort_by<T>(v: &mut [T], less: &mut dyn FnMut(&T, &T) -> bool) {
    let n = v.len();
    if n < 2 {
        return;
    }
    for i in (0..n / 2).rev() {
        sift_down(v, i, n, less);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end, less);
    }
}

/// Sorts `v` ascending.
pub fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, &mut |a: &T, b: &T| a < b);
}

/// Sorts `v` ascending by `key`.
pub fn sort_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    sort_by(v, &mut |a: &T, b: &T| key(a) < key(b));
}

/// Sorts `v` by a three-way comparison.
pub fn sort_by_cmp<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    sort_by(v, &mut |a: &T, b: &T| cmp(a, b) == Ordering::Less);
}

/// Moves `v[node]` down the max-heap `v[..end]` until both children are not greater.
fn sift_down<T>(v: &mut [T], mut node: usize, end: usize, less: &mut dyn FnMut(&T, &T) -> bool) {
    loop {
        let mut child = 2 * node + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && less(&v[child], &v[child + 1]) {
            child += 1;
        }
        if !less(&v[node], &v[child]) {
            return;
        }
        v.swap(node, child);
        node = child;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against std's sort: every length to 40 and some long ones, with many equal keys.
    #[test]
    fn sorts_like_std() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for n in (0..40).chain([100, 1000, 4097]) {
            for modulo in [2u64, 7, 1 << 40] {
                let v: Vec<u64> = (0..n).map(|_| next() % modulo).collect();
                let mut a = v.clone();
                let mut b = v;
                sort(&mut a);
                b.sort_unstable();
                assert_eq!(a, b, "n={n} modulo={modulo}");
            }
        }
        let mut pairs: Vec<(u8, &str)> = vec![(3, "c"), (1, "a"), (2, "b"), (1, "z")];
        sort_by_key(&mut pairs, |p| p.0);
        assert_eq!(pairs.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 1, 2, 3]);
        sort_by_cmp(&mut pairs, |a, b| b.1.cmp(a.1));
        assert_eq!(
            pairs.iter().map(|p| p.1).collect::<Vec<_>>(),
            ["z", "c", "b", "a"]
        );
    }
}
