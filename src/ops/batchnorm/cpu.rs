//! Batch normalization over N·H·W per channel, on the CPU (rayon over channel planes).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{BnGrad, BnGrads, BnShape};
use crate::error::{check_len, Result};
use crate::ops::par::{new_written, planes_per_task, Slot};
use crate::real::Real;

/// Per-channel batch statistics: mean and biased variance over N·H·W.
pub fn batch_stats<T: Real>(x: &[T], n: usize, c: usize, hw: usize) -> (Vec<T>, Vec<T>) {
    let m = T::of_f64((n * hw) as f64);
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = || (0..n).map(move |s| &x[(s * c + ch) * hw..][..hw]);
            let mean = planes().map(|p| p.iter().copied().sum::<T>()).sum::<T>() / m;
            let var = planes()
                .map(|p| p.iter().map(|&v| (v - mean) * (v - mean)).sum::<T>())
                .sum::<T>()
                / m;
            (mean, var)
        })
        .unzip()
}

/// `y = x · scale[c] + shift[c]`.
pub fn affine<T: Real>(x: &[T], c: usize, hw: usize, scale: &[T], shift: &[T]) -> Vec<T> {
    let hw = hw.max(1);
    let planes = planes_per_task(hw);
    let fill = |y: &mut [MaybeUninit<T>]| {
        y.par_chunks_mut(planes * hw)
            .zip(x.par_chunks(planes * hw))
            .enumerate()
            .for_each(|(task, (y, x))| {
                let first = task * planes;
                for (i, (yp, xp)) in (first..).zip(y.chunks_mut(hw).zip(x.chunks(hw))) {
                    let (a, b) = (scale[i % c], shift[i % c]);
                    yp.iter_mut().zip(xp).for_each(|(y, &x)| y.put(x * a + b));
                }
            });
    };
    // SAFETY: the planes of y and x pair up one to one, as long as each other.
    unsafe { new_written(x.len(), fill) }
}

/// `y = max(x · scale[c] + shift[c], 0)`: [`affine`] then a ReLU, rounded and clamped as
/// the two are, in one pass.
pub(crate) fn affine_relu<T: Real>(
    x: &[T],
    c: usize,
    hw: usize,
    scale: &[T],
    shift: &[T],
) -> Vec<T> {
    let hw = hw.max(1);
    let planes = planes_per_task(hw);
    let zero = T::zero();
    let fill = |y: &mut [MaybeUninit<T>]| {
        y.par_chunks_mut(planes * hw)
            .zip(x.par_chunks(planes * hw))
            .enumerate()
            .for_each(|(task, (y, x))| {
                let first = task * planes;
                for (i, (yp, xp)) in (first..).zip(y.chunks_mut(hw).zip(x.chunks(hw))) {
                    let (a, b) = (scale[i % c], shift[i % c]);
                    yp.iter_mut().zip(xp).for_each(|(y, &x)| {
                        let v = x * a + b;
                        y.put(if v < zero { zero } else { v });
                    });
                }
            });
    };
    // SAFETY: the planes of y and x pair up one to one, as long as each other.
    unsafe { new_written(x.len(), fill) }
}

/// `dx = [y > 0] · dy · scale[c] + 0`: the ReLU's backward (given its output `y`) then
/// the evaluation-mode batch norm's ([`affine`] of the masked `dy` with no shift), in
/// one pass with the same roundings.
///
/// # Panics
/// If `dy` and `y` differ in length (the caller checks first).
pub(crate) fn masked_scale<T: Real>(y: &[T], dy: &[T], c: usize, hw: usize, scale: &[T]) -> Vec<T> {
    assert_eq!(dy.len(), y.len(), "masked_scale: dy");
    let hw = hw.max(1);
    let planes = planes_per_task(hw);
    let zero = T::zero();
    let fill = |dx: &mut [MaybeUninit<T>]| {
        dx.par_chunks_mut(planes * hw)
            .zip(y.par_chunks(planes * hw).zip(dy.par_chunks(planes * hw)))
            .enumerate()
            .for_each(|(task, (dx, (y, dy)))| {
                let first = task * planes;
                let planes = dx.chunks_mut(hw).zip(y.chunks(hw).zip(dy.chunks(hw)));
                for (i, (dxp, (yp, dyp))) in (first..).zip(planes) {
                    let a = scale[i % c];
                    for ((d, &y), &g) in dxp.iter_mut().zip(yp).zip(dyp) {
                        let g = if y > zero { g } else { zero };
                        d.put(g * a + zero);
                    }
                }
            });
    };
    // SAFETY: the planes of dx, y and dy pair up one to one, all as long as y (asserted).
    unsafe { new_written(y.len(), fill) }
}

/// Per channel `(Σ dy, Σ dy · (x − mean) · invstd)` over N·H·W.
pub fn grad_sums<T: Real>(
    x: &[T],
    dy: &[T],
    n: usize,
    c: usize,
    hw: usize,
    mean: &[T],
    invstd: &[T],
) -> (Vec<T>, Vec<T>) {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mut sdy, mut sdyx) = (T::zero(), T::zero());
            for s in 0..n {
                let off = (s * c + ch) * hw;
                for (&g, &v) in dy[off..off + hw].iter().zip(&x[off..off + hw]) {
                    sdy += g;
                    sdyx += g * (v - mean[ch]);
                }
            }
            (sdy, sdyx * invstd[ch])
        })
        .unzip()
}

/// Input gradient in training mode:
/// `dx = γ·invstd/M · (M·dy − Σdy − x̂·Σ(dy·x̂))` with `M = N·H·W`.
#[allow(clippy::too_many_arguments)]
pub fn train_input_grad<T: Real>(
    x: &[T],
    dy: &[T],
    c: usize,
    hw: usize,
    m: usize,
    gamma: &[T],
    mean: &[T],
    invstd: &[T],
    sum_dy: &[T],
    sum_dy_xhat: &[T],
) -> Vec<T> {
    let mf = T::of_f64(m as f64);
    let fill = |dx: &mut [MaybeUninit<T>]| {
        dx.par_chunks_mut(hw).enumerate().for_each(|(i, dxp)| {
            let ch = i % c;
            let k = gamma[ch] * invstd[ch] / mf;
            let off = i * hw;
            let (dy, x) = (&dy[off..off + dxp.len()], &x[off..off + dxp.len()]);
            for ((d, &g), &v) in dxp.iter_mut().zip(dy).zip(x) {
                let xhat = (v - mean[ch]) * invstd[ch];
                d.put(k * (mf * g - sum_dy[ch] - xhat * sum_dy_xhat[ch]));
            }
        });
    };
    // SAFETY: every plane of dx is written in full (dy and x are as long as dx).
    unsafe { new_written(x.len(), fill) }
}

/// Blends a batch statistic into its running average: `r ← (1 − m)·r + m·s`.
pub fn update_running<T: Real>(running: &mut [T], batch: &[T], momentum: T) {
    for (r, &s) in running.iter_mut().zip(batch) {
        *r = (T::one() - momentum) * *r + momentum * s;
    }
}

/// The per-channel `(γ·invstd, β − mean·γ·invstd)` the forward applies; errors if a
/// statistic or parameter is not one value per channel.
fn scale_shift<T: Real>(
    shape: &BnShape,
    mean: &[T],
    var: &[T],
    gamma: &[T],
    beta: &[T],
    eps: f64,
) -> Result<(Vec<T>, Vec<T>)> {
    let c = shape.c;
    for (what, v) in [
        ("mean", mean),
        ("var", var),
        ("gamma", gamma),
        ("beta", beta),
    ] {
        check_len("batch_norm", what, v.len(), c)?;
    }
    let scale = eval_scale(var, gamma, eps);
    let shift: Vec<T> = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
    Ok((scale, shift))
}

/// `γ·invstd` per channel: the evaluation-mode batch norm's slope.
fn eval_scale<T: Real>(var: &[T], gamma: &[T], eps: f64) -> Vec<T> {
    let invstd = invstd(var, eps);
    gamma.iter().zip(&invstd).map(|(&g, &s)| g * s).collect()
}

fn invstd<T: Real>(var: &[T], eps: f64) -> Vec<T> {
    let eps = T::of_f64(eps);
    var.iter().map(|&v| T::one() / (v + eps).sqrt()).collect()
}

impl<T: Real> super::BatchNormKernels for T {
    fn bn_batch_stats(
        _: &(),
        shape: &BnShape,
        x: &&[T],
        running_mean: &mut Vec<T>,
        running_var: &mut Vec<T>,
        momentum: f64,
    ) -> Result<(Vec<T>, Vec<T>)> {
        let BnShape { n, c, hw } = *shape;
        check_len("batch_norm", "x", x.len(), shape.len())?;
        check_len("batch_norm", "running mean", running_mean.len(), c)?;
        check_len("batch_norm", "running var", running_var.len(), c)?;
        let (mean, var) = batch_stats(x, n, c, hw);
        let m = (n * hw) as f64;
        let bessel = T::of_f64(if m > 1.0 { m / (m - 1.0) } else { 1.0 });
        let unbiased: Vec<T> = var.iter().map(|&v| v * bessel).collect();
        let momentum = T::of_f64(momentum);
        update_running(running_mean, &mean, momentum);
        update_running(running_var, &unbiased, momentum);
        Ok((mean, var))
    }

    fn bn_forward(
        _: &(),
        shape: &BnShape,
        x: &&[T],
        mean: &&[T],
        var: &&[T],
        gamma: &&[T],
        beta: &&[T],
        eps: f64,
    ) -> Result<Vec<T>> {
        let (scale, shift) = scale_shift(shape, mean, var, gamma, beta, eps)?;
        Ok(affine(x, shape.c, shape.hw, &scale, &shift))
    }

    fn bn_backward(
        _: &(),
        shape: &BnShape,
        x: &&[T],
        dy: &&[T],
        mean: &&[T],
        var: &&[T],
        gamma: &&[T],
        train: bool,
        input: bool,
        params: bool,
        eps: f64,
    ) -> Result<(Option<Vec<T>>, Option<(Vec<T>, Vec<T>)>)> {
        let BnShape { n, c, hw } = *shape;
        let invstd = invstd(var, eps);
        // Evaluation-mode input gradients (PGD) need no reductions at all.
        let sums = ((train && input) || params).then(|| grad_sums(x, dy, n, c, hw, mean, &invstd));
        let dx = match (input, &sums) {
            (false, _) => None,
            (true, Some((sum_dy, sum_dy_xhat))) if train => Some(train_input_grad(
                x,
                dy,
                c,
                hw,
                n * hw,
                gamma,
                mean,
                &invstd,
                sum_dy,
                sum_dy_xhat,
            )),
            (true, _) => {
                let scale = eval_scale(var, gamma, eps);
                Some(affine(dy, c, hw, &scale, &vec![T::zero(); c]))
            }
        };
        let dp = sums
            .filter(|_| params)
            .map(|(sum_dy, sum_dy_xhat)| (sum_dy_xhat, sum_dy));
        Ok((dx, dp))
    }
}

impl<T: Real> super::relu::BatchNormReluKernels for T {
    fn bn_relu_forward(
        _: &(),
        shape: &BnShape,
        x: &&[T],
        mean: &&[T],
        var: &&[T],
        gamma: &&[T],
        beta: &&[T],
        eps: f64,
    ) -> Result<Vec<T>> {
        check_len("batch_norm", "x", x.len(), shape.len())?;
        let (scale, shift) = scale_shift(shape, mean, var, gamma, beta, eps)?;
        Ok(affine_relu(x, shape.c, shape.hw, &scale, &shift))
    }

    fn bn_relu_backward(ctx: &(), grad: BnGrad<'_, '_, T>) -> Result<BnGrads<T>> {
        // Evaluation mode, input gradient only (an attack's passes): one pass.
        if grad.train || !grad.input || grad.params {
            return super::relu::relu_then_batch_norm_backward(ctx, grad);
        }
        let len = grad.shape.len();
        check_len("batch_norm", "y", grad.y.len(), len)?;
        check_len("batch_norm", "dy", grad.dy.len(), len)?;
        check_len("batch_norm", "var", grad.var.len(), grad.shape.c)?;
        check_len("batch_norm", "gamma", grad.gamma.len(), grad.shape.c)?;
        let scale = eval_scale(grad.var, grad.gamma, grad.eps);
        let dx = masked_scale(grad.y, grad.dy, grad.shape.c, grad.shape.hw, &scale);
        Ok((Some(dx), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::par::CHUNK;

    /// Over several rayon tasks whose first plane is not channel 0 (7 channels, 5 pixels,
    /// 1,000 samples: 35,000 elements, more than one task of CHUNK), every element gets
    /// its own channel's scale and shift.
    #[test]
    fn affine_gives_each_plane_its_channel() {
        let (n, c, hw) = (1000, 7, 5);
        let x: Vec<f64> = (0..n * c * hw).map(|i| (i % 11) as f64 - 5.0).collect();
        let scale: Vec<f64> = (0..c).map(|ch| 1.0 + ch as f64).collect();
        let shift: Vec<f64> = (0..c).map(|ch| 0.5 * ch as f64).collect();
        assert!(x.len() > CHUNK && !planes_per_task(hw).is_multiple_of(c));
        let y = affine(&x, c, hw, &scale, &shift);
        assert_eq!(y.len(), x.len());
        for (i, (&y, &x)) in y.iter().zip(&x).enumerate() {
            let ch = i / hw % c;
            assert_eq!(y, x * scale[ch] + shift[ch], "element {i}");
        }
    }
}
