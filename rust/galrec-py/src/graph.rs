//! `galrec._core.BipartiteGraph`: converts numpy arrays and errors, then calls
//! `galrec_core::{graph, storage, sample}` with the GIL released.

use std::path::PathBuf;

use galrec_core::error::GraphError;
use galrec_core::graph::{BipartiteGraph, EdgeList, Side, Timestamps};
use galrec_core::memory::{try_par_collect, try_with_capacity};
use galrec_core::parallel::{first_index, with_threads, SEQUENTIAL_UP_TO};
use galrec_core::sample::{sample, sample_many, Hop, SampleSpec, Strategy};
use galrec_core::storage;
use numpy::{
    Element, IntoPyArray, PyArray1, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray1,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyFileNotFoundError, PyMemoryError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use rayon::prelude::*;

use crate::args::{optional_unsigned, unsigned};
use crate::recycled::{nodes_array, offsets_array};

pyo3::create_exception!(
    galrec._core,
    GraphFileError,
    PyValueError,
    "A graph file is truncated, corrupted, or of an unsupported format version."
);

pub(crate) fn to_py_err(err: GraphError) -> PyErr {
    let message = err.to_string();
    match err {
        GraphError::InvalidArgument { .. } => PyValueError::new_err(message),
        GraphError::Format { .. } => GraphFileError::new_err(message),
        GraphError::OutOfMemory { .. } => PyMemoryError::new_err(message),
        GraphError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        GraphError::Io { .. } => PyOSError::new_err(message),
    }
}

/// A 1-d numpy column, borrowed in place when its dtype and layout already fit, else converted.
enum Column<'py, T: Element> {
    Borrowed(PyReadonlyArray1<'py, T>),
    Owned(Vec<T>),
}

impl<T: Element> Column<'_, T> {
    fn slice(&self) -> PyResult<&[T]> {
        match self {
            Column::Borrowed(a) => a
                .as_slice()
                .map_err(|e| PyValueError::new_err(format!("array not contiguous: {e}"))),
            Column::Owned(v) => Ok(v),
        }
    }
}

/// `obj` as a one-dimensional numpy array (array-likes go through `numpy.asarray`).
fn as_array<'py>(obj: &Bound<'py, PyAny>, argument: &str) -> PyResult<Bound<'py, PyUntypedArray>> {
    let array = match obj.cast::<PyUntypedArray>() {
        Ok(a) => a.clone(),
        Err(_) => {
            let converted = obj.py().import("numpy")?.call_method1("asarray", (obj,))?;
            converted
                .cast_into::<PyUntypedArray>()
                .map_err(|_| PyTypeError::new_err(format!("{argument}: expected a numpy array")))?
        }
    };
    if array.ndim() != 1 {
        return Err(PyValueError::new_err(format!(
            "{argument}: expected a one-dimensional array, got {} dimensions",
            array.ndim()
        )));
    }
    Ok(array)
}

/// Borrows `array` as `T` when its dtype is exactly `T` and it is contiguous.
fn borrow_exact<'py, T: Element>(array: &Bound<'py, PyUntypedArray>) -> Option<Column<'py, T>> {
    let typed = array.cast::<PyArray1<T>>().ok()?;
    let readonly = typed.readonly();
    readonly
        .as_slice()
        .is_ok()
        .then_some(Column::Borrowed(readonly))
}

/// Converts every element of an integer array of dtype `S` with `convert`, reporting the
/// first failure as "`argument`: <message> at index i".
fn convert_ints<S, T, F>(
    array: &Bound<'_, PyUntypedArray>,
    argument: &str,
    convert: F,
) -> PyResult<Vec<T>>
where
    S: Element + Copy + Into<i128> + Sync,
    T: Send + Default,
    F: Fn(i128) -> Result<T, String> + Sync,
{
    let typed = array.cast::<PyArray1<S>>()?.readonly();
    let fail = |i: usize, message: String| {
        PyValueError::new_err(format!("{argument}: {message} at index {i}"))
    };
    if let Ok(values) = typed.as_slice() {
        // Validate, then convert with an indexed map (collecting `Result`s in parallel would
        // go through rayon's unindexed path, several times slower).
        if values.len() <= SEQUENTIAL_UP_TO {
            return convert_each(values.iter().copied(), values.len(), argument, convert);
        }
        let first_bad = with_threads(None, || {
            first_index(values, |&v| convert(v.into()).is_err())
        })
        .map_err(to_py_err)?;
        if let Some(i) = first_bad {
            let message = convert(values[i].into()).err().unwrap_or_default();
            return Err(fail(i, message));
        }
        let value = |&v: &S| convert(v.into()).unwrap_or_default();
        return with_threads(None, || {
            try_par_collect(values.par_iter().map(value), argument)
        })
        .and_then(|r| r)
        .map_err(to_py_err);
    }
    let view = typed.as_array();
    convert_each(view.iter().copied(), view.len(), argument, convert)
}

/// [`convert_ints`] one element at a time into a buffer allocated fallibly (a `MemoryError`,
/// never an abort), reporting the first failure as "`argument`: <message> at index i".
fn convert_each<S, T, F>(
    values: impl Iterator<Item = S>,
    len: usize,
    argument: &str,
    convert: F,
) -> PyResult<Vec<T>>
where
    S: Into<i128>,
    F: Fn(i128) -> Result<T, String>,
{
    let mut out = try_with_capacity(len, argument).map_err(to_py_err)?;
    for (i, v) in values.enumerate() {
        out.push(
            convert(v.into())
                .map_err(|m| PyValueError::new_err(format!("{argument}: {m} at index {i}")))?,
        );
    }
    Ok(out)
}

/// Dispatches on the integer dtype of `array`; rejects booleans, floats and everything else.
macro_rules! with_int_dtype {
    ($array:expr, $argument:expr, $convert:expr) => {{
        let dtype = $array.dtype();
        match (dtype.kind(), dtype.itemsize()) {
            (b'i', 1) => convert_ints::<i8, _, _>($array, $argument, $convert),
            (b'i', 2) => convert_ints::<i16, _, _>($array, $argument, $convert),
            (b'i', 4) => convert_ints::<i32, _, _>($array, $argument, $convert),
            (b'i', 8) => convert_ints::<i64, _, _>($array, $argument, $convert),
            (b'u', 1) => convert_ints::<u8, _, _>($array, $argument, $convert),
            (b'u', 2) => convert_ints::<u16, _, _>($array, $argument, $convert),
            (b'u', 4) => convert_ints::<u32, _, _>($array, $argument, $convert),
            (b'u', 8) => convert_ints::<u64, _, _>($array, $argument, $convert),
            _ => Err(PyTypeError::new_err(format!(
                "{}: expected an integer array, got dtype {}",
                $argument,
                dtype.str()?
            ))),
        }
    }};
}

fn node_id(v: i128) -> Result<u32, String> {
    if v < 0 {
        Err(format!("negative id {v}"))
    } else if v >= i128::from(u32::MAX) {
        Err(format!(
            "id {v} does not fit the u32 id range (at most {})",
            u32::MAX - 1
        ))
    } else {
        Ok(v as u32)
    }
}

/// Node ids from any integer array, borrowed when already contiguous uint32.
fn ids<'py>(obj: &Bound<'py, PyAny>, argument: &str) -> PyResult<Column<'py, u32>> {
    let array = as_array(obj, argument)?;
    if array.is_empty() {
        // `numpy.asarray([])` is float64; an empty id list has no dtype worth checking.
        return Ok(Column::Owned(Vec::new()));
    }
    if let Some(column) = borrow_exact::<u32>(&array) {
        let values = column.slice()?;
        let first_bad =
            with_threads(None, || first_index(values, |&v| v == u32::MAX)).map_err(to_py_err)?;
        if let Some(i) = first_bad {
            return Err(PyValueError::new_err(format!(
                "{argument}: id {} does not fit the u32 id range at index {i}",
                u32::MAX
            )));
        }
        return Ok(column);
    }
    with_int_dtype!(&array, argument, node_id).map(Column::Owned)
}

enum TimeColumn<'py> {
    Int(Column<'py, i64>),
    Float(Column<'py, f64>),
}

fn timestamps<'py>(obj: &Bound<'py, PyAny>) -> PyResult<TimeColumn<'py>> {
    let argument = "timestamps";
    let array = as_array(obj, argument)?;
    let dtype = array.dtype();
    match dtype.kind() {
        b'f' => Ok(TimeColumn::Float(match borrow_exact::<f64>(&array) {
            Some(column) => column,
            // numpy's copy (a MemoryError when it cannot be made), borrowed as it is.
            None => Column::Borrowed(
                array
                    .call_method1("astype", ("float64",))?
                    .extract::<PyReadonlyArray1<'py, f64>>()?,
            ),
        })),
        b'i' | b'u' => Ok(TimeColumn::Int(match borrow_exact::<i64>(&array) {
            Some(column) => column,
            None => Column::Owned(with_int_dtype!(&array, argument, |v: i128| {
                i64::try_from(v).map_err(|_| format!("timestamp {v} does not fit int64"))
            })?),
        })),
        _ => Err(PyTypeError::new_err(format!(
            "timestamps: expected an int64 or float64 array, got dtype {}",
            dtype.str()?
        ))),
    }
}

fn weights<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Column<'py, f32>> {
    let array = as_array(obj, "weights")?;
    let dtype = array.dtype();
    if !matches!(dtype.kind(), b'f' | b'i' | b'u') {
        return Err(PyTypeError::new_err(format!(
            "weights: expected a float array, got dtype {}",
            dtype.str()?
        )));
    }
    if let Some(column) = borrow_exact::<f32>(&array) {
        return Ok(column);
    }
    // numpy's copy (a MemoryError when it cannot be made), borrowed as it is.
    let converted = array.call_method1("astype", ("float32",))?;
    Ok(Column::Borrowed(
        converted.extract::<PyReadonlyArray1<'py, f32>>()?,
    ))
}

fn side_of(name: &str) -> PyResult<Side> {
    match name {
        "user" => Ok(Side::User),
        "item" => Ok(Side::Item),
        other => Err(PyValueError::new_err(format!(
            "side: must be 'user' or 'item', got {other:?}"
        ))),
    }
}

type ExcludeColumns<'py> = (Column<'py, u32>, Column<'py, u32>);

/// `exclude=(users, items)` of the sampling methods, as id columns.
fn exclude_arg<'py>(
    exclude: Option<&(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
) -> PyResult<Option<ExcludeColumns<'py>>> {
    exclude
        .map(|(users, items)| Ok((ids(users, "exclude users")?, ids(items, "exclude items")?)))
        .transpose()
}

fn exclude_slices<'a>(
    exclude: &'a Option<ExcludeColumns<'_>>,
) -> PyResult<Option<(&'a [u32], &'a [u32])>> {
    exclude
        .as_ref()
        .map(|(users, items)| Ok((users.slice()?, items.slice()?)))
        .transpose()
}

/// One sampled neighbourhood as numpy arrays, one `(offsets, nodes)` pair per hop (moved, not
/// copied; large buffers are reused once the arrays die).
fn hop_arrays(py: Python<'_>, hops: Vec<Hop>) -> PyResult<Vec<HopArrays<'_>>> {
    hops.into_iter()
        .map(|hop| Ok((offsets_array(py, hop.offsets)?, nodes_array(py, hop.nodes)?)))
        .collect()
}

/// `epoch` of `sample_batches`: one int for every batch (default 0), or one per batch.
fn epochs_arg(epoch: Option<&Bound<'_, PyAny>>, batches: usize) -> PyResult<Vec<u64>> {
    let Some(epoch) = epoch else {
        return Ok(vec![0; batches]);
    };
    if let Ok(one) = epoch.extract::<i128>() {
        return Ok(vec![unsigned::<u64>(one, "epoch")?; batches]);
    }
    let each: Vec<i128> = epoch.extract().map_err(|_| {
        PyTypeError::new_err("epoch: expected an int or a sequence of ints, one per batch")
    })?;
    if each.len() != batches {
        return Err(PyValueError::new_err(format!(
            "epoch: has {} entries but there are {batches} batches",
            each.len()
        )));
    }
    each.into_iter()
        .map(|e| unsigned::<u64>(e, "epoch"))
        .collect()
}

fn node_arg(node: i64, argument: &str) -> PyResult<u64> {
    u64::try_from(node)
        .map_err(|_| PyValueError::new_err(format!("{argument}: negative id {node}")))
}

/// One sampled hop as numpy arrays: (offsets int64, nodes uint32).
type HopArrays<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<u32>>);

/// A bipartite user-item graph stored as CSR both ways (u32 ids, u64 offsets), built from
/// numpy edge arrays or memory-mapped from a file, with multi-hop neighbour sampling.
#[pyclass(name = "BipartiteGraph", module = "galrec._core", frozen)]
pub struct PyBipartiteGraph {
    inner: BipartiteGraph,
}

#[pymethods]
impl PyBipartiteGraph {
    /// Builds the graph from parallel edge arrays (any integer dtype).
    #[staticmethod]
    #[pyo3(signature = (users, items, *, num_users=None, num_items=None, timestamps=None, weights=None, dedupe=true, num_threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn from_edges(
        py: Python<'_>,
        users: &Bound<'_, PyAny>,
        items: &Bound<'_, PyAny>,
        num_users: Option<i128>,
        num_items: Option<i128>,
        timestamps: Option<&Bound<'_, PyAny>>,
        weights: Option<&Bound<'_, PyAny>>,
        dedupe: bool,
        num_threads: Option<i128>,
    ) -> PyResult<Self> {
        let num_users = optional_unsigned(num_users, "num_users")?;
        let num_items = optional_unsigned(num_items, "num_items")?;
        let num_threads = optional_unsigned(num_threads, "num_threads")?;
        let users = ids(users, "users")?;
        let items = ids(items, "items")?;
        let time = timestamps.map(self::timestamps).transpose()?;
        let weight = weights.map(self::weights).transpose()?;
        let edges = EdgeList {
            users: users.slice()?,
            items: items.slice()?,
            num_users,
            num_items,
            timestamps: match &time {
                None => None,
                Some(TimeColumn::Int(c)) => Some(Timestamps::Int(c.slice()?)),
                Some(TimeColumn::Float(c)) => Some(Timestamps::Float(c.slice()?)),
            },
            weights: weight.as_ref().map(|w| w.slice()).transpose()?,
            dedupe,
        };
        let inner = py
            .detach(|| with_threads(num_threads, || BipartiteGraph::from_edges(edges)))
            .and_then(|r| r)
            .map_err(to_py_err)?;
        Ok(Self { inner })
    }

    /// Memory-maps a file written by `save`, validating its header, counts, offsets and
    /// neighbour ids; `verify=True` also checks the checksum of all data.
    #[staticmethod]
    #[pyo3(signature = (path, *, verify=false))]
    fn open(py: Python<'_>, path: PathBuf, verify: bool) -> PyResult<Self> {
        let inner = py
            .detach(|| with_threads(None, || storage::open(&path, verify)))
            .and_then(|r| r)
            .map_err(to_py_err)?;
        Ok(Self { inner })
    }

    /// Writes the graph to `path` atomically (temporary file, fsync, rename).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| with_threads(None, || storage::save(&self.inner, &path)))
            .and_then(|r| r)
            .map_err(to_py_err)
    }

    #[getter]
    fn num_users(&self) -> u32 {
        self.inner.num_users()
    }

    #[getter]
    fn num_items(&self) -> u32 {
        self.inner.num_items()
    }

    #[getter]
    fn num_edges(&self) -> u64 {
        self.inner.num_edges()
    }

    #[getter]
    fn has_timestamps(&self) -> bool {
        self.inner.meta().time_kind.is_some()
    }

    #[getter]
    fn has_weights(&self) -> bool {
        self.inner.meta().has_weights
    }

    #[getter]
    fn is_mapped(&self) -> bool {
        self.inner.is_mapped()
    }

    /// Number of items of every user (a new int64 array).
    fn user_degrees<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        self.degrees(py, Side::User)
    }

    /// Number of users of every item (a new int64 array).
    fn item_degrees<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        self.degrees(py, Side::Item)
    }

    /// The items of user `user` in stored order (a copy, uint32).
    fn user_neighbors<'py>(
        &self,
        py: Python<'py>,
        user: i64,
    ) -> PyResult<Bound<'py, PyArray1<u32>>> {
        let node = node_arg(user, "user")?;
        let neighbors = self.inner.neighbors(Side::User, node).map_err(to_py_err)?;
        Ok(PyArray1::from_slice(py, neighbors))
    }

    /// The users of item `item` in stored order (a copy, uint32).
    fn item_neighbors<'py>(
        &self,
        py: Python<'py>,
        item: i64,
    ) -> PyResult<Bound<'py, PyArray1<u32>>> {
        let node = node_arg(item, "item")?;
        let neighbors = self.inner.neighbors(Side::Item, node).map_err(to_py_err)?;
        Ok(PyArray1::from_slice(py, neighbors))
    }

    /// Whether the edge (user, item) exists.
    fn has_edge(&self, user: i64, item: i64) -> PyResult<bool> {
        let (u, i) = (node_arg(user, "user")?, node_arg(item, "item")?);
        self.inner.has_edge(u, i).map_err(to_py_err)
    }

    /// Multi-hop neighbour sampling; returns one `(offsets int64, nodes uint32)` per hop.
    #[pyo3(signature = (seeds, *, side="user", fanouts=vec![10, 10], strategy="uniform", seed=0, epoch=0, exclude=None, num_threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn sample<'py>(
        &self,
        py: Python<'py>,
        seeds: &Bound<'py, PyAny>,
        side: &str,
        fanouts: Vec<i64>,
        strategy: &str,
        seed: i128,
        epoch: i128,
        exclude: Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
        num_threads: Option<i128>,
    ) -> PyResult<Vec<HopArrays<'py>>> {
        let num_threads = optional_unsigned(num_threads, "num_threads")?;
        let seeds = ids(seeds, "seeds")?;
        let (seed, epoch) = (
            unsigned::<u64>(seed, "seed")?,
            unsigned::<u64>(epoch, "epoch")?,
        );
        let side = side_of(side)?;
        let strategy = Strategy::parse(strategy).map_err(to_py_err)?;
        let exclude = exclude_arg(exclude.as_ref())?;
        let spec = SampleSpec {
            seeds: seeds.slice()?,
            side,
            fanouts: &fanouts,
            strategy,
            seed,
            epoch,
            exclude: exclude_slices(&exclude)?,
        };
        let hops = py
            .detach(|| with_threads(num_threads, || sample(&self.inner, &spec)))
            .and_then(|r| r)
            .map_err(to_py_err)?;
        hop_arrays(py, hops)
    }

    /// `sample` over several seed batches at once, one batch per pool task (parallelism
    /// across batches); one result per batch, each equal to `sample`'s for that batch.
    #[pyo3(signature = (batches, *, side="user", fanouts=vec![10, 10], strategy="uniform", seed=0, epoch=None, exclude=None, num_threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn sample_batches<'py>(
        &self,
        py: Python<'py>,
        batches: Vec<Bound<'py, PyAny>>,
        side: &str,
        fanouts: Vec<i64>,
        strategy: &str,
        seed: i128,
        epoch: Option<Bound<'py, PyAny>>,
        exclude: Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
        num_threads: Option<i128>,
    ) -> PyResult<Vec<Vec<HopArrays<'py>>>> {
        let num_threads = optional_unsigned(num_threads, "num_threads")?;
        let columns = batches
            .iter()
            .enumerate()
            .map(|(i, batch)| ids(batch, &format!("batches[{i}]")))
            .collect::<PyResult<Vec<_>>>()?;
        let epochs = epochs_arg(epoch.as_ref(), batches.len())?;
        let seed = unsigned::<u64>(seed, "seed")?;
        let side = side_of(side)?;
        let strategy = Strategy::parse(strategy).map_err(to_py_err)?;
        let exclude = exclude_arg(exclude.as_ref())?;
        let options = SampleSpec {
            seeds: &[],
            side,
            fanouts: &fanouts,
            strategy,
            seed,
            epoch: 0,
            exclude: exclude_slices(&exclude)?,
        };
        let seed_batches = columns
            .iter()
            .zip(epochs)
            .map(|(column, epoch)| Ok((column.slice()?, epoch)))
            .collect::<PyResult<Vec<_>>>()?;
        let results = py
            .detach(|| {
                with_threads(num_threads, || {
                    sample_many(&self.inner, &options, &seed_batches)
                })
            })
            .and_then(|r| r)
            .map_err(to_py_err)?;
        results
            .into_iter()
            .map(|hops| hop_arrays(py, hops))
            .collect()
    }

    fn __repr__(&self) -> String {
        let meta = self.inner.meta();
        format!(
            "BipartiteGraph(num_users={}, num_items={}, num_edges={}, timestamps={}, weights={}, mapped={})",
            meta.num_users,
            meta.num_items,
            meta.num_edges,
            meta.time_kind.is_some(),
            meta.has_weights,
            self.inner.is_mapped()
        )
    }
}

impl PyBipartiteGraph {
    fn degrees<'py>(&self, py: Python<'py>, side: Side) -> Bound<'py, PyArray1<i64>> {
        let degrees: Vec<i64> = py.detach(|| {
            self.inner
                .degrees(side)
                .into_iter()
                .map(|d| d as i64)
                .collect()
        });
        degrees.into_pyarray(py)
    }
}

/// Adds the graph class and its error type to the extension module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBipartiteGraph>()?;
    m.add("GraphFileError", m.py().get_type::<GraphFileError>())?;
    Ok(())
}
