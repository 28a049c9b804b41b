//! 1×1 convolution over pixels: `y[n] = W · x[n] + b`, with `x[n]` the `cin × pixels`
//! matrix of sample n (NCHW, pixels as columns), so each sample is one row-major GEMM.
//!
//! DSCANet's Conv3 is this op; its backward gives the input, weight and bias gradients.
//!
//! ```
//! use sparta::ops::conv1x1::{cpu, Conv1x1Shape};
//! let shape = Conv1x1Shape::new(1, 2, 1, 3).unwrap();
//! let x = [1.0f64, 2.0, 3.0, /* channel 1 */ 10.0, 20.0, 30.0];
//! let (w, b) = ([1.0, 0.5], [0.25]);
//! let mut y = vec![0.0; 3];
//! cpu::conv1x1_forward(&shape, &x, &w, &b, &mut y).unwrap();
//! assert_eq!(y, vec![6.25, 12.25, 18.25]);
//! ```

pub mod cpu;
pub mod cuda;

use crate::error::{Error, Result};
use crate::launch::kernel_args::blocks;
use crate::ops::LaunchDims;

/// Shape of a 1×1 convolution: `n` samples, `cin → cout` channels, `pixels` = H·W.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1x1Shape {
    /// Samples.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Pixels per channel plane.
    pub pixels: usize,
}

impl Conv1x1Shape {
    /// Checks that every size is at least one.
    pub fn new(n: usize, cin: usize, cout: usize, pixels: usize) -> Result<Self> {
        if n == 0 || cin == 0 || cout == 0 || pixels == 0 {
            return Err(Error::Config(format!(
                "conv1x1: n {n}, cin {cin}, cout {cout} and pixels {pixels} must all be ≥ 1"
            )));
        }
        Ok(Conv1x1Shape {
            n,
            cin,
            cout,
            pixels,
        })
    }

    /// Input elements `n·cin·pixels`.
    pub fn x_len(&self) -> usize {
        self.n * self.cin * self.pixels
    }

    /// Output elements `n·cout·pixels`.
    pub fn y_len(&self) -> usize {
        self.n * self.cout * self.pixels
    }

    /// Weight elements `cout·cin` (PyTorch shape `[cout, cin, 1, 1]`).
    pub fn w_len(&self) -> usize {
        self.cout * self.cin
    }

    /// Multiply-adds of one forward pass (each backward GEMM does as many).
    pub fn macs(&self) -> usize {
        self.n * self.cout * self.cin * self.pixels
    }
}

/// Side of the square tiles of the 1×1-conv kernels (`CONV_TILE` in conv1x1_tile.cuh).
pub const CONV_TILE: u32 = 16;
/// At most this many z-blocks split the weight gradient's sum over samples.
pub const WEIGHT_GRAD_SPLITS: usize = 32;
/// Threads per block of the bias-gradient and mask kernels.
pub const REDUCE_THREADS: u32 = 256;

/// Forward and input-gradient kernels (and the fused SANet tile kernels): one 16×16 tile
/// of `rows × pixels` outputs per block, one sample per grid z.
pub fn conv1x1_tile_launch(rows: usize, pixels: usize, n: usize) -> LaunchDims {
    let t = CONV_TILE as usize;
    LaunchDims {
        grid: (blocks(pixels, t), blocks(rows, t), n.max(1) as u32),
        block: (CONV_TILE, CONV_TILE, 1),
        shared_bytes: 0,
    }
}

/// `conv1x1_backward_weight_f32`: one 16×16 tile of the weight per block, the samples
/// split over up to [`WEIGHT_GRAD_SPLITS`] z-blocks.
pub fn conv1x1_weight_launch(shape: &Conv1x1Shape) -> LaunchDims {
    let t = CONV_TILE as usize;
    LaunchDims {
        grid: (
            blocks(shape.cin, t),
            blocks(shape.cout, t),
            shape.n.clamp(1, WEIGHT_GRAD_SPLITS) as u32,
        ),
        block: (CONV_TILE, CONV_TILE, 1),
        shared_bytes: 0,
    }
}

/// `conv1x1_backward_bias_f32`: one block per output channel.
pub fn conv1x1_bias_launch(shape: &Conv1x1Shape) -> LaunchDims {
    LaunchDims {
        grid: (shape.cout.max(1) as u32, 1, 1),
        block: (REDUCE_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// `relu_mask_f32`: one element per thread.
pub fn relu_mask_launch(len: usize) -> LaunchDims {
    LaunchDims {
        grid: (blocks(len, REDUCE_THREADS as usize), 1, 1),
        block: (REDUCE_THREADS, 1, 1),
        shared_bytes: 0,
    }
}
