//! 1×1 convolutions without padding (the ResNets' projection shortcuts, stride 2): the
//! f32 CPU forward and input gradient as one product per sample, without im2col.
//!
//! A 1×1 kernel reads one input pixel per output pixel, so im2col's columns are only the
//! input itself (stride 1) or its every `stride`-th row and column: the forward copies
//! that subsample (stride > 1; at stride 1 the product reads the sample in place),
//! multiplies `W (c_out × c_in) · X (c_in × h_out·w_out)` into the thread's scratch and
//! copies that into the sample's output, already in its layout: no columns of several
//! samples, no zeroed output. The input gradient is `Wᵀ · dY` per sample, written to
//! the pixels the kernel read over the sample zeroed (the zeros between them at
//! stride > 1).
//!
//! Each output is the product kernel's sum over the `c_in` (or, for the input
//! gradient, `c_out`) terms in order, as in the im2col GEMM, whose columns group
//! several samples; the input gradient adds that sum to a zero (`+ 0.0`) as im2col's
//! scatter-add does. So both give the same bits as the im2col path.

use rayon::prelude::*;

use super::cpu::copy_strided;
use super::ConvGeom;
use crate::gemm::{gemm_serial, Op};
use crate::ops::par::Slot;
use crate::scratch::with_scratch;

/// Whether `g` is a convolution this module computes: a 1×1 kernel without padding,
/// with input and output channels.
pub(crate) fn fits(g: &ConvGeom) -> bool {
    g.k == 1 && g.pad == 0 && g.c_in > 0 && g.c_out > 0
}

/// `y = conv(x, weight)` for `g` that [`fits`], in f32, one rayon task per sample;
/// `y` is overwritten.
pub(crate) fn forward<O: Slot<f32>>(g: &ConvGeom, x: &[f32], weight: &[f32], y: &mut [O]) {
    let (ho, wo) = (g.h_out(), g.w_out());
    let hwo = ho * wo;
    let columns = if g.stride == 1 { 0 } else { g.c_in * hwo };
    y.par_chunks_mut(g.c_out * hwo)
        .zip(x.par_chunks(g.c_in * g.h * g.w))
        // A job per item (ops/par.rs).
        .with_max_len(1)
        .for_each(|(y_sample, x_sample)| {
            with_scratch(columns + g.c_out * hwo, |buf: &mut [f32]| {
                let (subsample, product) = buf.split_at_mut(columns);
                let cols: &[f32] = if g.stride == 1 {
                    x_sample
                } else {
                    let rows = subsample.chunks_exact_mut(wo);
                    for (i, row) in rows.enumerate() {
                        let (ci, oy) = (i / ho, i % ho);
                        let src = &x_sample[(ci * g.h + oy * g.stride) * g.w..];
                        copy_strided(row, &src[..(wo - 1) * g.stride + 1], g.stride);
                    }
                    subsample
                };
                gemm_serial(
                    g.c_out,
                    hwo,
                    g.c_in,
                    1.0,
                    weight,
                    Op::N,
                    cols,
                    Op::N,
                    0.0,
                    product,
                );
                for (slot, &v) in y_sample.iter_mut().zip(product.iter()) {
                    slot.put(v);
                }
            });
        });
}

/// `dx` of `y = conv(x, weight)` given `dy`, for `g` that [`fits`], in f32, one rayon
/// task per sample; `dx` is overwritten.
pub(crate) fn input_grad<O: Slot<f32>>(g: &ConvGeom, weight: &[f32], dy: &[f32], dx: &mut [O]) {
    let (ho, wo) = (g.h_out(), g.w_out());
    let hwo = ho * wo;
    dx.par_chunks_mut(g.c_in * g.h * g.w)
        .zip(dy.par_chunks(g.c_out * hwo))
        // A job per item (ops/par.rs).
        .with_max_len(1)
        .for_each(|(dx_sample, dy_sample)| {
            with_scratch(g.c_in * hwo, |product: &mut [f32]| {
                gemm_serial(
                    g.c_in,
                    hwo,
                    g.c_out,
                    1.0,
                    weight,
                    Op::T,
                    dy_sample,
                    Op::N,
                    0.0,
                    product,
                );
                // Zeros, then each sum at the pixel the kernel read, added to a zero as
                // im2col's scatter-add does.
                dx_sample.iter_mut().for_each(|slot| slot.put(0.0));
                for (i, sums) in product.chunks_exact(wo).enumerate() {
                    let (ci, oy) = (i / ho, i % ho);
                    let row = &mut dx_sample[(ci * g.h + oy * g.stride) * g.w..][..g.w];
                    for (slot, &sum) in row.iter_mut().step_by(g.stride).zip(sums) {
                        slot.put(sum + 0.0);
                    }
                }
            });
        });
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::ops::conv2d::test_values::{assert_forward_and_input_grad, random, Operands};

    /// `(n, c_in, h, w, c_out, stride)`: the main job's and ResNet-18's shortcuts, stride
    /// 1, odd sides at stride 2 (the last row and column read), stride 3, one channel.
    const SHAPES: [(usize, usize, usize, usize, usize, usize); 7] = [
        (3, 16, 28, 28, 32, 2),
        (2, 64, 7, 7, 128, 2),
        (2, 64, 32, 32, 128, 2),
        (2, 24, 5, 6, 40, 1),
        (2, 8, 9, 7, 16, 2),
        (2, 5, 10, 11, 3, 3),
        (1, 1, 4, 4, 1, 2),
    ];

    fn operands(g: &ConvGeom, rng: &mut StdRng) -> Operands {
        let (x_len, w_len, y_len) = g.lens();
        let [(x, x64), (wt, wt64), (dy, dy64)] = [x_len, w_len, y_len].map(|len| random(len, rng));
        Operands {
            f32s: [x, wt, dy],
            f64s: [x64, wt64, dy64],
        }
    }

    fn geom(shape: (usize, usize, usize, usize, usize, usize)) -> ConvGeom {
        let (n, c_in, h, w, c_out, stride) = shape;
        ConvGeom {
            n,
            c_in,
            h,
            w,
            c_out,
            k: 1,
            stride,
            pad: 0,
        }
    }

    #[test]
    fn forward_and_input_grad_match_the_f64_reference() {
        let mut rng = StdRng::seed_from_u64(3);
        for shape in SHAPES {
            let g = geom(shape);
            assert!(fits(&g));
            let ops = operands(&g, &mut rng);
            assert_forward_and_input_grad(&g, &format!("{shape:?}"), &ops, forward, input_grad);
        }
    }

    /// The im2col path's product covers several samples' columns at once; a product
    /// per sample gives the same bits, and the input gradient's zeros are +0.
    #[test]
    fn gives_the_bits_of_one_product_over_all_samples() {
        let mut rng = StdRng::seed_from_u64(4);
        for shape in SHAPES {
            let g = geom(shape);
            let ops = operands(&g, &mut rng);
            let [x, wt, dy] = &ops.f32s;
            let (ho, wo) = (g.h_out(), g.w_out());
            let (hwo, cols) = (ho * wo, g.n * ho * wo);
            // Columns of all samples, `[c_in][n·hwo]`, and `dy` likewise.
            let mut xc = vec![0.0; g.c_in * cols];
            let mut dyc = vec![0.0; g.c_out * cols];
            for s in 0..g.n {
                for ci in 0..g.c_in {
                    for p in 0..hwo {
                        let (oy, ox) = (p / wo, p % wo);
                        let at = ((s * g.c_in + ci) * g.h + oy * g.stride) * g.w + ox * g.stride;
                        xc[ci * cols + s * hwo + p] = x[at];
                    }
                }
                for co in 0..g.c_out {
                    let from = &dy[(s * g.c_out + co) * hwo..][..hwo];
                    dyc[co * cols + s * hwo..][..hwo].copy_from_slice(from);
                }
            }
            let mut yc = vec![0.0; g.c_out * cols];
            gemm_serial(
                g.c_out,
                cols,
                g.c_in,
                1.0,
                wt,
                Op::N,
                &xc,
                Op::N,
                0.0,
                &mut yc,
            );
            let mut dxc = vec![0.0; g.c_in * cols];
            gemm_serial(
                g.c_in,
                cols,
                g.c_out,
                1.0,
                wt,
                Op::T,
                &dyc,
                Op::N,
                0.0,
                &mut dxc,
            );

            let mut y = vec![f32::NAN; g.n * g.c_out * hwo];
            forward(&g, x, wt, &mut y);
            let mut dx = vec![f32::NAN; x.len()];
            input_grad(&g, wt, dy, &mut dx);
            for s in 0..g.n {
                for co in 0..g.c_out {
                    for p in 0..hwo {
                        let (got, want) =
                            (y[(s * g.c_out + co) * hwo + p], yc[co * cols + s * hwo + p]);
                        assert_eq!(got.to_bits(), want.to_bits(), "y {shape:?}");
                    }
                }
                for ci in 0..g.c_in {
                    for iy in 0..g.h {
                        for ix in 0..g.w {
                            let got = dx[((s * g.c_in + ci) * g.h + iy) * g.w + ix];
                            let read = iy % g.stride == 0 && ix % g.stride == 0;
                            let want = if read {
                                let p = iy / g.stride * wo + ix / g.stride;
                                0.0 + dxc[ci * cols + s * hwo + p]
                            } else {
                                0.0
                            };
                            assert_eq!(got.to_bits(), want.to_bits(), "dx {shape:?}");
                        }
                    }
                }
            }
        }
    }
}
