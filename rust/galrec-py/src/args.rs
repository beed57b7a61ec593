//! Unsigned integer arguments taken as any Python int, so that a negative or too large value is
//! a `ValueError` naming the argument; PyO3's own conversion raises an `OverflowError` that
//! names nothing ("can't convert negative int to unsigned").

use pyo3::exceptions::PyValueError;
use pyo3::PyResult;

/// The unsigned types arguments convert to, with their width for the error message.
pub(crate) trait Unsigned: TryFrom<i128> {
    const BITS: u32;
}

impl Unsigned for u32 {
    const BITS: u32 = u32::BITS;
}

impl Unsigned for u64 {
    const BITS: u32 = u64::BITS;
}

impl Unsigned for usize {
    const BITS: u32 = usize::BITS;
}

/// `value` as `T`, or a `ValueError` naming `argument` and the range `T` holds.
pub(crate) fn unsigned<T: Unsigned>(value: i128, argument: &str) -> PyResult<T> {
    T::try_from(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{argument}: must be an integer in [0, 2**{}), got {value}",
            T::BITS
        ))
    })
}

/// [`unsigned`] for an optional argument (`None` stays `None`).
pub(crate) fn optional_unsigned<T: Unsigned>(
    value: Option<i128>,
    argument: &str,
) -> PyResult<Option<T>> {
    value.map(|v| unsigned(v, argument)).transpose()
}
