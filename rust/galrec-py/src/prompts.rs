//! Bindings of galrec_core::prompts: tokenizer, text store and batch assembler.

use std::path::PathBuf;
use std::sync::Arc;

use galrec_core::prompts::{
    AssembleOptions, ErrorKind, HopInput, PaddingSide, PromptAssembler, PromptError,
    PromptTokenizer, Side, Templates, TextStore,
};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::exceptions::{PyFileNotFoundError, PyIndexError, PyMemoryError, PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::args::{optional_unsigned, unsigned};

fn to_py(e: PromptError) -> PyErr {
    match e.kind {
        ErrorKind::NotFound => PyFileNotFoundError::new_err(e.message),
        ErrorKind::Invalid => PyValueError::new_err(e.message),
        ErrorKind::OutOfRange => PyIndexError::new_err(e.message),
        ErrorKind::Io => PyOSError::new_err(e.message),
        ErrorKind::OutOfMemory => PyMemoryError::new_err(e.message),
    }
}

/// A Hugging Face tokenizer.json loaded in Rust, encoding segments without special tokens.
#[pyclass(frozen, module = "galrec._core", name = "PromptTokenizer")]
pub struct PyPromptTokenizer {
    inner: Arc<PromptTokenizer>,
}

#[pymethods]
impl PyPromptTokenizer {
    #[staticmethod]
    #[pyo3(signature = (path, *, pad_token_id = None))]
    fn from_file(py: Python<'_>, path: PathBuf, pad_token_id: Option<i128>) -> PyResult<Self> {
        let pad_token_id = optional_unsigned(pad_token_id, "pad_token_id")?;
        let inner = py
            .detach(|| PromptTokenizer::from_path(&path, pad_token_id))
            .map_err(to_py)?;
        Ok(PyPromptTokenizer {
            inner: Arc::new(inner),
        })
    }

    #[getter]
    fn vocab_size(&self) -> u32 {
        self.inner.vocab_size()
    }

    #[getter]
    fn pad_token_id(&self) -> Option<u32> {
        self.inner.pad_id()
    }

    #[getter]
    fn special_prefix(&self) -> Vec<u32> {
        self.inner.prefix().to_vec()
    }

    #[getter]
    fn special_suffix(&self) -> Vec<u32> {
        self.inner.suffix().to_vec()
    }

    #[getter]
    fn source(&self) -> String {
        self.inner.source().to_string()
    }

    #[getter]
    fn fingerprint(&self) -> u64 {
        self.inner.fingerprint()
    }

    fn encode(&self, text: &str) -> PyResult<Vec<u32>> {
        self.inner.encode(text).map_err(to_py)
    }

    fn decode(&self, ids: Vec<u32>) -> PyResult<String> {
        self.inner.decode(&ids).map_err(to_py)
    }

    fn __repr__(&self) -> String {
        format!(
            "PromptTokenizer(source={:?}, vocab_size={})",
            self.inner.source(),
            self.inner.vocab_size()
        )
    }
}

/// Node texts with their title segments tokenised once.
#[pyclass(frozen, module = "galrec._core", name = "TextStore")]
pub struct PyTextStore {
    inner: Arc<TextStore>,
}

fn side_of(name: &str) -> PyResult<Side> {
    Side::parse(name).map_err(to_py)
}

#[pymethods]
impl PyTextStore {
    #[staticmethod]
    #[pyo3(signature = (tokenizer, item_texts, *, num_users, user_texts = None, title_format = " \"{title}\""))]
    fn build(
        py: Python<'_>,
        tokenizer: &PyPromptTokenizer,
        item_texts: Vec<String>,
        num_users: i128,
        user_texts: Option<Vec<String>>,
        title_format: &str,
    ) -> PyResult<Self> {
        let num_users: usize = unsigned(num_users, "num_users")?;
        let tok = tokenizer.inner.clone();
        let store = py
            .detach(|| {
                TextStore::build(
                    &tok,
                    &item_texts,
                    num_users,
                    user_texts.as_deref(),
                    title_format,
                )
            })
            .map_err(to_py)?;
        Ok(PyTextStore {
            inner: Arc::new(store),
        })
    }

    #[staticmethod]
    fn open(py: Python<'_>, path: PathBuf, tokenizer: &PyPromptTokenizer) -> PyResult<Self> {
        let tok = tokenizer.inner.clone();
        let store = py.detach(|| TextStore::open(&path, &tok)).map_err(to_py)?;
        Ok(PyTextStore {
            inner: Arc::new(store),
        })
    }

    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| self.inner.save(&path)).map_err(to_py)
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
    fn has_user_texts(&self) -> bool {
        self.inner.has_user_texts()
    }

    #[getter]
    fn title_format(&self) -> String {
        self.inner.title_format().to_string()
    }

    /// Title-segment ids of a node (None when its side has no texts).
    fn tokens(&self, side: &str, id: u32) -> PyResult<Option<Vec<u32>>> {
        let side = side_of(side)?;
        self.check_id(side, id)?;
        Ok(self.inner.tokens(side, id).map(<[u32]>::to_vec))
    }

    /// The full title-segment text of a node, as tokenised (None when its side has no texts).
    fn segment_text(&self, side: &str, id: u32) -> PyResult<Option<String>> {
        let side = side_of(side)?;
        self.check_id(side, id)?;
        Ok(self.inner.segment_text(side, id))
    }

    fn __repr__(&self) -> String {
        format!(
            "TextStore(num_users={}, num_items={}, has_user_texts={}, title_format={:?})",
            self.inner.num_users(),
            self.inner.num_items(),
            self.inner.has_user_texts(),
            self.inner.title_format()
        )
    }
}

impl PyTextStore {
    fn check_id(&self, side: Side, id: u32) -> PyResult<()> {
        let count = self.inner.count(side);
        if id >= count {
            return Err(PyIndexError::new_err(format!(
                "id: {id} is not a {} id (0..{count})",
                side.name()
            )));
        }
        Ok(())
    }
}

/// Assembles token batches from sampler output (see galrec.graph.prompts.PromptAssembler).
#[pyclass(frozen, module = "galrec._core", name = "PromptAssembler")]
pub struct PyPromptAssembler {
    inner: PromptAssembler,
}

type BatchArrays<'py> = (
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray1<i64>>,
);

fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, what: &str) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{what}: must be a contiguous array")))
}

#[pymethods]
impl PyPromptAssembler {
    #[new]
    #[pyo3(signature = (
        tokenizer, store, *, user_templates, item_templates, neighbor, separator, closing,
        max_length = 256, padding_side = "right", pad_to_max_length = false, dedupe = true,
        threads = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        tokenizer: &PyPromptTokenizer,
        store: &PyTextStore,
        user_templates: [String; 3],
        item_templates: [String; 3],
        neighbor: String,
        separator: String,
        closing: String,
        max_length: i128,
        padding_side: &str,
        pad_to_max_length: bool,
        dedupe: bool,
        threads: Option<i128>,
    ) -> PyResult<Self> {
        let max_length = unsigned(max_length, "max_length")?;
        let threads = optional_unsigned(threads, "threads")?;
        let templates = Templates {
            user: user_templates,
            item: item_templates,
            neighbor,
            separator,
            closing,
        };
        let options = AssembleOptions {
            max_length,
            padding_side: PaddingSide::parse(padding_side).map_err(to_py)?,
            pad_to_max_length,
            dedupe,
            threads,
        };
        let inner = PromptAssembler::new(
            tokenizer.inner.clone(),
            store.inner.clone(),
            &templates,
            options,
        )
        .map_err(to_py)?;
        Ok(PyPromptAssembler { inner })
    }

    /// (input_ids, attention_mask, node_ids, pool_index) of the hop-`hop` prompts of `seeds`.
    fn assemble<'py>(
        &self,
        py: Python<'py>,
        side: &str,
        hop: i128,
        seeds: PyReadonlyArray1<'py, i64>,
        offsets: Vec<PyReadonlyArray1<'py, i64>>,
        nodes: Vec<PyReadonlyArray1<'py, u32>>,
    ) -> PyResult<BatchArrays<'py>> {
        let hop = unsigned(hop, "hop")?;
        let side = side_of(side)?;
        let hops = hop_inputs(&offsets, &nodes)?;
        let seeds = slice(&seeds, "seeds")?;
        let batch = py
            .detach(|| self.inner.assemble(side, hop, seeds, &hops))
            .map_err(to_py)?;
        let shape = (batch.batch, batch.length);
        let matrix = |v: Vec<i64>| -> PyResult<Bound<'py, PyArray2<i64>>> {
            Array2::from_shape_vec(shape, v)
                .map(|a| a.into_pyarray(py))
                .map_err(|e| PyValueError::new_err(format!("internal shape error: {e}")))
        };
        Ok((
            matrix(batch.input_ids)?,
            matrix(batch.attention_mask)?,
            matrix(batch.node_ids)?,
            batch.pool_index.into_pyarray(py),
        ))
    }

    /// Per prompt, its segment texts in order (ID tokens as `<user_u>` / `<item_i>`).
    fn render_segments<'py>(
        &self,
        py: Python<'py>,
        side: &str,
        hop: i128,
        seeds: PyReadonlyArray1<'py, i64>,
        offsets: Vec<PyReadonlyArray1<'py, i64>>,
        nodes: Vec<PyReadonlyArray1<'py, u32>>,
    ) -> PyResult<Vec<Vec<String>>> {
        let hop = unsigned(hop, "hop")?;
        let side = side_of(side)?;
        let hops = hop_inputs(&offsets, &nodes)?;
        let seeds = slice(&seeds, "seeds")?;
        py.detach(|| self.inner.render_segments(side, hop, seeds, &hops))
            .map_err(to_py)
    }

    #[getter]
    fn max_length(&self) -> usize {
        self.inner.options().max_length
    }
}

fn hop_inputs<'a>(
    offsets: &'a [PyReadonlyArray1<'_, i64>],
    nodes: &'a [PyReadonlyArray1<'_, u32>],
) -> PyResult<Vec<HopInput<'a>>> {
    if offsets.len() != nodes.len() {
        return Err(PyValueError::new_err(format!(
            "hops: {} offsets arrays but {} nodes arrays",
            offsets.len(),
            nodes.len()
        )));
    }
    offsets
        .iter()
        .zip(nodes)
        .enumerate()
        .map(|(k, (o, n))| {
            Ok(HopInput {
                offsets: slice(o, &format!("hops[{k}].offsets"))?,
                nodes: slice(n, &format!("hops[{k}].nodes"))?,
            })
        })
        .collect()
}

/// Add the prompt classes to the extension module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPromptTokenizer>()?;
    m.add_class::<PyTextStore>()?;
    m.add_class::<PyPromptAssembler>()?;
    Ok(())
}
