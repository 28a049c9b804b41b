//! The gate on the CPU: the reference every kernel is checked against, and fast enough
//! to train with (numbers and where it falls short of ReLU in docs/gate.md).
//!
//! Work splits over samples n with rayon (one task owns `x[n]`, `y[n]` / `dx[n]`, `ds[n]`,
//! `dc[n]`, so no reduction crosses tasks and results do not depend on the thread count); small
//! tensors run serially. Inner loops run over one channel plane with `s[n]` expanded to
//! H·W pixels once per sample (for B = 1 it is used in place), so they are plain
//! contiguous loops the compiler vectorizes. f32 uses the vectorizable sigmoid of
//! `sigmoid.rs`, or on CPUs with FMA σ from the factors s and c: the loops of
//! `product.rs` (AVX2) or `avx512.rs` (AVX-512, intrinsics); f64 uses `exp`.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::avx512;
use super::product;
use super::sigmoid::{Exact, FastF32, Sigmoid};
use super::GateShape;
use crate::error::Result;
use crate::ops::par::{for_each_piece, worth_parallel};
use crate::real::{f32s, f32s_mut, is_f32};
use crate::Real;

pub use crate::ops::relu::cpu::{relu_backward, relu_forward};

/// Lanes of the per-channel `dc` accumulator: independent sums let the loop vectorize.
pub(super) const LANES: usize = 16;

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
    if is_f32::<T>() {
        forward_impl::<f32, FastF32>(shape, f32s(x), f32s(s), f32s(c), f32s_mut(y));
    } else {
        forward_impl::<T, Exact>(shape, x, s, c, y);
    }
    Ok(())
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
        backward_impl::<f32, FastF32>(
            shape,
            f32s(x),
            f32s(s),
            f32s(c),
            f32s(dy),
            f32s_mut(dx),
            f32s_mut(ds),
            f32s_mut(dc),
        );
    } else {
        backward_impl::<T, Exact>(shape, x, s, c, dy, dx, ds, dc);
    }
    Ok(())
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

/// Whether a sample takes the product loops (`product.rs`, `avx512.rs`): f32 with FMA
/// (`S::PRODUCT_LOOPS`) and every |s·c| of the sample in their range; else the generic
/// loops run.
#[inline(always)]
fn product_loops<T: Real, S: Sigmoid<T>>(s: &[T], c: &[T]) -> bool {
    S::PRODUCT_LOOPS && is_f32::<T>() && product::in_range(f32s(s), f32s(c))
}

fn forward_impl<T: Real, S: Sigmoid<T>>(shape: &GateShape, x: &[T], s: &[T], c: &[T], y: &mut [T]) {
    let (chw, ssz) = (shape.c * shape.hw(), shape.sh() * shape.sw());
    let vectors = vectors();
    let mut samples: Vec<&mut [T]> = y.chunks_exact_mut(chw).collect();
    for_each_sample(shape, &mut samples, |n, y_n, scratch| {
        let s_px = pixel_s(shape, &s[n * ssz..][..ssz], &mut scratch.s_px);
        let (x_n, c_n) = (&x[n * chw..][..chw], &c[n * shape.c..][..shape.c]);
        match vectors {
            // SAFETY: vectors() checked that the CPU has the loop's features.
            #[cfg(target_arch = "x86_64")]
            Vectors::Avx2 => unsafe { forward_avx2::<T, S::Wide>(x_n, s_px, c_n, y_n) },
            #[cfg(target_arch = "x86_64")]
            Vectors::Avx512 => unsafe { forward_avx512::<T, S::Wide>(x_n, s_px, c_n, y_n) },
            Vectors::Baseline => forward_sample::<T, S>(x_n, s_px, c_n, y_n),
        }
    });
}

/// `y = max(x,0)·σ(s·c)` for one sample; `s` at pixel resolution, `x`, `y` `[C, H, W]`.
///
/// Each plane runs in fixed [`LANES`]-element chunks (one AVX-512 vector, straight-line
/// code) and a scalar tail: a plain loop over the plane is vectorized with a runtime
/// trip-count check and vector and scalar epilogues per plane, which at 4×4 planes (one
/// vector each) cost 35 % more time per element than at 32×32.
#[inline(always)]
fn forward_sample<T: Real, S: Sigmoid<T>>(x: &[T], s: &[T], c: &[T], y: &mut [T]) {
    let (hw, zero) = (s.len(), T::zero());
    let element = |x: T, sv: T, cv: T| {
        let r = if x < zero { zero } else { x };
        r * S::sigmoid(sv * cv)
    };
    for ((y, x), &cv) in y.chunks_exact_mut(hw).zip(x.chunks_exact(hw)).zip(c) {
        let mut ys = y.chunks_exact_mut(LANES);
        let mut xs = x.chunks_exact(LANES);
        let mut ss = s.chunks_exact(LANES);
        for ((y, x), s) in (&mut ys).zip(&mut xs).zip(&mut ss) {
            let y: &mut [T; LANES] = y.try_into().unwrap();
            let (x, s): (&[T; LANES], &[T; LANES]) = (x.try_into().unwrap(), s.try_into().unwrap());
            for k in 0..LANES {
                y[k] = element(x[k], s[k], cv);
            }
        }
        let tail = ys.into_remainder().iter_mut().zip(xs.remainder());
        for ((y, &x), &sv) in tail.zip(ss.remainder()) {
            *y = element(x, sv, cv);
        }
    }
}

/// The vector instructions the per-sample loops are compiled for: the x86-64 baseline
/// the crate is built for (SSE2, 4 lanes), AVX2 + FMA (8 lanes), or AVX-512 (16 lanes,
/// and the f32 product loops in intrinsics: `avx512.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Vectors {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// The [`Vectors`] the loops run with, chosen once: the widest this CPU has, or a
/// narrower one named by `SPARTA_CPU_VECTORS` (`baseline`, `avx2`, `avx512`), so that
/// tests and benches can run every tier on one machine. A tier the CPU lacks, or a name
/// it does not know, gets a one-line notice and the widest tier.
fn vectors() -> Vectors {
    static CHOSEN: std::sync::OnceLock<Vectors> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let widest = widest_vectors();
        let Ok(name) = std::env::var("SPARTA_CPU_VECTORS") else {
            return widest;
        };
        match parse_vectors(&name) {
            Some(asked) if asked <= widest => asked,
            asked => {
                let why = match asked {
                    Some(_) => "this CPU lacks it".to_string(),
                    None => {
                        let names: Vec<_> = Vectors::ALL.iter().map(|t| t.name()).collect();
                        format!("not one of {}", names.join(", "))
                    }
                };
                eprintln!(
                    "sparta: SPARTA_CPU_VECTORS={name}: {why}; using {}",
                    widest.name()
                );
                widest
            }
        }
    })
}

/// Which vector instructions the gate's CPU loops run with: `"baseline"` (SSE2 on
/// x86-64, the target's own elsewhere), `"avx2"` (with FMA) or `"avx512"`; the widest
/// the CPU has unless `SPARTA_CPU_VECTORS` names a narrower one. Benchmarks print it.
///
/// ```
/// let tier = sparta::ops::gate::cpu::vector_tier();
/// assert!(["baseline", "avx2", "avx512"].contains(&tier));
/// ```
pub fn vector_tier() -> &'static str {
    vectors().name()
}

impl Vectors {
    /// Every tier this target can have, narrowest first.
    const ALL: &[Vectors] = &[
        Vectors::Baseline,
        #[cfg(target_arch = "x86_64")]
        Vectors::Avx2,
        #[cfg(target_arch = "x86_64")]
        Vectors::Avx512,
    ];

    /// Its name in `SPARTA_CPU_VECTORS` and [`vector_tier`].
    fn name(self) -> &'static str {
        match self {
            Vectors::Baseline => "baseline",
            #[cfg(target_arch = "x86_64")]
            Vectors::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Vectors::Avx512 => "avx512",
        }
    }
}

/// The tier `SPARTA_CPU_VECTORS` names (`avx2` and `avx512` only exist on x86-64).
fn parse_vectors(name: &str) -> Option<Vectors> {
    Vectors::ALL
        .iter()
        .copied()
        .find(|tier| tier.name() == name)
}

/// The widest [`Vectors`] this CPU has.
fn widest_vectors() -> Vectors {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        let avx512 = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512bw");
        if avx2 && avx512 {
            return Vectors::Avx512;
        }
        if avx2 {
            return Vectors::Avx2;
        }
    }
    Vectors::Baseline
}

/// Copies of the per-sample loops compiled with `$features` enabled, taking the f32
/// product loops of module `$product` (`product.rs`, or `avx512.rs` in intrinsics) where
/// [`product_loops`] allows; callers check the features with [`vectors`] first.
#[cfg(target_arch = "x86_64")]
macro_rules! wide_loops {
    ($features:literal, $product:ident, $fwd:ident, $map:ident, $bwd:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $fwd<T: Real, S: Sigmoid<T>>(x: &[T], s: &[T], c: &[T], y: &mut [T]) {
            if product_loops::<T, S>(s, c) {
                $product::forward_sample(f32s(x), f32s(s), f32s(c), f32s_mut(y));
            } else {
                forward_sample::<T, S>(x, s, c, y);
            }
        }

        #[target_feature(enable = $features)]
        unsafe fn $map<T: Real, S: Sigmoid<T>>(s: &[T], c: &[T], gate: &mut [T]) {
            if product_loops::<T, S>(s, c) {
                $product::gate_map_sample(f32s(s), f32s(c), f32s_mut(gate));
            } else {
                gate_map_sample::<T, S>(s, c, gate);
            }
        }

        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $features)]
        unsafe fn $bwd<T: Real, S: Sigmoid<T>>(
            x: &[T],
            s: &[T],
            c: &[T],
            dy: &[T],
            dx: &mut [T],
            ds: &mut [T],
            dc: &mut [T],
        ) {
            if product_loops::<T, S>(s, c) {
                $product::backward_sample(
                    f32s(x),
                    f32s(s),
                    f32s(c),
                    f32s(dy),
                    f32s_mut(dx),
                    f32s_mut(ds),
                    f32s_mut(dc),
                );
            } else {
                backward_sample::<T, S>(x, s, c, dy, dx, ds, dc);
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
wide_loops!(
    "avx2,fma",
    product,
    forward_avx2,
    gate_map_avx2,
    backward_avx2
);
#[cfg(target_arch = "x86_64")]
wide_loops!(
    "avx2,fma,avx512f,avx512vl,avx512dq,avx512bw",
    avx512,
    forward_avx512,
    gate_map_avx512,
    backward_avx512
);

fn gate_map_impl<T: Real, S: Sigmoid<T>>(shape: &GateShape, s: &[T], c: &[T], gate: &mut [T]) {
    let (chw, ssz) = (shape.c * shape.hw(), shape.sh() * shape.sw());
    let vectors = vectors();
    let mut samples: Vec<&mut [T]> = gate.chunks_exact_mut(chw).collect();
    for_each_sample(shape, &mut samples, |n, g_n, scratch| {
        let s_px = pixel_s(shape, &s[n * ssz..][..ssz], &mut scratch.s_px);
        let c_n = &c[n * shape.c..][..shape.c];
        match vectors {
            // SAFETY: vectors() checked that the CPU has the loop's features.
            #[cfg(target_arch = "x86_64")]
            Vectors::Avx2 => unsafe { gate_map_avx2::<T, S::Wide>(s_px, c_n, g_n) },
            #[cfg(target_arch = "x86_64")]
            Vectors::Avx512 => unsafe { gate_map_avx512::<T, S::Wide>(s_px, c_n, g_n) },
            Vectors::Baseline => gate_map_sample::<T, S>(s_px, c_n, g_n),
        }
    });
}

/// The unfused peer's σ(s ⊗ c) map, in the same fixed chunks as [`forward_sample`].
#[inline(always)]
fn gate_map_sample<T: Real, S: Sigmoid<T>>(s: &[T], c: &[T], gate: &mut [T]) {
    for (g, &cv) in gate.chunks_exact_mut(s.len()).zip(c) {
        let mut gs = g.chunks_exact_mut(LANES);
        let mut ss = s.chunks_exact(LANES);
        for (g, s) in (&mut gs).zip(&mut ss) {
            let g: &mut [T; LANES] = g.try_into().unwrap();
            let s: &[T; LANES] = s.try_into().unwrap();
            for k in 0..LANES {
                g[k] = S::sigmoid(s[k] * cv);
            }
        }
        for (g, &sv) in gs.into_remainder().iter_mut().zip(ss.remainder()) {
            *g = S::sigmoid(sv * cv);
        }
    }
}

/// One sample's outputs of the backward.
struct BackwardOut<'a, T> {
    dx: &'a mut [T],
    ds: &'a mut [T],
    dc: &'a mut [T],
}

#[allow(clippy::too_many_arguments)]
fn backward_impl<T: Real, S: Sigmoid<T>>(
    shape: &GateShape,
    x: &[T],
    s: &[T],
    c: &[T],
    dy: &[T],
    dx: &mut [T],
    ds: &mut [T],
    dc: &mut [T],
) {
    let (hw, chw, ssz) = (shape.hw(), shape.c * shape.hw(), shape.sh() * shape.sw());
    let vectors = vectors();
    let mut samples: Vec<BackwardOut<'_, T>> = dx
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
        let (dx_n, dc_n) = (&mut *out.dx, &mut *out.dc);
        match vectors {
            // SAFETY: vectors() checked that the CPU has the loop's features.
            #[cfg(target_arch = "x86_64")]
            Vectors::Avx2 => unsafe {
                backward_avx2::<T, S::Wide>(x_n, s_px, c_n, dy_n, dx_n, ds_px, dc_n)
            },
            #[cfg(target_arch = "x86_64")]
            Vectors::Avx512 => unsafe {
                backward_avx512::<T, S::Wide>(x_n, s_px, c_n, dy_n, dx_n, ds_px, dc_n)
            },
            Vectors::Baseline => backward_sample::<T, S>(x_n, s_px, c_n, dy_n, dx_n, ds_px, dc_n),
        }
        if shape.block > 1 {
            pool_blocks(shape, ds_buf, out.ds);
        }
    });
}

/// dx, per-pixel ds (summed over channels) and dc of one sample; `s` is at pixel
/// resolution (H·W), `x`, `dy`, `dx` are `[C, H, W]`.
#[inline(always)]
fn backward_sample<T: Real, S: Sigmoid<T>>(
    x: &[T],
    s: &[T],
    c: &[T],
    dy: &[T],
    dx: &mut [T],
    ds: &mut [T],
    dc: &mut [T],
) {
    let hw = s.len();
    let zero = T::zero();
    ds.fill(zero);
    let planes = x
        .chunks_exact(hw)
        .zip(dy.chunks_exact(hw))
        .zip(dx.chunks_exact_mut(hw));
    for (((x, dy), dx), (&cv, dc)) in planes.zip(c.iter().zip(dc.iter_mut())) {
        let mut lanes = [zero; LANES];
        let element = |x: T, dy: T, dx: &mut T, ds: &mut T, sv: T, lane: &mut T| {
            let (g, slope) = S::sigmoid_and_slope(sv * cv);
            *dx = if x >= zero { dy * g } else { zero };
            let r = if x < zero { zero } else { x };
            let da = dy * r * slope;
            *ds += da * cv;
            *lane += da * sv;
        };
        let mut xs = x.chunks_exact(LANES);
        let mut dys = dy.chunks_exact(LANES);
        let mut dxs = dx.chunks_exact_mut(LANES);
        let mut dss = ds.chunks_exact_mut(LANES);
        let mut ss = s.chunks_exact(LANES);
        for ((((x, dy), dx), ds), s) in (&mut xs)
            .zip(&mut dys)
            .zip(&mut dxs)
            .zip(&mut dss)
            .zip(&mut ss)
        {
            let (x, dy, s): (&[T; LANES], &[T; LANES], &[T; LANES]) = (
                x.try_into().unwrap(),
                dy.try_into().unwrap(),
                s.try_into().unwrap(),
            );
            let dx: &mut [T; LANES] = dx.try_into().unwrap();
            let ds: &mut [T; LANES] = ds.try_into().unwrap();
            for k in 0..LANES {
                element(x[k], dy[k], &mut dx[k], &mut ds[k], s[k], &mut lanes[k]);
            }
        }
        let tail = xs
            .remainder()
            .iter()
            .zip(dys.remainder())
            .zip(dxs.into_remainder());
        for (k, (((&x, &dy), dx), (ds, &sv))) in tail
            .zip(dss.into_remainder().iter_mut().zip(ss.remainder()))
            .enumerate()
        {
            element(x, dy, dx, ds, sv, &mut lanes[k]);
        }
        *dc = tree_sum(lanes);
    }
}

/// The sum of the 16 lanes by halves (k + 8, then k + 4, then pairs): `iter().sum()`
/// must add them one after another, 15 dependent scalar adds per plane, which at 4×4
/// planes (one vector each) took a fifth of the backward at 512×4×4. Keeping the
/// accumulator in a register instead (a separate scalar for the tail) measured slower
/// again (BENCHMARKS.md, "Moved from code comments").
#[inline(always)]
pub(super) fn tree_sum<T: Real>(lanes: [T; LANES]) -> T {
    let mut h8 = [T::zero(); 8];
    for k in 0..8 {
        h8[k] = lanes[k] + lanes[k + 8];
    }
    let mut h4 = [T::zero(); 4];
    for k in 0..4 {
        h4[k] = h8[k] + h8[k + 4];
    }
    (h4[0] + h4[2]) + (h4[1] + h4[3])
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tier's name parses back to it, and nothing else parses.
    #[test]
    fn tier_names_round_trip() {
        for &tier in Vectors::ALL {
            assert_eq!(parse_vectors(tier.name()), Some(tier), "{}", tier.name());
        }
        assert!(Vectors::ALL.windows(2).all(|pair| pair[0] < pair[1]));
        for name in ["", "AVX2", "sse2", "avx512f", "avx"] {
            assert_eq!(parse_vectors(name), None, "{name:?}");
        }
        assert!(vectors() <= widest_vectors());
        assert_eq!(parse_vectors(vector_tier()), Some(vectors()));
    }

    /// The per-sample loops compiled for the baseline target agree with the AVX2/FMA
    /// and AVX-512 ones this CPU has (tests/gate.rs exercises the widest one), both
    /// where the wide ones take `product`'s loops (|s·c| ≤ 12) and where a sample's
    /// |s·c| reaches 720 and they fall back to the clamping ones; planes of 37 pixels
    /// (two vectors and a tail) and of 16 (one vector, `product`'s own loops for it).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn baseline_and_wide_loops_agree() {
        for s_scale in [1.5, 90.0] {
            for hw in [37, 16] {
                baseline_and_wide_loops_agree_at(s_scale, hw);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn baseline_and_wide_loops_agree_at(s_scale: f32, hw: usize) {
        let tiers: &[Vectors] = match widest_vectors() {
            Vectors::Baseline => {
                eprintln!("baseline_and_wide_loops_agree: skipped, no AVX2/FMA");
                return;
            }
            Vectors::Avx2 => &[Vectors::Avx2],
            Vectors::Avx512 => &[Vectors::Avx2, Vectors::Avx512],
        };
        let c = 5;
        let wave = |k: usize, scale: f32| ((k * 7919 % 1000) as f32 / 250.0 - 2.0) * scale;
        let x: Vec<f32> = (0..c * hw).map(|k| wave(k, 1.0)).collect();
        let dy: Vec<f32> = (0..c * hw).map(|k| wave(k + 3, 0.5)).collect();
        let s: Vec<f32> = (0..hw).map(|k| wave(k + 11, s_scale)).collect();
        let cv: Vec<f32> = (0..c).map(|k| wave(k + 17, 2.0)).collect();
        let product = product_loops::<f32, FastF32<true>>(&s, &cv);
        assert_eq!(product, s_scale < 10.0, "which loops the wide tiers take");
        let run = |tier: Vectors| {
            let (mut y, mut dx, mut g) = (vec![0.0; c * hw], vec![0.0; c * hw], vec![0.0; c * hw]);
            let (mut ds, mut dc) = (vec![0.0; hw], vec![0.0; c]);
            type Wide = FastF32<true>;
            // SAFETY: vectors() reported the tiers' features above.
            unsafe {
                match tier {
                    Vectors::Avx2 => {
                        forward_avx2::<f32, Wide>(&x, &s, &cv, &mut y);
                        gate_map_avx2::<f32, Wide>(&s, &cv, &mut g);
                        let (dx, ds, dc) = (&mut dx, &mut ds, &mut dc);
                        backward_avx2::<f32, Wide>(&x, &s, &cv, &dy, dx, ds, dc);
                    }
                    Vectors::Avx512 => {
                        forward_avx512::<f32, Wide>(&x, &s, &cv, &mut y);
                        gate_map_avx512::<f32, Wide>(&s, &cv, &mut g);
                        let (dx, ds, dc) = (&mut dx, &mut ds, &mut dc);
                        backward_avx512::<f32, Wide>(&x, &s, &cv, &dy, dx, ds, dc);
                    }
                    Vectors::Baseline => {
                        forward_sample::<f32, FastF32>(&x, &s, &cv, &mut y);
                        gate_map_sample::<f32, FastF32>(&s, &cv, &mut g);
                        backward_sample::<f32, FastF32>(
                            &x, &s, &cv, &dy, &mut dx, &mut ds, &mut dc,
                        );
                    }
                }
            }
            [y, g, dx, ds, dc]
        };
        let baseline = run(Vectors::Baseline);
        for &tier in tiers {
            let wide = run(tier);
            for (name, (a, b)) in ["y", "gate", "dx", "ds", "dc"]
                .iter()
                .zip(baseline.iter().zip(&wide))
            {
                let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                for (k, (p, q)) in a.iter().zip(b).enumerate() {
                    let within = (p - q).abs() <= 1e-5 * q.abs().max(0.1 * scale);
                    assert!(
                        within,
                        "{tier:?} {name}[{k}] (s scale {s_scale}, {hw} px): baseline {p:e}, wide {q:e}"
                    );
                }
            }
        }
    }
}
