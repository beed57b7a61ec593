//! Allocations whose size the caller controls: refused up front when they cannot fit, and
//! made fallibly otherwise, so a request too large for the machine is an error, never an
//! abort of the whole process (`memory allocation of N bytes failed`).
//!
//! "Cannot fit" means more bytes than the process could ever hold: the machine's physical
//! memory, or less where an address-space or data-segment limit (`ulimit -v`, `ulimit -d`)
//! is set. Requests under that ceiling are attempted; if the allocator still refuses them, the
//! error is [`GraphError::OutOfMemory`] (Python `MemoryError`).

use rayon::prelude::*;

use crate::error::{GraphError, Result};

/// The most memory this process could hold, and what sets that bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ceiling {
    pub bytes: u64,
    pub source: &'static str,
}

/// The memory ceiling of this process, or `None` where the system does not say.
#[cfg(target_os = "linux")]
pub fn ceiling() -> Option<Ceiling> {
    // Fixed while the process runs (unlike its limits): asked once.
    static PHYSICAL: std::sync::OnceLock<Option<Ceiling>> = std::sync::OnceLock::new();
    let physical = *PHYSICAL.get_or_init(|| {
        // SAFETY: `sysconf` only reads system configuration; it takes no pointers.
        let (pages, page_size) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        (pages > 0 && page_size > 0).then(|| Ceiling {
            bytes: (pages as u64).saturating_mul(page_size as u64),
            source: "physical memory",
        })
    });
    let limit = |resource, source| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` writes one `rlimit` through the pointer, which points to a live,
        // writable `rlimit` on our stack.
        let status = unsafe { libc::getrlimit(resource, &mut limit) };
        (status == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(Ceiling {
            bytes: limit.rlim_cur,
            source,
        })
    };
    [
        physical,
        limit(libc::RLIMIT_AS, "address-space limit (ulimit -v)"),
        limit(libc::RLIMIT_DATA, "data-segment limit (ulimit -d)"),
    ]
    .into_iter()
    .flatten()
    .min_by_key(|c| c.bytes)
}

/// The memory ceiling of this process, or `None` where the system does not say.
#[cfg(not(target_os = "linux"))]
pub fn ceiling() -> Option<Ceiling> {
    None
}

/// `bytes` as GiB, for messages.
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Refuses, as an invalid `argument`, a request for `bytes` (described by `what`) that exceeds
/// the memory ceiling.
pub fn check_fits(argument: &str, what: &str, bytes: u64) -> Result<()> {
    match ceiling() {
        Some(ceiling) if bytes > ceiling.bytes => Err(GraphError::invalid(
            argument,
            format!(
                "{what} need {} ({bytes} bytes), more than this process can hold: {} of {}",
                gib(bytes),
                gib(ceiling.bytes),
                ceiling.source
            ),
        )),
        _ => Ok(()),
    }
}

/// `count * per_item` bytes, saturating (a saturated size never fits anyway).
pub fn bytes_for(count: u64, per_item: u64) -> u64 {
    count.saturating_mul(per_item)
}

/// An empty vector with room for `len` elements, or [`GraphError::OutOfMemory`] naming `what`.
pub fn try_with_capacity<T>(len: usize, what: &str) -> Result<Vec<T>> {
    let mut values = Vec::new();
    values
        .try_reserve_exact(len)
        .map_err(|_| GraphError::out_of_memory(what, len, std::mem::size_of::<T>()))?;
    Ok(values)
}

/// Room for `additional` more elements in `values` (growing it geometrically, as `push`
/// does), or [`GraphError::OutOfMemory`] naming `what`.
pub fn try_reserve<T>(values: &mut Vec<T>, additional: usize, what: &str) -> Result<()> {
    values
        .try_reserve(additional)
        .map_err(|_| GraphError::out_of_memory(what, additional, std::mem::size_of::<T>()))
}

/// `len` zeros, allocated fallibly and lazily: as with `vec![0; len]`, a large allocation
/// gets fresh pages that the kernel zeroes on first touch, so untouched parts cost nothing.
pub fn try_zeroed<T: bytemuck::Zeroable>(len: usize, what: &str) -> Result<Vec<T>> {
    let fail = || GraphError::out_of_memory(what, len, std::mem::size_of::<T>());
    let layout = std::alloc::Layout::array::<T>(len).map_err(|_| fail())?;
    if layout.size() == 0 {
        let mut values = Vec::new();
        values.resize_with(len, T::zeroed);
        return Ok(values);
    }
    // SAFETY: the layout's size is nonzero, as `alloc_zeroed` requires.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if ptr.is_null() {
        return Err(fail());
    }
    // SAFETY: `ptr` comes from the global allocator with the layout of `[T; len]`, which is
    // what a `Vec<T>` of capacity `len` frees it with; all `len` elements are initialised,
    // since all-zero bytes are a valid `T` (`Zeroable`).
    Ok(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

/// `len` copies of `value`, allocated fallibly.
pub fn try_filled<T: Clone>(value: T, len: usize, what: &str) -> Result<Vec<T>> {
    let mut values = try_with_capacity(len, what)?;
    values.resize(len, value);
    Ok(values)
}

/// The items of `iter` collected in parallel into a fallibly allocated vector.
pub fn try_par_collect<T: Send>(
    iter: impl IndexedParallelIterator<Item = T>,
    what: &str,
) -> Result<Vec<T>> {
    let mut values = try_with_capacity(iter.len(), what)?;
    // `collect_into_vec` reserves `len` more, which the capacity already covers.
    iter.collect_into_vec(&mut values);
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_sizes_are_refused_by_argument() {
        let err = check_fits("num_users", "4294967295 users", u64::MAX)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        if ceiling().is_some() {
            assert!(err.starts_with("num_users: 4294967295 users need"), "{err}");
        }
        assert!(check_fits("x", "a byte", 1).is_ok());
    }

    #[test]
    fn failed_allocations_are_errors() {
        let err = try_with_capacity::<u64>(usize::MAX / 8, "test buffer").err();
        assert!(
            matches!(err, Some(GraphError::OutOfMemory { .. })),
            "{err:?}"
        );
        assert_eq!(try_filled(7u8, 3, "t").ok(), Some(vec![7, 7, 7]));
        let err = try_zeroed::<u64>(usize::MAX / 4, "test buffer").err();
        assert!(
            matches!(err, Some(GraphError::OutOfMemory { .. })),
            "{err:?}"
        );
        for len in [0, 1, 100_000] {
            let zeros = try_zeroed::<u32>(len, "t").unwrap_or_default();
            assert_eq!((zeros.len(), zeros.iter().all(|&z| z == 0)), (len, true));
        }
        assert_eq!(try_zeroed::<()>(3, "t").map(|v| v.len()).ok(), Some(3));
        let collected = try_par_collect((0..5u32).into_par_iter(), "t").ok();
        assert_eq!(collected, Some(vec![0, 1, 2, 3, 4]));
    }
}
