//! galrec-core: the per-edge and per-token work of GAL-Rec, free of Python.
//!
//! Everything here is plain Rust, unit-tested with `cargo test`; the PyO3 crate
//! `galrec-py` only converts types and errors.

mod build;
pub mod error;
pub mod fuzz;
pub mod graph;
mod hugepages;
pub mod memory;
pub mod parallel;
pub mod recycle;
pub mod rng;
pub mod sample;
pub mod spmm;
pub mod storage;

/// The crate version, shared with the Python package (one version, in Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod prompts;
