//! Where a training or attack loop runs: on a thread of rayon's global pool, the pool
//! in which the CPU kernels run their parallel loops.
//!
//! Called from a thread outside the pool (a program's main thread), each parallel loop
//! is handed to the pool and the caller sleeps until the loop ends: two thread
//! wake-ups per loop, and a training step runs hundreds of loops. Called from one of
//! the pool's threads, the caller takes the first share of each loop itself and the
//! other threads take the rest, as OpenMP's calling thread does in PyTorch. The main
//! job's epoch measured about a tenth faster so (BENCHMARKS.md, "Training loop on a
//! pool thread").

/// Runs `f` on a thread of rayon's global pool and returns its result; the calling
/// thread waits. Build the model inside `f`: a model holds reference-counted layers
/// (`Rc`), which stay on the thread that made them.
///
/// ```
/// let sum = sparta::threads::run_on_pool_thread(|| {
///     assert!(rayon::current_thread_index().is_some());
///     (1..=4).sum::<u32>()
/// });
/// assert_eq!(sum, 10);
/// ```
pub fn run_on_pool_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}
