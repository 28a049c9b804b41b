//! The gate's f32 loops for CPUs with AVX-512, written in intrinsics: σ(s·c) from the
//! factors as in `product.rs`, with `e^(−s·c)` from a 32-entry table and a degree-2
//! polynomial instead of a degree-5 one.
//!
//! Where a sample sits in L3 the gate is bound by its vector arithmetic, not by memory
//! (docs/gate.md), and on the cores measured the loops retire about one 512-bit
//! operation per cycle (BENCHMARKS.md), so every operation saved shows:
//!
//! - The exponent `x = s·v32` (`v32 = −32·log2(e)·c`, so `2^(x/32) = e^(−s·c)`) is
//!   rounded to an integer m (the 1.5·2^23 trick, with the product inside the FMA as in
//!   `product.rs`); `2^(m/32) = 2^k · 2^(j/32)` with j the low 5 bits of m. One
//!   `vpermt2d` looks `2^(j/32)` up in a table held in two registers, and a shift and an
//!   integer add put k into its exponent. What is left, `2^(r/32)` with |r| ≤ 1/2, needs
//!   only a degree-2 polynomial (5.3e-8 relative; the whole exp is within 2e-7 of f64).
//!   Five operations on the multiply-add units instead of eight.
//! - σ(s·c) = 1/(1 + e^(−s·c)) for either sign of s·c, so no lane needs its sign, and
//!   `1 + e` is the same FMA that would have formed e: the forward is eleven operations
//!   per 16 elements. This needs `e^(±s·c)` to stay a normal f32 (`|s·c|·log2 e ≤ 126`,
//!   which [`product::in_range`](super::product::in_range) checks per sample).
//! - The backward reduces the per-channel lane sums of dc sixteen channels at a time
//!   ([`sum16`]), where LLVM summed each channel's lanes alone.
//!
//! Accuracy is `product.rs`'s or better: tests/gate.rs holds both to the f64 reference,
//! and dc's sums run in the order of `cpu::tree_sum`. NaN in x, s or c gives NaN where
//! `product.rs` gives it.

use std::arch::x86_64::*;

use super::lanes::LANES;

/// `2^(j/32)` for j = 0..31 in f32, as bits less `j << 18`: the shift that moves k into
/// the exponent field also moves j into the top of the mantissa, and this takes it out.
const EXP2_TABLE: [u32; 32] = {
    let mut table = [0u32; 32];
    let mut j = 0;
    while j < 32 {
        table[j] = (exp_f64(j as f64 * std::f64::consts::LN_2 / 32.0) as f32)
            .to_bits()
            .wrapping_sub((j as u32) << 18);
        j += 1;
    }
    table
};

/// e^x for 0 ≤ x < 1 by its Taylor series, at compile time (24 terms: below 1e-24).
const fn exp_f64(x: f64) -> f64 {
    let (mut sum, mut term, mut n) = (1.0, 1.0, 1.0);
    while n < 25.0 {
        term *= x / n;
        sum += term;
        n += 1.0;
    }
    sum
}

/// Adding it to `x = s·v32` rounds x to an integer m held in the low mantissa bits as
/// two's complement: shifted left by 18 they are `k << 23` plus `j << 18`.
const ROUND: f32 = 12_582_912.0;
/// Minimax (relative error 5.3e-8, Remez exchange in f64) of `2^(r/32)` on |r| ≤ 1/2,
/// lowest power first (the f64 values the exchange gave, rounded once).
const POLY: [f32; 3] = [
    1.000_000_000_429_956_7_f64 as f32,
    0.021_661_166_986_412_836_f64 as f32,
    0.000_234_594_478_351_860_86_f64 as f32,
];

/// The table, in the two registers `vpermt2d` indexes.
#[derive(Clone, Copy)]
struct Exp2 {
    low: __m512i,
    high: __m512i,
}

impl Exp2 {
    #[target_feature(enable = "avx512f")]
    fn new() -> Exp2 {
        let low: &[u32; LANES] = EXP2_TABLE[..LANES].try_into().unwrap();
        let high: &[u32; LANES] = EXP2_TABLE[LANES..].try_into().unwrap();
        // SAFETY: each array holds one vector's worth of u32.
        unsafe {
            Exp2 {
                low: _mm512_loadu_si512(low.as_ptr().cast()),
                high: _mm512_loadu_si512(high.as_ptr().cast()),
            }
        }
    }

    /// `(p, scale)` with `p·scale = 2^(s·v32/32)`, for `|s·v32| ≤ 32·126`; NaN gives NaN
    /// in p. Left apart so that `1 + p·scale` is one FMA.
    #[target_feature(enable = "avx512f")]
    fn product(self, s: __m512, v32: __m512) -> (__m512, __m512) {
        let round = _mm512_set1_ps(ROUND);
        let t = _mm512_fmadd_ps(s, v32, round);
        let m = _mm512_sub_ps(t, round);
        let r = _mm512_fmsub_ps(s, v32, m);
        let (p0, p1, p2) = (
            _mm512_set1_ps(POLY[0]),
            _mm512_set1_ps(POLY[1]),
            _mm512_set1_ps(POLY[2]),
        );
        let p = _mm512_fmadd_ps(_mm512_fmadd_ps(p2, r, p1), r, p0);
        // m's bits, shifted: k lands in the exponent field (k + 127 with the table
        // entry's, within 1..=253) and j in the mantissa, where the entry's `− j << 18`
        // cancels it.
        let t = _mm512_castps_si512(t);
        let shifted = _mm512_slli_epi32::<18>(t);
        let scale = _mm512_add_epi32(_mm512_permutex2var_epi32(self.low, t, self.high), shifted);
        (p, _mm512_castsi512_ps(scale))
    }

    /// `1 + e^(−s·c)`, the denominator of σ(s·c).
    #[target_feature(enable = "avx512f")]
    fn one_plus(self, s: __m512, v32: __m512) -> __m512 {
        let (p, scale) = self.product(s, v32);
        _mm512_fmadd_ps(p, scale, _mm512_set1_ps(1.0))
    }
}

/// What a channel contributes to every element of its plane.
#[derive(Clone, Copy)]
struct Channel {
    /// `−32·log2(e)·c`, the factor of [`Exp2::product`].
    v32: __m512,
    /// c itself, for ds.
    c: __m512,
}

/// Calls `f` with a sample's channels in order, their `v32` formed sixteen at a time.
#[target_feature(enable = "avx512f")]
#[inline]
fn for_each_channel(c: &[f32], mut f: impl FnMut(Channel)) {
    let v32_factor = _mm512_set1_ps(-32.0 * std::f32::consts::LOG2_E);
    for block in c.chunks(LANES) {
        let mut v32 = [0.0f32; LANES];
        store(&mut v32, _mm512_mul_ps(load_tail(block), v32_factor));
        for (&v32, &c) in v32.iter().zip(block) {
            f(Channel {
                v32: _mm512_set1_ps(v32),
                c: _mm512_set1_ps(c),
            });
        }
    }
}

/// The first `len` lanes (`len` ≤ 16).
fn first_lanes(len: usize) -> __mmask16 {
    ((1u32 << len) - 1) as __mmask16
}

#[target_feature(enable = "avx512f")]
fn load(v: &[f32; LANES]) -> __m512 {
    // SAFETY: reads exactly the array.
    unsafe { _mm512_loadu_ps(v.as_ptr()) }
}

#[target_feature(enable = "avx512f")]
fn store(v: &mut [f32; LANES], value: __m512) {
    // SAFETY: writes exactly the array.
    unsafe { _mm512_storeu_ps(v.as_mut_ptr(), value) }
}

/// Up to 16 values in the low lanes, zeros above.
#[target_feature(enable = "avx512f")]
fn load_tail(v: &[f32]) -> __m512 {
    // SAFETY: masked-off lanes are neither read nor faulted on; v.len() ≤ 16 lanes remain.
    unsafe { _mm512_maskz_loadu_ps(first_lanes(v.len()), v.as_ptr()) }
}

#[target_feature(enable = "avx512f")]
fn store_tail(v: &mut [f32], value: __m512) {
    // SAFETY: as in load_tail.
    unsafe { _mm512_mask_storeu_ps(v.as_mut_ptr(), first_lanes(v.len()), value) }
}

/// A full chunk as an array, so that [`load`] and [`store`] need no bounds check.
#[inline(always)]
fn as_lanes(v: &[f32]) -> &[f32; LANES] {
    v.try_into().unwrap()
}

#[inline(always)]
fn as_lanes_mut(v: &mut [f32]) -> &mut [f32; LANES] {
    v.try_into().unwrap()
}

/// `y = max(x,0)·σ(s·c)` for 16 elements.
#[target_feature(enable = "avx512f")]
fn forward_lanes(exp2: Exp2, ch: Channel, x: __m512, s: __m512) -> __m512 {
    let r = _mm512_max_ps(_mm512_setzero_ps(), x); // x second: NaN passes
    _mm512_div_ps(r, exp2.one_plus(s, ch.v32))
}

/// `y = max(x,0)·σ(s·c)` for one sample (`x`, `y`: `[C, H·W]`; `s`: H·W).
#[target_feature(enable = "avx512f")]
pub(super) fn forward_sample(x: &[f32], s: &[f32], c: &[f32], y: &mut [f32]) {
    let (hw, exp2) = (s.len(), Exp2::new());
    let mut planes = y.chunks_exact_mut(hw).zip(x.chunks_exact(hw));
    if hw == LANES {
        // 4×4: the plane is one vector, so s loads once per sample.
        let s = load(as_lanes(s));
        for_each_channel(c, |ch| {
            let (y, x) = planes.next().unwrap();
            store(
                as_lanes_mut(y),
                forward_lanes(exp2, ch, load(as_lanes(x)), s),
            );
        });
        return;
    }
    for_each_channel(c, |ch| {
        let (y, x) = planes.next().unwrap();
        let mut ys = y.chunks_exact_mut(LANES);
        let mut xs = x.chunks_exact(LANES);
        let mut ss = s.chunks_exact(LANES);
        for ((y, x), s) in (&mut ys).zip(&mut xs).zip(&mut ss) {
            let y_lanes = forward_lanes(exp2, ch, load(as_lanes(x)), load(as_lanes(s)));
            store(as_lanes_mut(y), y_lanes);
        }
        let y = ys.into_remainder();
        if !y.is_empty() {
            let (x, s) = (load_tail(xs.remainder()), load_tail(ss.remainder()));
            store_tail(y, forward_lanes(exp2, ch, x, s));
        }
    });
}

/// The unfused peer's σ(s·c) map for one sample.
#[target_feature(enable = "avx512f")]
pub(super) fn gate_map_sample(s: &[f32], c: &[f32], gate: &mut [f32]) {
    let (hw, exp2, one) = (s.len(), Exp2::new(), _mm512_set1_ps(1.0));
    let mut planes = gate.chunks_exact_mut(hw);
    for_each_channel(c, |ch| {
        let mut gs = planes.next().unwrap().chunks_exact_mut(LANES);
        let mut ss = s.chunks_exact(LANES);
        for (g, s) in (&mut gs).zip(&mut ss) {
            let g_lanes = _mm512_div_ps(one, exp2.one_plus(load(as_lanes(s)), ch.v32));
            store(as_lanes_mut(g), g_lanes);
        }
        let g = gs.into_remainder();
        if !g.is_empty() {
            let s = load_tail(ss.remainder());
            store_tail(g, _mm512_div_ps(one, exp2.one_plus(s, ch.v32)));
        }
    });
}

/// `(dX, dA)` for 16 elements: `dX = dy·g·[x ≥ 0]`, `dA = dy·max(x,0)·g·(1 − g)`.
#[target_feature(enable = "avx512f")]
fn backward_lanes(exp2: Exp2, ch: Channel, x: __m512, dy: __m512, s: __m512) -> (__m512, __m512) {
    let (zero, one) = (_mm512_setzero_ps(), _mm512_set1_ps(1.0));
    let (p, scale) = exp2.product(s, ch.v32);
    let e = _mm512_mul_ps(p, scale);
    // g = q = 1/(1 + e) and 1 − g = e·q, which is at most 1: formed before the
    // multiply by r, so that r·e (e up to 2^126) cannot overflow.
    let q = _mm512_div_ps(one, _mm512_add_ps(one, e));
    let dx = _mm512_maskz_mul_ps(_mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, zero), dy, q);
    let r = _mm512_max_ps(zero, x);
    // For x < 0 dX is 0 and so is dA; for NaN x, dX = 0 and dA = 0·NaN = NaN.
    (dx, _mm512_mul_ps(dx, _mm512_mul_ps(r, _mm512_mul_ps(e, q))))
}

/// dx, per-pixel ds and dc of one sample, as `product.rs`'s `backward_sample`; ds and dc
/// are overwritten.
#[target_feature(enable = "avx512f")]
pub(super) fn backward_sample(
    x: &[f32],
    s: &[f32],
    c: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    ds: &mut [f32],
    dc: &mut [f32],
) {
    let (hw, exp2, zero) = (s.len(), Exp2::new(), _mm512_setzero_ps());
    let mut planes = x
        .chunks_exact(hw)
        .zip(dy.chunks_exact(hw))
        .zip(dx.chunks_exact_mut(hw));
    let mut dc_sums = DcSums::new(dc);
    if hw == LANES {
        // 4×4: s and ds stay in registers across the channels.
        let s = load(as_lanes(s));
        let mut ds_lanes = zero;
        for_each_channel(c, |ch| {
            let ((x, dy), dx) = planes.next().unwrap();
            let (x, dy) = (load(as_lanes(x)), load(as_lanes(dy)));
            let (dx_lanes, da) = backward_lanes(exp2, ch, x, dy, s);
            store(as_lanes_mut(dx), dx_lanes);
            ds_lanes = _mm512_fmadd_ps(da, ch.c, ds_lanes);
            dc_sums.push(_mm512_mul_ps(da, s));
        });
        store(as_lanes_mut(ds), ds_lanes);
        dc_sums.finish();
        return;
    }
    ds.fill(0.0);
    for_each_channel(c, |ch| {
        let ((x, dy), dx) = planes.next().unwrap();
        let mut sums = zero;
        let mut xs = x.chunks_exact(LANES);
        let mut dys = dy.chunks_exact(LANES);
        let mut ss = s.chunks_exact(LANES);
        let mut dxs = dx.chunks_exact_mut(LANES);
        let mut dss = ds.chunks_exact_mut(LANES);
        let inputs = (&mut xs).zip(&mut dys).zip(&mut ss);
        for (((x, dy), s), (dx, ds)) in inputs.zip((&mut dxs).zip(&mut dss)) {
            let (x, dy, s) = (load(as_lanes(x)), load(as_lanes(dy)), load(as_lanes(s)));
            let (dx_lanes, da) = backward_lanes(exp2, ch, x, dy, s);
            store(as_lanes_mut(dx), dx_lanes);
            let ds = as_lanes_mut(ds);
            store(ds, _mm512_fmadd_ps(da, ch.c, load(ds)));
            sums = _mm512_fmadd_ps(da, s, sums);
        }
        let dx = dxs.into_remainder();
        if !dx.is_empty() {
            // Zero-filled lanes give dA = 0 and leave the sums alone.
            let (x, dy) = (load_tail(xs.remainder()), load_tail(dys.remainder()));
            let s = load_tail(ss.remainder());
            let (dx_lanes, da) = backward_lanes(exp2, ch, x, dy, s);
            store_tail(dx, dx_lanes);
            let ds = dss.into_remainder();
            store_tail(ds, _mm512_fmadd_ps(da, ch.c, load_tail(ds)));
            sums = _mm512_fmadd_ps(da, s, sums);
        }
        dc_sums.push(sums);
    });
    dc_sums.finish();
}

/// dc of a sample, written sixteen channels at a time: each channel's 16 lane sums wait
/// here until [`sum16`] can reduce sixteen channels together.
struct DcSums<'a> {
    dc: &'a mut [f32],
    lanes: [__m512; LANES],
    done: usize,
    pending: usize,
}

impl<'a> DcSums<'a> {
    #[target_feature(enable = "avx512f")]
    fn new(dc: &'a mut [f32]) -> DcSums<'a> {
        DcSums {
            dc,
            lanes: [_mm512_setzero_ps(); LANES],
            done: 0,
            pending: 0,
        }
    }

    /// The next channel's lane sums.
    #[target_feature(enable = "avx512f")]
    fn push(&mut self, lanes: __m512) {
        self.lanes[self.pending] = lanes;
        self.pending += 1;
        if self.pending == LANES {
            let dc: &mut [f32; LANES] = (&mut self.dc[self.done..][..LANES]).try_into().unwrap();
            store(dc, sum16(&self.lanes));
            self.done += LANES;
            self.pending = 0;
        }
    }

    /// Writes the channels still pending (fewer than 16).
    #[target_feature(enable = "avx512f")]
    fn finish(mut self) {
        if self.pending > 0 {
            self.lanes[self.pending..].fill(_mm512_setzero_ps());
            store_tail(&mut self.dc[self.done..], sum16(&self.lanes));
        }
    }
}

/// Lane j of the result is the sum of `v[j]`'s sixteen lanes, added in the order of
/// `cpu::tree_sum` (k + 8, then k + 4, then pairs): 15 adds and 30 shuffles for sixteen
/// channels, where one channel alone takes 4 adds and 4 shuffles.
#[target_feature(enable = "avx512f")]
fn sum16(v: &[__m512; LANES]) -> __m512 {
    // Halves: lanes 0..8 of each result hold v[2i]'s k + (k+8) sums, lanes 8..16 v[2i+1]'s.
    let halves: [__m512; 8] = std::array::from_fn(|i| {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
        )
    });
    // Quarters: 128-bit block q of result i holds v[4i + q]'s four k + (k+4) sums.
    let quarters: [__m512; 4] = std::array::from_fn(|i| {
        let (a, b) = (halves[2 * i], halves[2 * i + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
        )
    });
    // Pairs: block q holds (h4[0] + h4[2], h4[1] + h4[3]) of v[8i + q] and v[8i + 4 + q].
    let pairs: [__m512; 2] = std::array::from_fn(|i| {
        let (a, b) = (quarters[2 * i], quarters[2 * i + 1]);
        _mm512_add_ps(
            _mm512_shuffle_ps::<0b01_00_01_00>(a, b),
            _mm512_shuffle_ps::<0b11_10_11_10>(a, b),
        )
    });
    // Lane 4q + m holds the sum of v[q + 4m]; the permutation puts v[j]'s in lane j.
    let (a, b) = (pairs[0], pairs[1]);
    let sums = _mm512_add_ps(
        _mm512_shuffle_ps::<0b10_00_10_00>(a, b),
        _mm512_shuffle_ps::<0b11_01_11_01>(a, b),
    );
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_ps(order, sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_avx512() -> bool {
        let has = is_x86_feature_detected!("avx512f");
        if !has {
            eprintln!("avx512 tests: skipped, this CPU has no AVX-512");
        }
        has
    }

    #[test]
    fn table_holds_the_rounded_powers() {
        for (j, &bits) in EXP2_TABLE.iter().enumerate() {
            let want = 2f64.powf(j as f64 / 32.0) as f32;
            assert_eq!(
                bits.wrapping_add((j as u32) << 18),
                want.to_bits(),
                "2^({j}/32)"
            );
        }
    }

    /// 2^x over the whole range the loops take (|x| ≤ 126, both ends normal), including
    /// exact integers and both ends of every table interval, against f64.
    #[test]
    fn exp2_matches_f64() {
        if !has_avx512() {
            return;
        }
        let mut worst = 0.0f64;
        for k in -126 * 256..=126 * 256 {
            // The loops' exponent is s·v32/32: with v32 = −32 that is −s, in steps of 1/256.
            let s = [k as f32 / 256.0; LANES];
            // SAFETY: the CPU has AVX-512 (checked above).
            let got = unsafe { exp2_lanes(&s, -32.0) };
            let want = 2f64.powf(-(s[0] as f64));
            let err = (got as f64 - want).abs() / want;
            assert!(err <= 3e-7, "2^{}: {got:e}, want {want:e}", -s[0]);
            worst = worst.max(err);
        }
        assert!(
            worst > 1e-8,
            "worst relative error {worst:e}: were the values compared?"
        );
        // SAFETY: as above.
        assert!(unsafe { exp2_lanes(&[f32::NAN; LANES], -32.0) }.is_nan());
        assert!(unsafe { exp2_lanes(&[1.0; LANES], f32::NAN) }.is_nan());
    }

    #[target_feature(enable = "avx512f")]
    fn exp2_lanes(s: &[f32; LANES], v32: f32) -> f32 {
        let mut out = [0.0f32; LANES];
        let (p, scale) = Exp2::new().product(load(s), _mm512_set1_ps(v32));
        store(&mut out, _mm512_mul_ps(p, scale));
        assert!(out.iter().all(|v| v.to_bits() == out[0].to_bits()));
        out[0]
    }

    /// Bit for bit the sums `tree_sum` gives, each channel in its own lane.
    #[test]
    fn sum16_adds_like_tree_sum() {
        if !has_avx512() {
            return;
        }
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 * 2.0 - 1.0
        };
        let rows: [[f32; LANES]; LANES] = std::array::from_fn(|j| {
            // Magnitudes far apart, so that another order would round differently.
            std::array::from_fn(|k| next() * 10f32.powi((j + 3 * k) as i32 % 9 - 4))
        });
        // SAFETY: the CPU has AVX-512 (checked above).
        let got = unsafe { sum16_of(&rows) };
        for (j, row) in rows.iter().enumerate() {
            assert_eq!(
                got[j].to_bits(),
                super::super::lanes::tree_sum(*row).to_bits(),
                "lane {j}"
            );
        }
    }

    #[target_feature(enable = "avx512f")]
    fn sum16_of(rows: &[[f32; LANES]; LANES]) -> [f32; LANES] {
        let mut out = [0.0f32; LANES];
        store(&mut out, sum16(&rows.map(|row| load(&row))));
        out
    }
}
