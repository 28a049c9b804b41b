//! The weight gradient of the 3×3 convolutions of stride 1 or 2 that Winograd F(4×4)
//! does not take (`winograd_f4.rs`), in AVX-512 intrinsics, f32:
//! `dw[co][ci][t] = Σ_samples Σ_pixels dy[co][p] · x[ci][q(p) + taps[t]]`, read from the
//! input in the direct convolution's [`Layout`], without im2col.
//!
//! im2col's weight gradient writes the input nine times over and the GEMM packs that
//! copy again; here the nine taps of an input channel are nine shifted reads of one
//! padded plane. `dy` is transposed per group to pixel-major (`[pixel][c_out]`), so
//! that one load gives 16 output channels of a pixel. For one input channel the loop
//! holds `V` registers of output channels (16V channels, V ≤ 3) by the nine taps in
//! `9·V` accumulators, and per pixel loads `V` vectors of `dy` and broadcasts the nine
//! input elements its taps read: `9·V` multiply-adds. The sums run over every pixel of
//! every sample of a group, the padding columns skipped, with no horizontal additions.
//!
//! The batch runs in groups of samples as im2col's does (about [`GROUP_COLUMNS`]
//! pixels, so a group's transposed `dy` stays in the caches), each group its own
//! partial sum, added in group order: the result depends on the shape only, never on
//! the thread count.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::layout::Layout;
use super::ConvGeom;
use crate::gemm::transpose::transpose_into;
use crate::ops::par::{for_each_piece, samples_per_group};
use crate::scratch::with_scratch;

/// f32 lanes of one AVX-512 register.
const LANES: usize = 16;
/// Output pixels a group of samples aims for, as im2col's.
const GROUP_COLUMNS: usize = 1024;
/// The channels this loop takes ([`fits`]).
const MIN_IN_CHANNELS: usize = 8;
const MAX_OUT_CHANNELS: usize = 128;

/// Whether [`weight_grad`] takes `g`: a 3×3 kernel, stride 1 or 2, on a CPU with
/// AVX-512, at least [`MIN_IN_CHANNELS`] input channels, and output channels in whole
/// registers, at most [`MAX_OUT_CHANNELS`]. Outside that im2col measured as fast or
/// faster: the 1- and 3-channel stems have too few sums per pixel to pay for the
/// copies, and with 256 or 512 output channels (ResNet-18's last two groups) a group's
/// transposed `dy`, re-read for every input channel, no longer stays in the caches.
pub(crate) fn fits(g: &ConvGeom) -> bool {
    g.k == 3
        && g.c_in >= MIN_IN_CHANNELS
        && g.c_out <= MAX_OUT_CHANNELS
        && g.c_out.is_multiple_of(LANES)
        && Layout::new(g).is_some()
        && is_x86_feature_detected!("avx512f")
}

/// Registers of output channels per pass: the most, up to three (27 accumulators of
/// the 32 registers), that divide the output channels.
fn lanes(c_out: usize) -> usize {
    (1..=3)
        .rev()
        .find(|v| c_out.is_multiple_of(v * LANES))
        .unwrap_or(1)
}

/// Writes `dw` of `y = conv(x, weight)` given `dy`, for `g` that [`fits`], in f32.
pub(crate) fn weight_grad(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let layout = Layout::new(g).expect("weight_grad: a geometry that fits");
    let hw = g.h_out() * g.w_out();
    let group = samples_per_group(g.n, hw, GROUP_COLUMNS);
    let (sample_x, sample_y) = (g.c_in * g.h * g.w, g.c_out * hw);
    let sample_len = layout.sample_len(g);
    let len = g.c_out * g.c_in * 9;
    // Per group, its sums in the order `[ci][tap][co]`.
    let parts: Vec<Vec<f32>> = x
        .par_chunks(group * sample_x)
        .zip(dy.par_chunks(group * sample_y))
        // A job per item (ops/par.rs).
        .with_max_len(1)
        .map(|(x_group, dy_group)| {
            let nb = x_group.len() / sample_x;
            with_scratch(nb * sample_len, |xp: &mut [f32]| {
                for (xs, xp) in x_group
                    .chunks_exact(sample_x)
                    .zip(xp.chunks_exact_mut(sample_len))
                {
                    layout.lay_out(g, xs, xp);
                }
                with_scratch(dy_group.len(), |dyt: &mut [f32]| {
                    for (dys, dyt) in dy_group
                        .chunks_exact(sample_y)
                        .zip(dyt.chunks_exact_mut(sample_y))
                    {
                        transpose_into(dys, g.c_out, hw, hw, dyt, g.c_out);
                    }
                    let plan = Plan {
                        g,
                        layout: &layout,
                        samples: nb,
                        sample_len,
                    };
                    let mut part = vec![0.0; len];
                    // SAFETY: `fits` checked AVX-512; `xp` holds the group laid out,
                    // `dyt` its transposed dy.
                    unsafe {
                        match lanes(g.c_out) {
                            3 => plan.sums::<3>(xp, dyt, &mut part),
                            2 => plan.sums::<2>(xp, dyt, &mut part),
                            _ => plan.sums::<1>(xp, dyt, &mut part),
                        }
                    }
                    part
                })
            })
        })
        .collect();
    // Each element summed over the groups in group order, the elements in parallel
    // pieces, then put in dw's order.
    with_scratch(len, |sum: &mut [f32]| {
        for_each_piece(sum, |off, piece| {
            piece.fill(0.0);
            for part in &parts {
                for (t, &v) in piece.iter_mut().zip(&part[off..]) {
                    *t += v;
                }
            }
        });
        for (co, dw) in dw[..len].chunks_exact_mut(g.c_in * 9).enumerate() {
            for (i, d) in dw.iter_mut().enumerate() {
                *d = sum[i * g.c_out + co];
            }
        }
    });
}

/// One group's operands.
struct Plan<'a> {
    g: &'a ConvGeom,
    layout: &'a Layout,
    samples: usize,
    sample_len: usize,
}

impl Plan<'_> {
    /// Adds `Σ_samples Σ_p dy[co][p] · x[ci][q(p) + taps[t]]` into `part[(ci·9 + t)·c_out
    /// + co]` for every `ci`, `t` and `co`, `16V` output channels at a time.
    ///
    /// # Safety
    /// AVX-512F; `xp` holds `samples` laid-out samples, `dyt` their `dy` transposed to
    /// `[pixel][c_out]`, and `c_out` is a multiple of `16V`.
    #[target_feature(enable = "avx512f")]
    unsafe fn sums<const V: usize>(&self, xp: &[f32], dyt: &[f32], part: &mut [f32]) {
        let g = self.g;
        let (ho, wo, wq) = (g.h_out(), g.w_out(), self.layout.wq);
        let taps: [usize; 9] = self.layout.taps[..9].try_into().unwrap();
        let reach = taps.iter().max().unwrap() + (ho - 1) * wq + wo;
        let width = V * LANES;
        assert!(g.c_out.is_multiple_of(width));
        assert!(
            (self.samples - 1) * self.sample_len + (g.c_in - 1) * self.layout.channel + reach
                <= xp.len()
        );
        assert!(dyt.len() >= self.samples * ho * wo * g.c_out);
        assert!(part.len() >= g.c_in * 9 * g.c_out);
        for ci in 0..g.c_in {
            for co in (0..g.c_out).step_by(width) {
                let mut acc = [[_mm512_setzero_ps(); V]; 9];
                for s in 0..self.samples {
                    let x = xp[s * self.sample_len + ci * self.layout.channel..].as_ptr();
                    let d = dyt[s * ho * wo * g.c_out + co..].as_ptr();
                    for oy in 0..ho {
                        for ox in 0..wo {
                            let (q, p) = (oy * wq + ox, oy * wo + ox);
                            // SAFETY: within the bounds asserted above.
                            unsafe {
                                let dv: [__m512; V] = std::array::from_fn(|v| {
                                    _mm512_loadu_ps(d.add(p * g.c_out + v * LANES))
                                });
                                for (t, &offset) in taps.iter().enumerate() {
                                    let xb = _mm512_set1_ps(*x.add(q + offset));
                                    for v in 0..V {
                                        acc[t][v] = _mm512_fmadd_ps(dv[v], xb, acc[t][v]);
                                    }
                                }
                            }
                        }
                    }
                }
                for (t, acc) in acc.iter().enumerate() {
                    for (v, &sum) in acc.iter().enumerate() {
                        let at = (ci * 9 + t) * g.c_out + co + v * LANES;
                        // SAFETY: at + 16 ≤ part.len(), asserted above.
                        unsafe { _mm512_storeu_ps(part[at..at + LANES].as_mut_ptr(), sum) };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv2d::cpu;
    use crate::ops::conv2d::test_values::{assert_close, random};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// Against the f64 im2col reference, within 1e-5 of its largest value: strides 1
    /// and 2, padding 0 and 1, even and odd sides, one to three registers of output
    /// channels, groups of one and several samples.
    #[test]
    fn matches_the_f64_reference() {
        if !is_x86_feature_detected!("avx512f") {
            eprintln!("weight_grad tests: skipped, this CPU has no AVX-512");
            return;
        }
        let mut rng = StdRng::seed_from_u64(13);
        for (n, c_in, h, w, c_out, stride, pad) in [
            (3, 16, 28, 28, 16, 1, 1),
            (40, 8, 7, 7, 48, 1, 1),
            (2, 9, 9, 8, 32, 2, 1),
            (5, 8, 14, 14, 64, 2, 1),
            (2, 8, 6, 5, 16, 1, 0),
            (1, 8, 1, 1, 16, 1, 1),
            (2, 8, 5, 7, 96, 2, 0),
            (2, 16, 6, 6, 128, 1, 1),
        ] {
            let g = ConvGeom {
                n,
                c_in,
                h,
                w,
                c_out,
                k: 3,
                stride,
                pad,
            };
            assert!(fits(&g), "{g:?}");
            let (x, x64) = random(n * c_in * h * w, &mut rng);
            let (_, wt64) = random(c_out * c_in * 9, &mut rng);
            let (dy, dy64) = random(n * c_out * g.h_out() * g.w_out(), &mut rng);
            let mut got = vec![f32::NAN; wt64.len()];
            weight_grad(&g, &x, &dy, &mut got);
            let (_, want) = cpu::backward(&g, &x64, &wt64, &dy64, false, true);
            assert_close(&format!("dw {g:?}"), &got, &want.unwrap());
        }
    }
}
