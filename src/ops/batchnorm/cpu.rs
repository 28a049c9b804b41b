//! Batch normalization over N·H·W per channel, on the CPU (rayon over channel planes).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{BnGrad, BnGrads, BnShape};
use crate::error::{check_len, Result};
use crate::ops::par::{new_written, planes_per_task, Slot};
use crate::real::Real;

/// Channels whose sums one rayon task runs side by side. Each channel's sum is a chain of
/// dependent additions in a fixed order, one addition per element at the adder's
/// latency; chains of several channels interleaved keep the adders busy, and each
/// keeps its own order, so its bits.
const CHAINS: usize = 8;

/// Runs `per_group(channels)` on groups of [`CHAINS`] consecutive channels (one channel
/// each for the rest), in parallel, and concatenates what each returns (one value per
/// channel).
fn by_channel_groups<R: Send>(
    c: usize,
    per_group: impl Fn(std::ops::Range<usize>) -> Vec<R> + Sync,
) -> Vec<R> {
    let full = c / CHAINS * CHAINS;
    let groups: Vec<_> = (0..full)
        .step_by(CHAINS)
        .map(|first| first..first + CHAINS)
        .chain((full..c).map(|ch| ch..ch + 1))
        .collect();
    let parts: Vec<Vec<R>> = groups.into_par_iter().map(&per_group).collect();
    parts.into_iter().flatten().collect()
}

/// Per channel of `channels` (`K` of them), `Σ_s (Σ_j f(ch, x[s, ch, j]))` over the
/// planes `s` of `x [n, c, hw]` in order, each plane's sum from `Sum`'s neutral element
/// in pixel order and the planes' sums added the same way: the additions of
/// `planes.map(|p| p.map(f).sum()).sum()`, `K` channels at a time.
// `j` indexes K planes at once.
#[allow(clippy::needless_range_loop)]
fn plane_sums<T: Real, const K: usize>(
    x: &[T],
    (n, c, hw): (usize, usize, usize),
    first: usize,
    f: impl Fn(usize, T) -> T,
) -> [T; K] {
    let neutral = std::iter::empty::<T>().sum::<T>();
    let mut total = [neutral; K];
    for s in 0..n {
        let planes: [&[T]; K] = std::array::from_fn(|k| &x[(s * c + first + k) * hw..][..hw]);
        let mut sums = [neutral; K];
        // Lets the compiler drop the bounds checks of the loop below.
        assert!(planes.iter().all(|p| p.len() == hw));
        for j in 0..hw {
            for k in 0..K {
                sums[k] += f(k, planes[k][j]);
            }
        }
        for (t, &p) in total.iter_mut().zip(&sums) {
            *t += p;
        }
    }
    total
}

/// Per-channel batch statistics: mean and biased variance over N·H·W, each the sum of
/// the planes' sums (each in pixel order) divided by N·H·W.
pub fn batch_stats<T: Real>(x: &[T], n: usize, c: usize, hw: usize) -> (Vec<T>, Vec<T>) {
    let m = T::of_f64((n * hw) as f64);
    fn group<T: Real, const K: usize>(
        x: &[T],
        dims: (usize, usize, usize),
        first: usize,
        m: T,
    ) -> Vec<(T, T)> {
        let mean = plane_sums::<T, K>(x, dims, first, |_, v| v).map(|t| t / m);
        let squares = |k: usize, v: T| (v - mean[k]) * (v - mean[k]);
        let var = plane_sums::<T, K>(x, dims, first, squares).map(|t| t / m);
        mean.into_iter().zip(var).collect()
    }
    let dims = (n, c, hw);
    by_channel_groups(c, |chs| match chs.len() {
        CHAINS => group::<T, CHAINS>(x, dims, chs.start, m),
        _ => group::<T, 1>(x, dims, chs.start, m),
    })
    .into_iter()
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

/// Per channel `(Σ dy, Σ dy · (x − mean) · invstd)` over N·H·W, each sum one running
/// total from zero in (sample, pixel) order.
pub fn grad_sums<T: Real>(
    x: &[T],
    dy: &[T],
    n: usize,
    c: usize,
    hw: usize,
    mean: &[T],
    invstd: &[T],
) -> (Vec<T>, Vec<T>) {
    fn group<T: Real, const K: usize>(
        x: &[T],
        dy: &[T],
        (n, c, hw): (usize, usize, usize),
        first: usize,
        mean: &[T],
        invstd: &[T],
    ) -> Vec<(T, T)> {
        let (mut sdy, mut sdyx) = ([T::zero(); K], [T::zero(); K]);
        for s in 0..n {
            let off = |k: usize| (s * c + first + k) * hw;
            let xs: [&[T]; K] = std::array::from_fn(|k| &x[off(k)..][..hw]);
            let gs: [&[T]; K] = std::array::from_fn(|k| &dy[off(k)..][..hw]);
            // Lets the compiler drop the bounds checks of the loop below.
            assert!(xs.iter().chain(&gs).all(|p| p.len() == hw));
            for j in 0..hw {
                for k in 0..K {
                    let g = gs[k][j];
                    sdy[k] += g;
                    sdyx[k] += g * (xs[k][j] - mean[first + k]);
                }
            }
        }
        (0..K)
            .map(|k| (sdy[k], sdyx[k] * invstd[first + k]))
            .collect()
    }
    let dims = (n, c, hw);
    by_channel_groups(c, |chs| match chs.len() {
        CHAINS => group::<T, CHAINS>(x, dy, dims, chs.start, mean, invstd),
        _ => group::<T, 1>(x, dy, dims, chs.start, mean, invstd),
    })
    .into_iter()
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

    /// The interleaved sums keep each channel's order of additions: the same bits as
    /// the plain per-channel loops, for channel counts with and without a remainder of
    /// [`CHAINS`], and values of mixed magnitude (where another order rounds
    /// differently) with a −0 among them.
    #[test]
    fn interleaved_sums_match_per_channel_loops() {
        for (n, c, hw) in [(3, 16, 7), (2, 21, 5), (4, 8, 1), (1, 3, 9)] {
            let len = n * c * hw;
            let wave =
                |i: usize, k: usize| ((i * k % 97) as f32 - 48.0) * 10f32.powi((i % 7) as i32 - 3);
            let mut x: Vec<f32> = (0..len).map(|i| wave(i, 37)).collect();
            x[0] = -0.0;
            let dy: Vec<f32> = (0..len).map(|i| wave(i, 13)).collect();
            let (mean, var) = batch_stats(&x, n, c, hw);
            let invstd: Vec<f32> = var.iter().map(|&v| 1.0 / (v + 1e-5).sqrt()).collect();
            let (sdy, sdyx) = grad_sums(&x, &dy, n, c, hw, &mean, &invstd);
            let m = (n * hw) as f32;
            for ch in 0..c {
                let planes = || (0..n).map(move |s| (s * c + ch) * hw..(s * c + ch + 1) * hw);
                let mu = planes()
                    .map(|p| x[p].iter().copied().sum::<f32>())
                    .sum::<f32>()
                    / m;
                let sq = |p: std::ops::Range<usize>| {
                    x[p].iter().map(|&v| (v - mu) * (v - mu)).sum::<f32>()
                };
                let v = planes().map(sq).sum::<f32>() / m;
                let (mut a, mut b) = (0.0f32, 0.0f32);
                for p in planes() {
                    for (&g, &xv) in dy[p.clone()].iter().zip(&x[p]) {
                        a += g;
                        b += g * (xv - mean[ch]);
                    }
                }
                let got = [mean[ch], var[ch], sdy[ch], sdyx[ch]].map(f32::to_bits);
                let want = [mu, v, a, b * invstd[ch]].map(f32::to_bits);
                assert_eq!(got, want, "n {n} c {c} hw {hw} channel {ch}");
            }
        }
    }

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
