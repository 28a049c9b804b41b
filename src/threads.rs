//! Which threads run the CPU kernels' parallel loops: rayon's global pool, of which a
//! program's main thread can be one.
//!
//! From a thread outside the pool, each parallel loop is handed to the pool while the
//! caller sleeps until it ends: two thread wake-ups per loop, and a PGD training step
//! runs thousands of loops. A thread of the pool runs the first share of each loop
//! itself and the other threads take the rest, as OpenMP's calling thread does in
//! PyTorch. [`join_global_pool`] makes the main thread such a thread, so a training
//! loop written as a plain loop on the main thread runs that way (BENCHMARKS.md, "Main
//! thread in the pool").

/// Builds rayon's global pool with the calling thread as one of its threads (index 0),
/// the others started as usual, as many in all as rayon would start
/// (`RAYON_NUM_THREADS`, else one per core). Call it at the start of a program, from
/// its main thread, before anything runs a parallel loop. Returns false, and changes
/// nothing, where the calling thread already belongs to a pool or the global pool had
/// already been built. (Should rayon fail to start the pool's other threads, it
/// returns false and rayon's global pool is left unusable: rayon tries to build it
/// only once.)
///
/// The calling thread takes part in the parallel loops it starts itself; loops that
/// other threads hand to the pool run on the pool's other threads.
///
/// ```
/// // The doc test's thread, like a program's main thread, joins the pool.
/// if sparta::threads::join_global_pool() {
///     assert_eq!(rayon::current_thread_index(), Some(0));
/// }
/// ```
pub fn join_global_pool() -> bool {
    // A thread of another pool would make the build fail, and a failed build leaves
    // the global pool unbuilt for good.
    if rayon::current_thread_index().is_some() {
        return false;
    }
    rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
        .is_ok()
}
