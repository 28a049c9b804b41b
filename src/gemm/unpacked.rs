//! `C = A · B` (or `C += A · B`) in f32 with AVX-512, without packing: `A` is `m × k`
//! at any strides, `B` is `k × n` with its columns contiguous and rows `b_row` apart,
//! `C` is `m × n` with its columns contiguous and rows `c_row` apart.
//!
//! A general GEMM copies ("packs") both operands into its own blocked layout on every
//! call. Where `k` is small (the SANet's Conv3 and the 1×1 convolutions of the main
//! job, 16 to 128 channels) or the product is one of many small ones (Winograd
//! F(4×4)'s 36 products per convolution), that copy took about as long as the
//! multiply-adds (BENCHMARKS.md, "Winograd products without packing", "Small products
//! without packing"). Here the operands are read where they lie: a block is 12 rows by
//! 32 columns of `C` (two registers), each multiply-add a broadcast element of `A`
//! times a register of a row of `B`, as in the direct convolution
//! (`ops/conv2d/direct.rs`); blocks of 4 and 1 row, and of one register (the last
//! masked to the columns left), take what is left.
//!
//! Each element of `C` is summed as matrixmultiply sums it for `α = 1` and `β ∈ {0, 1}`,
//! so the two give the same bits (a test holds them equal): `k` in blocks of
//! [`DEPTH_BLOCK`], each block one chain of multiply-adds in order from zero, added to
//! `C` (with `β = 0`, the first block is written instead).

use std::arch::x86_64::*;

use super::lies_within;

/// f32 lanes of one AVX-512 register.
const LANES: usize = 16;

/// matrixmultiply's depth blocking for f32 (`kc`): it sums each element in one chain
/// per block of this many products, in order.
const DEPTH_BLOCK: usize = 256;

/// Whether [`product`] computes products with `n` columns and depth `k` here: neither
/// empty, and a CPU with AVX-512.
pub(crate) fn fits(n: usize, k: usize) -> bool {
    n > 0 && k > 0 && is_x86_feature_detected!("avx512f")
}

/// The operands of one product, as described in the module's header: element `(i, p)`
/// of `A` is `a[i·a_strides[0] + p·a_strides[1]]`, row `p` of `B` starts at
/// `b[p·b_row]`.
pub(crate) struct Operands<'a> {
    pub(crate) a: &'a [f32],
    pub(crate) a_strides: [usize; 2],
    pub(crate) b: &'a [f32],
    pub(crate) b_row: usize,
}

/// `C = A · B` (`m × n`, rows `c_row` apart) over `k`, or `C += A · B` with
/// `accumulate`, for `n` and `k` where [`fits`].
///
/// # Panics
/// If `n` or `k` does not fit, or an operand is shorter than its last element.
pub(crate) fn product(
    m: usize,
    n: usize,
    k: usize,
    ops: &Operands,
    accumulate: bool,
    c: &mut [f32],
    c_row: usize,
) {
    assert!(fits(n, k), "gemm::unpacked: {n} columns, depth {k}");
    if m == 0 {
        return;
    }
    let (sa, b_row) = (ops.a_strides, ops.b_row);
    assert!(
        lies_within(m, k, sa, ops.a.len()),
        "gemm::unpacked: A of {m}×{k} at strides {sa:?} outruns {}",
        ops.a.len()
    );
    assert!(
        lies_within(k, n, [b_row, 1], ops.b.len()),
        "gemm::unpacked: B of {k}×{n} in rows {b_row} apart outruns {}",
        ops.b.len()
    );
    assert!(
        c_row >= n,
        "gemm::unpacked: C's rows {c_row} apart, {n} long"
    );
    assert!(
        lies_within(m, n, [c_row, 1], c.len()),
        "gemm::unpacked: C of {m}×{n} in rows {c_row} apart outruns {}",
        c.len()
    );
    // SAFETY: AVX-512F checked by `fits`; the bounds every block reads and writes are
    // asserted above, and `c` is a unique borrow.
    unsafe {
        product_raw(
            m,
            n,
            k,
            ops.a.as_ptr(),
            ops.a_strides,
            ops.b.as_ptr(),
            ops.b_row,
            accumulate,
            c.as_mut_ptr(),
            c_row,
        )
    }
}

/// [`product`] on raw pointers, for the general GEMM's blocks (`super::product`).
///
/// # Safety
/// [`fits`]`(n, k)`; the elements of `A`, `B` and `C` the strides reach lie in
/// allocations, and `C`'s alias neither operand.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn product_raw(
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    a_strides: [usize; 2],
    b: *const f32,
    b_row: usize,
    accumulate: bool,
    c: *mut f32,
    c_row: usize,
) {
    for start in (0..k).step_by(DEPTH_BLOCK) {
        let block = Block {
            k: DEPTH_BLOCK.min(k - start),
            a: a.wrapping_add(start * a_strides[1]),
            a_strides,
            b: b.wrapping_add(start * b_row),
            b_row,
            accumulate: accumulate || start > 0,
            c,
            c_row,
        };
        // SAFETY: as promised by the caller; the block's depth lies within `k`.
        unsafe {
            let pairs = n / (2 * LANES) * 2 * LANES;
            for column in (0..pairs).step_by(2 * LANES) {
                block.rows::<2, false>(m, column, 0);
            }
            let whole = n / LANES * LANES;
            if pairs < whole {
                block.rows::<1, false>(m, pairs, 0);
            }
            if whole < n {
                block.rows::<1, true>(m, whole, (1 << (n - whole)) - 1);
            }
        }
    }
}

/// One product's operands over one block of depth, for its blocks of `C`.
struct Block {
    k: usize,
    a: *const f32,
    a_strides: [usize; 2],
    b: *const f32,
    b_row: usize,
    accumulate: bool,
    c: *mut f32,
    c_row: usize,
}

impl Block {
    /// Every block of `W` registers of columns from `column`: 12 rows while that many
    /// are left, then 4, then 1. `MASKED`: one register, of the columns in `mask`.
    ///
    /// # Safety
    /// AVX-512F; the columns within `n`, as [`product_raw`] promises.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const W: usize, const MASKED: bool>(
        &self,
        m: usize,
        column: usize,
        mask: __mmask16,
    ) {
        let mut first = 0;
        while first < m {
            let left = m - first;
            // SAFETY (each): as promised by the caller; the block's rows lie in 0..m.
            unsafe {
                first += if left >= 12 {
                    self.sums::<W, 12, MASKED>(first, column, mask)
                } else if left >= 4 {
                    self.sums::<W, 4, MASKED>(first, column, mask)
                } else {
                    self.sums::<W, 1, MASKED>(first, column, mask)
                };
            }
        }
    }

    /// Rows `first..first + P` by columns `column..column + 16W` of `C` (`MASKED`: the
    /// columns in `mask` of one register); returns `P`.
    ///
    /// # Safety
    /// AVX-512F; the block within the bounds [`product_raw`] promises.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn sums<const W: usize, const P: usize, const MASKED: bool>(
        &self,
        first: usize,
        column: usize,
        mask: __mmask16,
    ) -> usize {
        let [ra, ca] = self.a_strides;
        let mut acc = [[_mm512_setzero_ps(); W]; P];
        let a = self.a.wrapping_add(first * ra);
        let b = self.b.wrapping_add(column);
        for p in 0..self.k {
            // SAFETY: row p of B and element p of the block's rows of A lie within the
            // operands.
            unsafe {
                let mut row = [_mm512_setzero_ps(); W];
                for (w, row) in row.iter_mut().enumerate() {
                    let at = b.add(p * self.b_row + w * LANES);
                    *row = if MASKED {
                        _mm512_maskz_loadu_ps(mask, at)
                    } else {
                        _mm512_loadu_ps(at)
                    };
                }
                for (i, acc) in acc.iter_mut().enumerate() {
                    let element = _mm512_set1_ps(*a.add(i * ra + p * ca));
                    for (acc, &row) in acc.iter_mut().zip(&row) {
                        *acc = _mm512_fmadd_ps(element, row, *acc);
                    }
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            let out = self.c.wrapping_add((first + i) * self.c_row + column);
            for (w, &sums) in acc.iter().enumerate() {
                // SAFETY: row `first + i` of C holds the block's W registers.
                unsafe {
                    let at = out.add(w * LANES);
                    if MASKED {
                        let sums = if self.accumulate {
                            _mm512_add_ps(_mm512_maskz_loadu_ps(mask, at), sums)
                        } else {
                            sums
                        };
                        _mm512_mask_storeu_ps(at, mask, sums);
                    } else {
                        let sums = if self.accumulate {
                            _mm512_add_ps(_mm512_loadu_ps(at), sums)
                        } else {
                            sums
                        };
                        _mm512_storeu_ps(at, sums);
                    }
                }
            }
        }
        P
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::real::Real;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The same bits as matrixmultiply on the same strided operands (α = 1, β = 0 and
    /// β = 1), for row counts that end in blocks of 12, 4 and 1, columns in pairs of
    /// registers, one register and part of one left over, `A` as stored and
    /// transposed, and depths of one, two and three blocks of [`DEPTH_BLOCK`]: the
    /// SANet's and the 1×1 convolutions' shapes, Winograd's (rows of `A` `36·k` apart,
    /// rows of `B` wider than `n`, and its weight gradient's `dMᵀ`), im2col's.
    #[test]
    fn gives_the_bits_of_matrixmultiply() {
        if !fits(16, 1) {
            return;
        }
        let mut rng = StdRng::seed_from_u64(3);
        // (m, n, k, A's strides, B's row, C's row)
        let shapes = [
            (16, 784, 16, [16, 1], 784, 784),
            (16, 784, 16, [1, 16], 784, 784),
            (64, 392, 32, [1, 64], 392, 400),
            (32, 1176, 32, [32, 1], 1176, 1176),
            (5, 7, 3, [3, 1], 9, 8),
            (1, 17, 16, [16, 1], 17, 17),
            (128, 64, 64, [36 * 64, 1], 71, 64),
            (32, 128, 128, [36 * 128, 1], 128, 128),
            (17, 48, 64, [64, 1], 48, 48),
            (3, 16, 5, [1, 3], 16, 16),
            (9, 256, 256, [256, 1], 263, 256),
            (9, 1568, 16, [1, 9], 1568, 1568),
            (16, 64, 512, [512, 1], 64, 64),
            (20, 40, 300, [1, 20], 40, 41),
            (128, 80, 576, [576, 1], 80, 80),
            (64, 64, 300, [1, 36 * 64], 36 * 64, 64),
        ];
        for (m, n, k, sa, b_row, c_row) in shapes {
            let a: Vec<f32> = (0..(m - 1) * sa[0] + (k - 1) * sa[1] + 1)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let b: Vec<f32> = (0..(k - 1) * b_row + n)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let c0: Vec<f32> = (0..(m - 1) * c_row + n)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            for accumulate in [false, true] {
                let mut want = if accumulate {
                    c0.clone()
                } else {
                    vec![f32::NAN; c0.len()]
                };
                let beta = if accumulate { 1.0 } else { 0.0 };
                // SAFETY: the strides reach within `a`, `b` and `want` by construction.
                unsafe {
                    f32::gemm_raw(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        sa[0] as isize,
                        sa[1] as isize,
                        b.as_ptr(),
                        b_row as isize,
                        1,
                        beta,
                        want.as_mut_ptr(),
                        c_row as isize,
                        1,
                    )
                };
                let mut got = if accumulate {
                    c0.clone()
                } else {
                    vec![f32::NAN; c0.len()]
                };
                let ops = Operands {
                    a: &a,
                    a_strides: sa,
                    b: &b,
                    b_row,
                };
                product(m, n, k, &ops, accumulate, &mut got, c_row);
                for i in 0..m {
                    let (got, want) = (&got[i * c_row..][..n], &want[i * c_row..][..n]);
                    let differ = got
                        .iter()
                        .zip(want)
                        .filter(|(x, y)| x.to_bits() != y.to_bits())
                        .count();
                    assert_eq!(
                        differ, 0,
                        "{m}×{n}×{k}, A at {sa:?}, accumulate {accumulate}: row {i}"
                    );
                }
                // Between C's rows nothing is written.
                if !accumulate && c_row > n {
                    assert!(got[n..c_row].iter().all(|v| v.is_nan()));
                }
            }
        }
    }
}
