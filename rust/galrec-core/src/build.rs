//! Linear-time CSR construction: a stable counting sort (histogram, prefix sum, scatter) per
//! direction, parallel over edge chunks, with duplicate (user, item) pairs removed in place.
//!
//! Within a node, neighbours keep the order of (timestamp, input position); without timestamps
//! that is the input order. A duplicate pair keeps its first occurrence in that order.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use rayon::prelude::*;

use crate::error::Result;
use crate::memory::{try_filled, try_par_collect, try_with_capacity, try_zeroed};

/// One direction of the graph while it is being built.
pub(crate) struct Grouped {
    /// `offsets[k]..offsets[k + 1]` are the entries of key `k`.
    pub offsets: Vec<u64>,
    /// The input edge index of every entry (empty when not requested).
    pub perm: Vec<u32>,
    /// The other endpoint of every entry.
    pub neighbors: Vec<u32>,
}

/// How many independent chunks to histogram and scatter: one per thread, but never so many
/// that the per-chunk histograms outweigh the arrays being sorted.
fn chunk_count(len: usize, num_keys: usize) -> usize {
    if len < (1 << 16) {
        return 1;
    }
    let by_memory = (len / num_keys.max(1)).max(1);
    crate::parallel::num_threads().min(by_memory).max(1)
}

fn chunk_bounds(len: usize, chunks: usize, c: usize) -> std::ops::Range<usize> {
    (len * c / chunks)..(len * (c + 1) / chunks)
}

/// Views a slice of `u32` as atomics so chunks scattering to disjoint positions can share it.
fn as_atomic(values: &mut [u32]) -> &[AtomicU32] {
    const _: () = assert!(std::mem::align_of::<AtomicU32>() == std::mem::align_of::<u32>());
    // SAFETY: `AtomicU32` has the same size and bit validity as `u32` (std docs) and, as the
    // assertion above checks, the same alignment, so the cast slice covers the same bytes
    // with valid values. The exclusive borrow we hold guarantees no non-atomic access to
    // these bytes while the returned shared borrow lives (this is what the unstable
    // `AtomicU32::from_mut_slice` does).
    unsafe { &*(values as *mut [u32] as *const [AtomicU32]) }
}

/// Groups `len` edges (the `i`-th being `edge_at(i)`) by `key_of(edge) < num_keys`, stably,
/// recording `neighbor_of(edge)` (and the edge index when `with_perm`) per entry.
///
/// The caller guarantees every key is below `num_keys` and `len <= u32::MAX`. Every array is
/// allocated fallibly (`num_keys` is the caller's to choose).
pub(crate) fn counting_sort<E, K, N>(
    len: usize,
    num_keys: usize,
    edge_at: E,
    key_of: K,
    neighbor_of: N,
    with_perm: bool,
) -> Result<Grouped>
where
    E: Fn(usize) -> u32 + Sync,
    K: Fn(u32) -> u32 + Sync,
    N: Fn(u32) -> u32 + Sync,
{
    let chunks = chunk_count(len, num_keys);
    let mut next: Vec<Vec<u32>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let mut hist = try_zeroed::<u32>(num_keys, "counting-sort histogram")?;
            for i in chunk_bounds(len, chunks, c) {
                hist[key_of(edge_at(i)) as usize] += 1;
            }
            Ok(hist)
        })
        .collect::<Result<_>>()?;
    // Prefix sum: chunk c's entries of key k start after all of key k's entries of chunks < c,
    // which is what makes the parallel scatter stable.
    let mut offsets = try_zeroed::<u64>(num_keys + 1, "offsets")?;
    let mut running = 0u32;
    for (k, offset) in offsets.iter_mut().enumerate().take(num_keys) {
        *offset = u64::from(running);
        for hist in next.iter_mut() {
            let count = hist[k];
            hist[k] = running;
            running += count;
        }
    }
    offsets[num_keys] = u64::from(running);

    // Chunks write disjoint positions; relaxed atomic stores compile to plain stores.
    // The sampler's random reads land here: back it by huge pages (fewer TLB misses).
    let mut neighbors = crate::hugepages::zeroed_u32(len, "neighbours")?;
    let mut perm = try_zeroed::<u32>(if with_perm { len } else { 0 }, "edge permutation")?;
    let (neighbor_slots, perm_slots) = (as_atomic(&mut neighbors), as_atomic(&mut perm));
    next.into_par_iter().enumerate().for_each(|(c, mut next)| {
        for i in chunk_bounds(len, chunks, c) {
            let e = edge_at(i);
            let slot = &mut next[key_of(e) as usize];
            let p = *slot as usize;
            *slot += 1;
            neighbor_slots[p].store(neighbor_of(e), Relaxed);
            if with_perm {
                perm_slots[p].store(e, Relaxed);
            }
        }
    });
    Ok(Grouped {
        offsets,
        perm,
        neighbors,
    })
}

/// Key ranges of about equal entry counts, for parallel passes over groups that need a
/// marker array of `num_neighbors` entries each (so no more ranges than the entries justify).
fn key_ranges(offsets: &[u64], num_neighbors: usize) -> Vec<std::ops::Range<usize>> {
    let num_keys = offsets.len() - 1;
    let len = offsets[num_keys] as usize;
    let threads = crate::parallel::num_threads();
    let chunks = (len / num_neighbors.max(1)).clamp(1, threads * 4);
    let mut bounds: Vec<usize> = (0..chunks)
        .map(|c| {
            offsets
                .partition_point(|&o| o < (len * c / chunks) as u64)
                .min(num_keys)
        })
        .collect();
    bounds.push(num_keys);
    bounds.dedup();
    bounds.windows(2).map(|w| w[0]..w[1]).collect()
}

/// The marker array of a dedupe pass: per neighbour, the last group that held it.
fn seen_by(num_neighbors: usize) -> Result<Vec<u32>> {
    try_filled(u32::MAX, num_neighbors, "deduplication markers")
}

/// How many entries repeat an earlier neighbour of the same group.
pub(crate) fn count_duplicates(grouped: &Grouped, num_neighbors: usize) -> Result<usize> {
    let (offsets, neighbors) = (&grouped.offsets, &grouped.neighbors);
    key_ranges(offsets, num_neighbors)
        .into_par_iter()
        .map(|keys| {
            let mut seen_by = seen_by(num_neighbors)?;
            let mut repeats = 0;
            for k in keys {
                for &v in &neighbors[offsets[k] as usize..offsets[k + 1] as usize] {
                    let mark = &mut seen_by[v as usize];
                    repeats += usize::from(*mark == k as u32);
                    *mark = k as u32;
                }
            }
            Ok(repeats)
        })
        .try_reduce(|| 0, |a, b| Ok(a + b))
}

/// Removes repeated neighbours within every group, keeping the first; returns how many entries
/// were removed. `num_neighbors` bounds the neighbour ids.
pub(crate) fn dedupe(grouped: &mut Grouped, num_neighbors: usize) -> Result<usize> {
    let num_keys = grouped.offsets.len() - 1;
    let len = grouped.neighbors.len();
    if len == 0 {
        return Ok(0);
    }
    let key_bounds = key_ranges(&grouped.offsets, num_neighbors);
    let offsets = &grouped.offsets;
    let has_perm = !grouped.perm.is_empty();
    let mut pieces = Vec::with_capacity(key_bounds.len());
    let (mut rest_n, mut rest_p) = (&mut grouped.neighbors[..], &mut grouped.perm[..]);
    for keys in key_bounds {
        let size = (offsets[keys.end] - offsets[keys.start]) as usize;
        let (n, tail_n) = rest_n.split_at_mut(size);
        let (p, tail_p) = rest_p.split_at_mut(if has_perm { size } else { 0 });
        rest_n = tail_n;
        rest_p = tail_p;
        pieces.push((keys, n, p));
    }
    let new_degrees: Vec<Vec<u32>> = pieces
        .into_par_iter()
        .map(|(keys, neighbors, perm)| {
            let base = offsets[keys.start];
            let mut seen_by = seen_by(num_neighbors)?;
            let mut degrees = try_with_capacity(keys.len(), "degrees")?;
            degrees.extend(keys.map(|k| {
                let start = (offsets[k] - base) as usize;
                let end = (offsets[k + 1] - base) as usize;
                let mut kept = start;
                for r in start..end {
                    let v = neighbors[r];
                    let mark = &mut seen_by[v as usize];
                    if *mark != k as u32 {
                        *mark = k as u32;
                        neighbors[kept] = v;
                        if has_perm {
                            perm[kept] = perm[r];
                        }
                        kept += 1;
                    }
                }
                (kept - start) as u32
            }));
            Ok(degrees)
        })
        .collect::<Result<_>>()?;

    let mut new_offsets = try_with_capacity(num_keys + 1, "offsets")?;
    new_offsets.push(0u64);
    let mut write = 0usize;
    for (k, degree) in new_degrees.into_iter().flatten().enumerate() {
        let read = grouped.offsets[k] as usize;
        let degree = degree as usize;
        if write != read {
            grouped.neighbors.copy_within(read..read + degree, write);
            if has_perm {
                grouped.perm.copy_within(read..read + degree, write);
            }
        }
        write += degree;
        new_offsets.push(write as u64);
    }
    let removed = len - write;
    grouped.neighbors.truncate(write);
    grouped.perm.truncate(if has_perm { write } else { 0 });
    grouped.offsets = new_offsets;
    Ok(removed)
}

/// A sort key whose unsigned order is the numeric order of the timestamp.
pub(crate) fn int_time_key(t: i64) -> u64 {
    (t as u64) ^ (1 << 63)
}

/// A sort key whose unsigned order is `f64::total_cmp` order.
pub(crate) fn float_time_key(t: f64) -> u64 {
    let bits = t.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// The edge order (timestamp, then input position), or `None` when the input already is in
/// that order.
pub(crate) fn time_order(keys: &[u64]) -> Result<Option<Vec<u32>>> {
    if keys.par_windows(2).all(|w| w[0] <= w[1]) {
        return Ok(None);
    }
    let mut pairs = try_par_collect(
        keys.par_iter().enumerate().map(|(e, &k)| (k, e as u32)),
        "timestamp order",
    )?;
    // Pairs are distinct (the index breaks ties), so the unstable sort is deterministic.
    pairs.par_sort_unstable();
    try_par_collect(pairs.into_par_iter().map(|(_, e)| e), "timestamp order").map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_sort_groups_stably() -> Result<()> {
        let keys = [2u32, 0, 2, 1, 0];
        let other = [10u32, 11, 12, 13, 14];
        let g = counting_sort(
            5,
            3,
            |i| i as u32,
            |e| keys[e as usize],
            |e| other[e as usize],
            true,
        )?;
        assert_eq!(g.offsets, vec![0, 2, 3, 5]);
        assert_eq!(g.neighbors, vec![11, 14, 13, 10, 12]);
        assert_eq!(g.perm, vec![1, 4, 3, 0, 2]);
        Ok(())
    }

    #[test]
    fn counting_sort_in_parallel_equals_sequential() {
        let len = 200_000usize;
        let keys: Vec<u32> = (0..len).map(|i| ((i * 7919) % 1000) as u32).collect();
        let run = |threads| {
            crate::parallel::with_threads(Some(threads), || {
                counting_sort(len, 1000, |i| i as u32, |e| keys[e as usize], |e| e, true)
            })
            .ok()
            .and_then(|g| g.ok())
            .map(|g| (g.offsets, g.perm, g.neighbors))
        };
        assert_eq!(run(1), run(2));
        let (offsets, perm, _) = run(2).unwrap_or_default();
        for k in 0..1000 {
            let group = &perm[offsets[k] as usize..offsets[k + 1] as usize];
            assert!(
                group.windows(2).all(|w| w[0] < w[1]),
                "group {k} not stable"
            );
        }
    }

    #[test]
    fn dedupe_keeps_first_occurrence() -> Result<()> {
        let keys = [0u32, 0, 1, 0, 1, 2];
        let other = [5u32, 6, 5, 5, 5, 6];
        let mut g = counting_sort(
            6,
            3,
            |i| i as u32,
            |e| keys[e as usize],
            |e| other[e as usize],
            true,
        )?;
        assert_eq!(count_duplicates(&g, 7)?, 2);
        assert_eq!(dedupe(&mut g, 7)?, 2);
        assert_eq!(count_duplicates(&g, 7)?, 0);
        assert_eq!(g.offsets, vec![0, 2, 3, 4]);
        assert_eq!(g.neighbors, vec![5, 6, 5, 6]);
        assert_eq!(g.perm, vec![0, 1, 2, 5]);
        Ok(())
    }

    #[test]
    fn time_keys_preserve_order() {
        let ints = [i64::MIN, -5, 0, 3, i64::MAX];
        assert!(ints
            .windows(2)
            .all(|w| int_time_key(w[0]) < int_time_key(w[1])));
        let floats = [
            f64::NEG_INFINITY,
            -2.5,
            -0.0,
            0.0,
            1e-300,
            7.0,
            f64::INFINITY,
        ];
        assert!(floats
            .windows(2)
            .all(|w| float_time_key(w[0]) < float_time_key(w[1])));
        assert_eq!(time_order(&[1, 2, 2, 9]).ok(), Some(None));
        assert_eq!(time_order(&[5, 1, 5, 0]).ok(), Some(Some(vec![3, 1, 0, 2])));
    }
}
