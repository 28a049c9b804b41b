//! How the CPU kernels split work over cores: rayon over fixed pieces, serial when the
//! tensor is so small that scheduling would cost more than the work.
//!
//! Loops over heavy items (a sample's convolution, one of Winograd's products) take
//! `.with_max_len(1)`, a rayon job per item: rayon's default splitting hands each
//! thread runs of several items, and the thread that ends its last run first waits for
//! the other's; with a job per item it waits at most one item.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::real::{is_f32, Real};

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

/// Whole planes of `plane` elements per rayon task, at least [`CHUNK`] elements of them:
/// a plane of a deep layer (16 pixels at 4×4) is far too small to be a task of its own.
/// Like the pieces above, the tasks depend on the shape only.
pub(crate) fn planes_per_task(plane: usize) -> usize {
    CHUNK.div_ceil(plane.max(1))
}

/// Where an element-wise loop puts a value: an element of an output the caller holds
/// (`T`), or a slot of a vector that [`new_written`] builds without zero-filling it first
/// (`MaybeUninit<T>`). One loop generic over the slot serves both.
///
/// # Safety
/// An implementing type is laid out as `T` (it is `T` or `MaybeUninit<T>`): kernels cast
/// slices of written slots to slices of `T`.
pub(crate) unsafe trait Slot<T>: Send {
    /// The same kind of slot for elements of type `U`.
    type Of<U: Send>: Slot<U>;
    /// Stores `v` here.
    fn put(&mut self, v: T);
    /// The slots as values, for a kernel that writes its output through `&mut [T]`:
    /// slots of `T` as they are, empty slots zeroed first (a pass that costs little
    /// where the slots are about to be written again while in cache).
    fn values(slots: &mut [Self]) -> &mut [T]
    where
        Self: Sized,
        T: bytemuck::Zeroable;
}

// SAFETY: `T` is laid out as itself.
unsafe impl<T: Send> Slot<T> for T {
    type Of<U: Send> = U;
    #[inline(always)]
    fn put(&mut self, v: T) {
        *self = v;
    }
    fn values(slots: &mut [T]) -> &mut [T] {
        slots
    }
}

// SAFETY: `MaybeUninit<T>` is laid out as `T`.
unsafe impl<T: Send> Slot<T> for MaybeUninit<T> {
    type Of<U: Send> = MaybeUninit<U>;
    #[inline(always)]
    fn put(&mut self, v: T) {
        self.write(v);
    }
    fn values(slots: &mut [MaybeUninit<T>]) -> &mut [T]
    where
        T: bytemuck::Zeroable,
    {
        slots.fill_with(MaybeUninit::zeroed);
        // SAFETY: every slot now holds all-zero bytes, a valid `T` (`Zeroable`), and
        // `MaybeUninit<T>` has the layout of `T`.
        unsafe { std::slice::from_raw_parts_mut(slots.as_mut_ptr().cast(), slots.len()) }
    }
}

/// Views slots of `T` as the same kind of slots of f32, for the f32 paths of generic
/// kernels.
///
/// # Panics
/// If `T` is not f32.
pub(crate) fn f32_slots<T: Real, O: Slot<T>>(slots: &mut [O]) -> &mut [O::Of<f32>] {
    assert!(is_f32::<T>(), "f32_slots: not f32");
    // SAFETY: T is f32, so `O::Of<f32>` is `O` itself (f32 or MaybeUninit<f32>): the
    // cast keeps type, length and alignment.
    unsafe { std::slice::from_raw_parts_mut(slots.as_mut_ptr().cast(), slots.len()) }
}

/// A vector of `len` elements, each written once by `fill`. `vec![0; len]` would zero
/// it first: a second write of the whole output, which showed as `memset` in the
/// profiles of training (BENCHMARKS.md, "Outputs written once").
///
/// # Safety
/// `fill` must put a value in every slot of the slice it is given (a panic inside it is
/// fine: the vector is then dropped empty).
pub(crate) unsafe fn new_written<T>(
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<T>]),
) -> Vec<T> {
    let mut out = Vec::with_capacity(len);
    if cfg!(debug_assertions) {
        // All ones is NaN in f32 and f64: in debug builds (the tests) an element `fill`
        // misses shows as NaN in the result.
        // SAFETY: the vector has room for `len` elements; any bytes may stand in
        // MaybeUninit slots.
        unsafe { std::ptr::write_bytes(out.as_mut_ptr(), 0xFF, len) };
    }
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: `fill` wrote the first `len` elements, as the caller promises.
    unsafe { out.set_len(len) };
    out
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
