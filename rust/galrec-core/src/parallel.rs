//! Caller-controlled parallelism: run work on a rayon pool of a given size, so benchmarks can
//! measure 1 and 2 threads and tests can show results do not depend on the thread count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{GraphError, Result};

/// The most threads one pool may have; guards against typos like `num_threads=10**6`.
pub const MAX_THREADS: usize = 1024;

/// Pools by size, built once and reused (spawning threads per call would cost more than a
/// typical sampling batch).
fn pools() -> &'static Mutex<HashMap<usize, Arc<ThreadPool>>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<ThreadPool>>>> = OnceLock::new();
    POOLS.get_or_init(|| Mutex::new(HashMap::new()))
}

fn pool_of(num_threads: usize) -> Result<Arc<ThreadPool>> {
    let mut map = pools()
        .lock()
        .map_err(|_| GraphError::invalid("num_threads", "thread pool registry is poisoned"))?;
    if let Some(pool) = map.get(&num_threads) {
        return Ok(Arc::clone(pool));
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(num_threads)
        .thread_name(move |i| format!("galrec-{num_threads}-{i}"))
        .build()
        .map_err(|e| GraphError::invalid("num_threads", format!("cannot start threads: {e}")))?;
    let pool = Arc::new(pool);
    map.insert(num_threads, Arc::clone(&pool));
    Ok(pool)
}

/// Runs `work` on a pool of `num_threads` threads, or on rayon's global pool (one thread per
/// core, or `RAYON_NUM_THREADS`) when `None`.
pub fn with_threads<R: Send>(
    num_threads: Option<usize>,
    work: impl FnOnce() -> R + Send,
) -> Result<R> {
    match num_threads {
        None => Ok(work()),
        Some(n) if n == 0 || n > MAX_THREADS => Err(GraphError::invalid(
            "num_threads",
            format!("must be between 1 and {MAX_THREADS}, got {n}"),
        )),
        Some(n) => Ok(pool_of(n)?.install(work)),
    }
}

/// Elements per task of the parallel scans below: large enough that each task is a tight,
/// vectorisable loop rather than per-element work-stealing.
const SCAN_CHUNK: usize = 1 << 15;

/// The index of the first element satisfying `pred`, scanning in parallel.
pub fn first_index<T: Sync>(values: &[T], pred: impl Fn(&T) -> bool + Sync) -> Option<usize> {
    let chunk = values
        .par_chunks(SCAN_CHUNK)
        // A non-short-circuiting fold keeps the inner loop branch-free.
        .position_first(|c| c.iter().fold(false, |hit, v| hit | pred(v)))?;
    let base = chunk * SCAN_CHUNK;
    values[base..].iter().position(pred).map(|i| base + i)
}

/// The largest element, scanning in parallel (`None` when empty).
pub fn max_u32(values: &[u32]) -> Option<u32> {
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
        assert_eq!(
            with_threads(Some(1), rayon::current_num_threads).ok(),
            Some(1)
        );
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
