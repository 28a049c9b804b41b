//! How the CPU kernels split work over cores: rayon over fixed pieces, serial when the
//! tensor is so small that scheduling would cost more than the work.

use rayon::prelude::*;

/// Elements per rayon task in element-wise loops (128 KiB of f32): big enough that task
/// overhead vanishes, small enough to keep both cores busy at the smallest bench shape.
pub(crate) const CHUNK: usize = 1 << 15;

/// Calls `f(offset, piece)` on consecutive pieces of `out` of at most [`CHUNK`]
/// elements, in parallel when there is more than one piece. Pieces never depend on the
/// thread count, so results are the same whatever the pool size.
pub(crate) fn for_each_piece<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    if out.len() <= CHUNK {
        f(0, out);
    } else {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(k, piece)| f(k * CHUNK, piece));
    }
}

/// At least this many groups per batch where the batch allows it, for the kernels that
/// run one rayon task per group of samples, so that the cores share the work; a fixed
/// count (not the thread count) keeps the grouping, and so the rounding, a function of
/// the shape alone.
pub(crate) const MIN_GROUPS: usize = 4;

/// Samples per group for `n` samples of `per_sample` columns each: enough for about
/// `target` columns, at most a [`MIN_GROUPS`]th of the batch (rounded up), at least one.
pub(crate) fn samples_per_group(n: usize, per_sample: usize, target: usize) -> usize {
    target
        .div_ceil(per_sample.max(1))
        .min(n.div_ceil(MIN_GROUPS))
        .clamp(1, n.max(1))
}

/// Whether per-sample work over `total` elements is worth handing to rayon.
pub(crate) fn worth_parallel(total: usize, samples: usize) -> bool {
    samples > 1 && total > CHUNK
}
