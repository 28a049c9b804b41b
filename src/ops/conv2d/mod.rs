//! 2-D convolution (square kernel, no bias), NCHW: the tape op, its CPU kernel, and the
//! handwritten implicit-GEMM CUDA kernels (`kernels/conv2d.cu`) with their launch shapes.
//!
//! ```
//! use sparta::autograd::Tape;
//! use sparta::ops::conv2d::conv2d;
//!
//! let mut tape = Tape::<f32>::new();
//! let x = tape.leaf(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0], false)?;
//! let w = tape.leaf(&[1, 1, 1, 1], vec![2.0], true)?;
//! let y = conv2d(&mut tape, x, w, 1, 0)?;
//! assert_eq!(tape.value(y), &[2.0, 4.0, 6.0, 8.0]);
//! # Ok::<(), sparta::Error>(())
//! ```

pub mod cpu;
pub mod cuda;
#[cfg(target_arch = "x86_64")]
mod direct;
mod kept;
#[cfg(target_arch = "x86_64")]
mod layout;
mod pointwise;
#[cfg(test)]
mod test_values;
#[cfg(target_arch = "x86_64")]
mod weight_grad;
mod winograd;
mod winograd_f4;
#[cfg(target_arch = "x86_64")]
mod winograd_f4_narrow;

pub use crate::launch::conv_geom::{ConvGeom, ConvPass};

use crate::autograd::{Nodes, Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::launch::kernel_args::blocks;
use crate::ops::LaunchDims;
use crate::real::Real;

/// What the convolution rule needs from a backend.
pub trait Conv2dKernels: Backend {
    /// `conv(x, weight)`.
    fn conv2d_forward(
        ctx: &Self::Ctx,
        g: &ConvGeom,
        x: &Self::View<'_>,
        weight: &Self::View<'_>,
    ) -> Result<Self::Buf>;
    /// `(dx, dweight)` given `dy`, each only when asked for.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn conv2d_backward(
        ctx: &Self::Ctx,
        g: &ConvGeom,
        x: &Self::View<'_>,
        weight: &Self::View<'_>,
        dy: &Self::View<'_>,
        input: bool,
        filter: bool,
    ) -> Result<(Option<Self::Buf>, Option<Self::Buf>)>;
}

/// `conv2d(x [N,Ci,H,W], weight [Co,Ci,K,K])` with `stride` and zero `pad`.
pub fn conv2d<B: Conv2dKernels>(
    tape: &mut Tape<'_, B>,
    x: Var,
    weight: Var,
    stride: usize,
    pad: usize,
) -> Result<Var> {
    let (xs, ws) = (tape.shape(x), tape.shape(weight));
    if xs.len() != 4 || ws.len() != 4 || ws[1] != xs[1] || ws[2] != ws[3] {
        return Err(Error::shape(
            "conv2d",
            "x / weight",
            "x [N,C,H,W] and weight [Co,C,K,K]",
            format!("{xs:?} / {ws:?}"),
        ));
    }
    if stride == 0 || xs[2] + 2 * pad < ws[2] || xs[3] + 2 * pad < ws[2] {
        return Err(Error::Config(format!(
            "conv2d: kernel {} with stride {stride}, padding {pad} does not fit {xs:?}",
            ws[2]
        )));
    }
    let g = ConvGeom {
        n: xs[0],
        c_in: xs[1],
        h: xs[2],
        w: xs[3],
        c_out: ws[0],
        k: ws[2],
        stride,
        pad,
    };
    let y = B::conv2d_forward(tape.ctx(), &g, &tape.value(x), &tape.value(weight))?;
    let shape = [g.n, g.c_out, g.h_out(), g.w_out()];
    tape.push_op(y, &shape, &[x, weight], || {
        Box::new(move |nodes: &Nodes<'_, B>, dy: B::Buf| {
            let ctx = nodes.ctx();
            let (dx, dw) = B::conv2d_backward(
                ctx,
                &g,
                &nodes.value(x),
                &nodes.value(weight),
                &B::view(ctx, &dy),
                nodes.requires_grad(x),
                nodes.requires_grad(weight),
            )?;
            Ok([dx.map(|d| (x, d)), dw.map(|d| (weight, d))]
                .into_iter()
                .flatten()
                .collect())
        })
    })
}

impl<T: Real> Conv2dKernels for T {
    fn conv2d_forward(_: &(), g: &ConvGeom, x: &&[T], weight: &&[T]) -> Result<Vec<T>> {
        Ok(cpu::forward(g, x, weight))
    }

    fn conv2d_backward(
        _: &(),
        g: &ConvGeom,
        x: &&[T],
        weight: &&[T],
        dy: &&[T],
        input: bool,
        filter: bool,
    ) -> Result<(Option<Vec<T>>, Option<Vec<T>>)> {
        Ok(cpu::backward(g, x, weight, dy, input, filter))
    }
}

/// Rows and columns of a block's output tile in the CUDA kernels (`CONV_TILE`).
pub const CONV2D_TILE: usize = 64;
/// Threads per block of every conv2d kernel: 16 × 16, each a 4×4 micro-tile.
pub const CONV2D_THREADS: u32 = 256;
/// The weight gradient splits its reduction until about this many blocks run: two per SM
/// of the 132-SM H100 / H200.
pub const WEIGHT_GRAD_TARGET_BLOCKS: usize = 264;
/// No split of the weight gradient's reduction is shorter than this many output pixels
/// (unless the whole reduction is): shorter chunks write and re-read more partial sums
/// than they save.
pub const WEIGHT_GRAD_MIN_CHUNK: usize = 256;
/// Reduction elements per shared-memory slice (`CONV_STEP`); chunks are multiples of it.
const CONV2D_STEP: usize = 8;

fn tile_grid(rows: usize, cols: usize, z: usize) -> LaunchDims {
    LaunchDims {
        grid: (
            blocks(rows, CONV2D_TILE),
            blocks(cols, CONV2D_TILE),
            z.clamp(1, u32::MAX as usize) as u32,
        ),
        block: (CONV2D_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// `conv2d_forward_f32`: one 64×64 tile of (output pixels `n·p·q`) × (output channels)
/// per block. The launch functions take a geometry the kernels accept (sizes ≥ 1, kernel
/// fits the padded input), as the CUDA wrappers check.
pub fn conv2d_forward_launch(g: &ConvGeom) -> LaunchDims {
    tile_grid(g.n * g.h_out() * g.w_out(), g.c_out, 1)
}

/// `conv2d_backward_input_f32`: grid z = `stride²` residue classes of the input pixels;
/// x and y tile the largest class's pixels (`n·⌈h/stride⌉·⌈w/stride⌉`) × input channels.
pub fn conv2d_input_launch(g: &ConvGeom) -> LaunchDims {
    let st = g.stride.max(1);
    let class_pixels = g.n * g.h.div_ceil(st) * g.w.div_ceil(st);
    tile_grid(class_pixels, g.c_in, st * st)
}

/// How `conv2d_backward_weight_f32` cuts its reduction over the `n·h_out·w_out` output
/// pixels into consecutive chunks, one per grid z.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightGradSplit {
    /// Chunks (grid z); 1 means the kernel writes dw directly.
    pub splits: usize,
    /// Output pixels per chunk (the last one may be shorter), a multiple of 8.
    pub chunk: usize,
}

/// The weight gradient's split: enough chunks for about [`WEIGHT_GRAD_TARGET_BLOCKS`]
/// blocks, none shorter than [`WEIGHT_GRAD_MIN_CHUNK`] (kernels/conv2d.cu says why).
/// Depends only on the geometry, so a geometry always sums in the same order.
pub fn conv2d_weight_split(g: &ConvGeom) -> WeightGradSplit {
    let reduction = (g.n * g.h_out() * g.w_out()).max(1);
    let tiles = g.patch().div_ceil(CONV2D_TILE).max(1) * g.c_out.div_ceil(CONV2D_TILE).max(1);
    let wanted = WEIGHT_GRAD_TARGET_BLOCKS.div_ceil(tiles);
    let most = reduction.div_ceil(WEIGHT_GRAD_MIN_CHUNK);
    let chunk = reduction
        .div_ceil(wanted.min(most).max(1))
        .next_multiple_of(CONV2D_STEP);
    WeightGradSplit {
        splits: reduction.div_ceil(chunk),
        chunk,
    }
}

/// f32 elements of the partial sums the weight gradient writes before its reduce pass:
/// `splits · c_out · c_in·k·k`, or 0 when there is one split (no reduce pass).
pub fn conv2d_weight_scratch_len(g: &ConvGeom) -> usize {
    match conv2d_weight_split(g).splits {
        1 => 0,
        splits => splits * g.c_out * g.patch(),
    }
}

/// `conv2d_backward_weight_f32`: one 64×64 tile of (`c_in·k·k`) × (output channels) per
/// block, grid z = the chunks of [`conv2d_weight_split`].
pub fn conv2d_weight_launch(g: &ConvGeom) -> LaunchDims {
    tile_grid(g.patch(), g.c_out, conv2d_weight_split(g).splits)
}

/// `conv2d_backward_weight_reduce_f32`: one weight element per thread.
pub fn conv2d_weight_reduce_launch(g: &ConvGeom) -> LaunchDims {
    LaunchDims {
        grid: (blocks(g.c_out * g.patch(), CONV2D_THREADS as usize), 1, 1),
        block: (CONV2D_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resnet(c_in: usize, side: usize, c_out: usize, k: usize, stride: usize) -> ConvGeom {
        ConvGeom {
            n: 128,
            c_in,
            h: side,
            w: side,
            c_out,
            k,
            stride,
            pad: k / 2,
        }
    }

    /// The split counts kernels/conv2d.cu's header argues from (ResNet-18, CIFAR, batch 128).
    #[test]
    fn weight_grad_split_for_resnet18_shapes() {
        let splits = |g: ConvGeom| conv2d_weight_split(&g).splits;
        assert_eq!(splits(resnet(3, 32, 64, 3, 1)), 261, "stem");
        assert_eq!(splits(resnet(64, 32, 64, 3, 1)), 30, "group 1");
        assert_eq!(
            splits(resnet(64, 32, 128, 1, 2)),
            128,
            "1×1 stride-2 shortcut"
        );
        assert_eq!(splits(resnet(512, 4, 512, 3, 1)), 1, "group 4");
    }

    /// Chunks are whole slices, cover the reduction, and none is empty.
    #[test]
    fn weight_grad_chunks_cover_the_reduction() {
        for g in [
            resnet(3, 32, 64, 3, 1),
            resnet(256, 16, 512, 3, 2),
            ConvGeom {
                n: 1,
                c_in: 3,
                h: 1,
                w: 1,
                c_out: 5,
                k: 3,
                stride: 1,
                pad: 1,
            },
        ] {
            let s = conv2d_weight_split(&g);
            let reduction = g.n * g.h_out() * g.w_out();
            assert_eq!(s.chunk % CONV2D_STEP, 0);
            assert!(s.chunk * s.splits >= reduction);
            assert!(s.chunk * (s.splits - 1) < reduction, "{g:?}: {s:?}");
        }
    }
}
