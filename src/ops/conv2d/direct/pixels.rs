//! The direct convolution's block with pixels in the vector lanes: [`R`] output
//! channels by `U` vectors of 16 consecutive output pixels, for passes whose outputs
//! are consecutive along a row (the forward at stride 1 and 2, and so the input
//! gradient at stride 1).
//!
//! Per input channel and tap the block broadcasts `R` weights and loads `U` vectors of
//! input (16 consecutive elements each: consecutive pixels read consecutive elements in
//! the [`Layout`](super::Layout)), then does `R · U` multiply-adds: 10 loads for 24
//! with `R = 4`, `U = 6`, where the block with channels in the lanes
//! ([`super::sample`]) broadcasts one input element per multiply-add. Each finished
//! accumulator holds 16 pixels of one output channel and is written with masked stores,
//! one per output row it touches, which drop the padding columns' pixels; the other
//! block scatters every pixel's channels instead.
//!
//! Each output is the same chain of f32 multiply-adds as in the other block (input
//! channel, then tap), so both give the same bits.

use std::arch::x86_64::*;

use super::{Pass, LANES};
use crate::ops::par::Slot;

/// Output channels per block.
pub(super) const R: usize = 4;

/// Vectors of pixels per full block.
const U: usize = 6;

/// Vectors per block for what is left of an image after its full blocks.
const U_MID: usize = 3;

/// Pixels of a pass (in the kernel's numbering) from which this block runs it: four
/// full blocks. There it measured faster than the block with channels in the lanes
/// (16×28×28, 16×20×20, 32×28×28); on 14×14 outputs (210 pixels: two full blocks and
/// two single vectors) level or slower (BENCHMARKS.md, "Direct convolution with pixels
/// in the lanes").
pub(super) const MIN_PIXELS: usize = 4 * U * LANES;

/// All output blocks of one sample: blocks of `U` vectors while that many pixels are
/// left, then of [`U_MID`] while more than two vectors are left, then single vectors.
/// As in [`super::sample`], a block that would run past the last pixel is moved back
/// to end there and rewrites a few outputs with the same values. Each block of pixels
/// runs through every block of `R` output channels before the next, so its input stays
/// in the cache.
///
/// # Safety
/// AVX-512F must be available; `xp` holds one sample laid out for `pass`, `wt` the
/// weights arranged with blocks of `R` output channels, `y` one sample's outputs;
/// `pass.col == 1` and `pass.pixels() ≥ 16`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sample<O: Slot<f32>>(pass: &Pass<'_>, xp: &[f32], wt: &[f32], y: &mut [O]) {
    let pixels = pass.pixels();
    // The bounds every block relies on, checked once per sweep: the last pixel's taps
    // of the last channel lie in `xp`, every output within its channel's plane.
    let reach = pass.taps.iter().max().copied().unwrap_or(0);
    let last = pass.base + (pass.rows - 1) * pass.row + (pass.cols - 1);
    assert!(pass.col == 1 && pixels >= LANES && pass.c_out.is_multiple_of(R));
    assert!((pass.c_in - 1) * pass.channel + reach + pixels <= xp.len());
    assert!(last < pass.plane && pass.c_out * pass.plane <= y.len());
    let block_weights = pass.c_in * pass.taps.len() * R;
    assert!(pass.c_out / R * block_weights <= wt.len());
    let mut first = 0;
    while first < pixels {
        let left = pixels - first;
        let (vectors, at) = if left >= U * LANES {
            (U, first)
        } else if left > 2 * LANES && pixels >= U_MID * LANES {
            (U_MID, first.min(pixels - U_MID * LANES))
        } else {
            (1, first.min(pixels - LANES))
        };
        for block in 0..pass.c_out / R {
            let wt_block = &wt[block * block_weights..][..block_weights];
            let y_block = &mut y[block * R * pass.plane..][..R * pass.plane];
            // SAFETY (each): as promised by the caller and asserted above; the block's
            // pixels lie in 0..pixels.
            unsafe {
                match vectors {
                    U => store(pass, &block_sums::<U>(pass, xp, at, wt_block), at, y_block),
                    U_MID => store(
                        pass,
                        &block_sums::<U_MID>(pass, xp, at, wt_block),
                        at,
                        y_block,
                    ),
                    _ => store(pass, &block_sums::<1>(pass, xp, at, wt_block), at, y_block),
                }
            }
        }
        first += vectors * LANES;
    }
}

/// The sums of the block of `16·V` pixels from `first` for `R` output channels:
/// `acc[u][r]` holds output channel `r` at pixels `first + 16u..first + 16u + 16`.
///
/// # Safety
/// AVX-512F; `first + 16·V ≤ pass.pixels()`, with `xp`'s and `wt`'s bounds checked
/// by [`sample`].
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block_sums<const V: usize>(
    pass: &Pass<'_>,
    xp: &[f32],
    first: usize,
    wt: &[f32],
) -> [[__m512; R]; V] {
    debug_assert!(first + V * LANES <= pass.pixels());
    debug_assert!(wt.len() >= pass.c_in * pass.taps.len() * R);
    let (x, mut w) = (xp.as_ptr(), wt.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); R]; V];
    for ci in 0..pass.c_in {
        let channel = x.wrapping_add(ci * pass.channel + first);
        for &offset in pass.taps {
            // SAFETY: within the bounds asserted by `sample`.
            unsafe {
                let row = channel.add(offset);
                let mut weights = [_mm512_setzero_ps(); R];
                for (r, weight) in weights.iter_mut().enumerate() {
                    *weight = _mm512_set1_ps(*w.add(r));
                }
                for (u, acc) in acc.iter_mut().enumerate() {
                    let input = _mm512_loadu_ps(row.add(u * LANES));
                    for (acc, &weight) in acc.iter_mut().zip(&weights) {
                        *acc = _mm512_fmadd_ps(weight, input, *acc);
                    }
                }
                w = w.add(R);
            }
        }
    }
    acc
}

/// Writes the block's sums from pixel `first` into `y` (`R` planes of `pass.plane`),
/// dropping the padding columns' pixels: per vector, one masked store per output row
/// that its 16 pixels touch.
///
/// # Safety
/// AVX-512F; `y` holds `R` output planes and every output of the pass lies within a
/// plane (checked by [`sample`]).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store<const V: usize, O: Slot<f32>>(
    pass: &Pass<'_>,
    acc: &[[__m512; R]; V],
    first: usize,
    y: &mut [O],
) {
    // The stores write f32s through the slots' address: a slot is an f32 or a
    // MaybeUninit<f32>, of the same layout.
    const { assert!(std::mem::size_of::<O>() == std::mem::size_of::<f32>()) };
    let y = y.as_mut_ptr().cast::<f32>();
    for (u, acc) in acc.iter().enumerate() {
        let q0 = first + u * LANES;
        let mut r = q0 / pass.wq;
        while r * pass.wq < q0 + LANES {
            // Lanes lo..hi of this vector are row r's output columns.
            let row_start = r * pass.wq;
            let lo = row_start.saturating_sub(q0);
            let hi = (row_start + pass.cols).min(q0 + LANES).saturating_sub(q0);
            if lo < hi {
                let mask = ((1u32 << hi) - (1u32 << lo)) as __mmask16;
                // Lane l goes to element base + r·row + (q0 + l − row_start).
                let lane0 = (pass.base + r * pass.row + q0) as isize - row_start as isize;
                for (c, &sums) in acc.iter().enumerate() {
                    // SAFETY: the unmasked lanes are outputs of the pass, within
                    // channel c's plane; the masked lanes are not accessed.
                    unsafe {
                        _mm512_mask_storeu_ps(
                            y.wrapping_offset((c * pass.plane) as isize + lane0),
                            mask,
                            sums,
                        );
                    }
                }
            }
            r += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{arrange, has_avx512, lanes, Layout, Pass};
    use super::*;
    use crate::ops::conv2d::ConvGeom;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Both blocks give the same bits for every output of a sample: one, three and six
    /// vectors per block, a block moved back over pixels already written, rows shorter
    /// and longer than a vector, strides 1 and 2, 16 to 64 output channels. The other
    /// block is held to the f64 reference by the parent module's tests.
    #[test]
    fn gives_the_bits_of_the_block_with_channels_in_the_lanes() {
        if !has_avx512() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(5);
        // (c_in, h, w, c_out, stride): 812, 210, 56, 20 and 18 pixels in the kernel's
        // numbering.
        let shapes = [
            (16, 28, 28, 16, 1),
            (16, 28, 28, 32, 2),
            (32, 7, 7, 64, 1),
            (16, 4, 4, 48, 1),
            (8, 3, 5, 16, 1),
        ];
        for (c_in, h, w, c_out, stride) in shapes {
            let g = ConvGeom {
                n: 1,
                c_in,
                h,
                w,
                c_out,
                k: 3,
                stride,
                pad: 1,
            };
            let layout = Layout::new(&g).unwrap();
            let pass = Pass::forward(&g, &layout);
            assert!(pass.pixels() >= LANES, "{g:?}");
            let x: Vec<f32> = (0..c_in * h * w)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let weight: Vec<f32> = (0..c_out * c_in * 9)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let w = |co: usize, ci: usize, tap: usize| weight[(co * c_in + ci) * 9 + tap];
            let mut xp = vec![0.0; layout.sample_len(&g)];
            layout.lay_out(&g, &x, &mut xp);
            let plane = g.h_out() * g.w_out();
            let mut want = vec![f32::NAN; c_out * plane];
            let mut got = vec![f32::NAN; c_out * plane];
            let mut lanes_wt = vec![0.0; weight.len()];
            arrange(&mut lanes_wt, c_out, c_in, 9, lanes(c_out) * LANES, w);
            let mut pixels_wt = vec![0.0; weight.len()];
            arrange(&mut pixels_wt, c_out, c_in, 9, R, w);
            // SAFETY: AVX-512 checked above; both weights arranged for their block,
            // `xp` laid out for the pass, outputs one sample's.
            unsafe {
                match lanes(c_out) {
                    2 => super::super::sample::<2, 12, f32>(&pass, &xp, &lanes_wt, &mut want),
                    _ => super::super::sample::<1, 24, f32>(&pass, &xp, &lanes_wt, &mut want),
                }
                sample(&pass, &xp, &pixels_wt, &mut got);
            }
            assert!(want.iter().all(|v| v.is_finite()), "{g:?}");
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{g:?}");
        }
    }
}
