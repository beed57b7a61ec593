//! Numpy arrays over the sampler's output buffers that hand the buffer back to
//! `galrec_core::recycle` when the last array over it dies, so the next batch writes into
//! warm pages instead of fresh ones (see that module for why it matters).

use galrec_core::recycle::{self, worth_keeping};
use numpy::ndarray::ArrayViewMut1;
use numpy::{Element, IntoPyArray, PyArray1};
use pyo3::prelude::*;

/// A buffer owned by the arrays over it.
enum Buffer {
    Nodes(Vec<u32>),
    Offsets(Vec<i64>),
}

/// The base object of a large sampled array: owns its memory, and gives it back for reuse
/// when numpy drops the last reference (the array and any view of it).
#[pyclass(module = "galrec._core", frozen)]
pub struct SampleBuffer {
    buffer: Buffer,
}

impl Drop for SampleBuffer {
    fn drop(&mut self) {
        match &mut self.buffer {
            Buffer::Nodes(values) => recycle::NODES.give(std::mem::take(values)),
            Buffer::Offsets(values) => recycle::OFFSETS.give(std::mem::take(values)),
        }
    }
}

/// `values` as a numpy array without a copy; large ones get a [`SampleBuffer`] base.
fn array_of<T: Element>(
    py: Python<'_>,
    mut values: Vec<T>,
    buffer: impl FnOnce(Vec<T>) -> Buffer,
) -> PyResult<Bound<'_, PyArray1<T>>> {
    if !worth_keeping(&values) {
        return Ok(values.into_pyarray(py));
    }
    let (data, len) = (values.as_mut_ptr(), values.len());
    let owner = Bound::new(
        py,
        SampleBuffer {
            buffer: buffer(values),
        },
    )?;
    // SAFETY: `data` comes from `Vec::as_mut_ptr`, so it is non-null, aligned, valid for
    // reads and writes of `len` initialised elements, and does not assert a Rust reference
    // to them. Moving the vector into `owner` does not move or reallocate its heap buffer,
    // and `SampleBuffer` is frozen with no methods: nothing in Rust touches the buffer again
    // until `Drop`, which only moves the vector out. `borrow_from_array` makes `owner` the
    // array's base, so numpy holds a reference to it for as long as this array or any view
    // of it lives; the buffer is handed back only after the last of them is gone. Writes
    // from Python go through this pointer, which permits them.
    Ok(unsafe {
        let view = ArrayViewMut1::from_shape_ptr(len, data);
        PyArray1::borrow_from_array(&view, owner.into_any())
    })
}

/// Sampled node ids as a numpy array (uint32, not copied).
pub fn nodes_array(py: Python<'_>, nodes: Vec<u32>) -> PyResult<Bound<'_, PyArray1<u32>>> {
    array_of(py, nodes, Buffer::Nodes)
}

/// Sampled hop offsets as a numpy array (int64, not copied).
pub fn offsets_array(py: Python<'_>, offsets: Vec<i64>) -> PyResult<Bound<'_, PyArray1<i64>>> {
    array_of(py, offsets, Buffer::Offsets)
}
