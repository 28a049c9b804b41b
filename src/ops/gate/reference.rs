//! The gate's per-sample loops, generic over the element type and the sigmoid: f64 with
//! the exact σ is the reference every kernel and vector tier is checked against, and f32
//! with the vectorizable σ is the baseline tier ([`super::tiers`]).
//!
//! Each plane runs in fixed [`LANES`]-element chunks (one AVX-512 vector, straight-line
//! code) and a scalar tail: a plain loop over the plane is vectorized with a runtime
//! trip-count check and vector and scalar epilogues per plane, which at 4×4 planes (one
//! vector each) cost 35 % more time per element than at 32×32.

use super::lanes::{tree_sum, LANES};
use super::sigmoid::Sigmoid;
use crate::real::Real;

/// `y = max(x,0)·σ(s·c)` for one sample; `s` at pixel resolution, `x`, `y` `[C, H, W]`.
#[inline(always)]
pub(super) fn forward_sample<T: Real, S: Sigmoid<T>>(x: &[T], s: &[T], c: &[T], y: &mut [T]) {
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

/// The unfused peer's σ(s ⊗ c) map, in the same fixed chunks as [`forward_sample`].
#[inline(always)]
pub(super) fn gate_map_sample<T: Real, S: Sigmoid<T>>(s: &[T], c: &[T], gate: &mut [T]) {
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

/// dx, per-pixel ds (summed over channels) and dc of one sample; `s` is at pixel
/// resolution (H·W), `x`, `dy`, `dx` are `[C, H, W]`.
#[inline(always)]
pub(super) fn backward_sample<T: Real, S: Sigmoid<T>>(
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
