//! σ(a) = 1 / (1 + e^(−a)) on the CPU, in a form the compiler vectorizes.
//!
//! `f32::exp` is a libm call, which stops LLVM from vectorizing the gate's loops, so f32
//! uses its own exp: round a·log2(e) to an integer n with the 1.5·2^23 trick, reduce
//! r = a − n·ln2 (|r| ≤ ln2/2; one fused multiply-add with FMA, two-part ln2 without),
//! evaluate e^r by a degree-5 minimax polynomial (4.4e-7 relative), and scale by 2^n
//! built from exponent bits. The exp is most of the gate's arithmetic, so each
//! multiply-add saved is ~10% of its in-cache time.
//! Only e^(−|a|) ≤ 1 is ever formed, so nothing overflows; for a < 0, σ = e/(1 + e)
//! keeps full relative accuracy down to the smallest normals. Measured against f64 in
//! tests/gate.rs (`sigmoid_f32_matches_f64`): within 1e-5 relative over a ∈ [−120, 120].
//! The smooth baseline activations' f32 CPU loops (`ops::pointwise`) use it too.

/// A sigmoid the gate's CPU loops are instantiated with.
pub(crate) trait Sigmoid<T>: Sync {
    /// The same sigmoid for loops compiled with AVX2 and FMA enabled.
    type Wide: Sigmoid<T>;
    /// Whether loops instantiated with it may take `product`'s f32 FMA loops instead.
    const PRODUCT_LOOPS: bool = false;
    fn sigmoid(a: T) -> T;
    /// `(σ(a), σ(a)·σ(−a))`: the slope from e = e^(−|a|) as e/(1 + e)², without the
    /// cancellation of g·(1 − g) where σ is near 1 (at a = 5 that lost four digits of
    /// the f32 slope's five).
    fn sigmoid_and_slope(a: T) -> (T, T);
}

/// [`Sigmoid::sigmoid_and_slope`] from `e = e^(−|a|)`.
#[inline(always)]
fn from_exp<T: crate::Real>(a: T, e: T) -> (T, T) {
    let d = T::one() / (T::one() + e);
    let ed = e * d;
    (if a >= T::zero() { d } else { ed }, ed * d)
}

/// The vectorizable f32 sigmoid described in the module docs. With `FMA` its
/// multiply-adds are fused (one rounding, half the instructions); only loops compiled
/// with the `fma` target feature may use it, elsewhere `mul_add` is a libm call.
pub(crate) struct FastF32<const FMA: bool = false>;

/// `1 / (1 + e^(−a))` with the type's own `exp` (the f64 reference).
pub(crate) struct Exact;

impl<const FMA: bool> Sigmoid<f32> for FastF32<FMA> {
    type Wide = FastF32<true>;
    const PRODUCT_LOOPS: bool = FMA;
    #[inline(always)]
    fn sigmoid(a: f32) -> f32 {
        let e = exp_nonpositive::<FMA>(-a.abs());
        let numerator = if a >= 0.0 { 1.0 } else { e };
        numerator / (1.0 + e)
    }

    #[inline(always)]
    fn sigmoid_and_slope(a: f32) -> (f32, f32) {
        from_exp(a, exp_nonpositive::<FMA>(-a.abs()))
    }
}

impl<T: crate::Real> Sigmoid<T> for Exact {
    type Wide = Exact;
    #[inline(always)]
    fn sigmoid(a: T) -> T {
        Self::sigmoid_and_slope(a).0
    }

    #[inline(always)]
    fn sigmoid_and_slope(a: T) -> (T, T) {
        from_exp(a, (-a.abs()).exp())
    }
}

/// Coefficients, lowest power first, of the degree-5 minimax polynomial (relative error,
/// p(0) = 1) for e^r on |r| ≤ ln2/2: 4.4e-7 after rounding them to f32, against 1.3e-7
/// for degree-6 Taylor at one multiply-add more; the 1e-5 budget needs neither.
pub(super) const EXP_MINIMAX: [f32; 6] = [
    1.0,
    0.999_993_74,
    0.499_993_74,
    0.166_876_76,
    0.041_875_48,
    0.006_953_334,
];

/// e^v for v ≤ 0 (NaN gives NaN). Below −104 the true value rounds to 0 in f32; the
/// clamp keeps the exponent arithmetic in range and returns a value that rounds alike.
#[inline(always)]
pub(crate) fn exp_nonpositive<const FMA: bool>(v: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer in the low bits
    const LN2_HI: f32 = 0.693_359_4; // ln2 = LN2_HI + LN2_LO, LN2_HI exact in 9 bits
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 2^n is built as 2^(n+64) · 2^−64 so that n down to −150 stays a normal float.
    const TWO_POW_MINUS_64: f32 = f32::from_bits((127 - 64) << 23);
    let v = if v < -104.0 { -104.0 } else { v };
    // a·b + c, fused when the caller's loop is compiled for FMA.
    let madd = |a: f32, b: f32, c: f32| if FMA { a.mul_add(b, c) } else { a * b + c };
    let t = madd(v, std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    // With FMA n·ln2 is exact in the fused product, so one f32 ln2 (off by 1.9e-9)
    // costs at most 3e-7 relative at n = −150; unfused it needs the two-part split.
    let r = if FMA {
        (-n).mul_add(std::f32::consts::LN_2, v)
    } else {
        madd(-n, LN2_LO, madd(-n, LN2_HI, v))
    };
    let p = EXP_MINIMAX[..5]
        .iter()
        .rev()
        .fold(EXP_MINIMAX[5], |acc, &k| madd(acc, r, k));
    let n_int = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let scale = f32::from_bits((n_int.wrapping_add(127 + 64) as u32) << 23);
    p * scale * TWO_POW_MINUS_64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both f32 variants (the AVX2 one is what x86-64 machines with FMA run, the plain
    /// one what the rest run) against f64 over a sweep that reaches the subnormals, σ
    /// and its slope; the f64 slope against σ(a)·σ(−a), each from its own exp.
    #[test]
    fn fast_sigmoids_match_f64() {
        let within = |got: f32, want: f64| {
            (got as f64 - want).abs() <= 1e-5 * want + 2.0 * f32::from_bits(1) as f64
        };
        for k in -24_000..=24_000 {
            let a = k as f32 * 0.005 + 0.001_23;
            let (want, want_slope) = <Exact as Sigmoid<f64>>::sigmoid_and_slope(a as f64);
            let other_side = <Exact as Sigmoid<f64>>::sigmoid(-a as f64);
            assert!((want_slope - want * other_side).abs() <= 1e-14 * want_slope);
            for (got, (also, slope)) in [
                (
                    FastF32::<false>::sigmoid(a),
                    FastF32::<false>::sigmoid_and_slope(a),
                ),
                (
                    FastF32::<true>::sigmoid(a),
                    FastF32::<true>::sigmoid_and_slope(a),
                ),
            ] {
                assert!(within(got, want), "σ({a}) = {got:e}, want {want:e}");
                assert!(
                    within(also, want),
                    "σ({a}) with the slope: {also:e}, want {want:e}"
                );
                assert!(
                    within(slope, want_slope),
                    "σ'({a}) = {slope:e}, want {want_slope:e}"
                );
            }
        }
        assert!(FastF32::<false>::sigmoid(f32::NAN).is_nan());
        assert!(FastF32::<true>::sigmoid(f32::NAN).is_nan());
    }
}
