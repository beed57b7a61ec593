//! The bipartite user-item graph: CSR in both directions (user -> items, item -> users), u32
//! node ids, u64 offsets, optional per-edge timestamps and weights, owned in memory or
//! memory-mapped from a file (see [`crate::storage`]).

use std::ops::Range;

use rayon::prelude::*;

use crate::build::{self, Grouped};
use crate::error::{GraphError, Result};
use crate::memory::{bytes_for, check_fits, try_par_collect, try_with_capacity, try_zeroed};
use crate::parallel::{first_index, max_u32};
use crate::storage::MappedGraph;

/// Node counts must fit u32 ids `0..=u32::MAX - 1`.
pub const MAX_NODES: u64 = u32::MAX as u64;
/// The builder indexes edges with u32; files and offsets are u64 throughout.
pub const MAX_BUILD_EDGES: usize = u32::MAX as usize;
/// Bytes the builder needs per node, whatever its degree: a u64 offset and a u32
/// counting-sort histogram entry.
const BUILD_BYTES_PER_NODE: u64 = 8 + 4;

/// One side of the bipartite graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    User,
    Item,
}

impl Side {
    /// The opposite side.
    pub fn other(self) -> Self {
        match self {
            Side::User => Side::Item,
            Side::Item => Side::User,
        }
    }

    /// 0 for users, 1 for items.
    pub fn index(self) -> u32 {
        match self {
            Side::User => 0,
            Side::Item => 1,
        }
    }

    /// "user" or "item".
    pub fn name(self) -> &'static str {
        match self {
            Side::User => "user",
            Side::Item => "item",
        }
    }
}

/// How stored timestamps are to be read: the raw u64 words hold i64 or f64 bit patterns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeKind {
    Int,
    Float,
}

/// Borrowed per-edge timestamps as given by the caller.
#[derive(Clone, Copy, Debug)]
pub enum Timestamps<'a> {
    Int(&'a [i64]),
    Float(&'a [f64]),
}

impl Timestamps<'_> {
    fn len(&self) -> usize {
        match self {
            Timestamps::Int(t) => t.len(),
            Timestamps::Float(t) => t.len(),
        }
    }

    fn kind(&self) -> TimeKind {
        match self {
            Timestamps::Int(_) => TimeKind::Int,
            Timestamps::Float(_) => TimeKind::Float,
        }
    }
}

/// The input of [`BipartiteGraph::from_edges`]: parallel arrays, one entry per interaction.
#[derive(Clone, Copy, Debug)]
pub struct EdgeList<'a> {
    pub users: &'a [u32],
    pub items: &'a [u32],
    /// `None`: one more than the largest user id.
    pub num_users: Option<u64>,
    /// `None`: one more than the largest item id.
    pub num_items: Option<u64>,
    pub timestamps: Option<Timestamps<'a>>,
    /// Positive, finite weights (used by weighted sampling).
    pub weights: Option<&'a [f32]>,
    /// Drop repeated (user, item) pairs, keeping the earliest (by timestamp, then position).
    pub dedupe: bool,
}

impl<'a> EdgeList<'a> {
    /// Bare edges: counts from the largest ids, no timestamps or weights, duplicates merged.
    /// Set other fields with struct update syntax: `EdgeList { dedupe: false, ..plain }`.
    pub fn plain(users: &'a [u32], items: &'a [u32]) -> Self {
        EdgeList {
            users,
            items,
            num_users: None,
            num_items: None,
            timestamps: None,
            weights: None,
            dedupe: true,
        }
    }
}

/// One direction of the graph, borrowed: `neighbors[offsets[v]..offsets[v + 1]]` are the
/// neighbours of node `v`, in (timestamp, input position) order.
#[derive(Clone, Copy, Debug)]
pub struct CsrView<'a> {
    pub offsets: &'a [u64],
    pub neighbors: &'a [u32],
    /// Raw i64 or f64 bit patterns, see [`GraphMeta::time_kind`].
    pub timestamps: Option<&'a [u64]>,
    pub weights: Option<&'a [f32]>,
}

impl CsrView<'_> {
    /// Number of nodes on this side.
    pub fn num_nodes(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The entry range of `node` (which the caller has bounds-checked).
    #[inline]
    pub fn range(&self, node: u32) -> Range<usize> {
        let v = node as usize;
        self.offsets[v] as usize..self.offsets[v + 1] as usize
    }
}

/// One direction of the graph, owned.
#[derive(Debug, Default)]
pub(crate) struct OwnedCsr {
    pub offsets: Vec<u64>,
    pub neighbors: Vec<u32>,
    pub timestamps: Option<Vec<u64>>,
    pub weights: Option<Vec<f32>>,
}

impl OwnedCsr {
    fn view(&self) -> CsrView<'_> {
        CsrView {
            offsets: &self.offsets,
            neighbors: &self.neighbors,
            timestamps: self.timestamps.as_deref(),
            weights: self.weights.as_deref(),
        }
    }
}

/// Counts and per-edge attributes present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphMeta {
    pub num_users: u32,
    pub num_items: u32,
    pub num_edges: u64,
    pub time_kind: Option<TimeKind>,
    pub has_weights: bool,
}

#[derive(Debug)]
enum Backing {
    Owned { user: OwnedCsr, item: OwnedCsr },
    Mapped(MappedGraph),
}

/// A bipartite user-item graph stored as CSR both ways. Immutable, so shared freely between
/// threads.
#[derive(Debug)]
pub struct BipartiteGraph {
    meta: GraphMeta,
    backing: Backing,
}

/// The node count of one side: `given` (named `argument`), else one more than the largest of
/// `ids` (named `ids_argument`). A count whose arrays cannot fit in memory is refused, naming
/// whichever of the two set it.
fn check_count(argument: &str, ids_argument: &str, given: Option<u64>, ids: &[u32]) -> Result<u32> {
    let (count, set_by, what) = match given {
        Some(n) if n > MAX_NODES => {
            return Err(GraphError::invalid(
                argument,
                format!("{n} exceeds the maximum of {MAX_NODES} nodes (u32 ids)"),
            ))
        }
        Some(n) => (n as u32, argument, format!("{n} nodes")),
        None if ids.is_empty() => {
            return Err(GraphError::invalid(
                argument,
                "cannot be inferred from an empty edge list; pass it explicitly",
            ))
        }
        None => {
            let max = max_u32(ids).unwrap_or(0);
            let count = max.checked_add(1).ok_or_else(|| {
                GraphError::invalid(argument, format!("id {max} exceeds the largest u32 id"))
            })?;
            let what = format!("{count} nodes (one more than the largest id, {max})");
            (count, ids_argument, what)
        }
    };
    check_fits(
        set_by,
        &what,
        bytes_for(u64::from(count) + 1, BUILD_BYTES_PER_NODE),
    )?;
    Ok(count)
}

fn check_ids(argument: &str, ids: &[u32], count: u32, count_name: &str) -> Result<()> {
    if let Some(i) = first_index(ids, |&v| v >= count) {
        return Err(GraphError::invalid(
            argument,
            format!(
                "id {} at index {i} is not below {count_name}={count}",
                ids[i]
            ),
        ));
    }
    Ok(())
}

/// `values` in the order of `perm`, or `None` without values.
fn gather<T, U>(values: Option<&[T]>, perm: &[u32], convert: fn(T) -> U) -> Result<Option<Vec<U>>>
where
    T: Copy + Send + Sync,
    U: Send,
{
    values
        .map(|v| {
            try_par_collect(
                perm.par_iter().map(|&e| convert(v[e as usize])),
                "edge attributes",
            )
        })
        .transpose()
}

impl BipartiteGraph {
    /// Builds both CSR directions from parallel edge arrays in linear time. Node counts whose
    /// arrays cannot fit in memory are invalid arguments; allocations that fail anyway are
    /// [`GraphError::OutOfMemory`].
    pub fn from_edges(edges: EdgeList<'_>) -> Result<Self> {
        let m = edges.users.len();
        if edges.items.len() != m {
            return Err(GraphError::invalid(
                "items",
                format!("has length {} but users has length {m}", edges.items.len()),
            ));
        }
        if m > MAX_BUILD_EDGES {
            return Err(GraphError::invalid(
                "users",
                format!("{m} edges exceed the builder's limit of {MAX_BUILD_EDGES}"),
            ));
        }
        let num_users = check_count("num_users", "users", edges.num_users, edges.users)?;
        let num_items = check_count("num_items", "items", edges.num_items, edges.items)?;
        check_ids("users", edges.users, num_users, "num_users")?;
        check_ids("items", edges.items, num_items, "num_items")?;

        let time_keys: Option<Vec<u64>> = match edges.timestamps {
            None => None,
            Some(ts) if ts.len() != m => {
                return Err(GraphError::invalid(
                    "timestamps",
                    format!("has length {} but users has length {m}", ts.len()),
                ))
            }
            Some(Timestamps::Int(t)) => Some(try_par_collect(
                t.par_iter().map(|&x| build::int_time_key(x)),
                "timestamp keys",
            )?),
            Some(Timestamps::Float(t)) => {
                if let Some(i) = first_index(t, |x| x.is_nan()) {
                    return Err(GraphError::invalid(
                        "timestamps",
                        format!("NaN at index {i}"),
                    ));
                }
                Some(try_par_collect(
                    t.par_iter().map(|&x| build::float_time_key(x)),
                    "timestamp keys",
                )?)
            }
        };
        if let Some(w) = edges.weights {
            if w.len() != m {
                return Err(GraphError::invalid(
                    "weights",
                    format!("has length {} but users has length {m}", w.len()),
                ));
            }
            if let Some(i) = first_index(w, |x| !(x.is_finite() && *x > 0.0)) {
                return Err(GraphError::invalid(
                    "weights",
                    format!("{} at index {i} is not a positive finite number", w[i]),
                ));
            }
        }

        let order = time_keys
            .as_deref()
            .map(build::time_order)
            .transpose()?
            .flatten();
        let with_attrs = edges.timestamps.is_some() || edges.weights.is_some();
        let (users, items) = (edges.users, edges.items);
        let edge_at = |i: usize| order.as_ref().map_or(i as u32, |o| o[i]);
        let group_by_user = |with_perm: bool| {
            build::counting_sort(
                m,
                num_users as usize,
                edge_at,
                |e| users[e as usize],
                |e| items[e as usize],
                with_perm,
            )
        };
        // The edge permutation is needed to carry attributes, or to know which edges survive
        // deduplication; without attributes it is built only once duplicates are found.
        let mut by_user = group_by_user(with_attrs)?;
        let removed = if !edges.dedupe {
            0
        } else if with_attrs {
            build::dedupe(&mut by_user, num_items as usize)?
        } else if build::count_duplicates(&by_user, num_items as usize)? == 0 {
            0
        } else {
            by_user = group_by_user(true)?;
            build::dedupe(&mut by_user, num_items as usize)?
        };
        let by_item = if removed == 0 {
            build::counting_sort(
                m,
                num_items as usize,
                edge_at,
                |e| items[e as usize],
                |e| users[e as usize],
                with_attrs,
            )?
        } else {
            let mut keep = try_zeroed::<bool>(m, "deduplication markers")?;
            for &e in &by_user.perm {
                keep[e as usize] = true;
            }
            let mut survivors = try_with_capacity(by_user.perm.len(), "surviving edges")?;
            survivors.extend((0..m).map(edge_at).filter(|&e| keep[e as usize]));
            build::counting_sort(
                survivors.len(),
                num_items as usize,
                |i| survivors[i],
                |e| items[e as usize],
                |e| users[e as usize],
                with_attrs,
            )?
        };

        let finish = |g: Grouped| -> Result<OwnedCsr> {
            let timestamps = match edges.timestamps {
                None => None,
                Some(Timestamps::Int(t)) => gather(Some(t), &g.perm, |x| x as u64)?,
                Some(Timestamps::Float(t)) => gather(Some(t), &g.perm, f64::to_bits)?,
            };
            Ok(OwnedCsr {
                timestamps,
                weights: gather(edges.weights, &g.perm, |w| w)?,
                offsets: g.offsets,
                neighbors: g.neighbors,
            })
        };
        let user = finish(by_user)?;
        let item = finish(by_item)?;
        let meta = GraphMeta {
            num_users,
            num_items,
            num_edges: user.neighbors.len() as u64,
            time_kind: edges.timestamps.map(|t| t.kind()),
            has_weights: edges.weights.is_some(),
        };
        Ok(Self {
            meta,
            backing: Backing::Owned { user, item },
        })
    }

    /// A graph backed by a validated memory-mapped file.
    pub(crate) fn from_mapped(meta: GraphMeta, mapped: MappedGraph) -> Self {
        Self {
            meta,
            backing: Backing::Mapped(mapped),
        }
    }

    /// Counts and attribute flags.
    pub fn meta(&self) -> GraphMeta {
        self.meta
    }

    pub fn num_users(&self) -> u32 {
        self.meta.num_users
    }

    pub fn num_items(&self) -> u32 {
        self.meta.num_items
    }

    pub fn num_edges(&self) -> u64 {
        self.meta.num_edges
    }

    /// Number of nodes on `side`.
    pub fn num_nodes(&self, side: Side) -> u32 {
        match side {
            Side::User => self.meta.num_users,
            Side::Item => self.meta.num_items,
        }
    }

    /// Whether the graph is memory-mapped from a file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.backing, Backing::Mapped(_))
    }

    /// The CSR whose rows are the nodes of `side`.
    pub fn csr(&self, side: Side) -> CsrView<'_> {
        match &self.backing {
            Backing::Owned { user, item } => match side {
                Side::User => user.view(),
                Side::Item => item.view(),
            },
            Backing::Mapped(mapped) => mapped.view(side),
        }
    }

    /// Checks that `node` exists on `side`, naming `argument` otherwise.
    pub fn check_node(&self, side: Side, node: u64, argument: &str) -> Result<u32> {
        let n = self.num_nodes(side);
        if node >= u64::from(n) {
            return Err(GraphError::invalid(
                argument,
                format!(
                    "{} id {node} is out of range (num_{}s={n})",
                    side.name(),
                    side.name()
                ),
            ));
        }
        Ok(node as u32)
    }

    /// The neighbours of `node` on `side` (in stored order).
    pub fn neighbors(&self, side: Side, node: u64) -> Result<&[u32]> {
        let v = self.check_node(side, node, side.name())?;
        let csr = self.csr(side);
        Ok(&csr.neighbors[csr.range(v)])
    }

    /// The raw timestamps of `node`'s edges (read per [`GraphMeta::time_kind`]), if stored.
    pub fn neighbor_timestamps(&self, side: Side, node: u64) -> Result<Option<&[u64]>> {
        let v = self.check_node(side, node, side.name())?;
        let csr = self.csr(side);
        Ok(csr.timestamps.map(|t| &t[csr.range(v)]))
    }

    /// The weights of `node`'s edges, if stored.
    pub fn neighbor_weights(&self, side: Side, node: u64) -> Result<Option<&[f32]>> {
        let v = self.check_node(side, node, side.name())?;
        let csr = self.csr(side);
        Ok(csr.weights.map(|w| &w[csr.range(v)]))
    }

    /// The degree of every node on `side`.
    pub fn degrees(&self, side: Side) -> Vec<u64> {
        self.csr(side)
            .offsets
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect()
    }

    /// Whether the edge (user, item) exists; scans the shorter of the two neighbour lists.
    pub fn has_edge(&self, user: u64, item: u64) -> Result<bool> {
        let u = self.check_node(Side::User, user, "user")?;
        let i = self.check_node(Side::Item, item, "item")?;
        let (by_user, by_item) = (self.csr(Side::User), self.csr(Side::Item));
        let (ur, ir) = (by_user.range(u), by_item.range(i));
        Ok(if ur.len() <= ir.len() {
            by_user.neighbors[ur].contains(&i)
        } else {
            by_item.neighbors[ir].contains(&u)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges<'a>(users: &'a [u32], items: &'a [u32]) -> EdgeList<'a> {
        EdgeList::plain(users, items)
    }

    #[test]
    fn builds_both_directions_in_input_order() -> Result<()> {
        let g = BipartiteGraph::from_edges(edges(&[1, 0, 1, 2, 1], &[3, 0, 0, 3, 3]))?;
        assert_eq!((g.num_users(), g.num_items(), g.num_edges()), (3, 4, 4));
        assert_eq!(g.neighbors(Side::User, 1)?, &[3, 0]);
        assert_eq!(g.neighbors(Side::Item, 3)?, &[1, 2]);
        assert_eq!(g.neighbors(Side::Item, 0)?, &[0, 1]);
        assert_eq!(g.degrees(Side::Item), vec![2, 0, 0, 2]);
        assert!(g.has_edge(2, 3)?);
        assert!(!g.has_edge(2, 0)?);
        assert!(g.has_edge(9, 0).is_err());
        Ok(())
    }

    #[test]
    fn orders_neighbours_by_time_and_keeps_earliest_duplicate() -> Result<()> {
        let ts = [50i64, 10, 30, 5, 20];
        let w = [1.0f32, 2.0, 3.0, 4.0, 5.0];
        let mut e = edges(&[0, 0, 0, 1, 0], &[1, 2, 3, 1, 2]);
        e.timestamps = Some(Timestamps::Int(&ts));
        e.weights = Some(&w);
        let g = BipartiteGraph::from_edges(e)?;
        assert_eq!(g.neighbors(Side::User, 0)?, &[2, 3, 1]);
        assert_eq!(
            g.neighbor_timestamps(Side::User, 0)?,
            Some(&[10u64, 30, 50][..])
        );
        assert_eq!(
            g.neighbor_weights(Side::User, 0)?,
            Some(&[2.0f32, 3.0, 1.0][..])
        );
        assert_eq!(g.neighbors(Side::Item, 1)?, &[1, 0]);
        assert_eq!(g.num_edges(), 4);
        Ok(())
    }

    #[test]
    fn keeps_duplicates_when_asked() -> Result<()> {
        let mut e = edges(&[0, 0], &[1, 1]);
        e.dedupe = false;
        assert_eq!(BipartiteGraph::from_edges(e)?.num_edges(), 2);
        Ok(())
    }

    #[test]
    fn rejects_bad_input_naming_it() {
        let message = |e: EdgeList<'_>| match BipartiteGraph::from_edges(e) {
            Err(err) => err.to_string(),
            Ok(_) => String::from("accepted"),
        };
        assert!(message(edges(&[0, 1], &[0])).starts_with("items: has length 1"));
        let mut e = edges(&[0, 5], &[0, 0]);
        e.num_users = Some(3);
        assert_eq!(
            message(e),
            "users: id 5 at index 1 is not below num_users=3"
        );
        assert!(message(edges(&[], &[])).starts_with("num_users: cannot be inferred"));
        let nan = [0.0, f64::NAN];
        let mut e = edges(&[0, 1], &[0, 0]);
        e.timestamps = Some(Timestamps::Float(&nan));
        assert_eq!(message(e), "timestamps: NaN at index 1");
        let w = [1.0f32, -1.0];
        let mut e = edges(&[0, 1], &[0, 0]);
        e.weights = Some(&w);
        assert!(message(e).starts_with("weights: -1 at index 1"));
    }

    #[test]
    fn node_counts_beyond_memory_are_refused_by_argument() {
        let Some(ceiling) = crate::memory::ceiling() else {
            return;
        };
        let message = |e: EdgeList<'_>| match BipartiteGraph::from_edges(e) {
            Err(err) => err.to_string(),
            Ok(_) => String::from("accepted"),
        };
        let mut e = edges(&[0], &[0]);
        e.num_users = Some(MAX_NODES);
        if bytes_for(MAX_NODES + 1, BUILD_BYTES_PER_NODE) > ceiling.bytes {
            let err = message(e);
            assert!(err.starts_with("num_users: 4294967295 nodes need"), "{err}");
            assert!(err.contains(ceiling.source), "{err}");
        }
        let top = u32::MAX - 1;
        if bytes_for(u64::from(top) + 1, BUILD_BYTES_PER_NODE) > ceiling.bytes {
            let err = message(edges(&[top], &[0]));
            let want = "users: 4294967295 nodes (one more than the largest id, 4294967294) need";
            assert!(err.starts_with(want), "{err}");
        }
    }

    #[test]
    fn empty_graph_with_counts_is_valid() -> Result<()> {
        let mut e = edges(&[], &[]);
        e.num_users = Some(2);
        e.num_items = Some(3);
        let g = BipartiteGraph::from_edges(e)?;
        assert_eq!(g.degrees(Side::Item), vec![0, 0, 0]);
        Ok(())
    }
}
