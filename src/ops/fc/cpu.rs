//! CPU linear layer: one [`gemm`] over the batch.

use super::FcShape;
use crate::error::{check_len, Result};
use crate::gemm::{gemm, Op};
use crate::real::Real;

/// `y = x · Wᵀ + b` for `x` `[n, in]`, `W` `[out, in]`; `y` `[n, out]` is overwritten.
pub fn fc_forward<T: Real>(shape: &FcShape, x: &[T], w: &[T], b: &[T], y: &mut [T]) -> Result<()> {
    const OP: &str = "fc_forward";
    let FcShape { n, inp, out } = *shape;
    check_len(OP, "x", x.len(), n * inp)?;
    check_len(OP, "w", w.len(), out * inp)?;
    check_len(OP, "b", b.len(), out)?;
    check_len(OP, "y", y.len(), n * out)?;
    for row in y.chunks_mut(out) {
        row.copy_from_slice(b);
    }
    gemm(n, out, inp, T::one(), x, Op::N, w, Op::T, T::one(), y);
    Ok(())
}

/// Adds the gradients of [`fc_forward`] given `dy`: `dx += dy·W`, `dw += dyᵀ·x`,
/// `db += Σ_n dy`. A `None` gradient is not computed.
pub fn fc_backward<T: Real>(
    shape: &FcShape,
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: Option<&mut [T]>,
    db: Option<&mut [T]>,
) -> Result<()> {
    const OP: &str = "fc_backward";
    let FcShape { n, inp, out } = *shape;
    check_len(OP, "x", x.len(), n * inp)?;
    check_len(OP, "w", w.len(), out * inp)?;
    check_len(OP, "dy", dy.len(), n * out)?;
    if let Some(dx) = dx {
        check_len(OP, "dx", dx.len(), n * inp)?;
        gemm(n, inp, out, T::one(), dy, Op::N, w, Op::N, T::one(), dx);
    }
    if let Some(dw) = dw {
        check_len(OP, "dw", dw.len(), out * inp)?;
        gemm(out, inp, n, T::one(), dy, Op::T, x, Op::N, T::one(), dw);
    }
    if let Some(db) = db {
        check_len(OP, "db", db.len(), out)?;
        for row in dy.chunks(out) {
            for (g, &d) in db.iter_mut().zip(row) {
                *g += d;
            }
        }
    }
    Ok(())
}

impl<T: Real> super::tape::FcKernels for T {
    fn fc_forward(_: &(), shape: &FcShape, x: &&[T], w: &&[T], b: &&[T]) -> Result<Vec<T>> {
        let mut y = vec![T::zero(); shape.n * shape.out];
        fc_forward(shape, x, w, b, &mut y)?;
        Ok(y)
    }

    fn fc_backward(
        _: &(),
        shape: &FcShape,
        x: &&[T],
        w: &&[T],
        dy: &&[T],
        input: bool,
        params: bool,
    ) -> Result<(Option<Vec<T>>, Option<(Vec<T>, Vec<T>)>)> {
        let mut dx = input.then(|| vec![T::zero(); shape.n * shape.inp]);
        let mut dp = params.then(|| {
            (
                vec![T::zero(); shape.out * shape.inp],
                vec![T::zero(); shape.out],
            )
        });
        let (dw, db) = match &mut dp {
            Some((dw, db)) => (Some(&mut dw[..]), Some(&mut db[..])),
            None => (None, None),
        };
        fc_backward(shape, x, w, dy, dx.as_deref_mut(), dw, db)?;
        Ok((dx, dp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: f64) -> Vec<f64> {
        (0..len)
            .map(|i| ((i as f64 + seed) * 0.421).cos())
            .collect()
    }

    #[test]
    fn backward_matches_finite_differences() {
        let s = FcShape::new(3, 4, 2).unwrap();
        let (x, w, b, r) = (data(12, 0.0), data(8, 1.0), data(2, 2.0), data(6, 3.0));
        let loss = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
            let mut y = vec![0.0; 6];
            fc_forward(&s, x, w, b, &mut y).unwrap();
            y.iter().zip(&r).map(|(a, b)| a * b).sum()
        };
        let (mut dx, mut dw, mut db) = (vec![0.0; 12], vec![0.0; 8], vec![0.0; 2]);
        fc_backward(&s, &x, &w, &r, Some(&mut dx), Some(&mut dw), Some(&mut db)).unwrap();
        let eps = 1e-6;
        let args = [x, w, b];
        for (which, grad) in [dx, dw, db].iter().enumerate() {
            for i in 0..grad.len() {
                let at = |e: f64| {
                    let mut a = args.clone();
                    a[which][i] += e;
                    loss(&a[0], &a[1], &a[2])
                };
                let g = (at(eps) - at(-eps)) / (2.0 * eps);
                assert!(
                    (g - grad[i]).abs() <= 1e-6 * g.abs().max(1e-3),
                    "arg {which}[{i}]: {g} vs {}",
                    grad[i]
                );
            }
        }
    }
}
