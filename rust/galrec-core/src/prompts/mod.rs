//! Prompt assembly: GAL-Rec's hop-0/1/2 prompts turned into token batches without re-tokenising.
//!
//! Every text piece that can appear in a prompt is tokenised once: node titles when the
//! [`TextStore`] is built, fixed template text when a [`PromptAssembler`] is created. A prompt is
//! then a sequence of *segments* (fixed text, an ID token, a title) whose token ids are copied into
//! the output buffer. A text segment's ids are exactly what the tokenizer gives for that segment's
//! text alone, without special tokens; the tokenizer's own special tokens (e.g. `[CLS]`/`[SEP]`,
//! `<s>`) wrap the whole prompt as its post-processor would.

mod assemble;
mod store;
mod template;
mod tokenizer;

pub use assemble::{AssembleOptions, Batch, HopInput, PaddingSide, PromptAssembler};
pub(crate) use store::reseal as reseal_store;
pub use store::TextStore;
pub(crate) use template::parse_title_format;
pub use template::Templates;
pub use tokenizer::PromptTokenizer;

use std::fmt;

/// One side of the bipartite graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    User,
    Item,
}

impl Side {
    /// The side of the neighbours one hop away.
    pub fn other(self) -> Side {
        match self {
            Side::User => Side::Item,
            Side::Item => Side::User,
        }
    }

    /// Parse `"user"` or `"item"`.
    pub fn parse(name: &str) -> Result<Side, PromptError> {
        match name {
            "user" => Ok(Side::User),
            "item" => Ok(Side::Item),
            other => Err(PromptError::invalid(
                "side",
                format!("must be \"user\" or \"item\", got {other:?}"),
            )),
        }
    }

    /// `"user"` or `"item"`.
    pub fn name(self) -> &'static str {
        match self {
            Side::User => "user",
            Side::Item => "item",
        }
    }
}

/// What went wrong, by kind, so the Python layer can raise the matching exception type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file that should exist does not.
    NotFound,
    /// An argument, template or file content is invalid.
    Invalid,
    /// A node id (or offset) points outside its range.
    OutOfRange,
    /// Reading or writing a file failed.
    Io,
    /// The allocator refused memory for a request under the machine's ceiling.
    OutOfMemory,
}

/// An error of the prompt module: its kind and a message naming the file, argument or id at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptError {
    pub kind: ErrorKind,
    pub message: String,
}

impl PromptError {
    pub(crate) fn invalid(what: &str, message: impl fmt::Display) -> Self {
        PromptError {
            kind: ErrorKind::Invalid,
            message: format!("{what}: {message}"),
        }
    }

    pub(crate) fn out_of_range(what: &str, message: impl fmt::Display) -> Self {
        PromptError {
            kind: ErrorKind::OutOfRange,
            message: format!("{what}: {message}"),
        }
    }

    pub(crate) fn io(path: &std::path::Path, err: &std::io::Error) -> Self {
        let kind = if err.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            ErrorKind::Io
        };
        PromptError {
            kind,
            message: format!("{}: {err}", path.display()),
        }
    }
}

/// The memory checks of [`crate::memory`] report graph errors; here they keep their kind.
impl From<crate::error::GraphError> for PromptError {
    fn from(err: crate::error::GraphError) -> Self {
        use crate::error::GraphError;
        let kind = match &err {
            GraphError::InvalidArgument { .. } | GraphError::Format { .. } => ErrorKind::Invalid,
            GraphError::OutOfMemory { .. } => ErrorKind::OutOfMemory,
            GraphError::Io { .. } => ErrorKind::Io,
        };
        PromptError {
            kind,
            message: err.to_string(),
        }
    }
}

impl fmt::Display for PromptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PromptError {}
