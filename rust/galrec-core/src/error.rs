//! Errors of the graph core. Every variant names the argument, file or id at fault, so the
//! Python layer can turn it into an exception message a user can act on.

use std::path::PathBuf;

/// What went wrong while building, saving, opening or sampling a graph.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// A caller-supplied value is out of range or inconsistent (maps to `ValueError`).
    #[error("{argument}: {message}")]
    InvalidArgument { argument: String, message: String },
    /// A graph file is truncated, corrupted or of an unsupported version.
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    /// The allocator refused memory for `what` (maps to `MemoryError`): a request under the
    /// ceiling of [`crate::memory::check_fits`] that still did not fit.
    #[error("{what}: could not allocate {bytes} bytes")]
    OutOfMemory { what: String, bytes: u64 },
    /// The operating system refused a file operation.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl GraphError {
    /// An [`GraphError::InvalidArgument`] for `argument`.
    pub fn invalid(argument: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            argument: argument.into(),
            message: message.into(),
        }
    }

    /// A [`GraphError::Format`] for the file at `path`.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same error, saying which of several batches (of `sample_many`) it came from.
    pub fn in_batch(self, index: usize) -> Self {
        match self {
            Self::InvalidArgument { argument, message } => Self::InvalidArgument {
                argument: format!("batches[{index}] {argument}"),
                message,
            },
            other => other,
        }
    }

    /// A [`GraphError::OutOfMemory`] for `count` elements of `element_size` bytes each.
    pub fn out_of_memory(what: impl Into<String>, count: usize, element_size: usize) -> Self {
        Self::OutOfMemory {
            what: what.into(),
            bytes: (count as u64).saturating_mul(element_size as u64),
        }
    }

    /// A [`GraphError::Io`] for the file at `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results of the graph core.
pub type Result<T> = std::result::Result<T, GraphError>;
