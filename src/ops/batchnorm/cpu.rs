//! Batch normalization over N·H·W per channel, on the CPU (rayon over channel planes).

use rayon::prelude::*;

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
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(hw)
        .zip(x.par_chunks(hw))
        .enumerate()
        .for_each(|(i, (yp, xp))| {
            let (a, b) = (scale[i % c], shift[i % c]);
            yp.iter_mut().zip(xp).for_each(|(y, &x)| *y = x * a + b);
        });
    y
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
    let mut dx = vec![T::zero(); x.len()];
    dx.par_chunks_mut(hw).enumerate().for_each(|(i, dxp)| {
        let ch = i % c;
        let k = gamma[ch] * invstd[ch] / mf;
        let off = i * hw;
        for ((d, &g), &v) in dxp
            .iter_mut()
            .zip(&dy[off..off + hw])
            .zip(&x[off..off + hw])
        {
            let xhat = (v - mean[ch]) * invstd[ch];
            *d = k * (mf * g - sum_dy[ch] - xhat * sum_dy_xhat[ch]);
        }
    });
    dx
}

/// Blends a batch statistic into its running average: `r ← (1 − m)·r + m·s`.
pub fn update_running<T: Real>(running: &mut [T], batch: &[T], momentum: T) {
    for (r, &s) in running.iter_mut().zip(batch) {
        *r = (T::one() - momentum) * *r + momentum * s;
    }
}
