//! The gate's f32 loops for CPUs with AVX2 and FMA: σ(s·c) evaluated from the factors,
//! never from the product. CPUs with AVX-512 take `avx512.rs`, the same idea in
//! intrinsics with a cheaper exp.
//!
//! Every gate element needs `e = e^(−|s·c|)`. The generic loops (`sigmoid.rs`) form
//! a = s·c, take |a|, clamp it and then run the exp's range reduction on it: five vector
//! operations before the polynomial. Here each sample first stores `w = |s|·log2(e)`
//! per pixel; then `e = 2^(w·(−|c|))` with the product taken inside the two FMAs of the
//! range reduction (`t = w·v + ROUND`, `r = w·v − n`, both exact in the fused product),
//! so per element the exp is three operations and a polynomial. The sign of a, which
//! picks σ = 1/(1+e) or e/(1+e), is the sign of s flipped by that of c, one compare.
//! On the 2-core Zen 5 box (two 512-bit vector operations per cycle) that is the
//! difference between 22 and 15 operations per 16 elements; docs/gate.md has the
//! numbers.
//!
//! The loops need no clamp because a sample takes them only when
//! `max w · max |c| ≤ PRODUCT_LOG2_MAX`; the others (|s·c| beyond 104, an infinity)
//! take the generic, clamping loops. NaN in x, s or c still gives NaN.
//!
//! Accuracy matches the generic f32 path: rounding `w` costs the same 2^−24 relative as
//! rounding a = s·c did there, and the polynomial is the same minimax one rescaled to
//! base 2 (4.4e-7 relative); tests/gate.rs holds both paths to the f64 reference.

use super::cpu::LANES;
use super::sigmoid::EXP_MINIMAX;

/// Largest `w·|c|` (a base-2 exponent) the loops take: 2^−150 is already below half the
/// smallest subnormal, and the exponent arithmetic stays valid down to 2^−190.
const PRODUCT_LOG2_MAX: f32 = 150.0;

/// `w[k] = |s[k]|·log2(e)` into `w`; whether every `w·|c|` of the sample is at most
/// [`PRODUCT_LOG2_MAX`] (false when one is infinite; NaN inputs pass, and propagate).
#[inline(always)]
pub(super) fn prepare(s: &[f32], c: &[f32], w: &mut Vec<f32>) -> bool {
    w.clear();
    w.extend(s.iter().map(|v| v.abs() * std::f32::consts::LOG2_E));
    max_abs(w) * max_abs(c) <= PRODUCT_LOG2_MAX
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

/// `2^(w·v)` for `w ≥ 0`, `v ≤ 0`, `w·|v| ≤ PRODUCT_LOG2_MAX`. Only for loops compiled
/// with FMA (elsewhere `mul_add` is a libm call).
#[inline(always)]
fn exp2_product(w: f32, v: f32) -> f32 {
    // 1.5·2^23 rounds to an integer in the low mantissa bits; the extra 191 = 127 + 64
    // puts n + 191 in the bits that `<< 23` moves into the exponent field, so the shift
    // alone builds 2^(n + 64). The 2^−64 that undoes it is folded into the
    // coefficients, which keeps results down to 2^−150 exact through one rounding.
    const ROUND: f32 = 12_582_912.0 + 191.0;
    const LN2: f64 = std::f64::consts::LN_2;
    const TWO_POW_MINUS_64: f64 = 1.0 / 18_446_744_073_709_551_616.0;
    // The generic path's minimax e^ρ on |ρ| ≤ ln2/2, as 2^r = e^(r·ln2): k_i·ln2^i.
    const Q: [f32; 6] = {
        let mut q = [0.0f32; 6];
        let (mut k, mut ln2_pow) = (0, TWO_POW_MINUS_64);
        while k < 6 {
            q[k] = (EXP_MINIMAX[k] as f64 * ln2_pow) as f32;
            ln2_pow *= LN2;
            k += 1;
        }
        q
    };
    let t = w.mul_add(v, ROUND);
    let minus_n = ROUND - t;
    let r = w.mul_add(v, minus_n);
    let p = Q[..5].iter().rev().fold(Q[5], |acc, &k| acc.mul_add(r, k));
    p * f32::from_bits(t.to_bits() << 23)
}

/// What one element of a plane needs besides its own x and pixel: `v = −|c|` and
/// whether c is negative (which flips the sign of a = s·c).
#[derive(Clone, Copy)]
struct Channel {
    v: f32,
    negative: bool,
}

impl Channel {
    fn new(c: f32) -> Channel {
        Channel {
            v: -c.abs(),
            negative: c < 0.0,
        }
    }

    /// `(e, a < 0)` for a = s·c. At s = 0 or c = 0 the sign is moot: e = 1.
    #[inline(always)]
    fn exp_and_sign(self, s: f32, w: f32) -> (f32, bool) {
        (exp2_product(w, self.v), (s < 0.0) != self.negative)
    }
}

/// `y = max(x,0)·σ(s·c)` for one sample (`x`, `y`: `[C, H·W]`; `s`, `w`: H·W).
///
/// Planes run in fixed [`LANES`]-element array chunks and a scalar tail, as in
/// `cpu.rs`: LLVM turns the arrays into straight-line vector code with no bounds checks.
/// Planes of exactly one chunk (4×4) skip the per-plane chunk iterators, which cost as
/// much as the element math there (512×4×4: 128–133 → 115–121 µs).
#[inline(always)]
pub(super) fn forward_sample(x: &[f32], s: &[f32], w: &[f32], c: &[f32], y: &mut [f32]) {
    let hw = s.len();
    let element = |channel: Channel, x: f32, s: f32, w: f32| {
        let (e, negative) = channel.exp_and_sign(s, w);
        let r = if x < 0.0 { 0.0 } else { x };
        let numerator = if negative { r * e } else { r };
        numerator / (1.0 + e)
    };
    if hw == LANES {
        let (s, w) = (lanes(s), lanes(w));
        for ((y, x), &cv) in y.chunks_exact_mut(LANES).zip(x.chunks_exact(LANES)).zip(c) {
            let (y, x, channel): (&mut [f32; LANES], _, _) =
                (y.try_into().unwrap(), lanes(x), Channel::new(cv));
            for k in 0..LANES {
                y[k] = element(channel, x[k], s[k], w[k]);
            }
        }
        return;
    }
    for ((y, x), &cv) in y.chunks_exact_mut(hw).zip(x.chunks_exact(hw)).zip(c) {
        let channel = Channel::new(cv);
        let element = |x: f32, s: f32, w: f32| element(channel, x, s, w);
        let mut ys = y.chunks_exact_mut(LANES);
        let mut xs = x.chunks_exact(LANES);
        let mut ss = s.chunks_exact(LANES);
        let mut ws = w.chunks_exact(LANES);
        for (((y, x), s), w) in (&mut ys).zip(&mut xs).zip(&mut ss).zip(&mut ws) {
            let y: &mut [f32; LANES] = y.try_into().unwrap();
            let (x, s, w) = (lanes(x), lanes(s), lanes(w));
            for k in 0..LANES {
                y[k] = element(x[k], s[k], w[k]);
            }
        }
        let tail = ys.into_remainder().iter_mut().zip(xs.remainder());
        for ((y, &x), (&s, &w)) in tail.zip(ss.remainder().iter().zip(ws.remainder())) {
            *y = element(x, s, w);
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
pub(super) fn gate_map_sample(s: &[f32], w: &[f32], c: &[f32], gate: &mut [f32]) {
    let hw = s.len();
    for (g, &cv) in gate.chunks_exact_mut(hw).zip(c) {
        let channel = Channel::new(cv);
        let element = |s: f32, w: f32| {
            let (e, negative) = channel.exp_and_sign(s, w);
            let numerator = if negative { e } else { 1.0 };
            numerator / (1.0 + e)
        };
        let mut gs = g.chunks_exact_mut(LANES);
        let mut ss = s.chunks_exact(LANES);
        let mut ws = w.chunks_exact(LANES);
        for ((g, s), w) in (&mut gs).zip(&mut ss).zip(&mut ws) {
            let g: &mut [f32; LANES] = g.try_into().unwrap();
            let (s, w) = (lanes(s), lanes(w));
            for k in 0..LANES {
                g[k] = element(s[k], w[k]);
            }
        }
        let tail = gs.into_remainder().iter_mut().zip(ss.remainder());
        for ((g, &s), &w) in tail.zip(ws.remainder()) {
            *g = element(s, w);
        }
    }
}

/// dx, per-pixel ds and dc of one sample, as `cpu.rs`'s `backward_sample`, with
/// g·(1 − g) = e/(1 + e)² (no cancellation where g is near 1).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn backward_sample(
    x: &[f32],
    s: &[f32],
    w: &[f32],
    c: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    ds: &mut [f32],
    dc: &mut [f32],
) {
    let hw = s.len();
    let element = |channel: Channel, x: f32, dy: f32, s: f32, w: f32| {
        let (e, negative) = channel.exp_and_sign(s, w);
        let d = 1.0 / (1.0 + e);
        let ed = e * d;
        let g = if negative { ed } else { d };
        let dx = if x >= 0.0 { dy * g } else { 0.0 };
        let r = if x < 0.0 { 0.0 } else { x };
        (dx, dy * r * (ed * d))
    };
    let planes = x
        .chunks_exact(hw)
        .zip(dy.chunks_exact(hw))
        .zip(dx.chunks_exact_mut(hw));
    if hw == LANES {
        // One vector per plane: ds stays in registers across the channels (in memory
        // it is a store-to-load chain through every plane) and dc needs no lane array.
        let (s, w, ds): (_, _, &mut [f32; LANES]) = (lanes(s), lanes(w), ds.try_into().unwrap());
        let mut ds_acc = [0.0f32; LANES];
        for (((x, dy), dx), (&cv, dc)) in planes.zip(c.iter().zip(dc.iter_mut())) {
            let (x, dy, channel) = (lanes(x), lanes(dy), Channel::new(cv));
            let dx: &mut [f32; LANES] = dx.try_into().unwrap();
            let mut products = [0.0f32; LANES];
            for k in 0..LANES {
                let (dx_k, da) = element(channel, x[k], dy[k], s[k], w[k]);
                dx[k] = dx_k;
                ds_acc[k] = da.mul_add(cv, ds_acc[k]);
                products[k] = da * s[k];
            }
            *dc = super::cpu::tree_sum(products);
        }
        *ds = ds_acc;
        return;
    }
    ds.fill(0.0);
    for (((x, dy), dx), (&cv, dc)) in planes.zip(c.iter().zip(dc.iter_mut())) {
        let channel = Channel::new(cv);
        let mut lane_sums = [0.0f32; LANES];
        let element =
            |x: f32, dy: f32, s: f32, w: f32, dx: &mut f32, ds: &mut f32, sum: &mut f32| {
                let (dx_k, da) = element(channel, x, dy, s, w);
                *dx = dx_k;
                *ds = da.mul_add(cv, *ds);
                *sum = da.mul_add(s, *sum);
            };
        let mut xs = x.chunks_exact(LANES);
        let mut dys = dy.chunks_exact(LANES);
        let mut ss = s.chunks_exact(LANES);
        let mut ws = w.chunks_exact(LANES);
        let mut dxs = dx.chunks_exact_mut(LANES);
        let mut dss = ds.chunks_exact_mut(LANES);
        let inputs = (&mut xs).zip(&mut dys).zip(&mut ss).zip(&mut ws);
        for ((((x, dy), s), w), (dx, ds)) in inputs.zip((&mut dxs).zip(&mut dss)) {
            let (x, dy, s, w) = (lanes(x), lanes(dy), lanes(s), lanes(w));
            let dx: &mut [f32; LANES] = dx.try_into().unwrap();
            let ds: &mut [f32; LANES] = ds.try_into().unwrap();
            for k in 0..LANES {
                element(
                    x[k],
                    dy[k],
                    s[k],
                    w[k],
                    &mut dx[k],
                    &mut ds[k],
                    &mut lane_sums[k],
                );
            }
        }
        let inputs = xs
            .remainder()
            .iter()
            .zip(dys.remainder())
            .zip(ss.remainder());
        let outputs = dxs.into_remainder().iter_mut().zip(dss.into_remainder());
        let tail = inputs.zip(ws.remainder()).zip(outputs).zip(&mut lane_sums);
        for (((((&x, &dy), &s), &w), (dx, ds)), sum) in tail {
            element(x, dy, s, w, dx, ds, sum);
        }
        *dc = super::cpu::tree_sum(lane_sums);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane maxima find the largest |v| wherever it sits (any lane, the tail, a
    /// negative value), skip NaN, and give 0 for an empty slice, so `prepare` sends a
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
        assert!(prepare(&s, &c, &mut Vec::new()));
        c[36] = -150.0;
        assert!(!prepare(&s, &c, &mut Vec::new()));
    }
}
