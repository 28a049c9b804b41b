//! Safe, checked wrapper over matrixmultiply's sgemm/dgemm: the one CPU matrix product
//! the 1×1 convs, im2col convs and linear layers share.
//!
//! matrixmultiply runs its own threads (feature `threading`); do not call it from inside
//! a rayon parallel loop over the same cores.

use crate::real::Real;

/// Whether a row-major operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// As stored.
    N,
    /// Transposed.
    T,
}

/// `C = alpha · op(A) · op(B) + beta · C` on row-major contiguous matrices.
///
/// `op(A)` is `m×k` (A is stored `m×k` for [`Op::N`], `k×m` for [`Op::T`]); `op(B)` is
/// `k×n`; `C` is `m×n`. With `beta == 0` the old contents of `C` are ignored (NaN too).
///
/// # Panics
/// If a slice is shorter than its matrix: callers check user-facing shapes first, so
/// this is a bug in the caller.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &[T],
    op_a: Op,
    b: &[T],
    op_b: Op,
    beta: T,
    c: &mut [T],
) {
    assert!(a.len() >= m * k, "gemm: A has {} < {m}×{k}", a.len());
    assert!(b.len() >= k * n, "gemm: B has {} < {k}×{n}", b.len());
    assert!(c.len() >= m * n, "gemm: C has {} < {m}×{n}", c.len());
    if m == 0 || n == 0 {
        return;
    }
    if beta == T::zero() {
        // matrixmultiply reads C when beta == 0 is not special-cased for NaN inputs.
        c[..m * n].fill(T::zero());
    }
    if k == 0 {
        if beta != T::zero() {
            c[..m * n].iter_mut().for_each(|v| *v *= beta);
        }
        return;
    }
    let (rsa, csa) = match op_a {
        Op::N => (k as isize, 1),
        Op::T => (1, m as isize),
    };
    let (rsb, csb) = match op_b {
        Op::N => (n as isize, 1),
        Op::T => (1, k as isize),
    };
    // SAFETY: the asserts above bound every index the strides reach, and `c` is a
    // unique borrow, so it aliases neither input.
    unsafe {
        T::gemm_raw(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f64], ta: Op, b: &[f64], tb: Op) -> Vec<f64> {
        let at = |i: usize, p: usize| match ta {
            Op::N => a[i * k + p],
            Op::T => a[p * m + i],
        };
        let bt = |p: usize, j: usize| match tb {
            Op::N => b[p * n + j],
            Op::T => b[j * k + p],
        };
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn matches_naive_product_for_every_transpose() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
        for ta in [Op::N, Op::T] {
            for tb in [Op::N, Op::T] {
                let mut c = vec![f64::NAN; m * n];
                gemm(m, n, k, 1.0, &a, ta, &b, tb, 0.0, &mut c);
                let want = naive(m, n, k, &a, ta, &b, tb);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-12, "{ta:?}{tb:?}: {x} vs {y}");
                }
            }
        }
    }
}
