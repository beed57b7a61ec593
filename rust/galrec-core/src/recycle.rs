//! Output buffers handed back for reuse once their owner is done with them.
//!
//! A sampled batch's arrays (about half a megabyte at fanouts (10, 10)) outlive the call: the
//! caller keeps them, often many at once (`sample_batches`, a loader's prefetch queue). When
//! they are freed, the C allocator gives most of that memory back to the kernel, and the
//! next batch's arrays come back as fresh pages, each zeroed by a page fault; that costs the
//! sampler about a fifth of its single-thread throughput on a typical cloud VM. A binding
//! that owns the arrays (the Python layer) gives each buffer back here when the array dies,
//! and the sampler takes its output buffers from here first, already mapped and warm.
//!
//! The shelves are bounded ([`SHELF_BYTES`] each) and never block: a contended or poisoned
//! lock (another thread, or a lock held at `fork` by a thread the child does not have) just
//! means a fresh allocation, or a buffer freed as usual.

use std::sync::Mutex;

use crate::error::Result;
use crate::memory::try_with_capacity;

/// The most memory one shelf keeps for reuse.
const SHELF_BYTES: usize = 64 << 20;
/// The most buffers one shelf keeps (each `take` scans them).
const SHELF_SLOTS: usize = 256;
/// Fresh buffers get `1 / SLACK` more room than asked for.
const SLACK: usize = 8;
/// Smaller buffers are not kept: the allocator serves them from memory it holds anyway.
const MIN_KEPT_BYTES: usize = 64 << 10;

/// Whether a shelf would keep `buffer` (given room): only one this large is worth handing
/// back rather than freeing.
pub fn worth_keeping<T>(buffer: &Vec<T>) -> bool {
    bytes_of(buffer) >= MIN_KEPT_BYTES
}

/// Spare buffers of one element type.
pub struct Shelf<T> {
    spare: Mutex<Spare<T>>,
}

struct Spare<T> {
    buffers: Vec<Vec<T>>,
    bytes: usize,
}

impl<T> Shelf<T> {
    const fn new() -> Self {
        Self {
            spare: Mutex::new(Spare {
                buffers: Vec::new(),
                bytes: 0,
            }),
        }
    }

    /// An empty vector with room for `len` elements: the smallest spare buffer that fits and
    /// is at most twice the need, else a fresh allocation. A fresh buffer worth keeping gets
    /// `1 / SLACK` more room, so that it fits the next batch's need too, which varies a little.
    /// A fresh allocation that fails is [`crate::error::GraphError::OutOfMemory`].
    pub fn take(&self, len: usize) -> Result<Vec<T>> {
        if len.saturating_mul(std::mem::size_of::<T>()) < MIN_KEPT_BYTES {
            return try_with_capacity(len, "sampled output");
        }
        if let Ok(mut spare) = self.spare.try_lock() {
            let fits = |c: usize| c >= len && c <= len.saturating_mul(2);
            let best = (spare.buffers.iter().enumerate())
                .filter(|(_, b)| fits(b.capacity()))
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            if let Some(i) = best {
                let buffer = spare.buffers.swap_remove(i);
                spare.bytes -= bytes_of(&buffer);
                return Ok(buffer);
            }
        }
        try_with_capacity(len.saturating_add(len / SLACK), "sampled output")
    }

    /// Keeps `buffer` (emptied) for a later [`Shelf::take`] if it is worth keeping and the
    /// shelf has room; frees it otherwise.
    pub fn give(&self, mut buffer: Vec<T>) {
        if !worth_keeping(&buffer) {
            return;
        }
        let bytes = bytes_of(&buffer);
        if let Ok(mut spare) = self.spare.try_lock() {
            if spare.buffers.len() < SHELF_SLOTS && spare.bytes + bytes <= SHELF_BYTES {
                buffer.clear();
                spare.bytes += bytes;
                spare.buffers.push(buffer);
            }
        }
    }

    /// The bytes kept for reuse now.
    #[cfg(test)]
    fn kept_bytes(&self) -> usize {
        self.spare.try_lock().map_or(0, |spare| spare.bytes)
    }
}

fn bytes_of<T>(buffer: &Vec<T>) -> usize {
    buffer.capacity() * std::mem::size_of::<T>()
}

/// Spare buffers for sampled node ids.
pub static NODES: Shelf<u32> = Shelf::new();
/// Spare buffers for sampled hop offsets.
pub static OFFSETS: Shelf<i64> = Shelf::new();

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: usize = MIN_KEPT_BYTES / 4;

    #[test]
    fn a_given_buffer_comes_back_empty_for_a_need_it_fits() -> Result<()> {
        let shelf = Shelf::<u32>::new();
        let mut buffer = Vec::with_capacity(3 * BIG);
        buffer.extend(0..10u32);
        let address = buffer.as_ptr();
        shelf.give(buffer);
        assert_eq!(shelf.kept_bytes(), 3 * BIG * 4);
        // Too big for a need under half its size, so a fresh one.
        let fresh = shelf.take(BIG)?;
        assert_ne!(fresh.as_ptr(), address);
        assert_eq!(shelf.kept_bytes(), 3 * BIG * 4);
        let again = shelf.take(2 * BIG)?;
        assert_eq!(again.as_ptr(), address);
        assert!(again.is_empty());
        assert_eq!(shelf.kept_bytes(), 0);
        // Nothing left to give: a fresh one, with room to spare.
        assert!(shelf.take(2 * BIG)?.capacity() >= 2 * BIG + 2 * BIG / SLACK);
        Ok(())
    }

    #[test]
    fn the_best_fit_is_taken() -> Result<()> {
        let shelf = Shelf::<u32>::new();
        shelf.give(Vec::with_capacity(4 * BIG));
        shelf.give(Vec::with_capacity(2 * BIG));
        shelf.give(Vec::with_capacity(3 * BIG));
        assert_eq!(shelf.take(2 * BIG)?.capacity(), 2 * BIG);
        assert_eq!(shelf.take(2 * BIG)?.capacity(), 3 * BIG);
        assert_eq!(shelf.take(2 * BIG)?.capacity(), 4 * BIG);
        Ok(())
    }

    #[test]
    fn small_buffers_and_overflow_are_freed() -> Result<()> {
        let shelf = Shelf::<u32>::new();
        shelf.give(Vec::with_capacity(BIG - 1));
        assert_eq!(shelf.kept_bytes(), 0);
        let per_buffer = SHELF_BYTES / 4;
        for _ in 0..5 {
            shelf.give(Vec::with_capacity(per_buffer / 4));
        }
        assert_eq!(shelf.kept_bytes(), SHELF_BYTES);
        // Small needs never take a kept buffer.
        drop(shelf.take(BIG - 1)?);
        assert_eq!(shelf.kept_bytes(), SHELF_BYTES);
        Ok(())
    }
}
