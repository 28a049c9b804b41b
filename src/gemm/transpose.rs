//! Matrix transposes: `dst[p][j] = src[j][p]`, each matrix with its rows at any distance
//! apart. In f32 on a CPU with AVX-512 they run in 16×16 blocks through registers
//! ([`registers`]): sixteen row pieces of `src` loaded, shuffled, and stored as sixteen
//! row pieces of `dst`, so every access is a run of 16 consecutive values. Elsewhere, and
//! for other types, one value at a time.
//!
//! Users: a general product with `B` transposed copies `B` as stored for `unpacked.rs`
//! (`super::product`); the SANet's Conv3 weight gradient reads its input transposed;
//! the direct weight gradient reads `dy` pixel-major; Winograd F(4×4) in registers
//! copies samples channel-last and back.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::lies_within;
use crate::real::Real;
#[cfg(target_arch = "x86_64")]
use crate::real::{f32s, f32s_mut, is_f32};

/// f32 lanes of one AVX-512 register, and the side of a block.
#[cfg(target_arch = "x86_64")]
const LANES: usize = 16;

/// `dst[p·dst_row + j] = src[j·src_row + p]` for `j < rows`, `p < cols`: the `rows ×
/// cols` matrix in `src` (rows `src_row` apart) transposed into the `cols × rows`
/// matrix in `dst` (rows `dst_row` apart). Values of `dst` between its rows are left
/// as they were.
///
/// # Panics
/// If a row is longer than the distance between rows (`cols > src_row` or `rows >
/// dst_row`), or a slice is shorter than its matrix: a bug in the caller.
pub(crate) fn transpose_into<T: Real>(
    src: &[T],
    rows: usize,
    cols: usize,
    src_row: usize,
    dst: &mut [T],
    dst_row: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        cols <= src_row && rows <= dst_row,
        "transpose: {rows}×{cols} from rows {src_row} apart into rows {dst_row} apart"
    );
    assert!(
        lies_within(rows, cols, [src_row, 1], src.len()),
        "transpose: source of {rows}×{cols} in rows {src_row} apart, {} long",
        src.len()
    );
    assert!(
        lies_within(cols, rows, [dst_row, 1], dst.len()),
        "transpose: destination of {cols}×{rows} in rows {dst_row} apart, {} long",
        dst.len()
    );
    #[cfg(target_arch = "x86_64")]
    if is_f32::<T>() && is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F checked; the asserts above bound every block's reads and
        // writes.
        unsafe { blocks(f32s(src), rows, cols, src_row, f32s_mut(dst), dst_row) };
        return;
    }
    for (j, row) in src.chunks(src_row).take(rows).enumerate() {
        for (p, &v) in row[..cols].iter().enumerate() {
            dst[p * dst_row + j] = v;
        }
    }
}

/// [`transpose_into`] in 16×16 blocks, the blocks at the bottom and right edge masked
/// to the rows and columns left.
///
/// # Safety
/// AVX-512F; the bounds [`transpose_into`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn blocks(
    src: &[f32],
    rows: usize,
    cols: usize,
    src_row: usize,
    dst: &mut [f32],
    dst_row: usize,
) {
    let (src, dst) = (src.as_ptr(), dst.as_mut_ptr());
    for j0 in (0..rows).step_by(LANES) {
        let rows_here = LANES.min(rows - j0);
        for p0 in (0..cols).step_by(LANES) {
            let cols_here = LANES.min(cols - p0);
            let load = part_mask(cols_here);
            // SAFETY (loads and stores): rows j0..j0 + rows_here of the source, masked
            // to columns p0..p0 + cols_here, and the same values' places in the
            // destination lie within the bounds the caller promises.
            let block = std::array::from_fn(|i| {
                if i < rows_here {
                    unsafe { _mm512_maskz_loadu_ps(load, src.add((j0 + i) * src_row + p0)) }
                } else {
                    _mm512_setzero_ps()
                }
            });
            let store = part_mask(rows_here);
            for (q, v) in registers(block).into_iter().take(cols_here).enumerate() {
                unsafe { _mm512_mask_storeu_ps(dst.add((p0 + q) * dst_row + j0), store, v) };
            }
        }
    }
}

/// The mask of the first `count` lanes (`count ≤ 16`).
#[cfg(target_arch = "x86_64")]
pub(crate) fn part_mask(count: usize) -> __mmask16 {
    ((1u32 << count) - 1) as __mmask16
}

/// The 16×16 transpose in registers: lane `j` of result `i` is lane `i` of `r[j]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) fn registers(r: [__m512; LANES]) -> [__m512; LANES] {
    // t[2p], t[2p + 1]: rows 2p and 2p + 1 interleaved, per 128-bit block b the
    // columns 4b, 4b + 1 (lo) and 4b + 2, 4b + 3 (hi).
    let t: [__m512; LANES] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // q[4g + e]: per block b, column 4b + e of rows 4g..4g + 4.
    let q: [__m512; LANES] = std::array::from_fn(|i| {
        let (g, e) = (i / 4, i % 4);
        let (lo, hi) = (t[4 * g + e / 2], t[4 * g + 2 + e / 2]);
        let (lo, hi) = (_mm512_castps_pd(lo), _mm512_castps_pd(hi));
        _mm512_castpd_ps(if e % 2 == 0 {
            _mm512_unpacklo_pd(lo, hi)
        } else {
            _mm512_unpackhi_pd(lo, hi)
        })
    });
    // Column 4b + e gathers block b of q[e], q[4 + e], q[8 + e], q[12 + e].
    let mut out = [_mm512_setzero_ps(); LANES];
    for e in 0..4 {
        let even_a = _mm512_shuffle_f32x4::<0b10_00_10_00>(q[e], q[4 + e]);
        let odd_a = _mm512_shuffle_f32x4::<0b11_01_11_01>(q[e], q[4 + e]);
        let even_b = _mm512_shuffle_f32x4::<0b10_00_10_00>(q[8 + e], q[12 + e]);
        let odd_b = _mm512_shuffle_f32x4::<0b11_01_11_01>(q[8 + e], q[12 + e]);
        out[e] = _mm512_shuffle_f32x4::<0b10_00_10_00>(even_a, even_b);
        out[8 + e] = _mm512_shuffle_f32x4::<0b11_01_11_01>(even_a, even_b);
        out[4 + e] = _mm512_shuffle_f32x4::<0b10_00_10_00>(odd_a, odd_b);
        out[12 + e] = _mm512_shuffle_f32x4::<0b11_01_11_01>(odd_a, odd_b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value lands in its place and nothing between the destination's rows is
    /// written: shapes that are, and are not, multiples of 16 on each side, single rows
    /// and columns, rows further apart than their length on both sides, in f32 (the
    /// register blocks where the CPU has AVX-512) and f64 (one value at a time).
    #[test]
    fn every_value_lands_in_its_place_and_the_gaps_are_kept() {
        fn check<T: Real>(name: &str) {
            let shapes = [
                (16, 16, 16, 16),
                (1, 1, 1, 1),
                (3, 5, 5, 3),
                (17, 33, 40, 19),
                (40, 9, 9, 48),
                (64, 256, 256, 64),
                (1, 37, 37, 1),
                (37, 1, 2, 37),
            ];
            for (rows, cols, src_row, dst_row) in shapes {
                let src: Vec<T> = (0..(rows - 1) * src_row + cols)
                    .map(|i| T::of_f64(i as f64))
                    .collect();
                let gap = T::of_f64(-1.0);
                let mut dst = vec![gap; (cols - 1) * dst_row + rows + 5];
                transpose_into(&src, rows, cols, src_row, &mut dst, dst_row);
                for (i, &v) in dst.iter().enumerate() {
                    let (p, j) = (i / dst_row, i % dst_row);
                    let want = if p < cols && j < rows {
                        src[j * src_row + p]
                    } else {
                        gap
                    };
                    assert!(
                        v == want,
                        "{name} {rows}×{cols} ({src_row}, {dst_row}): element {i}"
                    );
                }
            }
        }
        check::<f32>("f32");
        check::<f64>("f64");
    }

    #[test]
    #[should_panic(expected = "source of 4×4 in rows 4 apart, 15 long")]
    fn a_short_source_is_refused() {
        let mut dst = [0.0f32; 16];
        transpose_into(&[0.0f32; 15], 4, 4, 4, &mut dst, 4);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn registers_swap_lanes_and_registers() {
        if !is_x86_feature_detected!("avx512f") {
            eprintln!("registers_swap_lanes_and_registers: skipped, no AVX-512");
            return;
        }
        let values: Vec<f32> = (0..256).map(|i| i as f32).collect();
        let mut got = [0f32; 256];
        // SAFETY: AVX-512F checked above; every load and store within 256 values.
        unsafe {
            let rows = std::array::from_fn(|i| _mm512_loadu_ps(values[16 * i..].as_ptr()));
            for (i, reg) in registers(rows).into_iter().enumerate() {
                _mm512_storeu_ps(got[16 * i..].as_mut_ptr(), reg);
            }
        }
        for (i, &v) in got.iter().enumerate() {
            assert_eq!(
                v,
                values[16 * (i % 16) + i / 16],
                "result {}, lane {}",
                i / 16,
                i % 16
            );
        }
    }
}
