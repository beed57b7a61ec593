//! Multi-hop neighbour sampling.
//!
//! Hop 1 samples, for every seed, up to `fanouts[0]` neighbours on the other side; hop `h + 1`
//! samples from every node of hop `h` (flattened, duplicates included). At every hop whose
//! children lie on the seeds' side (hops 2, 4, ...), the root seed is never sampled, not even
//! where a graph built without deduplication lists it several times.
//!
//! A hop whose output cannot fit in memory is refused before it is written (an invalid
//! `fanouts`, naming the hop and its size, see [`crate::memory`]); output allocations that
//! fail anyway are [`GraphError::OutOfMemory`].
//!
//! Each node's draw comes from its own counter-based stream keyed by (seed, epoch, hop, side,
//! node), so results do not depend on the thread count or on what else is in the batch.
//!
//! The loop over a chunk of parents runs in two phases (see PERFORMANCE.md): phase one reads
//! each parent's offsets (prefetching those of parents a few places ahead), writes the drawn
//! absolute edge positions into a scratch array and prefetches them into L2; phase two gathers
//! the neighbour ids, by which time most of those misses have been served. Each distinct
//! parent of a hop is drawn once (the draw depends on the node alone) and every occurrence
//! takes a copy, which at hop 2 of a power-law graph skips about half the work; on several
//! threads the distinct parents, then the copies, are shared out in chunks.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use rayon::prelude::*;

use crate::build::float_time_key;
use crate::error::{GraphError, Result};
use crate::graph::{BipartiteGraph, CsrView, Side};
use crate::memory::{
    bytes_for, check_fits, try_filled, try_reserve, try_with_capacity, try_zeroed,
};
use crate::parallel::{first_index, on_caller};
use crate::recycle;
use crate::rng::{HopKey, NodeRng};

/// How the neighbours of a node are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Without replacement, every k-subset equally likely.
    Uniform,
    /// The k latest by timestamp (the graph must have timestamps).
    Recent,
    /// Without replacement, by edge weight (Efraimidis–Spirakis; the graph must have weights).
    Weighted,
}

impl Strategy {
    /// Parses "uniform", "recent" or "weighted".
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "uniform" => Ok(Self::Uniform),
            "recent" => Ok(Self::Recent),
            "weighted" => Ok(Self::Weighted),
            other => Err(GraphError::invalid(
                "strategy",
                format!("must be 'uniform', 'recent' or 'weighted', got {other:?}"),
            )),
        }
    }
}

/// One sampling request.
#[derive(Clone, Copy, Debug)]
pub struct SampleSpec<'a> {
    pub seeds: &'a [u32],
    pub side: Side,
    /// Neighbours per parent at each hop; -1 takes all.
    pub fanouts: &'a [i64],
    pub strategy: Strategy,
    pub seed: u64,
    pub epoch: u64,
    /// (users, items) edges never traversed, in either direction.
    pub exclude: Option<(&'a [u32], &'a [u32])>,
}

/// One hop of the result: the children of parent `j` are `nodes[offsets[j]..offsets[j + 1]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hop {
    pub offsets: Vec<i64>,
    pub nodes: Vec<u32>,
}

/// Distinct parents per phase-one/phase-two pass (and per parallel task).
const CHUNK: usize = 256;
/// Parents per parallel task of phase three.
const EXPAND_CHUNK: usize = 1024;
/// How far ahead phase one prefetches parent offsets.
const PREFETCH_OFFSETS: usize = 8;
/// How far ahead phase two prefetches neighbour ids.
const PREFETCH_GATHER: usize = 16;
/// Up to this many draws, Floyd's algorithm checks membership by a linear scan.
const SMALL_DRAW: usize = 32;
/// Bytes per sampled node: its u32 id, and the u32 root it carries to the next hop.
const BYTES_PER_SAMPLED_NODE: u64 = 8;

/// Asks the CPU to bring the cache line at `p` into L1 (`HINT` = `_MM_HINT_T0`) or L2
/// (`_MM_HINT_T1`).
#[inline(always)]
fn prefetch_to<const HINT: i32, T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint to the cache: it never faults and changes no program
    // state, whatever the address, so any pointer value is sound here.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<HINT>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(target_arch = "x86_64")]
const TO_L1: i32 = core::arch::x86_64::_MM_HINT_T0;
#[cfg(target_arch = "x86_64")]
const TO_L2: i32 = core::arch::x86_64::_MM_HINT_T1;
#[cfg(not(target_arch = "x86_64"))]
const TO_L1: i32 = 0;
#[cfg(not(target_arch = "x86_64"))]
const TO_L2: i32 = 0;

#[inline(always)]
fn prefetch<T>(p: *const T) {
    prefetch_to::<TO_L1, T>(p);
}

/// Excluded edges seen from one side: for a parent, the sorted children it may not reach.
/// A small bit filter answers "no exclusions here" for most nodes without a search.
struct ExcludeIndex {
    filter: Vec<u64>,
    shift: u32,
    parents: Vec<u32>,
    starts: Vec<usize>,
    children: Vec<u32>,
}

impl ExcludeIndex {
    fn new(mut pairs: Vec<(u32, u32)>) -> Self {
        pairs.sort_unstable();
        pairs.dedup();
        let mut parents = Vec::new();
        let mut starts = Vec::new();
        for (i, &(p, _)) in pairs.iter().enumerate() {
            if parents.last() != Some(&p) {
                parents.push(p);
                starts.push(i);
            }
        }
        starts.push(pairs.len());
        let bits = (parents.len() * 16).max(64).next_power_of_two();
        let shift = 64 - bits.trailing_zeros();
        let mut filter = vec![0u64; bits / 64];
        for &p in &parents {
            let h = Self::hash(p, shift);
            filter[h >> 6] |= 1 << (h & 63);
        }
        Self {
            filter,
            shift,
            parents,
            starts,
            children: pairs.into_iter().map(|(_, c)| c).collect(),
        }
    }

    #[inline]
    fn hash(node: u32, shift: u32) -> usize {
        (u64::from(node).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize
    }

    #[inline]
    fn get(&self, node: u32) -> Option<&[u32]> {
        let h = Self::hash(node, self.shift);
        if (self.filter[h >> 6] >> (h & 63)) & 1 == 0 {
            return None;
        }
        let at = self.parents.binary_search(&node).ok()?;
        Some(&self.children[self.starts[at]..self.starts[at + 1]])
    }
}

/// What phase three removes from a parent's gathered neighbours.
#[derive(Clone, Copy)]
enum Removal {
    Nothing,
    /// Every occurrence of the root.
    Root,
    /// Every occurrence of the root if present, otherwise the entry at this index (one draw
    /// more than wanted).
    RootOr(u32),
}

#[derive(Clone, Copy)]
struct Plan {
    start: usize,
    len: usize,
    removal: Removal,
}

/// Everything one hop's parents share.
struct HopCtx<'a> {
    /// The hop's number, from 1 (for messages).
    hop: usize,
    csr: CsrView<'a>,
    key: HopKey,
    fanout: Option<usize>,
    strategy: Strategy,
    drop_root: bool,
    exclude: Option<&'a ExcludeIndex>,
}

/// Per-task scratch space, reused across the parents of a chunk.
#[derive(Default)]
struct Scratch {
    allowed: Vec<u64>,
    seen: HashSet<u64>,
    heap: BinaryHeap<Reverse<(u64, u64)>>,
}

/// Appends `k` distinct uniform draws from `0..n` (`k <= n`), sorted.
fn choose_uniform(
    n: u64,
    k: usize,
    rng: &mut NodeRng,
    out: &mut Vec<u64>,
    seen: &mut HashSet<u64>,
) {
    let start = out.len();
    let k64 = k as u64;
    if k <= SMALL_DRAW {
        // Floyd's algorithm (every k-subset equally likely, k draws). Earlier picks are all
        // below j, so j is new whenever t is taken; both choices compile to selects.
        for j in (n - k64)..n {
            let t = rng.below(j + 1);
            let taken = out[start..].iter().fold(false, |seen, &x| seen | (x == t));
            out.push(if taken { j } else { t });
        }
        // Sort without data-dependent branches (an insertion sort mispredicts once per
        // value): the draws are distinct, so each one's rank in the run is its place.
        let run = &mut out[start..];
        let mut sorted = [0u64; SMALL_DRAW];
        for &v in run.iter() {
            let rank: usize = run.iter().map(|&x| usize::from(x < v)).sum();
            sorted[rank] = v;
        }
        run.copy_from_slice(&sorted[..run.len()]);
        return;
    } else if 2 * k64 >= n {
        // Dense: a partial Fisher–Yates shuffle of 0..n.
        out.extend(0..n);
        for i in 0..k {
            let r = i + rng.below(n - i as u64) as usize;
            out.swap(start + i, start + r);
        }
        out.truncate(start + k);
    } else {
        seen.clear();
        for j in (n - k64)..n {
            let t = rng.below(j + 1);
            let pick = if seen.insert(t) { t } else { j };
            seen.insert(pick);
            out.push(pick);
        }
    }
    out[start..].sort_unstable();
}

/// Appends the `k` draws (`k < n`) with the largest Efraimidis–Spirakis keys `ln(u) / w`,
/// sorted; returns the index (in the appended run) of the one with the smallest key.
fn choose_weighted(
    n: usize,
    k: usize,
    weight: impl Fn(usize) -> f32,
    rng: &mut NodeRng,
    out: &mut Vec<u64>,
    heap: &mut BinaryHeap<Reverse<(u64, u64)>>,
) -> u32 {
    heap.clear();
    for r in 0..n {
        let key = float_time_key(rng.unit_open().ln() / f64::from(weight(r)));
        let entry = Reverse((key, r as u64));
        if heap.len() < k {
            heap.push(entry);
        } else if heap.peek().is_some_and(|min| entry < *min) {
            heap.pop();
            heap.push(entry);
        }
    }
    let weakest = heap.peek().map_or(0, |Reverse((_, r))| *r);
    let start = out.len();
    out.extend(heap.drain().map(|Reverse((_, r))| r));
    out[start..].sort_unstable();
    out[start..].iter().position(|&r| r == weakest).unwrap_or(0) as u32
}

/// Phase one for one parent: appends absolute edge positions to `pos`, returns what phase
/// three must drop.
fn choose(
    ctx: &HopCtx<'_>,
    node: u32,
    pos: &mut Vec<u64>,
    scratch: &mut Scratch,
) -> Result<Removal> {
    let range = ctx.csr.range(node);
    let excluded = ctx.exclude.and_then(|x| x.get(node));
    if let Some(excluded) = excluded {
        scratch.allowed.clear();
        scratch.allowed.extend(
            range
                .clone()
                .filter(|&p| excluded.binary_search(&ctx.csr.neighbors[p]).is_err())
                .map(|p| p as u64),
        );
    }
    let n = excluded.map_or(range.len(), |_| scratch.allowed.len());
    // Below the fanout every allowed neighbour is taken; above it, one extra draw on hops
    // back to the seeds' side lets phase three drop the root (or, if absent, one draw).
    let want = match ctx.fanout {
        Some(k) if k < n => Some(k + usize::from(ctx.drop_root)),
        _ => None,
    };
    // Room for the draws; a dense uniform draw passes through all `n <= 2 * want` positions.
    let room = want.map_or(n, |want| want.saturating_mul(2).min(n));
    try_reserve(pos, room, "drawn edge positions")?;
    let start = pos.len();
    let removal = if let Some(want) = want {
        let weakest = match ctx.strategy {
            Strategy::Uniform => {
                let mut rng = ctx.key.stream(node);
                choose_uniform(n as u64, want, &mut rng, pos, &mut scratch.seen);
                // The entry dropped when the root is absent: uniform among the draws.
                if ctx.drop_root {
                    rng.below(want as u64) as u32
                } else {
                    0
                }
            }
            Strategy::Recent => {
                pos.extend((n - want) as u64..n as u64);
                0
            }
            Strategy::Weighted => {
                let mut rng = ctx.key.stream(node);
                let weights = ctx.csr.weights.unwrap_or(&[]);
                let allowed = &scratch.allowed;
                let weight = |r: usize| match excluded {
                    Some(_) => weights[allowed[r] as usize],
                    None => weights[range.start + r],
                };
                choose_weighted(n, want, weight, &mut rng, pos, &mut scratch.heap)
            }
        };
        if ctx.drop_root {
            Removal::RootOr(weakest)
        } else {
            Removal::Nothing
        }
    } else {
        pos.extend(0..n as u64);
        if ctx.drop_root {
            Removal::Root
        } else {
            Removal::Nothing
        }
    };
    match excluded {
        Some(_) => pos[start..]
            .iter_mut()
            .for_each(|r| *r = scratch.allowed[*r as usize]),
        None => pos[start..]
            .iter_mut()
            .for_each(|r| *r += range.start as u64),
    }
    // Start the misses of this parent's gather now, into L2: phase two reaches them only
    // after the rest of the chunk, and by then they have arrived instead of stalling it.
    for &p in &pos[start..] {
        prefetch_to::<TO_L2, u32>(ctx.csr.neighbors.as_ptr().wrapping_add(p as usize));
    }
    Ok(removal)
}

/// Which parents of one hop were drawn already: an open-addressing table from node to the
/// index of its first occurrence. A node's draw depends only on the node (its stream, list
/// and exclusions), so a repeated parent (popular items are, at hop 2: about half of a
/// 1024-seed batch's hop-2 parents) copies the earlier draw instead of drawing and gathering.
#[derive(Default)]
struct Memo {
    nodes: Vec<u32>,
    firsts: Vec<u32>,
    /// The slots in use, cleared by [`Memo::reset`] (cheaper than clearing the table).
    used: Vec<u32>,
    shift: u32,
}

impl Memo {
    /// Node ids are below `u32::MAX` (checked against the graph), so it marks a free slot.
    const FREE: u32 = u32::MAX;

    /// Empties the table and sizes it for `parents` insertions (at most half full).
    fn reset(&mut self, parents: usize) -> Result<()> {
        for &slot in &self.used {
            self.nodes[slot as usize] = Self::FREE;
        }
        self.used.clear();
        let size = parents.saturating_mul(2).max(16).next_power_of_two();
        if self.nodes.len() < size {
            // The old table is freed first, and the new one is kept only once all of it is
            // allocated: a failed allocation leaves the empty default (reallocated next call),
            // never `nodes` larger than `firsts`.
            *self = Self::default();
            let nodes = try_filled(Self::FREE, size, "parent table")?;
            let firsts = try_zeroed(size, "parent table")?;
            let mut used = Vec::new();
            try_reserve(&mut used, parents, "parent table")?;
            *self = Self {
                nodes,
                firsts,
                used,
                shift: 0,
            };
        }
        self.shift = 64 - size.trailing_zeros();
        Ok(())
    }

    /// The first occurrence of `node`, or `None` after recording `index` as it.
    #[inline]
    fn first_or_insert(&mut self, node: u32, index: u32) -> Option<u32> {
        let mask = (1usize << (64 - self.shift)) - 1;
        let mut slot = (u64::from(node).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize;
        loop {
            match self.nodes[slot] {
                seen if seen == node => return Some(self.firsts[slot]),
                Self::FREE => {
                    self.nodes[slot] = node;
                    self.firsts[slot] = index;
                    self.used.push(slot as u32);
                    return None;
                }
                _ => slot = (slot + 1) & mask,
            }
        }
    }
}

thread_local! {
    /// The table of [`distinct_parents`], kept per thread between calls: a fresh table of
    /// this size would be fresh pages from the kernel, zeroed on every batch.
    static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::default();
}

/// The distinct nodes of `parents` in order of first occurrence, and for every parent the
/// index of its node among them.
fn distinct_parents(parents: &[u32]) -> Result<(Vec<u32>, Vec<u32>)> {
    let dedupe = |memo: &mut Memo| {
        memo.reset(parents.len())?;
        let mut distinct = try_with_capacity(parents.len(), "distinct parents")?;
        let mut first_of = try_with_capacity(parents.len(), "distinct parents")?;
        for &node in parents {
            let next = distinct.len() as u32;
            first_of.push(memo.first_or_insert(node, next).unwrap_or_else(|| {
                distinct.push(node);
                next
            }));
        }
        Ok((distinct, first_of))
    };
    MEMO.with(|memo| match memo.try_borrow_mut() {
        Ok(mut memo) => dedupe(&mut memo),
        // Not reached (nothing in `dedupe` samples), but never worth a panic.
        Err(_) => dedupe(&mut Memo::default()),
    })
}

/// Phases one and two for a run of distinct parents: plan `k` covers
/// `drawn[plans[k].start..][..plans[k].len]`, the draw of `nodes[k]`.
struct Draws {
    plans: Vec<Plan>,
    drawn: Vec<u32>,
}

fn draw(ctx: &HopCtx<'_>, nodes: &[u32]) -> Result<Draws> {
    let offsets = ctx.csr.offsets;
    let neighbors = ctx.csr.neighbors;
    let per_parent = ctx.fanout.unwrap_or(16).min(64) + usize::from(ctx.drop_root);
    let mut scratch = Scratch::default();
    let mut pos = try_with_capacity(nodes.len() * per_parent, "drawn edge positions")?;
    let mut plans = try_with_capacity(nodes.len(), "draw plans")?;
    for (k, &node) in nodes.iter().enumerate() {
        if let Some(&ahead) = nodes.get(k + PREFETCH_OFFSETS) {
            prefetch(offsets.as_ptr().wrapping_add(ahead as usize));
        }
        let start = pos.len();
        let removal = choose(ctx, node, &mut pos, &mut scratch)?;
        plans.push(Plan {
            start,
            len: pos.len() - start,
            removal,
        });
    }
    let mut drawn = try_with_capacity(pos.len(), "drawn neighbours")?;
    drawn.extend(pos.iter().enumerate().map(|(s, &p)| {
        if let Some(&ahead) = pos.get(s + PREFETCH_GATHER) {
            prefetch(neighbors.as_ptr().wrapping_add(ahead as usize));
        }
        neighbors[p as usize]
    }));
    Ok(Draws { plans, drawn })
}

/// Phase three for a run of parents (given by their distinct index): appends each parent's
/// draw, less its root on hops back to the seeds' side, to `nodes` and its length to `counts`.
fn expand(
    first_of: &[u32],
    roots: &[u32],
    draws: &[Draws],
    counts: &mut Vec<u32>,
    nodes: &mut Vec<u32>,
) {
    for (&d, &root) in first_of.iter().zip(roots) {
        let (run, removal) = run_of(draws, d);
        let before = nodes.len();
        match removal {
            Removal::Nothing => nodes.extend_from_slice(run),
            Removal::RootOr(fallback) if !run.contains(&root) => {
                let fallback = fallback as usize;
                nodes.extend_from_slice(&run[..fallback]);
                nodes.extend_from_slice(&run[fallback + 1..]);
            }
            // The root is drawn at most once from a deduplicated list, but a graph built
            // without deduplication may list it several times: every copy goes.
            Removal::Root | Removal::RootOr(_) => {
                nodes.extend(run.iter().copied().filter(|&v| v != root))
            }
        }
        counts.push((nodes.len() - before) as u32);
    }
}

/// The draw of distinct parent `d` and what phase three removes from it.
fn run_of(draws: &[Draws], d: u32) -> (&[u32], Removal) {
    let (chunk, k) = (d as usize / CHUNK, d as usize % CHUNK);
    let plan = draws[chunk].plans[k];
    (
        &draws[chunk].drawn[plan.start..plan.start + plan.len],
        plan.removal,
    )
}

/// An upper bound on the children of `first_of`'s parents (their draws before removals).
fn drawn_len(first_of: &[u32], draws: &[Draws]) -> u64 {
    first_of.iter().fold(0u64, |sum, &d| {
        sum.saturating_add(run_of(draws, d).0.len() as u64)
    })
}

/// `len` as a buffer length (beyond `usize`, one that cannot be allocated anyway).
fn buffer_len(len: u64) -> usize {
    usize::try_from(len).unwrap_or(usize::MAX)
}

/// Samples the children of `parents` (one hop, in order); returns (children per parent,
/// children). Each distinct parent is drawn once, in chunks (phase one, then phase two);
/// then every parent takes its node's draw (phase three). With `parallel`, the chunks of
/// both passes are shared out over the pool: every thread draws distinct nodes only, so
/// two threads do the work of one, split.
fn sample_hop(
    ctx: &HopCtx<'_>,
    parents: &[u32],
    roots: &[u32],
    parallel: bool,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let (distinct, first_of) = distinct_parents(parents)?;
    let draws: Vec<Draws> = if parallel && distinct.len() > CHUNK {
        distinct
            .par_chunks(CHUNK)
            .map(|c| draw(ctx, c))
            .collect::<Result<_>>()?
    } else {
        distinct
            .chunks(CHUNK)
            .map(|c| draw(ctx, c))
            .collect::<Result<_>>()?
    };
    // Repeated parents multiply the draws: refuse a hop that cannot fit before writing it.
    let total = drawn_len(&first_of, &draws);
    check_fits(
        "fanouts",
        &format!("hop {}: up to {total} sampled nodes", ctx.hop),
        bytes_for(total, BYTES_PER_SAMPLED_NODE),
    )?;
    // The output nodes come from the recycled buffers (warm pages instead of fresh ones),
    // sized by the draws on one thread and by the pieces' exact total on several.
    let mut counts = try_with_capacity(parents.len(), "sampled counts")?;
    if !parallel || parents.len() <= EXPAND_CHUNK {
        let mut nodes = recycle::NODES.take(buffer_len(total))?;
        expand(&first_of, roots, &draws, &mut counts, &mut nodes);
        return Ok((counts, nodes));
    }
    let pieces: Vec<(Vec<u32>, Vec<u32>)> = first_of
        .par_chunks(EXPAND_CHUNK)
        .zip(roots.par_chunks(EXPAND_CHUNK))
        .map(|(first_of, roots)| {
            let mut piece = (
                try_with_capacity(first_of.len(), "sampled counts")?,
                try_with_capacity(buffer_len(drawn_len(first_of, &draws)), "sampled nodes")?,
            );
            expand(first_of, roots, &draws, &mut piece.0, &mut piece.1);
            Ok(piece)
        })
        .collect::<Result<_>>()?;
    let mut nodes = recycle::NODES.take(pieces.iter().map(|(_, nodes)| nodes.len()).sum())?;
    for (piece_counts, piece_nodes) in &pieces {
        counts.extend_from_slice(piece_counts);
        nodes.extend_from_slice(piece_nodes);
    }
    Ok((counts, nodes))
}

fn check_ids(argument: &str, ids: &[u32], graph: &BipartiteGraph, side: Side) -> Result<()> {
    let n = graph.num_nodes(side);
    if let Some(i) = first_index(ids, |&v| v >= n) {
        return Err(GraphError::invalid(
            argument,
            format!(
                "{} id {} at index {i} is out of range (num_{}s={n})",
                side.name(),
                ids[i],
                side.name()
            ),
        ));
    }
    Ok(())
}

fn parse_fanouts(fanouts: &[i64]) -> Result<Vec<Option<usize>>> {
    if fanouts.is_empty() {
        return Err(GraphError::invalid("fanouts", "must name at least one hop"));
    }
    fanouts
        .iter()
        .enumerate()
        .map(|(h, &f)| match f {
            -1 => Ok(None),
            f if f >= 0 => usize::try_from(f).map(Some).map_err(|_| {
                GraphError::invalid("fanouts", format!("hop {} fanout {f} is too large", h + 1))
            }),
            f => Err(GraphError::invalid(
                "fanouts",
                format!("hop {} fanout {f} must be -1 (all) or at least 0", h + 1),
            )),
        })
        .collect()
}

/// Samples a multi-hop neighbourhood of `spec.seeds`; one [`Hop`] per fanout. Runs on the
/// current rayon pool.
pub fn sample(graph: &BipartiteGraph, spec: &SampleSpec<'_>) -> Result<Vec<Hop>> {
    Request::new(graph, spec)?.sample(spec.seeds, spec.epoch, !on_caller())
}

/// Samples several batches of seeds, each with its epoch, with the other options of `spec`
/// (whose own `seeds` and `epoch` are not used); each batch's result equals [`sample`]'s.
/// The options are checked and the exclusions indexed once for all batches. Batches run one
/// per task on the current rayon pool: parallelism across batches scales where parallelism
/// inside one batch does not (a 1024-seed batch's parallel phases last a fraction of a
/// millisecond, too short to keep a second thread busy). On `with_threads(Some(1), ..)` the
/// batches run in turn on the caller. An error names the batch at fault.
pub fn sample_many(
    graph: &BipartiteGraph,
    spec: &SampleSpec<'_>,
    batches: &[(&[u32], u64)],
) -> Result<Vec<Vec<Hop>>> {
    let request = Request::new(graph, spec)?;
    let one = |(i, &(seeds, epoch)): (usize, &(&[u32], u64))| {
        request
            .sample(seeds, epoch, false)
            .map_err(|e| e.in_batch(i))
    };
    if on_caller() {
        return batches.iter().enumerate().map(one).collect();
    }
    batches.par_iter().enumerate().map(one).collect()
}

/// What a sampling request shares across its batches: the graph, the checked options and
/// the exclusions indexed both ways.
struct Request<'g> {
    graph: &'g BipartiteGraph,
    side: Side,
    strategy: Strategy,
    seed: u64,
    fanouts: Vec<Option<usize>>,
    /// (by user, by item)
    exclude: Option<(ExcludeIndex, ExcludeIndex)>,
}

impl<'g> Request<'g> {
    /// Checks every option of `spec` but its seeds and epoch, and indexes its exclusions.
    fn new(graph: &'g BipartiteGraph, spec: &SampleSpec<'_>) -> Result<Self> {
        let fanouts = parse_fanouts(spec.fanouts)?;
        let meta = graph.meta();
        match spec.strategy {
            Strategy::Recent if meta.time_kind.is_none() => {
                return Err(GraphError::invalid(
                    "strategy",
                    "'recent' needs a graph built with timestamps",
                ))
            }
            Strategy::Weighted if !meta.has_weights => {
                return Err(GraphError::invalid(
                    "strategy",
                    "'weighted' needs a graph built with weights",
                ))
            }
            _ => {}
        }
        let exclude = match spec.exclude {
            None => None,
            Some((users, items)) => {
                if users.len() != items.len() {
                    return Err(GraphError::invalid(
                        "exclude",
                        format!(
                            "users has {} entries but items has {}",
                            users.len(),
                            items.len()
                        ),
                    ));
                }
                check_ids("exclude users", users, graph, Side::User)?;
                check_ids("exclude items", items, graph, Side::Item)?;
                let pairs = || users.iter().copied().zip(items.iter().copied());
                Some((
                    ExcludeIndex::new(pairs().collect()),
                    ExcludeIndex::new(pairs().map(|(u, i)| (i, u)).collect()),
                ))
            }
        };
        Ok(Self {
            graph,
            side: spec.side,
            strategy: spec.strategy,
            seed: spec.seed,
            fanouts,
            exclude,
        })
    }

    /// Samples every hop of `seeds` at `epoch`, sharing each hop's work over the pool when
    /// `parallel`.
    fn sample(&self, seeds: &[u32], epoch: u64, parallel: bool) -> Result<Vec<Hop>> {
        check_ids("seeds", seeds, self.graph, self.side)?;
        let contexts: Vec<HopCtx<'_>> =
            self.fanouts
                .iter()
                .enumerate()
                .map(|(h, &fanout)| {
                    let parent_side = if h % 2 == 0 {
                        self.side
                    } else {
                        self.side.other()
                    };
                    HopCtx {
                        hop: h + 1,
                        csr: self.graph.csr(parent_side),
                        key: HopKey::new(self.seed, epoch, h as u32, parent_side.index()),
                        fanout,
                        strategy: self.strategy,
                        drop_root: h % 2 == 1,
                        exclude: self.exclude.as_ref().map(
                            |(by_user, by_item)| match parent_side {
                                Side::User => by_user,
                                Side::Item => by_item,
                            },
                        ),
                    }
                })
                .collect();
        sample_hops(&contexts, seeds, parallel)
    }
}

/// Samples every hop of `seeds`, hop by hop.
fn sample_hops(contexts: &[HopCtx<'_>], seeds: &[u32], parallel: bool) -> Result<Vec<Hop>> {
    let mut hops: Vec<Hop> = Vec::with_capacity(contexts.len());
    // The root seed of every parent; at hop 1 the parents are the seeds themselves (no copy).
    let mut roots: Cow<'_, [u32]> = Cow::Borrowed(seeds);
    for (h, ctx) in contexts.iter().enumerate() {
        let parents: &[u32] = hops.last().map_or(seeds, |hop| &hop.nodes);
        let (counts, nodes) = sample_hop(ctx, parents, &roots, parallel)?;
        let last = h + 1 == contexts.len();
        let mut offsets = recycle::OFFSETS.take(parents.len() + 1)?;
        let mut next_roots =
            try_with_capacity(if last { 0 } else { nodes.len() }, "roots of sampled nodes")?;
        offsets.push(0i64);
        let mut end = 0i64;
        for (&c, &root) in counts.iter().zip(roots.iter()) {
            end += i64::from(c);
            offsets.push(end);
            if !last {
                next_roots.extend(std::iter::repeat(root).take(c as usize));
            }
        }
        roots = Cow::Owned(next_roots);
        hops.push(Hop { offsets, nodes });
    }
    Ok(hops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::EdgeList;

    /// Users 0..4 all rated items 0..6; user 4 rated item 0 only.
    fn graph() -> Result<BipartiteGraph> {
        let mut users = Vec::new();
        let mut items = Vec::new();
        for u in 0..4 {
            for i in 0..6 {
                users.push(u);
                items.push(i);
            }
        }
        users.push(4);
        items.push(0);
        BipartiteGraph::from_edges(EdgeList::plain(&users, &items))
    }

    fn spec<'a>(seeds: &'a [u32], fanouts: &'a [i64]) -> SampleSpec<'a> {
        SampleSpec {
            seeds,
            side: Side::User,
            fanouts,
            strategy: Strategy::Uniform,
            seed: 1,
            epoch: 0,
            exclude: None,
        }
    }

    #[test]
    fn hop_two_never_returns_the_seed() -> Result<()> {
        let g = graph()?;
        for seed in 0..50 {
            let mut s = spec(&[0, 4], &[3, 2]);
            s.seed = seed;
            let hops = sample(&g, &s)?;
            assert_eq!(hops[0].offsets, vec![0, 3, 4]);
            assert_eq!(hops[1].offsets.len(), 5);
            let seed_of_child = |j: usize| if j < 3 { 0 } else { 4 };
            for j in 0..4 {
                let (lo, hi) = (hops[1].offsets[j] as usize, hops[1].offsets[j + 1] as usize);
                assert_eq!(hi - lo, 2);
                assert!(!hops[1].nodes[lo..hi].contains(&seed_of_child(j)));
            }
        }
        Ok(())
    }

    #[test]
    fn hop_two_never_returns_a_seed_listed_twice() -> Result<()> {
        // User 0 rated every item twice (no deduplication), so each item lists it twice.
        let (mut users, mut items) = (Vec::new(), Vec::new());
        for u in [0, 0, 1, 2, 3, 4, 5] {
            for i in 0..4 {
                users.push(u);
                items.push(i);
            }
        }
        let g = BipartiteGraph::from_edges(EdgeList {
            dedupe: false,
            ..EdgeList::plain(&users, &items)
        })?;
        for fanouts in [[2, 3], [2, -1], [2, 6]] {
            for seed in 0..100 {
                let mut s = spec(&[0], &fanouts);
                s.seed = seed;
                let hops = sample(&g, &s)?;
                assert!(!hops[1].nodes.contains(&0), "{fanouts:?} seed {seed}");
            }
        }
        Ok(())
    }

    #[test]
    fn a_hop_beyond_memory_is_refused_by_fanouts() -> Result<()> {
        // One user with 2**20 items, as a seed 2**20 times: hop 1 would hold 2**40 nodes.
        let items: Vec<u32> = (0..1 << 20).collect();
        let users = vec![0; items.len()];
        let g = BipartiteGraph::from_edges(EdgeList::plain(&users, &items))?;
        let seeds = vec![0u32; 1 << 20];
        let err = sample(&g, &spec(&seeds, &[-1]))
            .err()
            .map(|e| e.to_string());
        let err = err.unwrap_or_default();
        if crate::memory::ceiling().is_some() {
            assert!(
                err.starts_with("fanouts: hop 1: up to 1099511627776 sampled nodes need"),
                "{err}"
            );
        } else {
            assert!(err.contains("could not allocate"), "{err}");
        }
        Ok(())
    }

    #[test]
    fn excluded_edges_are_not_traversed_either_way() -> Result<()> {
        let g = graph()?;
        let mut s = spec(&[0], &[-1, -1]);
        s.exclude = Some((&[0, 1], &[2, 0]));
        let hops = sample(&g, &s)?;
        assert_eq!(hops[0].nodes, vec![0, 1, 3, 4, 5]);
        // item 0 may not lead back to user 1 (excluded) nor user 0 (the seed)
        let (lo, hi) = (hops[1].offsets[0] as usize, hops[1].offsets[1] as usize);
        assert_eq!(hops[1].nodes[lo..hi], [2, 3, 4]);
        Ok(())
    }

    #[test]
    fn results_do_not_depend_on_threads_or_batch() -> Result<()> {
        let g = graph()?;
        let together = sample(&g, &spec(&[0, 1, 2, 3, 4], &[4, 3, 2]))?;
        let alone = sample(&g, &spec(&[2], &[4, 3, 2]))?;
        let (lo, hi) = (
            together[0].offsets[2] as usize,
            together[0].offsets[3] as usize,
        );
        assert_eq!(together[0].nodes[lo..hi], alone[0].nodes[..]);
        let on_two = crate::parallel::with_threads(Some(2), || {
            sample(&g, &spec(&[0, 1, 2, 3, 4], &[4, 3, 2]))
        })??;
        assert_eq!(together, on_two);
        // Enough parents to be shared out in chunks at every hop: the same hops as one thread.
        let many: Vec<u32> = (0..300).map(|j| j % 5).collect();
        let serial =
            crate::parallel::with_threads(Some(1), || sample(&g, &spec(&many, &[4, 3, 2])))??;
        let shared =
            crate::parallel::with_threads(Some(2), || sample(&g, &spec(&many, &[4, 3, 2])))??;
        assert_eq!(serial, shared);
        assert_eq!(serial[0].offsets.len(), 301);
        Ok(())
    }

    #[test]
    fn many_batches_match_one_at_a_time() -> Result<()> {
        let g = graph()?;
        let batches: [(&[u32], u64); 3] = [(&[0, 1], 0), (&[4], 1), (&[2, 2, 3], 2)];
        let mut options = spec(&[], &[3, 2]);
        options.exclude = Some((&[0, 2], &[1, 5]));
        let one_by_one: Vec<Vec<Hop>> = batches
            .iter()
            .map(|&(seeds, epoch)| {
                sample(
                    &g,
                    &SampleSpec {
                        seeds,
                        epoch,
                        ..options
                    },
                )
            })
            .collect::<Result<_>>()?;
        for threads in [1, 2] {
            let many = crate::parallel::with_threads(Some(threads), || {
                sample_many(&g, &options, &batches)
            })??;
            assert_eq!(many, one_by_one);
        }
        let bad: [(&[u32], u64); 2] = [(&[0], 0), (&[9], 0)];
        let err = sample_many(&g, &options, &bad).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.starts_with("batches[1] seeds:")));
        Ok(())
    }

    /// The subtree of seed `j`: its children at every hop.
    fn subtree(hops: &[Hop], j: usize) -> Vec<Vec<u32>> {
        let (mut lo, mut hi) = (j, j + 1);
        hops.iter()
            .map(|hop| {
                (lo, hi) = (hop.offsets[lo] as usize, hop.offsets[hi] as usize);
                hop.nodes[lo..hi].to_vec()
            })
            .collect()
    }

    #[test]
    fn repeated_parents_match_their_own_draws() -> Result<()> {
        // Items 0..6 are hop-2 parents of several seeds, each with its own root to drop.
        let g = graph()?;
        let seeds = [0, 1, 2, 3, 0, 1, 4, 2, 3, 4];
        let together = sample(&g, &spec(&seeds, &[6, 3, 2]))?;
        for (j, &seed) in seeds.iter().enumerate() {
            let alone = sample(&g, &spec(&[seed], &[6, 3, 2]))?;
            assert_eq!(
                subtree(&together, j),
                subtree(&alone, 0),
                "seed {seed} at {j}"
            );
            assert!(!subtree(&together, j)[1].contains(&seed));
        }
        Ok(())
    }

    #[test]
    fn memo_finds_first_occurrences_and_resets() -> Result<()> {
        let mut memo = Memo::default();
        for round in 0..3u32 {
            memo.reset(100)?;
            // 100 distinct nodes (many share a slot), each inserted twice
            for (i, node) in (0..100u32).map(|n| n * 1024 + round).enumerate() {
                assert_eq!(memo.first_or_insert(node, i as u32), None);
                assert_eq!(memo.first_or_insert(node, 999), Some(i as u32));
            }
        }
        memo.reset(3)?;
        assert_eq!(memo.first_or_insert(5, 0), None);
        assert_eq!(memo.first_or_insert(5, 1), Some(0));
        Ok(())
    }

    #[test]
    fn uniform_choice_covers_every_branch() {
        let mut rng = HopKey::new(3, 0, 0, 0).stream(0);
        let mut seen = HashSet::new();
        for (n, k) in [(10u64, 3usize), (100, 60), (1000, 40), (5, 5)] {
            let mut out = Vec::new();
            choose_uniform(n, k, &mut rng, &mut out, &mut seen);
            assert_eq!(out.len(), k);
            assert!(out.windows(2).all(|w| w[0] < w[1]), "{n} {k}: {out:?}");
            assert!(out.iter().all(|&x| x < n));
        }
    }

    #[test]
    fn weighted_choice_returns_the_weakest_index() {
        let mut rng = HopKey::new(3, 0, 0, 0).stream(1);
        let mut heap = BinaryHeap::new();
        let mut out = Vec::new();
        let weakest = choose_weighted(6, 6, |_| 1.0, &mut rng, &mut out, &mut heap);
        assert_eq!(out, vec![0, 1, 2, 3, 4, 5]);
        assert!((weakest as usize) < 6);
        // an overwhelming weight is always picked
        for node in 0..50 {
            let mut rng = HopKey::new(3, 0, 0, 0).stream(node);
            let mut out = Vec::new();
            let w = |r: usize| if r == 4 { 1e30 } else { 1.0 };
            choose_weighted(8, 1, w, &mut rng, &mut out, &mut heap);
            assert_eq!(out, vec![4]);
        }
    }

    #[test]
    fn bad_requests_are_errors() -> Result<()> {
        let g = graph()?;
        assert!(sample(&g, &spec(&[9], &[1])).is_err());
        assert!(sample(&g, &spec(&[0], &[])).is_err());
        assert!(sample(&g, &spec(&[0], &[-2])).is_err());
        let mut s = spec(&[0], &[1]);
        s.strategy = Strategy::Recent;
        assert!(sample(&g, &s).is_err());
        assert!(Strategy::parse("nope").is_err());
        Ok(())
    }
}
