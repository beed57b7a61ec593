//! The thin PyO3 layer: converts numpy arrays and errors, then calls galrec-core.

use pyo3::prelude::*;

mod args;
mod graph;
mod prompts;
mod recycled;
mod spmm;

/// Build information of the compiled extension: version, profile and target, so a bug
/// report can say exactly which binary ran.
#[pyfunction]
fn build_info(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    let info = pyo3::types::PyDict::new(py);
    info.set_item("version", galrec_core::VERSION)?;
    info.set_item(
        "profile",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    )?;
    info.set_item("target", env!("GALREC_TARGET"))?;
    info.set_item("target_arch", std::env::consts::ARCH)?;
    info.set_item("target_os", std::env::consts::OS)?;
    Ok(info)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", galrec_core::VERSION)?;
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    graph::register(m)?;
    prompts::register(m)?;
    spmm::register(m)?;
    Ok(())
}
