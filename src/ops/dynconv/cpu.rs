//! CPU dynamic per-sample 1×1 conv (a GEMV per sample).

use super::DynConvShape;
use crate::error::{check_len, Result};
use crate::real::Real;

/// `s[n, p] = Σ_k w[n, k]·h[n, k, p] + b[n]`; `s` is overwritten.
pub fn dynconv_forward<T: Real>(
    shape: &DynConvShape,
    h: &[T],
    w: &[T],
    b: &[T],
    s: &mut [T],
) -> Result<()> {
    const OP: &str = "dynconv_forward";
    check_len(OP, "h", h.len(), shape.h_len())?;
    check_len(OP, "w", w.len(), shape.n * shape.k)?;
    check_len(OP, "b", b.len(), shape.n)?;
    check_len(OP, "s", s.len(), shape.s_len())?;
    let (k, p) = (shape.k, shape.pixels);
    for (n, sn) in s.chunks_mut(p).enumerate() {
        sn.fill(b[n]);
        for (&wk, hk) in w[n * k..(n + 1) * k].iter().zip(h[n * k * p..].chunks(p)) {
            for (sv, &hv) in sn.iter_mut().zip(hk) {
                *sv += wk * hv;
            }
        }
    }
    Ok(())
}

/// Adds the gradients of [`dynconv_forward`] given `ds`: `dh[n,k,p] += w[n,k]·ds[n,p]`,
/// `dw[n,k] += Σ_p ds[n,p]·h[n,k,p]`, `db[n] += Σ_p ds[n,p]`. A `None` gradient is not
/// computed.
pub fn dynconv_backward<T: Real>(
    shape: &DynConvShape,
    h: &[T],
    w: &[T],
    ds: &[T],
    dh: Option<&mut [T]>,
    dw: Option<&mut [T]>,
    db: Option<&mut [T]>,
) -> Result<()> {
    const OP: &str = "dynconv_backward";
    check_len(OP, "h", h.len(), shape.h_len())?;
    check_len(OP, "w", w.len(), shape.n * shape.k)?;
    check_len(OP, "ds", ds.len(), shape.s_len())?;
    let (k, p) = (shape.k, shape.pixels);
    if let Some(dh) = dh {
        check_len(OP, "dh", dh.len(), shape.h_len())?;
        for (i, dhk) in dh.chunks_mut(p).enumerate() {
            let (n, wk) = (i / k, w[i]);
            for (g, &d) in dhk.iter_mut().zip(&ds[n * p..(n + 1) * p]) {
                *g += wk * d;
            }
        }
    }
    if let Some(dw) = dw {
        check_len(OP, "dw", dw.len(), shape.n * k)?;
        for (i, hk) in h.chunks(p).enumerate() {
            let n = i / k;
            dw[i] += hk
                .iter()
                .zip(&ds[n * p..(n + 1) * p])
                .map(|(&a, &b)| a * b)
                .sum::<T>();
        }
    }
    if let Some(db) = db {
        check_len(OP, "db", db.len(), shape.n)?;
        for (g, dsn) in db.iter_mut().zip(ds.chunks(p)) {
            *g += dsn.iter().copied().sum::<T>();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: f64) -> Vec<f64> {
        (0..len)
            .map(|i| ((i as f64 + seed) * 0.917).sin())
            .collect()
    }

    #[test]
    fn backward_matches_finite_differences() {
        let s = DynConvShape::new(2, 3, 4).unwrap();
        let (h, w, b, r) = (
            data(s.h_len(), 0.0),
            data(6, 1.0),
            data(2, 2.0),
            data(s.s_len(), 3.0),
        );
        let loss = |h: &[f64], w: &[f64], b: &[f64]| -> f64 {
            let mut out = vec![0.0; s.s_len()];
            dynconv_forward(&s, h, w, b, &mut out).unwrap();
            out.iter().zip(&r).map(|(a, b)| a * b).sum()
        };
        let (mut dh, mut dw, mut db) = (vec![0.0; h.len()], vec![0.0; 6], vec![0.0; 2]);
        dynconv_backward(&s, &h, &w, &r, Some(&mut dh), Some(&mut dw), Some(&mut db)).unwrap();
        let eps = 1e-6;
        let check = |args: [&[f64]; 3], which: usize, grad: &[f64]| {
            for i in 0..grad.len() {
                let at = |e: f64| {
                    let mut a = [args[0].to_vec(), args[1].to_vec(), args[2].to_vec()];
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
        };
        check([&h, &w, &b], 0, &dh);
        check([&h, &w, &b], 1, &dw);
        check([&h, &w, &b], 2, &db);
    }
}
