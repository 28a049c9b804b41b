//! The gate's f32 loops for CPUs with AVX2 and FMA: σ(s·c) evaluated from the factors,
//! never from the product. CPUs with AVX-512 take `avx512.rs`, the same idea in
//! intrinsics with a cheaper exp.
//!
//! Every gate element needs `e = e^(−s·c)`. The generic loops (`sigmoid.rs`) form
//! a = s·c, take |a|, clamp it and then run the exp's range reduction on it: five vector
//! operations before the polynomial. Here `e = 2^(s·v)` with `v = −log2(e)·c` formed once
//! per channel, and the product taken inside the two FMAs of the range reduction
//! (`t = s·v + ROUND`, `r = s·v − n`, both exact in the fused product), so per element
//! the exp is three operations and a polynomial. Then σ(s·c) = 1/(1 + e) whatever the
//! sign of s·c, with no select on it.
//!
//! That needs `e^(±s·c)` to be a normal f32, so a sample takes these loops only when
//! [`in_range`]: `max |s| · max |c| · log2(e) ≤ EXP2_LOG2_MAX`; the others (|s·c| beyond
//! 87, an infinity) take the generic, clamping loops. NaN in x, s or c still gives NaN.
//!
//! Accuracy matches the generic f32 path: rounding `v` costs the same 2^−24 relative as
//! rounding a = s·c did there, and the polynomial is the same minimax one rescaled to
//! base 2 (4.4e-7 relative); tests/gate.rs holds both paths to the f64 reference.

use super::lanes::LANES;
use super::sigmoid::EXP_MINIMAX;

/// Largest `|s·c|·log2(e)` the loops take: `2^±126` are the extremes of the normal f32
/// exponent the loops build with one shift.
const EXP2_LOG2_MAX: f32 = 126.0;

/// Whether every `|s·c|` of a sample is within [`EXP2_LOG2_MAX`] (false when one is
/// infinite; NaN inputs pass, and propagate). The loops of `avx512.rs` need it too.
#[inline(always)]
pub(super) fn in_range(s: &[f32], c: &[f32]) -> bool {
    max_abs(s) * max_abs(c) * std::f32::consts::LOG2_E <= EXP2_LOG2_MAX
}

/// The largest |v| (0 for none; NaN skipped), in [`LANES`] independent maxima: folded
/// into one, the chain of dependent `maxss` over a sample's C channels took a fifth as
/// long as the gate itself at 512×4×4.
#[inline(always)]
fn max_abs(v: &[f32]) -> f32 {
    let max_of = |m: f32, v: f32| if v > m { v } else { m };
    let mut maxima = [0.0f32; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for chunk in &mut chunks {
        let chunk = lanes(chunk);
        for k in 0..LANES {
            maxima[k] = max_of(maxima[k], chunk[k].abs());
        }
    }
    let tail = chunks.remainder().iter().map(|v| v.abs());
    maxima.into_iter().chain(tail).fold(0.0, max_of)
}

/// `(p, scale)` with `p·scale = e^(−s·c) = 2^(s·v)` for `v = −log2(e)·c`,
/// `|s·v| ≤ EXP2_LOG2_MAX`: left apart so that the forward's `1 + e` is one FMA. Only
/// for loops compiled with FMA (elsewhere `mul_add` is a libm call).
#[inline(always)]
fn exp2_product(s: f32, v: f32) -> (f32, f32) {
    // 1.5·2^23 rounds to an integer n in the low mantissa bits; the extra 127 puts
    // n + 127 there, which `<< 23` moves into the exponent field: 2^n.
    const ROUND: f32 = 12_582_912.0 + 127.0;
    const LN2: f64 = std::f64::consts::LN_2;
    // The generic path's minimax e^ρ on |ρ| ≤ ln2/2, as 2^r = e^(r·ln2): k_i·ln2^i.
    const Q: [f32; 6] = {
        let mut q = [0.0f32; 6];
        let (mut k, mut ln2_pow) = (0, 1.0);
        while k < 6 {
            q[k] = (EXP_MINIMAX[k] as f64 * ln2_pow) as f32;
            ln2_pow *= LN2;
            k += 1;
        }
        q
    };
    let t = s.mul_add(v, ROUND);
    let minus_n = ROUND - t;
    let r = s.mul_add(v, minus_n);
    let p = Q[..5].iter().rev().fold(Q[5], |acc, &k| acc.mul_add(r, k));
    (p, f32::from_bits(t.to_bits() << 23))
}

/// `1 + e^(−s·c)`, the denominator of σ(s·c), from [`exp2_product`].
#[inline(always)]
fn one_plus_exp(s: f32, v: f32) -> f32 {
    let (p, scale) = exp2_product(s, v);
    p.mul_add(scale, 1.0)
}

/// `v = −log2(e)·c`, what a channel gives [`exp2_product`].
fn channel_v(c: f32) -> f32 {
    -std::f32::consts::LOG2_E * c
}

/// `y = max(x,0)·σ(s·c)` for one sample (`x`, `y`: `[C, H·W]`; `s`: H·W).
///
/// Planes run in fixed [`LANES`]-element array chunks and a scalar tail, as in
/// `cpu.rs`: LLVM turns the arrays into straight-line vector code with no bounds checks.
/// Planes of exactly one chunk (4×4) skip the per-plane chunk iterators, which cost as
/// much as the element math there (BENCHMARKS.md, the Xeon section: 512×4×4 forward).
#[inline(always)]
pub(super) fn forward_sample(x: &[f32], s: &[f32], c: &[f32], y: &mut [f32]) {
    let hw = s.len();
    let element = |v: f32, x: f32, s: f32| {
        let r = if x < 0.0 { 0.0 } else { x };
        r / one_plus_exp(s, v)
    };
    if hw == LANES {
        let s = lanes(s);
        for ((y, x), &cv) in y.chunks_exact_mut(LANES).zip(x.chunks_exact(LANES)).zip(c) {
            let (y, x, v): (&mut [f32; LANES], _, _) =
                (y.try_into().unwrap(), lanes(x), channel_v(cv));
            for k in 0..LANES {
                y[k] = element(v, x[k], s[k]);
            }
        }
        return;
    }
    for ((y, x), &cv) in y.chunks_exact_mut(hw).zip(x.chunks_exact(hw)).zip(c) {
        let v = channel_v(cv);
        let mut ys = y.chunks_exact_mut(LANES);
        let mut xs = x.chunks_exact(LANES);
        let mut ss = s.chunks_exact(LANES);
        for ((y, x), s) in (&mut ys).zip(&mut xs).zip(&mut ss) {
            let y: &mut [f32; LANES] = y.try_into().unwrap();
            let (x, s) = (lanes(x), lanes(s));
            for k in 0..LANES {
                y[k] = element(v, x[k], s[k]);
            }
        }
        let tail = ys.into_remainder().iter_mut().zip(xs.remainder());
        for ((y, &x), &s) in tail.zip(ss.remainder()) {
            *y = element(v, x, s);
        }
    }
}

/// A full chunk as an array, so that indexing it needs no bounds check.
#[inline(always)]
fn lanes(v: &[f32]) -> &[f32; LANES] {
    v.try_into().unwrap()
}

/// The unfused peer's σ(s·c) map for one sample.
#[inline(always)]
pub(super) fn gate_map_sample(s: &[f32], c: &[f32], gate: &mut [f32]) {
    let hw = s.len();
    for (g, &cv) in gate.chunks_exact_mut(hw).zip(c) {
        let v = channel_v(cv);
        let element = |s: f32| 1.0 / one_plus_exp(s, v);
        let mut gs = g.chunks_exact_mut(LANES);
        let mut ss = s.chunks_exact(LANES);
        for (g, s) in (&mut gs).zip(&mut ss) {
            let (g, s): (&mut [f32; LANES], _) = (g.try_into().unwrap(), lanes(s));
            for k in 0..LANES {
                g[k] = element(s[k]);
            }
        }
        for (g, &s) in gs.into_remainder().iter_mut().zip(ss.remainder()) {
            *g = element(s);
        }
    }
}

/// dx, per-pixel ds and dc of one sample, as `cpu.rs`'s `backward_sample`, with
/// g = q = 1/(1 + e) and 1 − g = e·q (no cancellation where g is near 1; at most 1, so
/// that it meets r before e, up to 2^126, can overflow a product).
#[inline(always)]
pub(super) fn backward_sample(
    x: &[f32],
    s: &[f32],
    c: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    ds: &mut [f32],
    dc: &mut [f32],
) {
    let hw = s.len();
    let element = |v: f32, x: f32, dy: f32, s: f32| {
        let (p, scale) = exp2_product(s, v);
        let e = p * scale;
        let q = 1.0 / (1.0 + e);
        let dx = if x >= 0.0 { dy * q } else { 0.0 };
        let r = if x < 0.0 { 0.0 } else { x };
        (dx, dx * (r * (e * q)))
    };
    let planes = x
        .chunks_exact(hw)
        .zip(dy.chunks_exact(hw))
        .zip(dx.chunks_exact_mut(hw));
    if hw == LANES {
        // One vector per plane: ds stays in registers across the channels (in memory
        // it is a store-to-load chain through every plane) and dc needs no lane array.
        let (s, ds): (_, &mut [f32; LANES]) = (lanes(s), ds.try_into().unwrap());
        let mut ds_acc = [0.0f32; LANES];
        for (((x, dy), dx), (&cv, dc)) in planes.zip(c.iter().zip(dc.iter_mut())) {
            let (x, dy, v) = (lanes(x), lanes(dy), channel_v(cv));
            let dx: &mut [f32; LANES] = dx.try_into().unwrap();
            let mut products = [0.0f32; LANES];
            for k in 0..LANES {
                let (dx_k, da) = element(v, x[k], dy[k], s[k]);
                dx[k] = dx_k;
                ds_acc[k] = da.mul_add(cv, ds_acc[k]);
                products[k] = da * s[k];
            }
            *dc = super::lanes::tree_sum(products);
        }
        *ds = ds_acc;
        return;
    }
    ds.fill(0.0);
    for (((x, dy), dx), (&cv, dc)) in planes.zip(c.iter().zip(dc.iter_mut())) {
        let v = channel_v(cv);
        let mut lane_sums = [0.0f32; LANES];
        let element = |x: f32, dy: f32, s: f32, dx: &mut f32, ds: &mut f32, sum: &mut f32| {
            let (dx_k, da) = element(v, x, dy, s);
            *dx = dx_k;
            *ds = da.mul_add(cv, *ds);
            *sum = da.mul_add(s, *sum);
        };
        let mut xs = x.chunks_exact(LANES);
        let mut dys = dy.chunks_exact(LANES);
        let mut ss = s.chunks_exact(LANES);
        let mut dxs = dx.chunks_exact_mut(LANES);
        let mut dss = ds.chunks_exact_mut(LANES);
        let inputs = (&mut xs).zip(&mut dys).zip(&mut ss);
        for (((x, dy), s), (dx, ds)) in inputs.zip((&mut dxs).zip(&mut dss)) {
            let (x, dy, s) = (lanes(x), lanes(dy), lanes(s));
            let dx: &mut [f32; LANES] = dx.try_into().unwrap();
            let ds: &mut [f32; LANES] = ds.try_into().unwrap();
            for k in 0..LANES {
                element(x[k], dy[k], s[k], &mut dx[k], &mut ds[k], &mut lane_sums[k]);
            }
        }
        let inputs = xs.remainder().iter().zip(dys.remainder());
        let outputs = dxs.into_remainder().iter_mut().zip(dss.into_remainder());
        let tail = inputs.zip(ss.remainder()).zip(outputs).zip(&mut lane_sums);
        for ((((&x, &dy), &s), (dx, ds)), sum) in tail {
            element(x, dy, s, dx, ds, sum);
        }
        *dc = super::lanes::tree_sum(lane_sums);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane maxima find the largest |v| wherever it sits (any lane, the tail, a
    /// negative value), skip NaN, and give 0 for an empty slice, so `in_range` sends a
    /// sample with one large |c| past the end of the full chunks to the clamping loops.
    #[test]
    fn max_abs_finds_the_largest_magnitude_anywhere() {
        assert_eq!(max_abs(&[]), 0.0);
        for len in [1, 5, 16, 37, 512] {
            for at in 0..len {
                let mut v: Vec<f32> = (0..len).map(|k| (k % 7) as f32 * 0.25 - 0.75).collect();
                v[at] = if at % 2 == 0 { -9.5 } else { 9.5 };
                if len > 1 {
                    v[(at + 1) % len] = f32::NAN;
                }
                assert_eq!(max_abs(&v), 9.5, "len {len}, largest at {at}");
            }
        }
        let (s, mut c) = (vec![1.0f32; 16], vec![0.5f32; 37]);
        assert!(in_range(&s, &c));
        c[36] = -87.0; // 125.5 in base 2
        assert!(in_range(&s, &c));
        c[36] = -88.0; // 127.0
        assert!(!in_range(&s, &c));
    }
}
