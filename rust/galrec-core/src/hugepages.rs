//! Large arrays on transparent huge pages, where the kernel offers them.
//!
//! The sampler reads neighbour arrays at random, and with 4 KiB pages nearly every such read
//! also misses the TLB: a page walk before the cache miss. Most kernels run transparent huge
//! pages in `madvise` mode, so an array gets 2 MiB pages only when asked for them before its
//! pages are first touched. Elsewhere (other systems, THP off) the advice is a no-op.

/// Below this size the TLB covers an array well enough with ordinary pages.
const WORTH_IT: usize = 4 << 20;

/// A vector of `len` zeros whose pages were advised huge before they were written
/// ([`crate::error::GraphError::OutOfMemory`], naming `what`, if it cannot be allocated).
pub(crate) fn zeroed_u32(len: usize, what: &str) -> crate::error::Result<Vec<u32>> {
    let mut values: Vec<u32> = crate::memory::try_with_capacity(len, what)?;
    let bytes = len * std::mem::size_of::<u32>();
    if bytes >= WORTH_IT {
        advise_huge(values.as_mut_ptr().cast(), bytes);
    }
    values.resize(len, 0);
    Ok(values)
}

#[cfg(target_os = "linux")]
fn advise_huge(start: *mut u8, bytes: usize) {
    // The base page of x86-64 and most aarch64 kernels. On a kernel with larger pages the
    // range may be unaligned; madvise then fails with EINVAL and nothing changes.
    const PAGE: usize = 4096;
    // Only whole pages inside the allocation may be advised.
    let first = (start as usize).next_multiple_of(PAGE);
    let end = (start as usize + bytes) / PAGE * PAGE;
    if end <= first {
        return;
    }
    // SAFETY: [first, end) lies inside the live allocation of `bytes` bytes at `start` and is
    // page-aligned, as madvise requires. MADV_HUGEPAGE only changes how the kernel backs the
    // range on later faults; it neither reads, writes nor unmaps any of it, so no Rust
    // reference or value is affected. A failure (THP unsupported) leaves ordinary pages, which
    // is why the result is ignored.
    unsafe {
        libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_start: *mut u8, _bytes: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_arrays_are_zero_at_every_size() {
        for len in [0, 1, 1000, (WORTH_IT / 4) + 12_345] {
            let values = zeroed_u32(len, "test").unwrap_or_default();
            assert_eq!(values.len(), len);
            assert!(values.iter().all(|&v| v == 0));
        }
    }
}
