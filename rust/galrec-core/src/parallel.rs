//! Caller-controlled parallelism: run work on a rayon pool of a given size, so benchmarks can
//! measure 1 and 2 threads and tests can show results do not depend on the thread count.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{GraphError, Result};

/// The most threads one pool may have; guards against typos like `num_threads=10**6`.
pub const MAX_THREADS: usize = 1024;

/// Pools by size, built once per process and reused (spawning threads per call would cost
/// more than a typical sampling batch). All parallel work runs in these pools, never in
/// rayon's global pool, so a forked child (a DataLoader worker) can start its own: the
/// parent's pool threads do not exist after `fork`.
#[derive(Default)]
struct Registry {
    pid: u32,
    pools: HashMap<usize, Arc<ThreadPool>>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Registry::default()))
}

fn pool_of(num_threads: usize) -> Result<Arc<ThreadPool>> {
    let mut registry = registry()
        .lock()
        .map_err(|_| GraphError::invalid("num_threads", "thread pool registry is poisoned"))?;
    let pid = std::process::id();
    if registry.pid != pid {
        // Forked: the inherited pools have no threads here and dropping one would wait for
        // them forever, so leak them and start afresh.
        std::mem::forget(std::mem::take(&mut registry.pools));
        registry.pid = pid;
    }
    if let Some(pool) = registry.pools.get(&num_threads) {
        return Ok(Arc::clone(pool));
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(num_threads)
        .thread_name(move |i| format!("galrec-{num_threads}-{i}"))
        .build()
        .map_err(|e| GraphError::invalid("num_threads", format!("cannot start threads: {e}")))?;
    let pool = Arc::new(pool);
    registry.pools.insert(num_threads, Arc::clone(&pool));
    Ok(pool)
}

/// The default thread count: `RAYON_NUM_THREADS` if set, else one per available core.
pub fn default_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(MAX_THREADS)
}

thread_local! {
    /// Set while `with_threads(Some(1), ..)` runs its work on the calling thread.
    static ON_CALLER: Cell<bool> = const { Cell::new(false) };
}

/// Restores the previous `ON_CALLER` value, also when the work panics.
struct CallerGuard(bool);

impl Drop for CallerGuard {
    fn drop(&mut self) {
        ON_CALLER.with(|flag| flag.set(self.0));
    }
}

/// Whether the current work must stay on the calling thread (one thread requested).
pub fn on_caller() -> bool {
    ON_CALLER.with(Cell::get)
}

/// The number of threads the current work may use.
pub fn num_threads() -> usize {
    if on_caller() {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// Runs `work` on a pool of `num_threads` threads ([`default_threads`] when `None`). One
/// thread means the calling thread itself: waking a pool thread for every small request (a
/// sampling batch) would cost more than the request on a busy machine.
pub fn with_threads<R: Send>(
    num_threads: Option<usize>,
    work: impl FnOnce() -> R + Send,
) -> Result<R> {
    match num_threads.unwrap_or_else(default_threads) {
        1 => {
            let _restore = CallerGuard(ON_CALLER.with(|flag| flag.replace(true)));
            Ok(work())
        }
        n if n == 0 || n > MAX_THREADS => Err(GraphError::invalid(
            "num_threads",
            format!("must be between 1 and {MAX_THREADS}, got {n}"),
        )),
        n => Ok(pool_of(n)?.install(work)),
    }
}

/// Elements per task of the parallel scans below: large enough that each task is a tight,
/// vectorisable loop rather than per-element work-stealing.
const SCAN_CHUNK: usize = 1 << 15;

/// Inputs up to this length are scanned on the calling thread: handing them to the pool
/// would cost more (a thread switch) than the scan.
pub const SEQUENTIAL_UP_TO: usize = SCAN_CHUNK;

/// The index of the first element satisfying `pred`, scanning in parallel.
pub fn first_index<T: Sync>(values: &[T], pred: impl Fn(&T) -> bool + Sync) -> Option<usize> {
    if values.len() <= SEQUENTIAL_UP_TO {
        return values.iter().position(pred);
    }
    let chunk = values
        .par_chunks(SCAN_CHUNK)
        // A non-short-circuiting fold keeps the inner loop branch-free.
        .position_first(|c| c.iter().fold(false, |hit, v| hit | pred(v)))?;
    let base = chunk * SCAN_CHUNK;
    values[base..].iter().position(pred).map(|i| base + i)
}

/// The largest element, scanning in parallel (`None` when empty).
pub fn max_u32(values: &[u32]) -> Option<u32> {
    if values.len() <= SEQUENTIAL_UP_TO {
        return values.iter().copied().max();
    }
    values
        .par_chunks(SCAN_CHUNK)
        .map(|c| c.iter().fold(0, |m, &v| m.max(v)))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_pool_of_the_requested_size() {
        assert_eq!(
            with_threads(Some(2), rayon::current_num_threads).ok(),
            Some(2)
        );
        assert_eq!(with_threads(Some(2), num_threads).ok(), Some(2));
        assert_eq!(with_threads(Some(1), num_threads).ok(), Some(1));
        assert!(with_threads(Some(1), on_caller).unwrap_or(false));
        assert!(!on_caller());
        assert!(with_threads(Some(0), || ()).is_err());
    }

    #[test]
    fn scans_find_the_first_hit_and_the_maximum() {
        let mut values = vec![1u32; 100_000];
        values[70_001] = 9;
        values[99_999] = 9;
        assert_eq!(first_index(&values, |&v| v > 5), Some(70_001));
        assert_eq!(first_index(&values, |&v| v > 9), None);
        assert_eq!(max_u32(&values), Some(9));
        assert_eq!(max_u32(&[]), None);
    }
}
