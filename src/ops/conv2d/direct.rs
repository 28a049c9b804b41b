//! Direct convolution in AVX-512 intrinsics: the f32 CPU forward of the convolutions
//! that Winograd does not take ([`super::winograd::chosen`],
//! [`super::winograd_f4::chosen`], [`super::winograd_f4_narrow::chosen`]): stride 1 or
//! 2, kernels larger than 1×1, output channels in multiples of 16 ([`fits`]), such as
//! the stride-2 convolutions of both models and the stems; and their input gradients.
//!
//! There, im2col spends about as long copying as its GEMM spends multiplying: it writes
//! the input k² times over, the GEMM packs that copy once more, and the output comes
//! back in the column layout. Here each sample is copied once ([`Layout`]) and read in
//! place:
//!
//! - Per input channel, `stride²` phase planes of the zero-padded image (phase
//!   `(ry, rx)` holds the padded rows `r·stride + ry` and columns `c·stride + rx`), each
//!   with rows of `wq ≥ w_out` elements. Output pixels are numbered in that width,
//!   `q = oy·wq + ox`, so tap `(ky, kx)` of pixel `q` reads element `q + taps[ky·k + kx]`
//!   of the channel: a block of consecutive `q` reads consecutive elements, across row
//!   ends. A tap that runs past a row's end reads the next row's first columns, which is
//!   right where both stand for padding; `wq` is the narrowest width where that holds
//!   for every output pixel (`w + 1` at stride 1, padding 1: the left padding column
//!   serves as the previous row's right one). Pixels with `ox ≥ w_out` are computed
//!   and dropped.
//! - A block is `V` registers of 16 output channels by `P` consecutive pixels (2 × 12 or
//!   1 × 24), `P · V` accumulators held in registers for the whole reduction over input
//!   channels and taps. With one register of channels, 24 pixels rather than 16 load
//!   each weight vector for more multiply-adds, and measured faster (BENCHMARKS.md,
//!   "Direct convolution blocks"). Per tap, `V` weight vectors are loaded and each
//!   pixel's input element is broadcast once, straight into its multiply-adds. Blocks of
//!   8 and 4 pixels take what is left of an image, so small images make few passes over
//!   the weights.
//! - Where a pass has at least [`pixels::MIN_PIXELS`] pixels and writes them
//!   consecutively along rows (every forward; the input gradient at stride 1), the
//!   block is turned around ([`pixels`]): 4 output channels by 6 vectors of 16 pixels,
//!   so each input vector is loaded once for 4 multiply-adds and each weight broadcast
//!   once for 6, and the sums are written with masked stores instead of a scatter.
//! - The weights are laid out as `[block][c_in][tap][width]`, contiguous in the order
//!   the loop reads them, `width` being the block's output channels, and kept between
//!   calls while the weights stay bitwise the same (`kept.rs`).
//! - Each finished accumulator (16 output channels of one pixel) is scattered into `y`,
//!   whose channel stride is `h_out·w_out`. Where the reduction per output is short
//!   ([`MIN_REDUCTION`], the 1- and 3-channel stems), that scatter costs as much as the
//!   sums: there the module runs only passes that take the block with pixels in the
//!   lanes (the stems' forward on images of 28×28 and 32×32, the stride-1 input
//!   gradient of a convolution with few output channels), and im2col the rest; so does
//!   the stride-2 input gradient, whose phases always scatter.
//!
//! The input gradient of a stride-1 convolution whose output is as large as its input
//! (`k = 2·pad + 1`) is the same convolution of `dy` with the weights transposed
//! (`c_in ↔ c_out`) and rotated by 180°, as in [`super::winograd`]. At stride 2 it is
//! four stride-1 convolutions of `dy`, one per parity of the input pixel, each with the
//! quarter of the taps that reach pixels of that parity ([`Phases`]).
//!
//! Accuracy: each output is one sum of products in f32, in the order input channel,
//! then tap; the tests hold it to the f64 reference within the crate's f32 bound (1e-5
//! of the largest value).

mod pixels;

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::cpu::copy_row;
use super::kept::{Tag, KEPT};
use super::layout::Layout;
use super::ConvGeom;
use crate::ops::par::Slot;
use crate::scratch::with_scratch;

/// f32 lanes of one AVX-512 register.
const LANES: usize = 16;

/// Products per output below which the block with channels in the lanes leaves a
/// convolution to im2col: there each result's scatter costs about as much as its sums
/// (a 3-channel stem measured 2× slower here).
const MIN_REDUCTION: usize = 128;

/// Whether the CPU convolution takes this module for `g` in f32: a kernel larger than
/// 1×1 (1×1 kernels: `pointwise.rs`), stride 1 or 2 ([`Layout::new`]), output
/// channels in whole registers, an output with at least one block of pixels, planes
/// small enough for the scatter's 32-bit offsets, a CPU with AVX-512; and at least
/// [`MIN_REDUCTION`] products per output, unless the pass takes the block with pixels
/// in the lanes ([`pixels`]), which stores whole vectors, not a scatter per output.
pub(crate) fn fits(g: &ConvGeom) -> bool {
    if g.k <= 1 || g.c_out == 0 || !g.c_out.is_multiple_of(LANES) || !scatters(g) {
        return false;
    }
    let Some(layout) = Layout::new(g) else {
        return false;
    };
    let pass = Pass::forward(g, &layout);
    (g.c_in * g.k * g.k >= MIN_REDUCTION || pass.pixels_in_lanes())
        && pass.pixels() >= SHORT
        && has_avx512()
}

/// Whether the input gradient of `g` can run here: at stride 1 with `k = 2·pad + 1`
/// (the output as large as the input), where the backward convolution, whose output
/// channels are `g.c_in`, [`fits`]; at stride 2, where each of the four phases
/// ([`Phases`]) has a block of pixels, with input channels in whole registers.
pub(crate) fn fits_input_grad(g: &ConvGeom) -> bool {
    match g.stride {
        1 => g.k == 2 * g.pad + 1 && fits(&transposed(g)),
        2 => {
            g.k > 1
                && scatters(g)
                && g.c_in.is_multiple_of(LANES)
                && g.c_out * g.k * g.k >= MIN_REDUCTION
                && g.h_out() * g.w_out() > 0
                && Phases::new(g).fits()
                && has_avx512()
        }
        _ => false,
    }
}

/// Whether the scatter's 32-bit lane offsets (`lane · plane`, 16 lanes) reach every
/// output channel of a block, for the input and output planes of `g`.
fn scatters(g: &ConvGeom) -> bool {
    let plane = (g.h * g.w).max(g.h_out() * g.w_out());
    plane
        .checked_mul(LANES)
        .is_some_and(|reach| reach <= i32::MAX as usize)
}

fn has_avx512() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// Registers of output channels per block: two (32 channels) where the channel count
/// allows, else one.
fn lanes(c_out: usize) -> usize {
    if c_out.is_multiple_of(2 * LANES) {
        2
    } else {
        1
    }
}

/// Pixels of the two smaller blocks that take what is left of an image after its full
/// blocks: fewer blocks, and so fewer passes over the weights, than with one size.
const MID: usize = 8;
const SHORT: usize = 4;

/// The backward convolution of a stride-1 `g`: `dy`'s channels in, `x`'s out.
fn transposed(g: &ConvGeom) -> ConvGeom {
    ConvGeom {
        c_in: g.c_out,
        c_out: g.c_in,
        ..*g
    }
}

/// One sweep of the kernel over a sample: the channels it reads, laid out so that
/// output pixel `q = r·wq + c` reads element `taps[t] + q` of each, and where output
/// pixel `(r, c < cols)` of output channel `o` goes: `o·plane + base + r·row + c·col`.
struct Pass<'a> {
    c_in: usize,
    channel: usize,
    taps: &'a [usize],
    wq: usize,
    rows: usize,
    cols: usize,
    c_out: usize,
    plane: usize,
    base: usize,
    row: usize,
    col: usize,
}

impl<'a> Pass<'a> {
    /// The forward of `g` over its input in `layout`.
    fn forward(g: &ConvGeom, layout: &'a Layout) -> Pass<'a> {
        let (ho, wo) = (g.h_out(), g.w_out());
        Pass {
            c_in: g.c_in,
            channel: layout.channel,
            taps: &layout.taps,
            wq: layout.wq,
            rows: ho,
            cols: wo,
            c_out: g.c_out,
            plane: ho * wo,
            base: 0,
            row: wo,
            col: 1,
        }
    }

    /// Output pixels in the kernel's numbering, the padding columns included.
    fn pixels(&self) -> usize {
        self.rows * self.wq
    }

    /// Whether the block with pixels in the lanes ([`pixels`]) runs this pass: its
    /// outputs are consecutive along a row, and there are enough of them for mostly
    /// full blocks ([`pixels::MIN_PIXELS`]).
    fn pixels_in_lanes(&self) -> bool {
        self.col == 1 && self.pixels() >= pixels::MIN_PIXELS
    }

    /// Output channels per block, the width of [`arrange`]'s blocks of weights.
    fn block_channels(&self) -> usize {
        if self.pixels_in_lanes() {
            pixels::R
        } else {
            lanes(self.c_out) * LANES
        }
    }
}

/// `y = conv(x, weight)` for `g` that [`fits`], in f32; `y` is overwritten.
pub(crate) fn forward<O: Slot<f32>>(g: &ConvGeom, x: &[f32], weight: &[f32], y: &mut [O]) {
    let k2 = g.k * g.k;
    let w = |co, ci, tap| weight[(co * g.c_in + ci) * k2 + tap];
    convolve(g, x, weight, "direct forward", w, y);
}

/// `dx` of `y = conv(x, weight)` given `dy`, for `g` whose [`fits_input_grad`] holds,
/// in f32; `dx` is overwritten. At stride 1 it is the forward convolution of `dy` with
/// `weight` transposed and rotated; at stride 2, four such convolutions ([`Phases`]).
pub(crate) fn input_grad<O: Slot<f32>>(g: &ConvGeom, weight: &[f32], dy: &[f32], dx: &mut [O]) {
    let k2 = g.k * g.k;
    if g.stride == 2 {
        return Phases::new(g).input_grad(weight, dy, dx);
    }
    let rotated = |ci, co, tap| weight[(co * g.c_in + ci) * k2 + k2 - 1 - tap];
    convolve(&transposed(g), dy, weight, "direct rotated", rotated, dx);
}

/// Writes the weights in the order a block reads them, `[block][c_in][tap][width]`,
/// from `w(out channel, in channel, tap)`, into every element of `wt`.
fn arrange(
    wt: &mut [f32],
    c_out: usize,
    c_in: usize,
    taps: usize,
    width: usize,
    w: impl Fn(usize, usize, usize) -> f32,
) {
    assert_eq!(wt.len(), c_out * c_in * taps, "direct::arrange: weights");
    for (i, lanes) in wt.chunks_exact_mut(width).enumerate() {
        let (block, ci, tap) = (i / (c_in * taps), i / taps % c_in, i % taps);
        for (l, v) in lanes.iter_mut().enumerate() {
            *v = w(block * width + l, ci, tap);
        }
    }
}

/// `y = conv(x, w)` given the weights as `w(out channel, in channel, tap)`, read from
/// `weight` by the derivation `name`, one rayon task per sample. The arranged weights
/// are kept between calls with the same `weight` (`kept.rs`).
fn convolve<O: Slot<f32>>(
    g: &ConvGeom,
    x: &[f32],
    weight: &[f32],
    name: &'static str,
    w: impl Fn(usize, usize, usize) -> f32,
    y: &mut [O],
) {
    let layout = Layout::new(g).expect("direct::convolve: a geometry that fits");
    let pass = Pass::forward(g, &layout);
    let width = pass.block_channels();
    let tag = Tag {
        name,
        shape: [g.c_in, g.k, width],
    };
    let derive = |wt: &mut [f32]| arrange(wt, g.c_out, g.c_in, g.k * g.k, width, w);
    KEPT.with_derived(weight, tag, weight.len(), derive, |wt| {
        y.par_chunks_mut(g.c_out * g.h_out() * g.w_out())
            .zip(x.par_chunks(g.c_in * g.h * g.w))
            // A job per item (ops/par.rs).
            .with_max_len(1)
            .for_each(|(y_sample, x_sample)| {
                with_scratch(layout.sample_len(g), |xp: &mut [f32]| {
                    layout.lay_out(g, x_sample, xp);
                    // SAFETY: `fits` checked AVX-512; `lay_out` wrote all of `xp`, `wt`
                    // holds every weight and `y_sample` one sample's outputs.
                    unsafe { sweep(&pass, xp, wt, y_sample) };
                });
            });
    });
}

/// The input gradient of a stride-2 convolution, split by the parity `(a, b)` of the
/// input pixel `(2m + a, 2n + b)`: its taps are those with `ky ≡ a + pad` and
/// `kx ≡ b + pad` (mod 2), each reading `dy` at `(m + dm, n + dn)` with
/// `dm = (a + pad − ky) / 2`, so each phase is a stride-1 convolution of `dy` with a
/// quarter of the taps, written to every other row and column of `dx`. `dy` is laid
/// out once per sample with `edge` zero rows and columns around it, enough for every
/// phase's reach.
struct Phases {
    g: ConvGeom,
    /// Zero rows above and columns left of `dy`.
    edge: usize,
    wq: usize,
    rows: usize,
    /// Per phase `(a, b)`, at `2a + b`: its output rows and columns, and its taps as
    /// `(ky, dm)` and `(kx, dn)`.
    parts: Vec<Phase>,
}

struct Phase {
    a: usize,
    b: usize,
    rows: usize,
    cols: usize,
    ys: Vec<(usize, isize)>,
    xs: Vec<(usize, isize)>,
}

impl Phases {
    fn new(g: &ConvGeom) -> Phases {
        let taps = |parity: usize| -> Vec<(usize, isize)> {
            (0..g.k)
                .filter(|k| (k + parity + g.pad).is_multiple_of(2))
                .map(|k| (k, (parity as isize + g.pad as isize - k as isize) / 2))
                .collect()
        };
        let parts: Vec<Phase> = (0..4)
            .map(|i| {
                let (a, b) = (i / 2, i % 2);
                Phase {
                    a,
                    b,
                    rows: (g.h + 1 - a) / 2,
                    cols: (g.w + 1 - b) / 2,
                    ys: taps(a),
                    xs: taps(b),
                }
            })
            .collect();
        let reach = |f: &dyn Fn(&Phase) -> &Vec<(usize, isize)>| {
            let lo = parts
                .iter()
                .flat_map(|p| f(p).iter().map(|t| t.1))
                .min()
                .unwrap_or(0);
            let hi = parts
                .iter()
                .flat_map(|p| f(p).iter().map(|t| t.1))
                .max()
                .unwrap_or(0);
            (lo.min(0).unsigned_abs(), hi.max(0) as usize)
        };
        let (up, down) = reach(&|p| &p.ys);
        let (left, right) = reach(&|p| &p.xs);
        let edge = up.max(left);
        let (ho, wo) = (g.h_out(), g.w_out());
        let widest = parts.iter().map(|p| p.cols).max().unwrap_or(0);
        let tallest = parts.iter().map(|p| p.rows).max().unwrap_or(0);
        let wq = edge + wo.max(widest + right);
        // One row more for the padding columns' pixels, which read past their row.
        let rows = edge + ho.max(tallest + down) + 1;
        Phases {
            g: *g,
            edge,
            wq,
            rows,
            parts,
        }
    }

    /// Whether every phase has taps and a block of pixels.
    fn fits(&self) -> bool {
        self.parts.iter().all(|p| {
            !p.ys.is_empty() && !p.xs.is_empty() && p.cols > 0 && p.rows * self.wq >= SHORT
        })
    }

    /// Elements of one sample's laid-out `dy`, and slack for the padding columns'
    /// pixels of the last channel.
    fn sample_len(&self) -> usize {
        self.g.c_out * self.rows * self.wq + self.wq + self.g.k
    }

    fn input_grad<O: Slot<f32>>(&self, weight: &[f32], dy: &[f32], dx: &mut [O]) {
        let g = &self.g;
        let k2 = g.k * g.k;
        // Per phase, its taps' offsets in the laid-out `dy` and their kernel taps.
        let (taps, kernels): (Vec<Vec<usize>>, Vec<Vec<usize>>) = self
            .parts
            .iter()
            .map(|p| {
                let mut taps = Vec::new();
                let mut kernel = Vec::new();
                for &(ky, dm) in &p.ys {
                    for &(kx, dn) in &p.xs {
                        let row = (self.edge as isize + dm) as usize;
                        let col = (self.edge as isize + dn) as usize;
                        taps.push(row * self.wq + col);
                        kernel.push(ky * g.k + kx);
                    }
                }
                (taps, kernel)
            })
            .unzip();
        // The phases' weights one after the other: each kernel tap is in one phase.
        let lens: Vec<usize> = kernels.iter().map(|k| g.c_in * g.c_out * k.len()).collect();
        let width = lanes(g.c_in) * LANES;
        let derive = |wt: &mut [f32]| {
            let mut rest = wt;
            for (kernel, &len) in kernels.iter().zip(&lens) {
                let (part, tail) = rest.split_at_mut(len);
                arrange(part, g.c_in, g.c_out, kernel.len(), width, |ci, co, t| {
                    weight[(co * g.c_in + ci) * k2 + kernel[t]]
                });
                rest = tail;
            }
        };
        let tag = Tag {
            name: "direct phases",
            shape: [g.c_in, g.k, g.pad],
        };
        KEPT.with_derived(weight, tag, weight.len(), derive, |wt| {
            let mut rest = wt;
            let phases: Vec<&[f32]> = lens
                .iter()
                .map(|&len| {
                    let (part, tail) = rest.split_at(len);
                    rest = tail;
                    part
                })
                .collect();
            self.sweep_phases(&taps, &phases, dy, dx)
        });
    }

    /// The four phases' sweeps of each sample, given their taps and arranged weights.
    fn sweep_phases<O: Slot<f32>>(
        &self,
        taps: &[Vec<usize>],
        phases: &[&[f32]],
        dy: &[f32],
        dx: &mut [O],
    ) {
        let g = &self.g;
        let (ho, wo) = (g.h_out(), g.w_out());
        dx.par_chunks_mut(g.c_in * g.h * g.w)
            .zip(dy.par_chunks(g.c_out * ho * wo))
            // A job per item (ops/par.rs).
            .with_max_len(1)
            .for_each(|(dx_sample, dy_sample)| {
                with_scratch(self.sample_len(), |dyp: &mut [f32]| {
                    self.lay_out(dy_sample, dyp);
                    for ((p, taps), &wt) in self.parts.iter().zip(taps).zip(phases) {
                        let pass = Pass {
                            c_in: g.c_out,
                            channel: self.rows * self.wq,
                            taps,
                            wq: self.wq,
                            rows: p.rows,
                            cols: p.cols,
                            c_out: g.c_in,
                            plane: g.h * g.w,
                            base: p.a * g.w + p.b,
                            row: 2 * g.w,
                            col: 2,
                        };
                        // The phase's weights are arranged for the block with channels
                        // in the lanes, which every pass with `col == 2` takes.
                        debug_assert!(!pass.pixels_in_lanes());
                        // SAFETY: `fits_input_grad` checked AVX-512; `dyp` holds the
                        // sample's dy laid out, `wt` the phase's weights, and the
                        // phase writes every other row and column of `dx_sample`.
                        unsafe { sweep(&pass, dyp, wt, dx_sample) };
                    }
                });
            });
    }

    /// Writes each `h_out × w_out` plane of one sample's `dy` into `dyp` at row and
    /// column `edge`, in rows of `wq`, zeros around it and in the slack.
    fn lay_out(&self, dy: &[f32], dyp: &mut [f32]) {
        let (ho, wo) = (self.g.h_out(), self.g.w_out());
        let channel = self.rows * self.wq;
        let (planes, slack) = dyp.split_at_mut(self.g.c_out * channel);
        slack.fill(0.0);
        for (dst, src) in planes
            .chunks_exact_mut(channel)
            .zip(dy.chunks_exact(ho * wo))
        {
            dst[..self.edge * self.wq].fill(0.0);
            dst[(self.edge + ho) * self.wq..].fill(0.0);
            let band =
                dst[self.edge * self.wq..(self.edge + ho) * self.wq].chunks_exact_mut(self.wq);
            for (row, src) in band.zip(src.chunks_exact(wo)) {
                row[..self.edge].fill(0.0);
                copy_row(&mut row[self.edge..self.edge + wo], src);
                row[self.edge + wo..].fill(0.0);
            }
        }
    }
}

/// All output blocks of one sample: those of [`pixels::sample`] where the pass
/// [takes it](Pass::pixels_in_lanes), else `V` registers of output channels by `P` pixels
/// while at least `P` are left, then blocks of `P` (where the image has that many) or
/// [`MID`] pixels while more than [`SHORT`] are left, then blocks of [`SHORT`]. A block
/// that would run past the last pixel is moved back to end there: it recomputes (and
/// rewrites) a few pixels rather than running short. Every block starts at or before
/// the first pixel not yet written, so every pixel is written.
///
/// # Safety
/// AVX-512F must be available; `xp` holds one sample laid out for `pass`, `wt` the
/// arranged weights, `y` one sample's outputs; `pass.pixels() ≥ SHORT`.
unsafe fn sweep<O: Slot<f32>>(pass: &Pass<'_>, xp: &[f32], wt: &[f32], y: &mut [O]) {
    // SAFETY: as promised by the caller.
    unsafe {
        if pass.pixels_in_lanes() {
            return pixels::sample(pass, xp, wt, y);
        }
        match lanes(pass.c_out) {
            2 => sample::<2, 12, O>(pass, xp, wt, y),
            _ => sample::<1, 24, O>(pass, xp, wt, y),
        }
    }
}

/// [`sweep`] with `V` registers of output channels and full blocks of `P` pixels.
///
/// # Safety
/// As [`sweep`].
#[target_feature(enable = "avx512f")]
unsafe fn sample<const V: usize, const P: usize, O: Slot<f32>>(
    pass: &Pass<'_>,
    xp: &[f32],
    wt: &[f32],
    y: &mut [O],
) {
    let pixels = pass.pixels();
    let width = V * LANES;
    // The bounds every block relies on, checked once per sweep: the last pixel's taps
    // of the last channel lie in `xp`, every output within its channel's plane (the
    // planes themselves are the slices below).
    let reach = pass.taps.iter().max().copied().unwrap_or(0);
    let last = pass.base + (pass.rows - 1) * pass.row + (pass.cols - 1) * pass.col;
    assert!((pass.c_in - 1) * pass.channel + reach + pixels <= xp.len());
    assert!(last < pass.plane);
    let scatter_index = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(pass.plane as i32),
    );
    let block_weights = pass.c_in * pass.taps.len() * width;
    for block in 0..pass.c_out / width {
        let wt_block = &wt[block * block_weights..][..block_weights];
        let y_block = &mut y[block * width * pass.plane..][..width * pass.plane];
        let mut first = 0;
        while first < pixels {
            let left = pixels - first;
            // SAFETY (each block): as promised by the caller, and every block lies in
            // 0..pixels.
            unsafe {
                if left >= P || (left > MID && pixels >= P) {
                    let at = first.min(pixels - P);
                    let acc = block_sums::<V, P>(pass, xp, at, wt_block);
                    store(pass, &acc, at, scatter_index, y_block);
                    first += P;
                } else if left > SHORT && pixels >= MID {
                    let at = first.min(pixels - MID);
                    let acc = block_sums::<V, MID>(pass, xp, at, wt_block);
                    store(pass, &acc, at, scatter_index, y_block);
                    first += MID;
                } else {
                    let at = first.min(pixels - SHORT);
                    let acc = block_sums::<V, SHORT>(pass, xp, at, wt_block);
                    store(pass, &acc, at, scatter_index, y_block);
                    first += SHORT;
                }
            }
        }
    }
}

/// Scatters the sums of the block of pixels from `first` into `y` (channel stride
/// `pass.plane`), dropping the padding columns' pixels.
///
/// # Safety
/// AVX-512F; `y` holds `16V` output channels of `pass.plane` elements, and every
/// output of the pass lies within a plane (checked by [`sample`]).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store<const V: usize, const P: usize, O: Slot<f32>>(
    pass: &Pass<'_>,
    acc: &[[__m512; V]; P],
    first: usize,
    scatter_index: __m512i,
    y: &mut [O],
) {
    // The scatter writes f32s through the slots' address: a slot is an f32 or a
    // MaybeUninit<f32>, of the same layout.
    const { assert!(std::mem::size_of::<O>() == std::mem::size_of::<f32>()) };
    let (mut r, mut c) = (first / pass.wq, first % pass.wq);
    for acc in acc {
        if c < pass.cols {
            let at = pass.base + r * pass.row + c * pass.col;
            for (v, &sum) in acc.iter().enumerate() {
                // SAFETY: output channel 16v + lane (< 16V), element at ≤ last.
                unsafe {
                    _mm512_i32scatter_ps::<4>(
                        y.as_mut_ptr()
                            .add(v * LANES * pass.plane + at)
                            .cast::<f32>(),
                        scatter_index,
                        sum,
                    );
                }
            }
        }
        c += 1;
        if c == pass.wq {
            (r, c) = (r + 1, 0);
        }
    }
}

/// The sums of the block of `P` pixels from `first`: `acc[j][v]` holds output channels
/// `16v..16v + 16` at pixel `first + j`, whose tap `t` reads element
/// `ci·channel + taps[t] + first + j` of `xp`.
///
/// # Safety
/// AVX-512F; `first + P ≤ pass.pixels()`; `xp` and `wt` as [`sweep`] promises, with
/// `xp`'s bound checked by [`sample`].
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block_sums<const V: usize, const P: usize>(
    pass: &Pass<'_>,
    xp: &[f32],
    first: usize,
    wt: &[f32],
) -> [[__m512; V]; P] {
    let taps = pass.taps;
    debug_assert!(first + P <= pass.pixels());
    debug_assert!(wt.len() >= pass.c_in * taps.len() * V * LANES);
    let (x, mut w) = (xp.as_ptr(), wt.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); V]; P];
    for ci in 0..pass.c_in {
        let channel = x.wrapping_add(ci * pass.channel + first);
        for &offset in taps {
            // SAFETY: within the bounds asserted above.
            unsafe {
                let row = channel.add(offset);
                let mut tap = [_mm512_setzero_ps(); V];
                for (v, tap) in tap.iter_mut().enumerate() {
                    *tap = _mm512_loadu_ps(w.add(v * LANES));
                }
                for (j, acc) in acc.iter_mut().enumerate() {
                    let xb = _mm512_set1_ps(*row.add(j));
                    for v in 0..V {
                        acc[v] = _mm512_fmadd_ps(tap[v], xb, acc[v]);
                    }
                }
                w = w.add(V * LANES);
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv2d::cpu;
    use crate::ops::conv2d::test_values::{assert_close, random};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn geom(
        n: usize,
        c_in: usize,
        side: (usize, usize),
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> ConvGeom {
        ConvGeom {
            n,
            c_in,
            h: side.0,
            w: side.1,
            c_out,
            k,
            stride,
            pad,
        }
    }

    /// Forward (and, where it runs here, the input gradient) against the f64 im2col
    /// reference: strides 1 and 2, even and odd sides (whose last tap column is either
    /// inside the image or padding), kernels of 2, 3 and 5, paddings 0 to 2, one and
    /// two registers of output channels, full and short pixel blocks.
    #[test]
    fn forward_and_input_grad_match_the_f64_reference() {
        if !has_avx512() {
            eprintln!("direct conv tests: skipped, this CPU has no AVX-512");
            return;
        }
        let mut rng = StdRng::seed_from_u64(11);
        let shapes = [
            geom(3, 16, (28, 28), 16, 3, 1, 1),
            geom(2, 32, (7, 7), 32, 3, 1, 1),
            geom(3, 128, (4, 4), 128, 3, 1, 1),
            geom(2, 16, (4, 4), 48, 3, 1, 1),
            geom(2, 16, (5, 9), 16, 3, 1, 1),
            geom(2, 16, (3, 5), 16, 3, 1, 1),
            geom(2, 16, (2, 3), 32, 3, 1, 1),
            geom(2, 16, (2, 2), 32, 3, 1, 1),
            geom(2, 16, (28, 28), 32, 3, 2, 1),
            geom(2, 32, (14, 14), 64, 3, 2, 1),
            geom(2, 64, (7, 7), 128, 3, 2, 1),
            geom(2, 16, (9, 8), 16, 3, 2, 1),
            geom(2, 8, (11, 10), 16, 5, 1, 2),
            geom(2, 8, (12, 13), 32, 5, 2, 2),
            geom(2, 16, (12, 13), 16, 5, 2, 2),
            geom(2, 16, (11, 12), 16, 5, 2, 1),
            geom(2, 16, (9, 9), 16, 3, 1, 0),
            geom(2, 16, (10, 9), 16, 3, 2, 0),
            geom(2, 32, (8, 9), 16, 2, 1, 0),
            geom(2, 32, (8, 9), 16, 2, 2, 1),
            // 9 to 15 pixels in a pass, more than MID left before any full block:
            // 12 at 3×3 (stride 1), 9 at 5×5 and 15 in the odd phases of a 7×7 input
            // gradient (stride 2), with one and with two registers of channels.
            geom(2, 16, (3, 3), 16, 3, 1, 1),
            geom(2, 16, (3, 3), 32, 3, 1, 1),
            geom(2, 16, (5, 5), 16, 3, 2, 1),
            geom(2, 16, (7, 7), 32, 3, 2, 1),
            geom(2, 48, (7, 7), 32, 3, 2, 1),
            // Stems: too few products per output for a scatter, enough pixels for the
            // block with pixels in the lanes.
            geom(2, 1, (28, 28), 16, 3, 1, 1),
            geom(2, 3, (32, 32), 64, 3, 1, 1),
        ];
        for g in shapes {
            assert!(fits(&g), "{g:?} should fit");
            let what = format!("{g:?}");
            let (x, x64) = random(g.n * g.c_in * g.h * g.w, &mut rng);
            let (wt, wt64) = random(g.c_out * g.c_in * g.k * g.k, &mut rng);
            let (dy, dy64) = random(g.n * g.c_out * g.h_out() * g.w_out(), &mut rng);
            let mut y = vec![f32::NAN; dy.len()];
            forward(&g, &x, &wt, &mut y);
            assert_close(&format!("y {what}"), &y, &cpu::forward(&g, &x64, &wt64));
            if fits_input_grad(&g) {
                let mut dx = vec![f32::NAN; x.len()];
                input_grad(&g, &wt, &dy, &mut dx);
                let (want, _) = cpu::backward(&g, &x64, &wt64, &dy64, true, false);
                assert_close(&format!("dx {what}"), &dx, &want.unwrap());
            }
        }
        // The stride-1 input gradient of a convolution with few output channels: 72
        // products per input pixel, which only the block with pixels in the lanes takes.
        let g = geom(2, 16, (28, 28), 8, 3, 1, 1);
        assert!(!fits(&g) && fits_input_grad(&g));
        let (wt, wt64) = random(g.c_out * g.c_in * 9, &mut rng);
        let (dy, dy64) = random(g.n * g.c_out * g.h_out() * g.w_out(), &mut rng);
        let x64 = vec![0.0; g.n * g.c_in * g.h * g.w];
        let mut dx = vec![f32::NAN; x64.len()];
        input_grad(&g, &wt, &dy, &mut dx);
        let (want, _) = cpu::backward(&g, &x64, &wt64, &dy64, true, false);
        assert_close("dx, 8 output channels", &dx, &want.unwrap());
    }

    /// The CPU convolution in f32 takes this module where it fits and neither Winograd
    /// does, and its three results (the weight gradient by `weight_grad.rs`) match the
    /// f64 reference there; f64 stays im2col.
    #[test]
    fn cpu_conv_in_f32_uses_it_where_it_fits() {
        if !has_avx512() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(12);
        for g in [
            geom(5, 48, (14, 14), 48, 3, 1, 1),
            geom(3, 32, (14, 14), 64, 3, 2, 1),
        ] {
            assert!(fits(&g) && !super::super::winograd::chosen(&g));
            assert!(!super::super::winograd_f4::chosen(&g));
            assert!(!super::super::winograd_f4_narrow::chosen(&g));
            let (x, x64) = random(g.n * g.c_in * g.h * g.w, &mut rng);
            let (wt, wt64) = random(g.c_out * g.c_in * 9, &mut rng);
            let (dy, dy64) = random(g.n * g.c_out * g.h_out() * g.w_out(), &mut rng);
            let mut y = vec![f32::NAN; dy.len()];
            forward(&g, &x, &wt, &mut y);
            assert_eq!(cpu::forward(&g, &x, &wt), y, "{g:?}: the same loop");
            assert_close("y", &y, &cpu::forward(&g, &x64, &wt64));
            let (dx, dw) = cpu::backward(&g, &x, &wt, &dy, true, true);
            let (dx64, dw64) = cpu::backward(&g, &x64, &wt64, &dy64, true, true);
            assert_close("dx", &dx.unwrap(), &dx64.unwrap());
            assert_close("dw", &dw.unwrap(), &dw64.unwrap());
        }
    }

    /// What the module takes: not 1×1 kernels, short reductions (stems) only where the
    /// block with pixels in the lanes runs them, not stride 3, output channels that are
    /// no multiple of 16 or outputs smaller than a short block;
    /// the input gradient at stride 1 only with the output as large as the input, at
    /// stride 2 only with four non-empty phases, and input channels in registers.
    #[test]
    fn fits_only_what_the_kernel_computes() {
        if !has_avx512() {
            return;
        }
        assert!(!fits(&geom(1, 16, (8, 8), 16, 1, 1, 0)));
        assert!(fits(&geom(1, 3, (32, 32), 64, 3, 1, 1)));
        assert!(!fits(&geom(1, 3, (8, 8), 64, 3, 1, 1)));
        assert!(fits(&geom(1, 15, (8, 8), 64, 3, 1, 1)));
        assert!(!fits(&geom(1, 16, (8, 8), 16, 3, 3, 1)));
        assert!(!fits(&geom(1, 16, (8, 8), 24, 3, 1, 1)));
        assert!(!fits(&geom(1, 16, (1, 1), 16, 3, 1, 1)));
        assert!(!fits(&geom(1, 16, (12_000, 12_000), 16, 3, 1, 1)));
        assert!(!fits_input_grad(&geom(
            1,
            16,
            (12_000, 12_000),
            16,
            3,
            2,
            1
        )));
        assert!(fits(&geom(1, 16, (2, 2), 32, 3, 1, 1)));
        assert!(fits_input_grad(&geom(1, 16, (8, 8), 32, 3, 1, 1)));
        assert!(!fits_input_grad(&geom(1, 16, (8, 8), 8, 3, 1, 1)));
        assert!(fits_input_grad(&geom(1, 16, (8, 8), 32, 3, 2, 1)));
        assert!(!fits_input_grad(&geom(1, 8, (8, 8), 32, 3, 2, 1)));
        assert!(!fits_input_grad(&geom(1, 16, (8, 8), 32, 3, 1, 0)));
        // An image one pixel wide (or tall) at stride 2: its odd columns (rows) are an
        // empty phase, left to im2col.
        assert!(!fits_input_grad(&geom(1, 16, (8, 1), 32, 3, 2, 1)));
        assert!(!fits_input_grad(&geom(1, 16, (1, 8), 32, 3, 2, 1)));
    }
}
