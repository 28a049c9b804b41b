//! CPU 1×1 convolution: one [`gemm`] per sample (matrixmultiply threads inside it).

use super::Conv1x1Shape;
use crate::error::{check_len, Result};
use crate::gemm::{gemm, Op};
use crate::ops::reduce;
use crate::real::Real;

/// `y[n] = W · x[n] + b`; `y` is overwritten. `w` is `[cout, cin]`, `b` is `[cout]`.
pub fn conv1x1_forward<T: Real>(
    shape: &Conv1x1Shape,
    x: &[T],
    w: &[T],
    b: &[T],
    y: &mut [T],
) -> Result<()> {
    const OP: &str = "conv1x1_forward";
    check_len(OP, "x", x.len(), shape.x_len())?;
    check_len(OP, "w", w.len(), shape.w_len())?;
    check_len(OP, "b", b.len(), shape.cout)?;
    check_len(OP, "y", y.len(), shape.y_len())?;
    let (ci, co, p) = (shape.cin, shape.cout, shape.pixels);
    for (xn, yn) in x.chunks(ci * p).zip(y.chunks_mut(co * p)) {
        for (row, &bias) in yn.chunks_mut(p).zip(b) {
            row.fill(bias);
        }
        gemm(co, p, ci, T::one(), w, Op::N, xn, Op::N, T::one(), yn);
    }
    Ok(())
}

/// Adds the gradients of [`conv1x1_forward`] given `dy`: `dx[n] += Wᵀ·dy[n]`,
/// `dw += Σ_n dy[n]·x[n]ᵀ`, `db += Σ_n,p dy`. A `None` gradient is not computed.
pub fn conv1x1_backward<T: Real>(
    shape: &Conv1x1Shape,
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: Option<&mut [T]>,
    db: Option<&mut [T]>,
) -> Result<()> {
    const OP: &str = "conv1x1_backward";
    check_len(OP, "x", x.len(), shape.x_len())?;
    check_len(OP, "w", w.len(), shape.w_len())?;
    check_len(OP, "dy", dy.len(), shape.y_len())?;
    let (ci, co, p) = (shape.cin, shape.cout, shape.pixels);
    if let Some(dx) = dx {
        check_len(OP, "dx", dx.len(), shape.x_len())?;
        for (dxn, dyn_) in dx.chunks_mut(ci * p).zip(dy.chunks(co * p)) {
            gemm(ci, p, co, T::one(), w, Op::T, dyn_, Op::N, T::one(), dxn);
        }
    }
    if let Some(dw) = dw {
        check_len(OP, "dw", dw.len(), shape.w_len())?;
        for (xn, dyn_) in x.chunks(ci * p).zip(dy.chunks(co * p)) {
            gemm(co, ci, p, T::one(), dyn_, Op::N, xn, Op::T, T::one(), dw);
        }
    }
    if let Some(db) = db {
        check_len(OP, "db", db.len(), co)?;
        for dyn_ in dy.chunks(co * p) {
            for (g, row) in db.iter_mut().zip(dyn_.chunks(p)) {
                *g += reduce::sum(row);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: f64) -> Vec<f64> {
        (0..len)
            .map(|i| ((i as f64 + seed) * 0.613).sin())
            .collect()
    }

    fn naive_forward(s: &Conv1x1Shape, x: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; s.y_len()];
        for n in 0..s.n {
            for o in 0..s.cout {
                for q in 0..s.pixels {
                    y[(n * s.cout + o) * s.pixels + q] = b[o]
                        + (0..s.cin)
                            .map(|i| w[o * s.cin + i] * x[(n * s.cin + i) * s.pixels + q])
                            .sum::<f64>();
                }
            }
        }
        y
    }

    #[test]
    fn forward_matches_naive_loops() {
        let s = Conv1x1Shape::new(2, 3, 4, 5).unwrap();
        let (x, w, b) = (data(s.x_len(), 0.0), data(s.w_len(), 1.0), data(4, 2.0));
        let mut y = vec![f64::NAN; s.y_len()];
        conv1x1_forward(&s, &x, &w, &b, &mut y).unwrap();
        for (a, e) in y.iter().zip(naive_forward(&s, &x, &w, &b)) {
            assert!((a - e).abs() <= 1e-12, "{a} vs {e}");
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        // Loss L = <conv(x, w, b), r>; every gradient entry against central differences.
        let s = Conv1x1Shape::new(2, 3, 2, 4).unwrap();
        let (x, w, b, r) = (
            data(s.x_len(), 0.0),
            data(s.w_len(), 1.0),
            data(2, 2.0),
            data(s.y_len(), 3.0),
        );
        let loss = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
            naive_forward(&s, x, w, b)
                .iter()
                .zip(&r)
                .map(|(a, b)| a * b)
                .sum()
        };
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; 2]);
        conv1x1_backward(&s, &x, &w, &r, Some(&mut dx), Some(&mut dw), Some(&mut db)).unwrap();
        let eps = 1e-6;
        let fd = |f: &dyn Fn(f64) -> f64| (f(eps) - f(-eps)) / (2.0 * eps);
        for i in 0..x.len() {
            let g = fd(&|e| {
                let mut xp = x.clone();
                xp[i] += e;
                loss(&xp, &w, &b)
            });
            assert!((g - dx[i]).abs() <= 1e-6 * g.abs().max(1e-3), "dx[{i}]");
        }
        for i in 0..w.len() {
            let g = fd(&|e| {
                let mut wp = w.clone();
                wp[i] += e;
                loss(&x, &wp, &b)
            });
            assert!((g - dw[i]).abs() <= 1e-6 * g.abs().max(1e-3), "dw[{i}]");
        }
        for i in 0..2 {
            let g = fd(&|e| {
                let mut bp = b.clone();
                bp[i] += e;
                loss(&x, &w, &bp)
            });
            assert!((g - db[i]).abs() <= 1e-6 * g.abs().max(1e-3), "db[{i}]");
        }
    }
}
