//! The pointwise activations on the CPU, element-wise over rayon pieces.

use super::Pointwise;
use crate::error::{check_len, Result};
use crate::ops::gate::sigmoid::exp_nonpositive;
use crate::ops::par::{f32_slots, for_each_piece, new_written, Slot};
use crate::ops::relu::cpu::{relu_backward_into, relu_forward_into};
use crate::real::{f32s, is_f32};
use crate::Real;

/// √(2/π), GELU's tanh-form scale.
const GELU_SCALE: f64 = 0.797_884_560_802_865_4;
/// GELU's cubic coefficient.
const GELU_CUBIC: f64 = 0.044_715;

/// The transcendental functions the activations are built from. [`Std`] is the
/// standard library's (the f64 reference); [`Fast`] is f32 arithmetic LLVM vectorizes,
/// on the gate's vectorizable `exp` (4.4e-7 relative): glibc's `tanhf` and `expm1f` are
/// calls per element, and had made a GELU ResNet's CPU training 1.7× as long as ReLU's
/// (37 % of its profile in them).
trait Math<T: Real> {
    /// `eˣ` for `x ≤ 0` (NaN gives NaN).
    fn exp_nonpositive(x: T) -> T;
    /// `eˣ − 1` for `x ≤ 0`, accurate relative to the result near 0.
    fn exp_m1_nonpositive(x: T) -> T;
    /// `ln(1 + x)` for `0 ≤ x ≤ 1`.
    fn ln_1p_unit(x: T) -> T;
}

/// The standard library's functions.
struct Std;

impl<T: Real> Math<T> for Std {
    fn exp_nonpositive(x: T) -> T {
        x.exp()
    }
    fn exp_m1_nonpositive(x: T) -> T {
        x.exp_m1()
    }
    fn ln_1p_unit(x: T) -> T {
        x.ln_1p()
    }
}

/// Vectorizable f32 functions (no libm calls), within 1e-6 of f64 over the activations'
/// ranges (`fast_math_matches_std` below).
struct Fast;

impl Math<f32> for Fast {
    #[inline(always)]
    fn exp_nonpositive(x: f32) -> f32 {
        exp_nonpositive::<false>(x)
    }
    /// Taylor to x⁶ on |x| < 0.35 (relative error ≤ 4.3e-7), else `eˣ − 1` (the result is
    /// then ≥ 0.29 in magnitude, so the exp's error stays relative).
    #[inline(always)]
    fn exp_m1_nonpositive(x: f32) -> f32 {
        let taylor = x
            * (1.0
                + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0 + x / 720.0)))));
        let from_exp = exp_nonpositive::<false>(x) - 1.0;
        if x > -0.35 {
            taylor
        } else {
            from_exp
        }
    }
    /// `2·atanh(z)` with `z = x/(2 + x) ≤ 1/3`, odd series to z¹¹ (error ≤ 1e-7).
    #[inline(always)]
    fn ln_1p_unit(x: f32) -> f32 {
        let z = x / (2.0 + x);
        let z2 = z * z;
        2.0 * z
            * (1.0
                + z2 * (1.0 / 3.0
                    + z2 * (1.0 / 5.0 + z2 * (1.0 / 7.0 + z2 * (1.0 / 9.0 + z2 / 11.0)))))
    }
}

/// `σ(x)`, from `e^(−|x|)` only (no overflow).
#[inline(always)]
fn sigmoid<T: Real, M: Math<T>>(x: T) -> T {
    let e = M::exp_nonpositive(-x.abs());
    let numerator = if x >= T::zero() { T::one() } else { e };
    numerator / (T::one() + e)
}

/// GELU's `(1 + tanh(u))/2 = σ(2u)` and `(1 − tanh(u))/2 = σ(−2u)`, with
/// `u = √(2/π)(x + 0.044715x³)`, and `du/dx`. Written through σ rather than tanh so that
/// neither `1 + t` nor `1 − t` cancels in the tails: GELU(−5) ≈ −1e-6 keeps its digits.
#[inline(always)]
fn gelu_parts<T: Real, M: Math<T>>(x: T) -> (T, T, T) {
    let (a, b, two) = (T::of_f64(GELU_SCALE), T::of_f64(GELU_CUBIC), T::of_f64(2.0));
    let u = a * (x + b * x * x * x);
    let e = M::exp_nonpositive(-two * u.abs());
    let (big, small) = (T::one() / (T::one() + e), e / (T::one() + e));
    let (s, s_bar) = if u >= T::zero() {
        (big, small)
    } else {
        (small, big)
    };
    (s, s_bar, a * (T::one() + T::of_f64(3.0) * b * x * x))
}

/// `f(x)` of one element.
#[inline(always)]
fn value<T: Real, M: Math<T>>(kind: Pointwise, x: T) -> T {
    let zero = T::zero();
    match kind {
        Pointwise::Relu => {
            if x < zero {
                zero
            } else {
                x
            }
        }
        Pointwise::Elu => {
            let negative = M::exp_m1_nonpositive(if x > zero { zero } else { x });
            if x > zero {
                x
            } else {
                negative
            }
        }
        Pointwise::Gelu => x * gelu_parts::<T, M>(x).0,
        Pointwise::Silu => x * sigmoid::<T, M>(x),
        // max(x, 0) + ln(1 + e^−|x|): no overflow, full precision for x ≪ 0.
        Pointwise::Softplus => {
            let positive = if x > zero { x } else { zero };
            positive + M::ln_1p_unit(M::exp_nonpositive(-x.abs()))
        }
    }
}

/// `f'(x)` of one element.
#[inline(always)]
fn slope<T: Real, M: Math<T>>(kind: Pointwise, x: T) -> T {
    let (zero, one) = (T::zero(), T::one());
    match kind {
        Pointwise::Relu => {
            if x > zero {
                one
            } else {
                zero
            }
        }
        Pointwise::Elu => {
            let negative = M::exp_nonpositive(if x > zero { zero } else { x });
            if x > zero {
                one
            } else {
                negative
            }
        }
        Pointwise::Gelu => {
            // d/dx x·σ(2u) = σ(2u) + 2x·σ(2u)σ(−2u)·du/dx.
            let (s, s_bar, du) = gelu_parts::<T, M>(x);
            s + T::of_f64(2.0) * x * s * s_bar * du
        }
        Pointwise::Silu => {
            let s = sigmoid::<T, M>(x);
            s * (one + x * (one - s))
        }
        Pointwise::Softplus => sigmoid::<T, M>(x),
    }
}

/// Runs `$f!(kind)` with the activation a compile-time constant inside the loop (one
/// loop per kind, no branch on the kind per element).
macro_rules! per_kind {
    ($kind:expr, $f:ident) => {
        match $kind {
            Pointwise::Relu => $f!(Pointwise::Relu),
            Pointwise::Elu => $f!(Pointwise::Elu),
            Pointwise::Gelu => $f!(Pointwise::Gelu),
            Pointwise::Silu => $f!(Pointwise::Silu),
            Pointwise::Softplus => $f!(Pointwise::Softplus),
        }
    };
}

fn forward_with<T: Real, M: Math<T>, O: Slot<T>>(kind: Pointwise, x: &[T], y: &mut [O]) {
    macro_rules! run {
        ($k:expr) => {
            for_each_piece(y, |off, y| {
                let x = &x[off..off + y.len()];
                for (y, &x) in y.iter_mut().zip(x) {
                    y.put(value::<T, M>($k, x));
                }
            })
        };
    }
    per_kind!(kind, run)
}

fn backward_with<T: Real, M: Math<T>, O: Slot<T>>(
    kind: Pointwise,
    x: &[T],
    dy: &[T],
    dx: &mut [O],
) {
    macro_rules! run {
        ($k:expr) => {
            for_each_piece(dx, |off, dx| {
                let (x, dy) = (&x[off..off + dx.len()], &dy[off..off + dx.len()]);
                for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                    dx.put(dy * slope::<T, M>($k, x));
                }
            })
        };
    }
    per_kind!(kind, run)
}

/// `y = kind(x)`.
///
/// ```
/// use sparta::ops::pointwise::{cpu, Pointwise};
/// let mut y = [0.0f64; 2];
/// cpu::forward(Pointwise::Elu, &[-1.0, 2.0], &mut y)?;
/// assert_eq!(y, [(-1.0f64).exp_m1(), 2.0]);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn forward<T: Real>(kind: Pointwise, x: &[T], y: &mut [T]) -> Result<()> {
    check_len("pointwise_forward", "y", y.len(), x.len())?;
    forward_into(kind, x, y);
    Ok(())
}

/// [`forward`] into `y`'s slots, as long as `x`.
fn forward_into<T: Real, O: Slot<T>>(kind: Pointwise, x: &[T], y: &mut [O]) {
    assert_eq!(y.len(), x.len(), "pointwise_forward: y");
    if kind == Pointwise::Relu {
        relu_forward_into(x, y);
    } else if is_f32::<T>() {
        forward_with::<f32, Fast, _>(kind, f32s(x), f32_slots(y));
    } else {
        forward_with::<T, Std, _>(kind, x, y);
    }
}

/// `dx = dy · kind'(x)`.
pub fn backward<T: Real>(kind: Pointwise, x: &[T], dy: &[T], dx: &mut [T]) -> Result<()> {
    check_len("pointwise_backward", "dy", dy.len(), x.len())?;
    check_len("pointwise_backward", "dx", dx.len(), x.len())?;
    backward_into(kind, x, dy, dx);
    Ok(())
}

/// [`backward`] into `dx`'s slots; `dy` and `dx` as long as `x`.
fn backward_into<T: Real, O: Slot<T>>(kind: Pointwise, x: &[T], dy: &[T], dx: &mut [O]) {
    assert_eq!(
        (dy.len(), dx.len()),
        (x.len(), x.len()),
        "pointwise_backward: dy, dx"
    );
    if kind == Pointwise::Relu {
        relu_backward_into(x, dy, dx);
    } else if is_f32::<T>() {
        backward_with::<f32, Fast, _>(kind, f32s(x), f32s(dy), f32_slots(dx));
    } else {
        backward_with::<T, Std, _>(kind, x, dy, dx);
    }
}

impl<T: Real> super::tape::PointwiseKernels for T {
    fn pointwise_forward(_: &(), kind: Pointwise, x: &&[T]) -> Result<Vec<T>> {
        // SAFETY: `forward_into` puts a value in every slot (one per element of x).
        Ok(unsafe { new_written(x.len(), |y| forward_into(kind, x, y)) })
    }

    fn pointwise_backward(_: &(), kind: Pointwise, x: &&[T], dy: &&[T]) -> Result<Vec<T>> {
        check_len("pointwise_backward", "dy", dy.len(), x.len())?;
        // SAFETY: `backward_into` puts a value in every slot (one per element of x).
        Ok(unsafe { new_written(x.len(), |dx| backward_into(kind, x, dy, dx)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::relu::cpu::relu_forward;

    /// Each slope against a central difference of the forward, in f64, over a sweep
    /// that crosses 0 and reaches the tails.
    #[test]
    fn slopes_match_central_differences() {
        for kind in Pointwise::ALL.into_iter().filter(|&k| k != Pointwise::Relu) {
            for i in -400..=400 {
                let x = i as f64 * 0.025 + 1e-3;
                let h = 1e-6;
                let num =
                    (value::<f64, Std>(kind, x + h) - value::<f64, Std>(kind, x - h)) / (2.0 * h);
                let ana = slope::<f64, Std>(kind, x);
                assert!(
                    (num - ana).abs() <= 1e-7 * ana.abs().max(1.0),
                    "{kind:?} at {x}: numeric {num}, analytic {ana}"
                );
            }
        }
    }

    #[test]
    fn values_at_known_points() {
        let v = |k, x: f64| value::<f64, Std>(k, x);
        assert_eq!(v(Pointwise::Elu, 3.0), 3.0);
        assert!((v(Pointwise::Elu, -1e3) + 1.0).abs() < 1e-15);
        // PyTorch gelu(1.0, approximate="tanh") = 0.8411919906082768.
        assert!((v(Pointwise::Gelu, 1.0) - 0.841_191_990_608_276_8).abs() < 1e-15);
        assert!((v(Pointwise::Silu, 2.0) - 2.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-15);
        assert!((v(Pointwise::Softplus, 0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(v(Pointwise::Softplus, 1e3), 1e3);
        assert!(v(Pointwise::Softplus, -1e3) >= 0.0);
        // f32 does not overflow in the tails either.
        for k in Pointwise::ALL {
            for x in [-1e4f32, 1e4] {
                let (y, d) = (value::<f32, Fast>(k, x), slope::<f32, Fast>(k, x));
                assert!(
                    y.is_finite() && d.is_finite(),
                    "{k:?}({x}) = {y}, slope {d}"
                );
            }
        }
    }

    /// The f32 functions the training path uses against f64, value and slope, within
    /// 1e-6 of max(|f64|, 1) over [−20, 20].
    #[test]
    fn fast_math_matches_std() {
        for kind in Pointwise::ALL {
            for i in -20_000..=20_000 {
                let x = i as f32 * 1e-3 + 3.7e-5;
                for (got, want) in [
                    (
                        value::<f32, Fast>(kind, x),
                        value::<f64, Std>(kind, x as f64),
                    ),
                    (
                        slope::<f32, Fast>(kind, x),
                        slope::<f64, Std>(kind, x as f64),
                    ),
                ] {
                    assert!(
                        (got as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                        "{kind:?} at {x}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn nan_stays_nan() {
        for k in Pointwise::ALL.into_iter().filter(|&k| k != Pointwise::Relu) {
            let mut y = [0.0f32];
            forward(k, &[f32::NAN], &mut y).unwrap();
            assert!(y[0].is_nan(), "{k:?}");
        }
    }

    #[test]
    fn relu_goes_to_the_relu_op() {
        let x = [-1.0f32, 0.0, 2.0];
        let (mut a, mut b) = ([0.0; 3], [0.0; 3]);
        forward(Pointwise::Relu, &x, &mut a).unwrap();
        relu_forward(&x, &mut b).unwrap();
        assert_eq!(a, b);
        assert!(forward(Pointwise::Gelu, &x, &mut [0.0; 2]).is_err());
    }
}
