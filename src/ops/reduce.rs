//! Sums and dot products over slices with independent partial sums, so the compiler can
//! keep them in vector registers: a single running sum is one long chain of dependent
//! adds that LLVM may not reorder (float addition is not associative), which left these
//! reductions at one add per four cycles in the SANet's per-sample loops.
//!
//! The lanes are combined in a fixed order, so results depend only on the data, never on
//! the machine or the thread count. They differ from a left-to-right sum by rounding.

use crate::real::Real;

/// Partial sums kept side by side: 16 f32 fill one AVX-512 register.
const LANES: usize = 16;

/// Adds `LANES` partial sums in a fixed pairwise order.
fn combine<T: Real>(mut lanes: [T; LANES]) -> T {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
        width /= 2;
    }
    lanes[0]
}

/// `Σ v[i]`.
pub(crate) fn sum<T: Real>(v: &[T]) -> T {
    let mut lanes = [T::zero(); LANES];
    let mut chunks = v.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(chunk) {
            *l += x;
        }
    }
    for (l, &x) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += x;
    }
    combine(lanes)
}

/// Replaces each `v[i]` by `f(v[i])` and returns the sum of the new values, in one pass.
pub(crate) fn map_and_sum<T: Real>(v: &mut [T], f: impl Fn(T) -> T) -> T {
    let mut lanes = [T::zero(); LANES];
    let mut chunks = v.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (l, x) in lanes.iter_mut().zip(chunk) {
            *x = f(*x);
            *l += *x;
        }
    }
    for (l, x) in lanes.iter_mut().zip(chunks.into_remainder()) {
        *x = f(*x);
        *l += *x;
    }
    combine(lanes)
}

/// `Σ f(a[i])·b[i]` over the shorter of the two, in one pass.
pub(crate) fn map_dot<T: Real>(a: &[T], b: &[T], f: impl Fn(T) -> T) -> T {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut lanes = [T::zero(); LANES];
    let (mut ac, mut bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ac).zip(&mut bc) {
        for ((l, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *l += f(x) * y;
        }
    }
    for ((l, &x), &y) in lanes.iter_mut().zip(ac.remainder()).zip(bc.remainder()) {
        *l += f(x) * y;
    }
    combine(lanes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_and_dot_match_f64_for_every_remainder() {
        for len in [0, 1, 15, 16, 17, 33, 1000] {
            let a: Vec<f64> = (0..len).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..len).map(|i| (i as f64 * 0.11).cos()).collect();
            let want_sum: f64 = a.iter().sum();
            let want_dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!(
                (sum(&a) - want_sum).abs() <= 1e-12 * (1.0 + want_sum.abs()),
                "{len}"
            );
            assert!(
                (map_dot(&a, &b, |v| v) - want_dot).abs() <= 1e-12 * (1.0 + want_dot.abs()),
                "{len}"
            );
            let want_relu_dot: f64 = a.iter().zip(&b).map(|(x, y)| x.max(0.0) * y).sum();
            let got_relu_dot = map_dot(&a, &b, |v| v.max(0.0));
            assert!(
                (got_relu_dot - want_relu_dot).abs() <= 1e-12 * (1.0 + want_relu_dot.abs()),
                "{len}"
            );
            let mut mapped = a.clone();
            let want_map: f64 = a.iter().map(|v| v.max(0.0)).sum();
            let got_map = map_and_sum(&mut mapped, |v| v.max(0.0));
            assert!(
                (got_map - want_map).abs() <= 1e-12 * (1.0 + want_map),
                "{len}"
            );
            assert!(
                mapped.iter().zip(&a).all(|(m, v)| *m == v.max(0.0)),
                "{len}"
            );
            let nan = [f64::NAN].repeat(len.min(1));
            assert_eq!(sum(&nan).is_nan(), len > 0);
        }
    }
}
