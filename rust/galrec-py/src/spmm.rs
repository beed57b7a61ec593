//! `galrec._core.CsrMatrix`: a checked CSR matrix whose product with a dense float32 matrix runs
//! on the caller's number of threads with the GIL released (`galrec_core::spmm`).

use galrec_core::parallel::with_threads;
use galrec_core::spmm::CsrMatrix;
use numpy::{
    IntoPyArray, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::args::{optional_unsigned, unsigned};
use crate::graph::to_py_err;

fn contiguous<'a, T: numpy::Element, D: numpy::ndarray::Dimension>(
    array: &'a numpy::PyReadonlyArray<'_, T, D>,
    argument: &str,
) -> PyResult<&'a [T]> {
    array
        .as_slice()
        .map_err(|_| PyValueError::new_err(format!("{argument}: must be C-contiguous")))
}

/// A sparse `rows x cols` float32 matrix in CSR form (int64 `indptr` and `indices`), checked
/// once when built. `matmul` sums each row as one fused multiply-add per entry in order
/// (torch's MKL product does the same at 64 columns) and runs in parallel; blocks of rows
/// whose sources exceed a core's cache go in column order (same bits) unless
/// `column_order=False`.
#[pyclass(name = "CsrMatrix", module = "galrec._core", frozen)]
pub struct PyCsrMatrix {
    inner: CsrMatrix,
}

#[pymethods]
impl PyCsrMatrix {
    #[new]
    #[pyo3(signature = (rows, cols, indptr, indices, values, *, column_order=true))]
    fn new(
        py: Python<'_>,
        rows: i128,
        cols: i128,
        indptr: PyReadonlyArray1<'_, i64>,
        indices: PyReadonlyArray1<'_, i64>,
        values: PyReadonlyArray1<'_, f32>,
        column_order: bool,
    ) -> PyResult<Self> {
        let rows: usize = unsigned(rows, "rows")?;
        let cols: usize = unsigned(cols, "cols")?;
        let (indptr, indices, values) = (
            contiguous(&indptr, "indptr")?,
            contiguous(&indices, "indices")?,
            contiguous(&values, "values")?,
        );
        let inner = py
            .detach(|| {
                CsrMatrix::with_column_order(rows, cols, indptr, indices, values, column_order)
            })
            .map_err(to_py_err)?;
        Ok(Self { inner })
    }

    /// `(rows, cols)`.
    #[getter]
    fn shape(&self) -> (usize, usize) {
        (self.inner.rows(), self.inner.cols())
    }

    /// Number of stored entries.
    #[getter]
    fn nnz(&self) -> usize {
        self.inner.nnz()
    }

    /// `self @ dense` for a C-contiguous float32 `[cols, dim]` array, as a new `[rows, dim]`
    /// array, or written into `out` (C-contiguous float32 `[rows, dim]`, not overlapping
    /// `dense`), or added to `out` when `accumulate`; `num_threads` threads (default: one per
    /// core, or `RAYON_NUM_THREADS`). Reusing `out` spares a large allocation per product.
    #[pyo3(signature = (dense, *, out=None, accumulate=false, num_threads=None))]
    fn matmul<'py>(
        &self,
        py: Python<'py>,
        dense: PyReadonlyArray2<'py, f32>,
        out: Option<Bound<'py, PyArray2<f32>>>,
        accumulate: bool,
        num_threads: Option<i128>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let num_threads = optional_unsigned(num_threads, "num_threads")?;
        let dim = dense.shape()[1];
        let values = contiguous(&dense, "dense")?;
        let Some(out) = out else {
            if accumulate {
                return Err(PyValueError::new_err(
                    "accumulate: needs an `out` array to add the product to",
                ));
            }
            let product = py
                .detach(|| with_threads(num_threads, || self.inner.matmul(values, dim)))
                .and_then(|r| r)
                .map_err(to_py_err)?;
            return product.into_pyarray(py).reshape([self.inner.rows(), dim]);
        };
        if out.shape() != [self.inner.rows(), dim] {
            return Err(PyValueError::new_err(format!(
                "out: needs shape ({}, {dim}), got {:?}",
                self.inner.rows(),
                out.shape()
            )));
        }
        {
            // numpy's borrow checker refuses a writable view of memory `dense` is read from.
            let mut writable = out.try_readwrite().map_err(|_| {
                PyValueError::new_err("out: must be writable and must not overlap `dense`")
            })?;
            let target = writable
                .as_slice_mut()
                .map_err(|_| PyValueError::new_err("out: must be C-contiguous"))?;
            py.detach(|| {
                with_threads(num_threads, || {
                    self.inner.matmul_into(values, dim, target, accumulate)
                })
            })
            .and_then(|r| r)
            .map_err(to_py_err)?;
        }
        Ok(out)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCsrMatrix>()
}
