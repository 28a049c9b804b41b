//! Safe, checked CPU matrix products, the ones the 1×1 convs, im2col and Winograd convs,
//! the SANet and linear layers share: matrixmultiply's sgemm/dgemm, or in f32 the
//! unpacked kernel below.
//!
//! Large products are split into column (or row) blocks of C that rayon runs in
//! parallel, each a single-threaded call. Why not matrixmultiply's own
//! `threading` feature: on the SPARTA layer's k = 64 products it reached about half the
//! throughput of the same calls split by rayon (BENCHMARKS.md, "Moved from code
//! comments"), and its threads oversubscribe the cores when the caller is itself a rayon
//! task (the per-sample SANet).
//! Nested inside a rayon task the split simply feeds rayon's work stealing. The blocks
//! depend only on the shape, never on the thread count, and each element of C is computed
//! by one call over the whole of k, so results are the same on every run and machine.
//!
//! In f32 on a CPU with AVX-512, products with `α = 1` and `β ∈ {0, 1}` run in
//! `unpacked.rs` instead, which reads the operands where they lie rather than packing
//! them (a transposed `B` is copied once, as stored), with the same bits.

use rayon::prelude::*;

use crate::real::Real;
use crate::scratch::with_scratch;

pub(crate) mod transpose;
#[cfg(target_arch = "x86_64")]
pub(crate) mod unpacked;

/// Below this many multiply-adds per block, splitting costs more than it gains
/// (a block of 2^20 takes about 10 µs here; a rayon task about 1 µs).
const MIN_BLOCK_WORK: usize = 1 << 20;
/// At most this many blocks per product: enough to balance two to sixteen cores.
const MAX_BLOCKS: usize = 64;
/// Block widths are multiples of this, so each block keeps whole microkernel tiles.
const BLOCK_ALIGN: usize = 64;

/// The block size along a dimension of length `len` for a product of `work`
/// multiply-adds, or `None` when the product should run as one call.
fn block_len(len: usize, work: usize) -> Option<usize> {
    let blocks = (work / MIN_BLOCK_WORK)
        .min(MAX_BLOCKS)
        .min(len / BLOCK_ALIGN);
    if blocks < 2 {
        return None;
    }
    Some(len.div_ceil(blocks).next_multiple_of(BLOCK_ALIGN))
}

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
    product(true, m, n, k, alpha, a, op_a, b, op_b, beta, c)
}

/// [`gemm`] as one single-threaded call, never split: for a caller that is itself one of
/// several rayon tasks and whose product is too small to share (the fused SANet's
/// groups), where a split would only repack A once per block.
///
/// # Panics
/// As [`gemm`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_serial<T: Real>(
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
    product(false, m, n, k, alpha, a, op_a, b, op_b, beta, c)
}

/// `C = A · B + beta · C` as one single-threaded call in matrixmultiply on operands at
/// any strides: element `(i, p)` of `A` (`m×k`) is `a[i·sa[0] + p·sa[1]]`, element
/// `(p, j)` of `B` (`k×n`) is `b[p·sb[0] + j·sb[1]]`; row `i` of `C` (`m×n`) starts at
/// `c[i·c_row]`, its elements contiguous (with `beta == 0` its old contents are
/// ignored, NaN too; the values between its rows are left as they were). For operands
/// that are one slice of a larger interleaved array (the transformed inputs and
/// weights of Winograd F(4×4, 3×3)).
///
/// # Panics
/// If a row of `C` is longer than the distance between its rows, or a slice is shorter
/// than the furthest element its strides reach: a bug in the caller.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_serial_strided<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    sa: [usize; 2],
    b: &[T],
    sb: [usize; 2],
    beta: T,
    c: &mut [T],
    c_row: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(n <= c_row, "gemm: C's rows {c_row} apart, {n} long");
    assert!(
        lies_within(m, n, [c_row, 1], c.len()),
        "gemm: C of {m}×{n} in rows {c_row} apart outruns {}",
        c.len()
    );
    if k == 0 {
        for row in c.chunks_mut(c_row).take(m) {
            if beta == T::zero() {
                row[..n].fill(T::zero());
            } else {
                row[..n].iter_mut().for_each(|v| *v *= beta);
            }
        }
        return;
    }
    assert!(
        lies_within(m, k, sa, a.len()),
        "gemm: A of {m}×{k} at strides {sa:?} outruns {}",
        a.len()
    );
    assert!(
        lies_within(k, n, sb, b.len()),
        "gemm: B of {k}×{n} at strides {sb:?} outruns {}",
        b.len()
    );
    // SAFETY: the asserts above bound every index the strides reach, and `c` is a unique
    // borrow, so it aliases neither input.
    unsafe {
        T::gemm_raw(
            m,
            k,
            n,
            T::one(),
            a.as_ptr(),
            sa[0] as isize,
            sa[1] as isize,
            b.as_ptr(),
            sb[0] as isize,
            sb[1] as isize,
            beta,
            c.as_mut_ptr(),
            c_row as isize,
            1,
        )
    }
}

/// `C = A · B`, or `C += A · B` with `accumulate`, as one single-threaded call, where
/// `B` and `C` are blocks of columns of wider matrices: element `(i, p)` of `A` (`m×k`)
/// is `a[i·sa[0] + p·sa[1]]`, row `p` of `B` (`k×n`) starts at `b[p·b_row]` and row `i`
/// of `C` (`m×n`) at `c[i·c_row]`, each row's elements contiguous; the values of `C`
/// between its rows are left as they were. For the SANet's per-sample products, which
/// read and write a sample's pixels where they lie in a group of samples. In f32 with
/// AVX-512 it runs in `unpacked.rs`, elsewhere as [`gemm_serial_strided`]; either way
/// each element is summed as [`gemm_serial`] sums it.
///
/// # Panics
/// If a row is longer than the distance between rows, or a slice is shorter than the
/// furthest element its strides reach: a bug in the caller.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_serial_rows<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    sa: [usize; 2],
    b: &[T],
    b_row: usize,
    accumulate: bool,
    c: &mut [T],
    c_row: usize,
) {
    assert!(n <= b_row, "gemm: B's rows {b_row} apart, {n} long");
    let beta = if accumulate { T::one() } else { T::zero() };
    #[cfg(target_arch = "x86_64")]
    if unpacks(n, k, T::one(), beta) {
        let ops = unpacked::Operands {
            a: crate::real::f32s(a),
            a_strides: sa,
            b: crate::real::f32s(b),
            b_row,
        };
        let c = crate::real::f32s_mut(c);
        return unpacked::product(m, n, k, &ops, accumulate, c, c_row);
    }
    gemm_serial_strided(m, n, k, a, sa, b, [b_row, 1], beta, c, c_row)
}

/// One past the furthest element `(rows − 1, cols − 1)` of a matrix at strides `s`
/// (element `(i, j)` at `i·s[0] + j·s[1]`), or `None` where that index overflows;
/// `rows` and `cols` at least 1.
fn reach(rows: usize, cols: usize, s: [usize; 2]) -> Option<usize> {
    (rows - 1)
        .checked_mul(s[0])
        .zip((cols - 1).checked_mul(s[1]))
        .and_then(|(r, c)| r.checked_add(c)?.checked_add(1))
}

/// Whether a matrix of `rows × cols` (both at least 1) at strides `s` lies within a
/// slice of `len` elements: its furthest element [`reach`]es no further, without
/// overflow.
pub(crate) fn lies_within(rows: usize, cols: usize, s: [usize; 2], len: usize) -> bool {
    reach(rows, cols, s).is_some_and(|r| r <= len)
}

#[allow(clippy::too_many_arguments)]
fn product<T: Real>(
    split: bool,
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
    if k == 0 {
        if beta == T::zero() {
            c[..m * n].fill(T::zero());
        } else {
            c[..m * n].iter_mut().for_each(|v| *v *= beta);
        }
        return;
    }
    let unpacked = unpacks(n, k, alpha, beta);
    if unpacked && op_b == Op::T {
        // B as stored, for the unpacked kernel's rows: one copy of B, where
        // matrixmultiply would copy both operands.
        return with_scratch(k * n, |stored: &mut [T]| {
            transpose(split, &b[..k * n], n, k, stored);
            product(split, m, n, k, alpha, a, op_a, stored, Op::N, beta, c)
        });
    }
    let (rsa, csa) = match op_a {
        Op::N => (k as isize, 1),
        Op::T => (1, m as isize),
    };
    let (rsb, csb) = match op_b {
        Op::N => (n as isize, 1),
        Op::T => (1, k as isize),
    };
    // Raw pointers are not Send; the blocks below write disjoint parts of C.
    let (a_at, b_at, c_at) = (
        a.as_ptr() as usize,
        b.as_ptr() as usize,
        c.as_mut_ptr() as usize,
    );
    // SAFETY (every call below): the asserts above bound every index the strides reach
    // for the whole product, a block reaches a subset of it, `c` is a unique borrow, so
    // it aliases neither input, and the blocks' parts of C are disjoint.
    let block = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>| unsafe {
        let (a, b, c) = (a_at as *const T, b_at as *const T, c_at as *mut T);
        if unpacked {
            #[cfg(target_arch = "x86_64")]
            return unpacked::product_raw(
                rows.len(),
                cols.len(),
                k,
                a.offset(rows.start as isize * rsa).cast(),
                [rsa as usize, csa as usize],
                b.offset(cols.start as isize * csb).cast(),
                rsb as usize,
                beta != T::zero(),
                c.add(rows.start * n + cols.start).cast(),
                n,
            );
        }
        T::gemm_raw(
            rows.len(),
            k,
            cols.len(),
            alpha,
            a.offset(rows.start as isize * rsa),
            rsa,
            csa,
            b.offset(cols.start as isize * csb),
            rsb,
            csb,
            beta,
            c.add(rows.start * n + cols.start),
            n as isize,
            1,
        )
    };
    let work = if split { m * n * k } else { 0 };
    if let Some(width) = block_len(n, work) {
        (0..n.div_ceil(width))
            .into_par_iter()
            .for_each(|j| block(0..m, j * width..n.min((j + 1) * width)));
    } else if let Some(height) = block_len(m, work) {
        (0..m.div_ceil(height))
            .into_par_iter()
            .for_each(|i| block(i * height..m.min((i + 1) * height), 0..n));
    } else {
        block(0..m, 0..n);
    }
}

/// Whether a product runs in [`unpacked`] (after [`transpose`] where `B` is
/// transposed): f32 with AVX-512, `α = 1`, `β` zero or one, and `n` and `k` that
/// [`unpacked::fits`].
fn unpacks<T: Real>(n: usize, k: usize, alpha: T, beta: T) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::real::is_f32::<T>()
            && alpha == T::one()
            && (beta == T::zero() || beta == T::one())
            && unpacked::fits(n, k)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (n, k, alpha, beta);
        false
    }
}

/// Rows of the transposed matrix per task of [`transpose`]'s split.
const TRANSPOSE_ROWS: usize = 64;

/// Elements below which [`transpose`] runs as one task: a rayon task costs about as
/// much as copying a few thousand elements.
const TRANSPOSE_SPLIT: usize = 1 << 16;

/// `out = bᵀ`: `b` is `rows × cols`, `out` `cols × rows`, both row-major. With `split`,
/// at least [`TRANSPOSE_SPLIT`] elements and more than one block of [`TRANSPOSE_ROWS`],
/// blocks of rows of `out` run as rayon tasks.
fn transpose<T: Real>(split: bool, b: &[T], rows: usize, cols: usize, out: &mut [T]) {
    // Rows `first..` of `out`: columns `first..` of `b`.
    let block = |first: usize, out: &mut [T]| {
        transpose::transpose_into(&b[first..], rows, out.len() / rows, cols, out, rows)
    };
    if split && cols > TRANSPOSE_ROWS && rows * cols >= TRANSPOSE_SPLIT {
        out[..cols * rows]
            .par_chunks_mut(TRANSPOSE_ROWS * rows)
            .enumerate()
            .for_each(|(i, out)| block(i * TRANSPOSE_ROWS, out));
    } else {
        block(0, &mut out[..cols * rows]);
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
    fn split_products_match_naive_product_for_every_transpose() {
        // Wide (column blocks), tall (row blocks) and both small: every path of the split,
        // and the same shapes unsplit.
        for (m, n, k) in [(3, 4099, 300), (4097, 3, 300), (70, 130, 5)] {
            let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
            for ta in [Op::N, Op::T] {
                for tb in [Op::N, Op::T] {
                    let want = naive(m, n, k, &a, ta, &b, tb);
                    for product in [gemm::<f64>, gemm_serial::<f64>] {
                        let mut c = vec![1.0; m * n];
                        product(m, n, k, 2.0, &a, ta, &b, tb, 0.5, &mut c);
                        for (i, (x, y)) in c.iter().zip(&want).enumerate() {
                            let y = 2.0 * y + 0.5;
                            assert!(
                                (x - y).abs() < 1e-9 * (1.0 + y.abs()),
                                "{m}x{n}x{k} {ta:?}{tb:?} [{i}]: {x} vs {y}"
                            );
                        }
                    }
                }
            }
        }
        assert!(block_len(4099, 3 * 4099 * 300).is_some());
        assert!(block_len(3, 4097 * 3 * 300).is_none());
        assert!(block_len(4097, 4097 * 3 * 300).is_some());
    }

    /// With β = 0, C is written, never read (matrixmultiply's kernels promise it, and
    /// nothing here zeroes C first): NaN in C must not reach the result, in f32 and f64,
    /// at shapes with edge tiles, several k blocks and the rayon split.
    #[test]
    fn beta_zero_never_reads_c() {
        fn check<T: Real>(m: usize, n: usize, k: usize) {
            let a: Vec<T> = (0..m * k)
                .map(|i| T::of_f64((i as f64 * 0.37).sin()))
                .collect();
            let b: Vec<T> = (0..k * n)
                .map(|i| T::of_f64((i as f64 * 0.11).cos()))
                .collect();
            for (ta, tb) in [(Op::N, Op::N), (Op::T, Op::N), (Op::N, Op::T)] {
                let mut c = vec![T::of_f64(f64::NAN); m * n];
                gemm(m, n, k, T::one(), &a, ta, &b, tb, T::zero(), &mut c);
                let bad = c.iter().position(|v| !v.is_finite());
                assert_eq!(bad, None, "{m}x{n}x{k} {ta:?}{tb:?}");
            }
        }
        for (m, n, k) in [
            (1, 1, 1),
            (17, 9, 3),
            (65, 33, 600),
            (64, 4099, 300),
            (4097, 3, 300),
        ] {
            check::<f32>(m, n, k);
            check::<f64>(m, n, k);
        }
        let mut c = vec![f32::NAN; 6];
        gemm(2, 3, 0, 1.0, &[], Op::N, &[], Op::N, 0.0, &mut c);
        assert_eq!(c, [0.0; 6], "k = 0, β = 0: zeros");
    }

    /// f32 products give matrixmultiply's bits whichever kernel runs them: every
    /// transpose, β 0 and 1, split and not (column blocks, row blocks and the
    /// transpose's tasks), one depth block and three.
    #[test]
    fn f32_products_give_the_bits_of_matrixmultiply() {
        let shapes = [
            (16, 16, 784),
            (5, 7, 3),
            (33, 4099, 300),
            (130, 200, 600),
            (4100, 40, 300),
        ];
        for (m, n, k) in shapes {
            let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
            let c0: Vec<f32> = (0..m * n).map(|i| (i as f32 * 0.05).sin()).collect();
            for (ta, tb, beta) in [
                (Op::N, Op::N, 0.0),
                (Op::T, Op::N, 1.0),
                (Op::N, Op::T, 1.0),
                (Op::T, Op::T, 0.0),
            ] {
                let (rsa, csa) = match ta {
                    Op::N => (k as isize, 1),
                    Op::T => (1, m as isize),
                };
                let (rsb, csb) = match tb {
                    Op::N => (n as isize, 1),
                    Op::T => (1, k as isize),
                };
                let mut want = c0.clone();
                // SAFETY: the strides describe a, b and want, m·k, k·n and m·n long.
                unsafe {
                    f32::gemm_raw(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        rsa,
                        csa,
                        b.as_ptr(),
                        rsb,
                        csb,
                        beta,
                        want.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                };
                for product in [gemm::<f32>, gemm_serial::<f32>] {
                    let mut c = c0.clone();
                    product(m, n, k, 1.0, &a, ta, &b, tb, beta, &mut c);
                    let differ = c
                        .iter()
                        .zip(&want)
                        .filter(|(x, y)| x.to_bits() != y.to_bits());
                    let differ = differ.count();
                    assert_eq!(differ, 0, "{m}x{n}x{k} {ta:?}{tb:?} β {beta}");
                }
            }
        }
    }

    #[test]
    fn transposes() {
        for (rows, cols, split) in [(3, 5, false), (20, 17, false), (400, 200, true)] {
            let b: Vec<f64> = (0..rows * cols).map(|i| i as f64).collect();
            let mut out = vec![f64::NAN; rows * cols];
            transpose(split, &b, rows, cols, &mut out);
            for (i, &v) in out.iter().enumerate() {
                let (p, j) = (i / rows, i % rows);
                assert_eq!(v, b[j * cols + p], "{rows}×{cols} element {i}");
            }
        }
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

    /// A product on blocks of columns gives, element for element, the bits of
    /// [`gemm_serial`] on the same values gathered into contiguous matrices, writes
    /// or adds (`accumulate`) only its block of `C`, and zeroes it for `k = 0`: in f32
    /// (the unpacked kernel where the CPU has AVX-512) and f64, with part registers (49
    /// columns), several depth blocks (k = 600) and `A` transposed.
    #[test]
    fn products_on_blocks_of_columns_match_contiguous_ones() {
        fn check<T: Real>(name: &str) {
            let value = |i: usize, seed: f64| T::of_f64((i as f64 * seed).sin());
            // (m, n, k, A transposed, B's and C's rows)
            let shapes = [
                (12, 16, 64, false, 48, 32),
                (5, 49, 600, false, 60, 49),
                (17, 33, 20, true, 33, 40),
                (4, 7, 0, false, 9, 8),
            ];
            for (m, n, k, transposed, b_row, c_row) in shapes {
                let a: Vec<T> = (0..m * k).map(|i| value(i, 0.37)).collect();
                let sa = if transposed { [1, m] } else { [k, 1] };
                let op_a = if transposed { Op::T } else { Op::N };
                let b_block: Vec<T> = (0..k.max(1) * b_row).map(|i| value(i, 0.11)).collect();
                let b: Vec<T> = (0..k * n).map(|i| b_block[i / n * b_row + i % n]).collect();
                for accumulate in [false, true] {
                    let c0: Vec<T> = (0..m * c_row).map(|i| value(i, 0.7)).collect();
                    let mut want: Vec<T> = (0..m * n).map(|i| c0[i / n * c_row + i % n]).collect();
                    let beta = if accumulate { T::one() } else { T::zero() };
                    gemm_serial(m, n, k, T::one(), &a, op_a, &b, Op::N, beta, &mut want);
                    let mut got = c0.clone();
                    gemm_serial_rows(
                        m, n, k, &a, sa, &b_block, b_row, accumulate, &mut got, c_row,
                    );
                    for (i, (&g, &c)) in got.iter().zip(&c0).enumerate() {
                        let (row, col) = (i / c_row, i % c_row);
                        let expected = if col < n { want[row * n + col] } else { c };
                        assert!(
                            g.as_f64().to_bits() == expected.as_f64().to_bits(),
                            "{name} {m}×{n}×{k} accumulate {accumulate}: element {i}"
                        );
                    }
                }
            }
        }
        check::<f32>("f32");
        check::<f64>("f64");
    }

    /// The strided product reads only the elements its strides name: the gaps between
    /// them are NaN, C starts as NaN (β = 0), and the result matches the naive product,
    /// with rows or columns of either operand at unit stride; β = 1 adds to C.
    #[test]
    fn strided_product_reads_only_its_elements() {
        // A matrix of rows × cols at strides s in a NaN-filled slice, and its dense copy.
        fn spread(rows: usize, cols: usize, s: [usize; 2], seed: f64) -> (Vec<f64>, Vec<f64>) {
            let dense: Vec<f64> = (0..rows * cols).map(|i| (i as f64 * seed).sin()).collect();
            let mut sparse = vec![f64::NAN; (rows - 1) * s[0] + (cols - 1) * s[1] + 1];
            for (i, &v) in dense.iter().enumerate() {
                sparse[(i / cols) * s[0] + (i % cols) * s[1]] = v;
            }
            (sparse, dense)
        }
        for (m, n, k, sa, sb) in [
            (1, 1, 1, [1, 1], [1, 1]),
            (5, 7, 3, [9, 1], [8, 1]),
            (70, 33, 130, [200, 1], [1, 150]),
            (6, 40, 17, [1, 10], [45, 1]),
        ] {
            let (a, a_dense) = spread(m, k, sa, 0.37);
            let (b, b_dense) = spread(k, n, sb, 0.11);
            let want = naive(m, n, k, &a_dense, Op::N, &b_dense, Op::N);
            let mut c = vec![f64::NAN; m * n];
            gemm_serial_strided(m, n, k, &a, sa, &b, sb, 0.0, &mut c, n);
            for (i, (x, y)) in c.iter().zip(&want).enumerate() {
                assert!(
                    (x - y).abs() < 1e-9 * (1.0 + y.abs()),
                    "{m}x{n}x{k} [{i}]: {x} vs {y}"
                );
            }
            // β = 1 adds the product to C.
            gemm_serial_strided(m, n, k, &a, sa, &b, sb, 1.0, &mut c, n);
            for (i, (x, y)) in c.iter().zip(&want).enumerate() {
                let err = (x - 2.0 * y).abs();
                assert!(err < 1e-9 * (1.0 + y.abs()), "{m}x{n}x{k} [{i}] β = 1");
            }
        }
    }
}
