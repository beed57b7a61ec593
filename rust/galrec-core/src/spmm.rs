//! Sparse (CSR) times dense products: LightGCN's propagation `A @ X` over the normalised
//! bipartite adjacency, which is most of a LightGCN training step.
//!
//! torch's CPU product of a CSR matrix and a dense one runs on one thread. This one splits the
//! rows over the caller's pool and computes each output row starting from zero, one fused
//! multiply-add per stored entry, in stored order: the same bits at any thread count (a row
//! never spans two tasks), and the same bits as torch's (MKL's) product wherever MKL sums that
//! way, as it does at LightGCN's 64 columns on the machines measured (not at 8 or 16).
//!
//! Rows go in blocks of [`BLOCK_ROWS`]. A block whose source rows would not stay in a core's
//! cache (a million-edge graph's item rows gather from 50,000 user rows) is summed in column
//! order instead: each source row read once, added to every output row of the block that
//! holds it, the block's output staying in L2. Where every row's columns are sorted (as torch
//! and scipy store them) that visits each row's entries in stored order, so the bits are the
//! same either way; the column-ordered copy of the entries costs about 6 bytes per entry.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::error::{GraphError, Result};
use crate::memory::{try_with_capacity, try_zeroed};
use crate::parallel::on_caller;

/// Rows per parallel task of the row kernel: enough work per task (tens of thousands of
/// multiply-adds on a LightGCN graph) that work-stealing costs nothing next to it, and small
/// enough that a few thousand rows still spread over the threads.
const ROWS_PER_TASK: usize = 256;

/// Output rows per block of the column-ordered layout (one task each): 2,048 rows of 64
/// float32 are 512 KiB, which stay in a core's L2 cache while the block is summed.
const BLOCK_ROWS: usize = 2048;

// Row tasks tile a block exactly, so a block's rows are one block's whichever path it takes.
const _: () = assert!(BLOCK_ROWS % ROWS_PER_TASK == 0);

/// Bytes of source rows past which a block is summed in column order: well past a core's L2
/// cache (1-2 MiB), gathering a block's rows one entry at a time waits on L3 or memory for
/// most of them, while column order reads each source row once, in increasing order. (On
/// million-edge LightGCN graphs 2, 4 and 8 MiB measured alike, 1 MiB and less slower;
/// docs/benchmarks.md.)
const GATHER_BUDGET: usize = 4 << 20;

/// The width at which [`CsrMatrix::new`] judges whether a block could need column order:
/// a full 64-column tile, LightGCN's width.
const JUDGED_WIDTH: usize = 64;

/// A `rows x cols` sparse matrix in compressed sparse row form, checked once at construction
/// so that every product after it indexes in bounds.
#[derive(Debug, Clone)]
pub struct CsrMatrix {
    rows: usize,
    cols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
    /// The same entries grouped by column within each block of rows, where every row's
    /// columns are non-decreasing (then column order visits each row's entries in stored
    /// order, so both orders give the same bits); `None` otherwise.
    by_column: Option<ColumnBlocks>,
}

/// A CSR matrix's entries block by block ([`BLOCK_ROWS`] rows each), and inside a block
/// grouped by column in increasing order (a CSC form of each block).
#[derive(Debug, Clone)]
struct ColumnBlocks {
    /// Block `b`'s columns are `columns[block_starts[b]..block_starts[b + 1]]`.
    block_starts: Vec<usize>,
    /// Each block's columns that hold an entry, increasing.
    columns: Vec<u32>,
    /// The entries of `columns[k]` are `rows[column_starts[k]..column_starts[k + 1]]`.
    column_starts: Vec<usize>,
    /// Each entry's row, counted from the first row of its block.
    rows: Vec<u16>,
    values: Vec<f32>,
}

impl CsrMatrix {
    /// Builds the matrix from CSR arrays: `indptr` (`rows + 1` non-decreasing offsets from 0 to
    /// `nnz`), `indices` (column of each stored entry, `< cols`) and `values`. Errors name the
    /// argument and the first offending position. Keeps the column-ordered copy of the entries
    /// where it can pay (see [`Self::with_column_order`]).
    pub fn new(
        rows: usize,
        cols: usize,
        indptr: &[i64],
        indices: &[i64],
        values: &[f32],
    ) -> Result<Self> {
        Self::with_column_order(rows, cols, indptr, indices, values, true)
    }

    /// [`Self::new`], keeping the column-ordered copy of the entries only if `column_order`
    /// (and every row's columns are sorted, and some block could gather more than
    /// [`GATHER_BUDGET`] bytes at [`JUDGED_WIDTH`] columns). Without it every block is summed row by row,
    /// with the same bits, about 6 bytes per entry lighter.
    pub fn with_column_order(
        rows: usize,
        cols: usize,
        indptr: &[i64],
        indices: &[i64],
        values: &[f32],
        column_order: bool,
    ) -> Result<Self> {
        if indptr.len().checked_sub(1) != Some(rows) {
            return Err(GraphError::invalid(
                "indptr",
                format!("needs rows + 1 offsets ({rows} rows), got {}", indptr.len()),
            ));
        }
        if indices.len() != values.len() {
            return Err(GraphError::invalid(
                "values",
                format!(
                    "needs one value per column index ({}), got {}",
                    indices.len(),
                    values.len()
                ),
            ));
        }
        if indptr[0] != 0 || indptr[rows] != indices.len() as i64 {
            return Err(GraphError::invalid(
                "indptr",
                format!(
                    "must run from 0 to nnz = {}, runs from {} to {}",
                    indices.len(),
                    indptr[0],
                    indptr[rows]
                ),
            ));
        }
        if let Some(row) = indptr.windows(2).position(|w| w[1] < w[0]) {
            return Err(GraphError::invalid(
                "indptr",
                format!(
                    "decreases at row {row}: {} then {}",
                    indptr[row],
                    indptr[row + 1]
                ),
            ));
        }
        if cols > u32::MAX as usize + 1 {
            return Err(GraphError::invalid(
                "cols",
                format!("at most 2^32 columns, got {cols}"),
            ));
        }
        if let Some(at) = indices
            .iter()
            .position(|&c| c < 0 || c as u64 >= cols as u64)
        {
            return Err(GraphError::invalid(
                "indices",
                format!("entry {at} is column {}, outside 0..{cols}", indices[at]),
            ));
        }
        // Non-negative and at most nnz or cols (checked above), so the casts are exact.
        let mut offsets = try_with_capacity(indptr.len(), "indptr")?;
        offsets.extend(indptr.iter().map(|&p| p as usize));
        let mut columns = try_with_capacity(indices.len(), "indices")?;
        columns.extend(indices.iter().map(|&c| c as u32));
        let mut stored = try_with_capacity(values.len(), "values")?;
        stored.extend_from_slice(values);
        let mut matrix = Self {
            rows,
            cols,
            indptr: offsets,
            indices: columns,
            values: stored,
            by_column: None,
        };
        if column_order {
            matrix.by_column = matrix.column_blocks()?;
        }
        Ok(matrix)
    }

    /// The column-ordered copy of the entries, when every row's columns are non-decreasing
    /// and some block could gather more than [`GATHER_BUDGET`] bytes of [`JUDGED_WIDTH`]-wide
    /// rows (so small matrices, which never use it, do not pay for it).
    fn column_blocks(&self) -> Result<Option<ColumnBlocks>> {
        let may_pay = (0..self.rows).step_by(BLOCK_ROWS).any(|first| {
            let last = (first + BLOCK_ROWS).min(self.rows);
            let reach = (self.indptr[last] - self.indptr[first]).min(self.cols);
            reach.saturating_mul(JUDGED_WIDTH * 4) > GATHER_BUDGET
        });
        let sorted = || {
            (0..self.rows).all(|r| {
                self.indices[self.indptr[r]..self.indptr[r + 1]]
                    .windows(2)
                    .all(|w| w[0] <= w[1])
            })
        };
        if !may_pay || !sorted() {
            return Ok(None);
        }
        let mut layout = ColumnBlocks {
            block_starts: vec![0],
            columns: Vec::new(),
            column_starts: vec![0],
            rows: try_with_capacity(self.nnz(), "the column-ordered entries")?,
            values: try_with_capacity(self.nnz(), "the column-ordered entries")?,
        };
        let mut entries: Vec<(u32, u16, f32)> = Vec::new();
        for first in (0..self.rows).step_by(BLOCK_ROWS) {
            let last = (first + BLOCK_ROWS).min(self.rows);
            entries.clear();
            for row in first..last {
                // `row - first < BLOCK_ROWS`, which fits in a u16 (checked at compile time).
                let local = (row - first) as u16;
                let span = self.indptr[row]..self.indptr[row + 1];
                entries.extend(
                    self.indices[span.clone()]
                        .iter()
                        .zip(&self.values[span])
                        .map(|(&col, &value)| (col, local, value)),
                );
            }
            // Stable: a column's entries stay in row order, a row's duplicates in stored order.
            entries.sort_by_key(|&(col, _, _)| col);
            for column in entries.chunk_by(|a, b| a.0 == b.0) {
                layout.columns.push(column[0].0);
                layout.rows.extend(column.iter().map(|&(_, row, _)| row));
                layout
                    .values
                    .extend(column.iter().map(|&(_, _, value)| value));
                layout.column_starts.push(layout.rows.len());
            }
            layout.block_starts.push(layout.columns.len());
        }
        Ok(Some(layout))
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// `out = self @ dense`, or `out += self @ dense` when `accumulate` (each row's product is
    /// summed first, then added to the row once: `out + (self @ dense)` exactly as two separate
    /// steps would round it), with `dense` row-major `[cols, dim]` and `out` `[rows, dim]`.
    /// Runs on the current pool (see [`crate::parallel::with_threads`]).
    pub fn matmul_into(
        &self,
        dense: &[f32],
        dim: usize,
        out: &mut [f32],
        accumulate: bool,
    ) -> Result<()> {
        if dim == 0 {
            return Err(GraphError::invalid("dense", "needs at least one column"));
        }
        if Some(dense.len()) != self.cols.checked_mul(dim) {
            return Err(GraphError::invalid(
                "dense",
                format!("needs {} x {dim} values, got {}", self.cols, dense.len()),
            ));
        }
        if Some(out.len()) != self.rows.checked_mul(dim) {
            return Err(GraphError::invalid(
                "out",
                format!("needs {} x {dim} values, got {}", self.rows, out.len()),
            ));
        }
        self.blocks_into(dense, dim, out, accumulate, GATHER_BUDGET)
    }

    /// [`Self::matmul_into`] after the checks: each block of rows in column order when it
    /// would gather more than `budget` bytes of source rows and the layout exists, else row
    /// by row. Both orders sum every output row's entries in stored order: the same bits.
    fn blocks_into(
        &self,
        dense: &[f32],
        dim: usize,
        out: &mut [f32],
        accumulate: bool,
        budget: usize,
    ) -> Result<()> {
        let parallel = !on_caller();
        let rows_task = |first: usize| {
            move |(index, rows): (usize, &mut [f32])| {
                self.rows_into(first + index * ROWS_PER_TASK, dense, dim, rows, accumulate)
            }
        };
        let task = |(index, block): (usize, &mut [f32])| match &self.by_column {
            Some(layout) if layout.source_bytes(index, dim) > budget => {
                layout.block_into(index, dense, dim, block, accumulate)
            }
            _ => {
                let rows = rows_task(index * BLOCK_ROWS);
                if parallel {
                    block
                        .par_chunks_mut(ROWS_PER_TASK * dim)
                        .enumerate()
                        .for_each(rows);
                } else {
                    block
                        .chunks_mut(ROWS_PER_TASK * dim)
                        .enumerate()
                        .for_each(rows);
                }
                Ok(())
            }
        };
        if parallel {
            out.par_chunks_mut(BLOCK_ROWS * dim)
                .enumerate()
                .try_for_each(task)
        } else {
            out.chunks_mut(BLOCK_ROWS * dim)
                .enumerate()
                .try_for_each(task)
        }
    }

    /// `self @ dense` as a new `[rows, dim]` row-major vector.
    pub fn matmul(&self, dense: &[f32], dim: usize) -> Result<Vec<f32>> {
        let len = self.rows.checked_mul(dim).ok_or_else(|| {
            GraphError::invalid("dense", format!("{} x {dim} outputs overflow", self.rows))
        })?;
        let mut out = try_zeroed::<f32>(len, "the product's rows")?;
        self.matmul_into(dense, dim, &mut out, false)?;
        Ok(out)
    }

    /// The output rows `first..` that fit in `block`, with the fastest fused multiply-add the
    /// CPU has.
    fn rows_into(&self, first: usize, dense: &[f32], dim: usize, block: &mut [f32], add: bool) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx2")
        {
            // SAFETY: `rows_fma` only enables the target features `avx2` and `fma`, which
            // the two checks above have just confirmed this CPU supports; its body is the
            // same safe code as `rows_portable`.
            unsafe { self.rows_fma(first, dense, dim, block, add) };
            return;
        }
        self.rows_portable(first, dense, dim, block, add);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_fma(
        &self,
        first: usize,
        dense: &[f32],
        dim: usize,
        block: &mut [f32],
        add: bool,
    ) {
        self.rows_portable(first, dense, dim, block, add);
    }

    /// Each row: zero, then `out += value * dense[col]` per stored entry in order, with one
    /// rounding per entry (`mul_add`), as torch's CSR product computes it. The row is done in
    /// column tiles whose accumulators stay in registers (64 columns: eight AVX2 registers);
    /// with `add` the finished tile is added to the row instead of stored.
    #[inline(always)]
    fn rows_portable(&self, first: usize, dense: &[f32], dim: usize, block: &mut [f32], add: bool) {
        for (offset, out) in block.chunks_exact_mut(dim).enumerate() {
            let row = first + offset;
            let entries = self.indptr[row]..self.indptr[row + 1];
            let (cols, values) = (&self.indices[entries.clone()], &self.values[entries]);
            let mut start = 0;
            while start + 64 <= dim {
                tile::<64>(cols, values, dense, dim, start, out, add);
                start += 64;
            }
            while start + 16 <= dim {
                tile::<16>(cols, values, dense, dim, start, out, add);
                start += 16;
            }
            while start < dim {
                tile::<1>(cols, values, dense, dim, start, out, add);
                start += 1;
            }
        }
    }
}

thread_local! {
    /// Each thread's sums of one block for an accumulating product, kept between calls:
    /// LightGCN accumulates every product, and a fresh 512 KiB per block cost page faults.
    static BLOCK_SUMS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

// Local row numbers in `ColumnBlocks::rows` are u16.
const _: () = assert!(BLOCK_ROWS <= u16::MAX as usize + 1);

impl ColumnBlocks {
    /// Bytes of source rows that block `block` reads at `dim` columns.
    fn source_bytes(&self, block: usize, dim: usize) -> usize {
        let columns = self.block_starts[block + 1] - self.block_starts[block];
        columns.saturating_mul(dim).saturating_mul(4)
    }

    /// Block `block` of `self @ dense` into `out` (its rows), or added to them: summed from
    /// zero one column at a time, so each source row is read once and each output row stays
    /// in cache.
    fn block_into(
        &self,
        block: usize,
        dense: &[f32],
        dim: usize,
        out: &mut [f32],
        add: bool,
    ) -> Result<()> {
        if !add {
            out.fill(0.0);
            self.sum_block(block, dense, dim, out);
            return Ok(());
        }
        BLOCK_SUMS.with_borrow_mut(|sums| {
            sums.clear();
            sums.try_reserve(out.len())
                .map_err(|_| GraphError::out_of_memory("a block of the product", out.len(), 4))?;
            sums.resize(out.len(), 0.0);
            self.sum_block(block, dense, dim, sums);
            for (o, s) in out.iter_mut().zip(sums.iter()) {
                *o += s;
            }
            Ok(())
        })
    }

    /// `sums += entries of block @ dense`, with the fastest fused multiply-add the CPU has.
    fn sum_block(&self, block: usize, dense: &[f32], dim: usize, sums: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx2")
        {
            // SAFETY: `sum_block_fma` only enables the target features `avx2` and `fma`,
            // which the two checks above have just confirmed this CPU supports; its body is
            // the same safe code as `sum_block_portable`.
            unsafe { self.sum_block_fma(block, dense, dim, sums) };
            return;
        }
        self.sum_block_portable(block, dense, dim, sums);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn sum_block_fma(&self, block: usize, dense: &[f32], dim: usize, sums: &mut [f32]) {
        self.sum_block_portable(block, dense, dim, sums);
    }

    /// Column by column in increasing order, `sums[row] = value * dense[col] + sums[row]`
    /// with one rounding (`mul_add`), in column tiles held in registers as the row kernel's.
    #[inline(always)]
    fn sum_block_portable(&self, block: usize, dense: &[f32], dim: usize, sums: &mut [f32]) {
        let mut start = 0;
        while start + 64 <= dim {
            self.column_tile::<64>(block, dense, dim, start, sums);
            start += 64;
        }
        while start + 16 <= dim {
            self.column_tile::<16>(block, dense, dim, start, sums);
            start += 16;
        }
        while start < dim {
            self.column_tile::<1>(block, dense, dim, start, sums);
            start += 1;
        }
    }

    #[inline(always)]
    fn column_tile<const W: usize>(
        &self,
        block: usize,
        dense: &[f32],
        dim: usize,
        start: usize,
        sums: &mut [f32],
    ) {
        for k in self.block_starts[block]..self.block_starts[block + 1] {
            let from = self.columns[k] as usize * dim + start;
            let mut x = [0.0f32; W];
            x.copy_from_slice(&dense[from..from + W]);
            let entries = self.column_starts[k]..self.column_starts[k + 1];
            for (&row, &value) in self.rows[entries.clone()].iter().zip(&self.values[entries]) {
                let at = row as usize * dim + start;
                for (s, &x) in sums[at..at + W].iter_mut().zip(&x) {
                    *s = value.mul_add(x, *s);
                }
            }
        }
    }
}

/// Columns `start..start + W` of one output row: `sum_k values[k] * dense[cols[k], ..]`,
/// accumulated from zero in entry order with `mul_add`, then stored (or, with `add`,
/// added to what the row holds).
#[inline(always)]
fn tile<const W: usize>(
    cols: &[u32],
    values: &[f32],
    dense: &[f32],
    dim: usize,
    start: usize,
    out: &mut [f32],
    add: bool,
) {
    let mut acc = [0.0f32; W];
    for (&col, &value) in cols.iter().zip(values) {
        let from = col as usize * dim + start;
        for (a, &x) in acc.iter_mut().zip(&dense[from..from + W]) {
            *a = value.mul_add(x, *a);
        }
    }
    let out = &mut out[start..start + W];
    if add {
        for (o, a) in out.iter_mut().zip(acc) {
            *o += a;
        }
    } else {
        out.copy_from_slice(&acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::with_threads;

    /// A 3 x 4 matrix [[1, 0, 2, 0], [0, 0, 0, 0], [0, 3, 0, 4]].
    fn small() -> CsrMatrix {
        CsrMatrix::new(3, 4, &[0, 2, 2, 4], &[0, 2, 1, 3], &[1.0, 2.0, 3.0, 4.0]).unwrap()
    }

    #[test]
    fn product_matches_a_hand_computed_case() {
        let dense = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0]; // [4, 2]
        let out = small().matmul(&dense, 2).unwrap();
        assert_eq!(out, vec![7.0, 70.0, 0.0, 0.0, 22.0, 220.0]);
    }

    #[test]
    fn rounding_is_one_fused_multiply_add_per_entry_in_order() {
        // 1 + 2^-24 is not a float32: a separate multiply would round the product to 1 and
        // the sum to 0; the fused multiply-add keeps the low bit and returns 2^-24.
        let a = 1.0 + f32::EPSILON;
        let m = CsrMatrix::new(1, 2, &[0, 2], &[0, 1], &[-1.0, a]).unwrap();
        let out = m.matmul(&[1.0, 1.0 - f32::EPSILON], 1).unwrap();
        assert_eq!(out[0], a.mul_add(1.0 - f32::EPSILON, -1.0));
        assert_ne!(out[0], -1.0 + a * (1.0 - f32::EPSILON));
    }

    #[test]
    fn accumulating_adds_each_finished_row_once() {
        let dense = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0]; // [4, 2]
        let mut out = vec![0.5, -1.0, 2.0, 3.0, 1e8, 0.25];
        small().matmul_into(&dense, 2, &mut out, true).unwrap();
        assert_eq!(out, vec![7.5, 69.0, 2.0, 3.0, 1e8 + 24.0, 220.25]);
        // The row's sum (9) is finished before it meets what `out` held: float32's spacing
        // near 1e8 is 8, so 9 survives the addition, while each 3 added alone would vanish.
        let m = CsrMatrix::new(1, 3, &[0, 3], &[0, 1, 2], &[1.0; 3]).unwrap();
        let mut out = vec![1e8 - 8.0];
        m.matmul_into(&[3.0, 3.0, 3.0], 1, &mut out, true).unwrap();
        assert_eq!(out, vec![(1e8 - 8.0) + 9.0]);
        assert_eq!(out, vec![1e8]);
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let rows = 3 * BLOCK_ROWS + 7;
        let cols = 50;
        let mut indptr = vec![0i64];
        let mut indices = Vec::new();
        let mut values = Vec::new();
        for r in 0..rows {
            for k in 0..(r % 9) {
                indices.push(((r * 7 + k * 13) % cols) as i64);
                values.push(1.0 / (1 + r + k) as f32);
            }
            indptr.push(indices.len() as i64);
        }
        let m = CsrMatrix::new(rows, cols, &indptr, &indices, &values).unwrap();
        // 83 columns: a 64-wide tile, a 16-wide one and three single columns.
        for dim in [5, 83] {
            let dense: Vec<f32> = (0..cols * dim).map(|i| (i as f32 * 0.37).sin()).collect();
            let one = with_threads(Some(1), || m.matmul(&dense, dim))
                .unwrap()
                .unwrap();
            let three = with_threads(Some(3), || m.matmul(&dense, dim))
                .unwrap()
                .unwrap();
            assert_eq!(one, three);
            let mut reference = vec![0.0f32; rows * dim];
            for r in 0..rows {
                for k in indptr[r] as usize..indptr[r + 1] as usize {
                    for j in 0..dim {
                        let x = dense[indices[k] as usize * dim + j];
                        reference[r * dim + j] = values[k].mul_add(x, reference[r * dim + j]);
                    }
                }
            }
            assert_eq!(one, reference);
        }
        assert_eq!((m.rows(), m.cols()), (rows, cols));
        assert_eq!(m.nnz(), indices.len());
    }

    /// `rows` rows of 20 random sorted columns below `cols` (every 11th row empty, every 7th
    /// with its last column twice), each entry with its own value; with `unsorted`, row 1's
    /// first two entries swapped.
    fn scattered(rows: usize, cols: usize, unsorted: bool) -> CsrMatrix {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % cols as u64) as i64
        };
        let (mut indptr, mut indices, mut values) = (vec![0i64], Vec::new(), Vec::new());
        for r in 0..rows {
            let mut row: Vec<i64> = (0..if r % 11 == 0 { 0 } else { 20 })
                .map(|_| next())
                .collect();
            row.sort_unstable();
            if let (0, Some(&last)) = (r % 7, row.last()) {
                row.push(last);
            }
            if unsorted && r == 1 {
                row.swap(0, 1);
            }
            for c in row {
                indices.push(c);
                values.push((indices.len() as f32 * 0.731).sin());
            }
            indptr.push(indices.len() as i64);
        }
        CsrMatrix::new(rows, cols, &indptr, &indices, &values).unwrap()
    }

    #[test]
    fn column_order_gives_the_row_kernels_bits() {
        // Blocks of 2,048 rows x 20 entries over 40,000 columns: about 25,000 sources each,
        // 6.5 MB at 64 columns, so the column-ordered copy is built.
        let (rows, cols) = (2 * BLOCK_ROWS + 37, 40_000);
        let m = scattered(rows, cols, false);
        assert!(m.by_column.is_some());
        for dim in [1, 16, 64, 83] {
            let dense: Vec<f32> = (0..cols * dim).map(|i| (i as f32 * 0.37).cos()).collect();
            let start: Vec<f32> = (0..rows * dim).map(|i| (i % 13) as f32 - 6.5).collect();
            for accumulate in [false, true] {
                let product = |budget: usize, threads: usize| {
                    let mut out = start.clone();
                    with_threads(Some(threads), || {
                        m.blocks_into(&dense, dim, &mut out, accumulate, budget)
                    })
                    .unwrap()
                    .unwrap();
                    out
                };
                let by_rows = product(usize::MAX, 1);
                assert_eq!(product(0, 1), by_rows, "dim {dim}, accumulate {accumulate}");
                assert_eq!(product(0, 3), by_rows, "dim {dim}, accumulate {accumulate}");
            }
        }
        // The default budget takes column order for these blocks at 64 columns, and the
        // public product agrees.
        let dense: Vec<f32> = (0..cols * 64).map(|i| (i as f32 * 0.37).cos()).collect();
        let layout = m.by_column.as_ref().unwrap();
        assert!(layout.source_bytes(0, 64) > GATHER_BUDGET);
        let mut by_rows = vec![0.0; rows * 64];
        m.blocks_into(&dense, 64, &mut by_rows, false, usize::MAX)
            .unwrap();
        assert_eq!(m.matmul(&dense, 64).unwrap(), by_rows);
    }

    #[test]
    fn column_order_needs_sorted_rows_and_a_matrix_worth_it() {
        // A row whose columns decrease would be summed in another order: row kernel only.
        assert!(scattered(2 * BLOCK_ROWS, 40_000, true).by_column.is_none());
        // No block can gather 4 MiB of 64-wide rows from 50 columns: no copy is made.
        assert!(scattered(2 * BLOCK_ROWS, 50, false).by_column.is_none());
        assert!(small().by_column.is_none());
    }

    #[test]
    fn column_order_can_be_declined() {
        let wide = scattered(2 * BLOCK_ROWS, 40_000, false);
        let (indptr, indices): (Vec<i64>, Vec<i64>) = (
            wide.indptr.iter().map(|&p| p as i64).collect(),
            wide.indices.iter().map(|&c| i64::from(c)).collect(),
        );
        let rows_only = CsrMatrix::with_column_order(
            wide.rows,
            wide.cols,
            &indptr,
            &indices,
            &wide.values,
            false,
        )
        .unwrap();
        assert!(rows_only.by_column.is_none() && wide.by_column.is_some());
        let dense: Vec<f32> = (0..wide.cols * 64)
            .map(|i| (i as f32 * 0.37).cos())
            .collect();
        assert_eq!(
            rows_only.matmul(&dense, 64).unwrap(),
            wide.matmul(&dense, 64).unwrap()
        );
    }

    #[test]
    fn malformed_arrays_are_errors_naming_the_argument() {
        let err = |r: Result<CsrMatrix>| r.unwrap_err().to_string();
        assert!(
            err(CsrMatrix::new(3, 4, &[0, 2, 4], &[0, 1, 2, 3], &[1.0; 4])).starts_with("indptr")
        );
        assert!(err(CsrMatrix::new(1, 4, &[0, 2], &[0, 1], &[1.0])).starts_with("values"));
        // A row count with no `rows + 1` is an error, not an overflow.
        assert!(err(CsrMatrix::new(usize::MAX, 4, &[0], &[], &[])).starts_with("indptr"));
        assert!(err(CsrMatrix::new(2, 4, &[0, 2, 1], &[0, 1], &[1.0; 2])).contains("from 0 to"));
        assert!(err(CsrMatrix::new(3, 4, &[0, 2, 1, 2], &[0, 1], &[1.0; 2]))
            .contains("decreases at row 1"));
        assert!(
            err(CsrMatrix::new(1, 4, &[0, 2], &[0, 4], &[1.0; 2])).contains("entry 1 is column 4")
        );
        assert!(err(CsrMatrix::new(1, 4, &[0, 1], &[-1], &[1.0])).contains("entry 0"));
        let m = small();
        assert!(m
            .matmul(&[1.0; 7], 2)
            .unwrap_err()
            .to_string()
            .starts_with("dense"));
        assert!(m.matmul(&[], 0).is_err());
        let mut short = [0.0; 5];
        assert!(m
            .matmul_into(&[1.0; 8], 2, &mut short, false)
            .unwrap_err()
            .to_string()
            .starts_with("out"));
    }
}
