//! Sparse (CSR) times dense products: LightGCN's propagation `A @ X` over the normalised
//! bipartite adjacency, which is most of a LightGCN training step.
//!
//! torch's CPU product of a CSR matrix and a dense one runs on one thread. This one splits the
//! rows over the caller's pool and computes each output row starting from zero, one fused
//! multiply-add per stored entry, in stored order: the same bits at any thread count (a row
//! never spans two tasks), and the same bits as torch's (MKL's) product wherever MKL sums that
//! way, as it does at LightGCN's 64 columns on the machines measured (not at 8 or 16).

use rayon::prelude::*;

use crate::error::{GraphError, Result};
use crate::memory::{try_with_capacity, try_zeroed};
use crate::parallel::on_caller;

/// Rows per parallel task: enough work per task (tens of thousands of multiply-adds on a
/// LightGCN graph) that work-stealing costs nothing next to it.
const ROWS_PER_TASK: usize = 256;

/// A `rows x cols` sparse matrix in compressed sparse row form, checked once at construction
/// so that every product after it indexes in bounds.
#[derive(Debug, Clone)]
pub struct CsrMatrix {
    rows: usize,
    cols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl CsrMatrix {
    /// Builds the matrix from CSR arrays: `indptr` (`rows + 1` non-decreasing offsets from 0 to
    /// `nnz`), `indices` (column of each stored entry, `< cols`) and `values`. Errors name the
    /// argument and the first offending position.
    pub fn new(
        rows: usize,
        cols: usize,
        indptr: &[i64],
        indices: &[i64],
        values: &[f32],
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
        Ok(Self {
            rows,
            cols,
            indptr: offsets,
            indices: columns,
            values: stored,
        })
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
        let task = |(index, block): (usize, &mut [f32])| {
            self.rows_into(index * ROWS_PER_TASK, dense, dim, block, accumulate)
        };
        if on_caller() {
            out.chunks_mut(ROWS_PER_TASK * dim)
                .enumerate()
                .for_each(task);
        } else {
            out.par_chunks_mut(ROWS_PER_TASK * dim)
                .enumerate()
                .for_each(task);
        }
        Ok(())
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
        let rows = 3 * ROWS_PER_TASK + 7;
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
