//! The products `M[ξ] = V[ξ] · U[ξ]` of Winograd F(4×4, 3×3) (`winograd_f4.rs`) in
//! AVX-512, without packing: `V[ξ]` is `tiles × c_in` with rows `v_row` apart, `U[ξ]` is
//! `c_in × c_out` with rows `u_row` apart and its columns contiguous, `M[ξ]` is
//! `tiles × c_out`, contiguous.
//!
//! A general GEMM copies ("packs") both operands into its own blocked layout on every
//! call; for these small products that packing took a large share of their time
//! (BENCHMARKS.md, "Winograd products without packing"). Here the transforms already
//! leave both operands where a block reads them in order: a block is 12 tiles by 32 output channels (two registers), each
//! multiply-add a broadcast element of `V` times a register of `U`, as in the direct
//! convolution (`direct.rs`); blocks of 4 and 1 tile take what is left.
//!
//! Each output is one chain of multiply-adds over `c_in` in order from zero, as
//! matrixmultiply with its default depth blocking (256) sums it up to 256 input
//! channels, the most `winograd_f4.rs` gives it: the same bits, which a test holds at
//! 64, 128 and 256 channels.

use std::arch::x86_64::*;

/// f32 lanes of one AVX-512 register.
const LANES: usize = 16;

/// Whether [`product`] computes products with `c_out` output channels here: whole
/// registers of them, and a CPU with AVX-512.
pub(super) fn fits(c_out: usize) -> bool {
    c_out > 0 && c_out.is_multiple_of(LANES) && is_x86_feature_detected!("avx512f")
}

/// The operands of one product: `V` and `U` as described in the module's header.
pub(super) struct Operands<'a> {
    pub(super) v: &'a [f32],
    pub(super) v_row: usize,
    pub(super) u: &'a [f32],
    pub(super) u_row: usize,
}

/// `m = V · U` (`tiles × c_out`) over `c_in`, for `c_out` where [`fits`].
///
/// # Panics
/// If `c_out` does not fit, or an operand is shorter than its last row reaches.
pub(super) fn product(tiles: usize, c_out: usize, c_in: usize, ops: &Operands, m: &mut [f32]) {
    assert!(fits(c_out), "winograd_products: {c_out} output channels");
    if tiles == 0 {
        return;
    }
    assert!(c_in > 0 && (tiles - 1) * ops.v_row + c_in <= ops.v.len());
    assert!((c_in - 1) * ops.u_row + c_out <= ops.u.len());
    assert!(tiles * c_out <= m.len());
    // SAFETY: AVX-512F checked by `fits`; the bounds every block reads and writes are
    // asserted above.
    unsafe {
        if c_out.is_multiple_of(2 * LANES) {
            blocks::<2>(tiles, c_out, c_in, ops, m)
        } else {
            blocks::<1>(tiles, c_out, c_in, ops, m)
        }
    }
}

/// Every block of `W` registers of output channels: 12 tiles while that many are
/// left, then 4, then 1.
///
/// # Safety
/// AVX-512F; the bounds asserted by [`product`].
#[target_feature(enable = "avx512f")]
unsafe fn blocks<const W: usize>(
    tiles: usize,
    c_out: usize,
    c_in: usize,
    ops: &Operands,
    m: &mut [f32],
) {
    for column in (0..c_out).step_by(W * LANES) {
        let mut first = 0;
        while first < tiles {
            let left = tiles - first;
            // SAFETY (each): as promised by the caller; the block's tiles lie in
            // 0..tiles and its columns in 0..c_out.
            unsafe {
                first += if left >= 12 {
                    block::<W, 12>(first, column, c_out, c_in, ops, m)
                } else if left >= 4 {
                    block::<W, 4>(first, column, c_out, c_in, ops, m)
                } else {
                    block::<W, 1>(first, column, c_out, c_in, ops, m)
                };
            }
        }
    }
}

/// Tiles `first..first + P` by output channels `column..column + 16W` of `m`; returns
/// `P`.
///
/// # Safety
/// AVX-512F; the block within the bounds asserted by [`product`].
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block<const W: usize, const P: usize>(
    first: usize,
    column: usize,
    c_out: usize,
    c_in: usize,
    ops: &Operands,
    m: &mut [f32],
) -> usize {
    let mut acc = [[_mm512_setzero_ps(); W]; P];
    let v = ops.v.as_ptr().wrapping_add(first * ops.v_row);
    let u = ops.u.as_ptr().wrapping_add(column);
    for p in 0..c_in {
        // SAFETY: row p of U and element p of the block's rows of V lie within the
        // operands (asserted by `product`).
        unsafe {
            let mut weights = [_mm512_setzero_ps(); W];
            for (w, weight) in weights.iter_mut().enumerate() {
                *weight = _mm512_loadu_ps(u.add(p * ops.u_row + w * LANES));
            }
            for (t, acc) in acc.iter_mut().enumerate() {
                let element = _mm512_set1_ps(*v.add(t * ops.v_row + p));
                for (acc, &weight) in acc.iter_mut().zip(&weights) {
                    *acc = _mm512_fmadd_ps(element, weight, *acc);
                }
            }
        }
    }
    for (t, acc) in acc.iter().enumerate() {
        let row = &mut m[(first + t) * c_out + column..][..W * LANES];
        for (w, &sums) in acc.iter().enumerate() {
            // SAFETY: `row` holds W registers of outputs.
            unsafe { _mm512_storeu_ps(row.as_mut_ptr().add(w * LANES), sums) };
        }
    }
    P
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::gemm_serial_strided;
    use crate::ops::conv2d::test_values::assert_close;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The same bits as the general GEMM on the same strided operands, for one and two
    /// registers of output channels and tile counts that end in blocks of 12, 4 and 1,
    /// up to 256 input channels (the main job's 64 and 128, ResNet-18's 256), where the
    /// GEMM too sums each output in one chain over `c_in`; with 512, which it sums in
    /// blocks of 256, within the f32 bound of the f64 product.
    #[test]
    fn gives_the_bits_of_the_general_gemm() {
        if !fits(16) {
            return;
        }
        let mut rng = StdRng::seed_from_u64(3);
        let shapes = [
            (128, 64, 64),
            (32, 128, 128),
            (17, 48, 64),
            (3, 16, 5),
            (9, 256, 256),
            (16, 512, 512),
        ];
        for (tiles, c_out, c_in) in shapes {
            let (v_row, u_row) = (36 * c_in, c_out + 7);
            let v: Vec<f32> = (0..tiles * v_row)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let u: Vec<f32> = (0..c_in * u_row)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let mut want = vec![f32::NAN; tiles * c_out];
            gemm_serial_strided(
                tiles,
                c_out,
                c_in,
                &v,
                [v_row, 1],
                &u,
                [u_row, 1],
                0.0,
                &mut want,
            );
            let mut got = vec![f32::NAN; tiles * c_out];
            let ops = Operands {
                v: &v,
                v_row,
                u: &u,
                u_row,
            };
            product(tiles, c_out, c_in, &ops, &mut got);
            let differ = got
                .iter()
                .zip(&want)
                .filter(|(a, b)| a.to_bits() != b.to_bits());
            let differ = differ.count();
            if c_in <= 256 {
                assert_eq!(
                    differ, 0,
                    "{tiles} tiles, {c_out} × {c_in}: elements that differ"
                );
                continue;
            }
            let exact: Vec<f64> = (0..tiles * c_out)
                .map(|i| {
                    let (t, j) = (i / c_out, i % c_out);
                    (0..c_in)
                        .map(|p| v[t * v_row + p] as f64 * u[p * u_row + j] as f64)
                        .sum()
                })
                .collect();
            assert_close("512 channels", &got, &exact);
        }
    }
}
