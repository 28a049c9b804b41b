//! The gate on the CPU: the reference every kernel is checked against, and fast enough
//! to train with (numbers and where it falls short of ReLU in docs/gate.md).
//!
//! Work splits over samples n with rayon (one task owns `x[n]`, `y[n]` / `dx[n]`, `ds[n]`,
//! `dc[n]`, so no reduction crosses tasks and results do not depend on the thread count); small
//! tensors run serially. Inner loops run over one channel plane with `s[n]` expanded to
//! H·W pixels once per sample (for B = 1 it is used in place). The per-sample loops are
//! `reference.rs` (generic; f64 with `exp` is the reference), run on the vector tier
//! `tiers.rs` picks: f32 with the vectorizable sigmoid of `sigmoid.rs`, or on CPUs with
//! FMA σ from the factors s and c in the loops of `product.rs` (AVX2) or `avx512.rs`
//! (AVX-512, intrinsics). `lanes.rs` holds what they all share.

use rayon::prelude::*;

use super::sigmoid::{Exact, FastF32, Sigmoid};
use super::tiers::{self, vectors};
use super::GateShape;
use crate::error::Result;
use crate::ops::par::{f32_slots, for_each_piece, new_written, worth_parallel, Slot};
use crate::real::{f32s, f32s_mut, is_f32};
use crate::Real;

pub use super::tiers::vector_tier;
pub use crate::ops::relu::cpu::{relu_backward, relu_forward};

/// `y = max(x, 0) · σ(s[n, h/B, w/B] · c[n, ch])`.
///
/// ```
/// use sparta::ops::gate::{cpu, GateShape};
/// // N = 1, C = 2, H = 1, W = 2, block 2: both pixels share s[0, 0, 0].
/// let shape = GateShape::new(1, 2, 1, 2, 2)?;
/// let x = [1.0f64, -1.0, 2.0, 4.0];
/// let (s, c) = ([0.5], [0.0, 2.0]);
/// let mut y = [0.0; 4];
/// cpu::gate_forward(&shape, &x, &s, &c, &mut y)?;
/// let g1 = 1.0 / (1.0 + (-1.0f64).exp()); // σ(0.5 · 2)
/// assert_eq!(y, [0.5, 0.0, 2.0 * g1, 4.0 * g1]);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn gate_forward<T: Real>(
    shape: &GateShape,
    x: &[T],
    s: &[T],
    c: &[T],
    y: &mut [T],
) -> Result<()> {
    shape.check_all(
        "gate_forward",
        &[
            ("x", x.len()),
            ("s", s.len()),
            ("c", c.len()),
            ("y", y.len()),
        ],
    )?;
    forward_slots(shape, x, s, c, y);
    Ok(())
}

/// [`gate_forward`] into a new `y`. Each sample's slice of it is zeroed and written by
/// one task while it is in cache: a zeroed allocation would be a further pass over
/// memory, on one thread.
///
/// ```
/// use sparta::ops::gate::{cpu, GateShape};
/// let shape = GateShape::new(1, 1, 1, 2, 1)?;
/// let (x, s, c) = ([3.0f64, -1.0], [0.0, 1.0], [1.0]);
/// let mut y = [0.0; 2];
/// cpu::gate_forward(&shape, &x, &s, &c, &mut y)?;
/// assert_eq!(cpu::gate_forward_new(&shape, &x, &s, &c)?, y);
/// assert_eq!(y[0], 1.5); // 3 · σ(0)
/// assert!(cpu::gate_forward_new(&shape, &x[..1], &s, &c).is_err());
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn gate_forward_new<T: Real>(shape: &GateShape, x: &[T], s: &[T], c: &[T]) -> Result<Vec<T>> {
    shape.check_all(
        "gate_forward",
        &[("x", x.len()), ("s", s.len()), ("c", c.len())],
    )?;
    // SAFETY: `forward_slots` writes every sample's slice of y, and the samples tile it
    // (y is as long as x, which `check_all` held to the shape).
    Ok(unsafe { new_written(x.len(), |y| forward_slots(shape, x, s, c, y)) })
}

/// The gate into slots of checked lengths, on the sigmoid the element type calls for.
fn forward_slots<T: Real, O: Slot<T>>(shape: &GateShape, x: &[T], s: &[T], c: &[T], y: &mut [O]) {
    if is_f32::<T>() {
        forward_impl::<f32, FastF32, _>(shape, f32s(x), f32s(s), f32s(c), f32_slots(y));
    } else {
        forward_impl::<T, Exact, _>(shape, x, s, c, y);
    }
}

/// Backward of [`gate_forward`] given `dy`. `dx` gets the direct term
/// `dy · g · [x ≥ 0]` only (DSCANet adds the paths through s and c); ds and dc are
/// overwritten: `ds[n,i,j] = Σ_ch Σ_(h,w) in block (i,j) dA · c[n,ch]`,
/// `dc[n,ch] = Σ_hw dA · s[n,h/B,w/B]`, with `dA = dy · max(x,0) · g · (1 − g)` and
/// `g` recomputed from x, s, c.
///
/// ```
/// use sparta::ops::gate::{cpu, GateShape};
/// let shape = GateShape::new(1, 1, 1, 2, 1)?;
/// let (x, s, c, dy) = ([2.0f64, -1.0], [0.0, 0.0], [1.0], [1.0, 1.0]);
/// let (mut dx, mut ds, mut dc) = ([0.0; 2], [9.0; 2], [9.0]);
/// cpu::gate_backward(&shape, &x, &s, &c, &dy, &mut dx, &mut ds, &mut dc)?;
/// // g = σ(0) = 1/2 everywhere; dA = dy·max(x,0)/4 = [0.5, 0]
/// assert_eq!(dx, [0.5, 0.0]);
/// assert_eq!(ds, [0.5, 0.0]);
/// assert_eq!(dc, [0.0]); // Σ dA·s with s = 0
/// # Ok::<(), sparta::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn gate_backward<T: Real>(
    shape: &GateShape,
    x: &[T],
    s: &[T],
    c: &[T],
    dy: &[T],
    dx: &mut [T],
    ds: &mut [T],
    dc: &mut [T],
) -> Result<()> {
    gate_backward_slots(shape, x, s, c, dy, dx, ds, dc)?;
    Ok(())
}

/// [`gate_backward`] with `dx` as slots that need not hold values (an allocation
/// that is not zeroed: each sample's slice is zeroed and written by one task while in
/// cache); returns `dx` as values, every one written.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gate_backward_slots<'a, T: Real, O: Slot<T>>(
    shape: &GateShape,
    x: &[T],
    s: &[T],
    c: &[T],
    dy: &[T],
    dx: &'a mut [O],
    ds: &mut [T],
    dc: &mut [T],
) -> Result<&'a mut [T]> {
    shape.check_all(
        "gate_backward",
        &[
            ("x", x.len()),
            ("s", s.len()),
            ("c", c.len()),
            ("dy", dy.len()),
            ("dx", dx.len()),
            ("ds", ds.len()),
            ("dc", dc.len()),
        ],
    )?;
    if is_f32::<T>() {
        backward_impl::<f32, FastF32, _>(
            shape,
            f32s(x),
            f32s(s),
            f32s(c),
            f32s(dy),
            f32_slots(dx),
            f32s_mut(ds),
            f32s_mut(dc),
        );
    } else {
        backward_impl::<T, Exact, _>(shape, x, s, c, dy, dx, ds, dc);
    }
    // SAFETY: `backward_impl` wrote every sample's slice of dx (the samples tile it), so
    // each slot holds a `T`; `O` is laid out as `T` (`Slot`'s contract).
    Ok(unsafe { std::slice::from_raw_parts_mut(dx.as_mut_ptr().cast(), dx.len()) })
}

/// The unfused peer of [`gate_forward`], as an eager framework runs it: three passes
/// over memory, `relu_out = max(x, 0)`, `gate = σ(s ⊗ c)` materialized as a full
/// `[N, C, H, W]` tensor, then `y = relu_out · gate`. Same result as the fused op; it
/// exists for the benchmarks. The caller owns the two intermediates (x-shaped).
///
/// ```
/// use sparta::ops::gate::{cpu, GateShape};
/// let shape = GateShape::new(1, 1, 1, 2, 1)?;
/// let (x, s, c) = ([3.0f32, -1.0], [0.0, 1.0], [1.0]);
/// let (mut r, mut g, mut y) = ([0.0; 2], [0.0; 2], [0.0; 2]);
/// cpu::gate_forward_unfused(&shape, &x, &s, &c, &mut r, &mut g, &mut y)?;
/// assert_eq!(y, [1.5, 0.0]);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn gate_forward_unfused<T: Real>(
    shape: &GateShape,
    x: &[T],
    s: &[T],
    c: &[T],
    relu_out: &mut [T],
    gate: &mut [T],
    y: &mut [T],
) -> Result<()> {
    shape.check_all(
        "gate_forward_unfused",
        &[
            ("x", x.len()),
            ("s", s.len()),
            ("c", c.len()),
            ("relu_out", relu_out.len()),
            ("gate", gate.len()),
            ("y", y.len()),
        ],
    )?;
    relu_forward(x, relu_out)?;
    if is_f32::<T>() {
        gate_map_impl::<f32, FastF32>(shape, f32s(s), f32s(c), f32s_mut(gate));
    } else {
        gate_map_impl::<T, Exact>(shape, s, c, gate);
    }
    let (relu_out, gate) = (&*relu_out, &*gate);
    for_each_piece(y, |off, y| {
        let r = &relu_out[off..off + y.len()];
        let g = &gate[off..off + y.len()];
        for ((y, &r), &g) in y.iter_mut().zip(r).zip(g) {
            *y = r * g;
        }
    });
    Ok(())
}

/// `s[n]` at pixel resolution: the slice itself for B = 1, else expanded into `buf`.
fn pixel_s<'a, T: Real>(shape: &GateShape, s_n: &'a [T], buf: &'a mut Vec<T>) -> &'a [T] {
    if shape.block == 1 {
        return s_n;
    }
    let (b, sw) = (shape.block, shape.sw());
    buf.clear();
    for h in 0..shape.h {
        let row = &s_n[(h / b) * sw..][..sw];
        buf.extend((0..shape.w).map(|w| row[w / b]));
    }
    buf
}

/// One task's reusable buffers: `s` expanded to pixels and per-pixel `ds` (both B > 1).
struct Scratch<T> {
    s_px: Vec<T>,
    ds_px: Vec<T>,
}

impl<T> Scratch<T> {
    fn new() -> Scratch<T> {
        Scratch {
            s_px: Vec::new(),
            ds_px: Vec::new(),
        }
    }
}

/// Runs `per_sample(n, out_n, scratch)` over the samples' slices of `out`, each task
/// with its own [`Scratch`]; in parallel when worth it.
fn for_each_sample<T: Real, O: Send>(
    shape: &GateShape,
    out: &mut [O],
    per_sample: impl Fn(usize, &mut O, &mut Scratch<T>) + Sync + Send,
) {
    if worth_parallel(shape.x_len(), shape.n) {
        out.par_iter_mut()
            .enumerate()
            .for_each_init(Scratch::new, |scratch, (n, o)| per_sample(n, o, scratch));
    } else {
        let mut scratch = Scratch::new();
        for (n, o) in out.iter_mut().enumerate() {
            per_sample(n, o, &mut scratch);
        }
    }
}

fn forward_impl<T: Real, S: Sigmoid<T>, O: Slot<T>>(
    shape: &GateShape,
    x: &[T],
    s: &[T],
    c: &[T],
    y: &mut [O],
) {
    let (chw, ssz) = (shape.c * shape.hw(), shape.sh() * shape.sw());
    let tier = vectors();
    let mut samples: Vec<&mut [O]> = y.chunks_exact_mut(chw).collect();
    for_each_sample(shape, &mut samples, |n, y_n, scratch| {
        let s_px = pixel_s(shape, &s[n * ssz..][..ssz], &mut scratch.s_px);
        let (x_n, c_n) = (&x[n * chw..][..chw], &c[n * shape.c..][..shape.c]);
        tiers::forward::<T, S>(tier, x_n, s_px, c_n, O::values(y_n));
    });
}

fn gate_map_impl<T: Real, S: Sigmoid<T>>(shape: &GateShape, s: &[T], c: &[T], gate: &mut [T]) {
    let (chw, ssz) = (shape.c * shape.hw(), shape.sh() * shape.sw());
    let tier = vectors();
    let mut samples: Vec<&mut [T]> = gate.chunks_exact_mut(chw).collect();
    for_each_sample(shape, &mut samples, |n, g_n, scratch| {
        let s_px = pixel_s(shape, &s[n * ssz..][..ssz], &mut scratch.s_px);
        let c_n = &c[n * shape.c..][..shape.c];
        tiers::gate_map::<T, S>(tier, s_px, c_n, g_n);
    });
}

/// One sample's outputs of the backward.
struct BackwardOut<'a, T, O> {
    dx: &'a mut [O],
    ds: &'a mut [T],
    dc: &'a mut [T],
}

#[allow(clippy::too_many_arguments)]
fn backward_impl<T: Real, S: Sigmoid<T>, O: Slot<T>>(
    shape: &GateShape,
    x: &[T],
    s: &[T],
    c: &[T],
    dy: &[T],
    dx: &mut [O],
    ds: &mut [T],
    dc: &mut [T],
) {
    let (hw, chw, ssz) = (shape.hw(), shape.c * shape.hw(), shape.sh() * shape.sw());
    let tier = vectors();
    let mut samples: Vec<BackwardOut<'_, T, O>> = dx
        .chunks_exact_mut(chw)
        .zip(ds.chunks_exact_mut(ssz))
        .zip(dc.chunks_exact_mut(shape.c))
        .map(|((dx, ds), dc)| BackwardOut { dx, ds, dc })
        .collect();
    for_each_sample(shape, &mut samples, |n, out, scratch| {
        let Scratch {
            s_px,
            ds_px: ds_buf,
        } = scratch;
        let s_px = pixel_s(shape, &s[n * ssz..][..ssz], s_px);
        // Per-pixel ds: straight into ds[n] for B = 1, else a scratch plane to pool.
        let ds_px: &mut [T] = if shape.block == 1 {
            &mut *out.ds
        } else {
            ds_buf.clear();
            ds_buf.resize(hw, T::zero());
            ds_buf
        };
        let (x_n, dy_n) = (&x[n * chw..][..chw], &dy[n * chw..][..chw]);
        let c_n = &c[n * shape.c..][..shape.c];
        let (dx_n, dc_n) = (O::values(out.dx), &mut *out.dc);
        tiers::backward::<T, S>(tier, x_n, s_px, c_n, dy_n, dx_n, ds_px, dc_n);
        if shape.block > 1 {
            pool_blocks(shape, ds_buf, out.ds);
        }
    });
}

/// `ds[i, j] = Σ ds_px[h, w]` over the B×B block (i, j), row-major order.
fn pool_blocks<T: Real>(shape: &GateShape, ds_px: &[T], ds: &mut [T]) {
    let (b, sw) = (shape.block, shape.sw());
    ds.fill(T::zero());
    for (h, row) in ds_px.chunks_exact(shape.w).enumerate() {
        let out = &mut ds[(h / b) * sw..][..sw];
        for (w, &v) in row.iter().enumerate() {
            out[w / b] += v;
        }
    }
}
