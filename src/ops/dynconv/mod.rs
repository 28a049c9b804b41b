//! Per-sample dynamic 1×1 convolution to one channel (DSCANet's Conv5):
//! `s[n, p] = Σ_k w[n, k] · h[n, k, p] + b[n]`, with weights `w[n]`, `b[n]` that differ per
//! sample (DPNet's Conv4 predicts them; without DPNet they are one learned vector
//! broadcast over the batch).
//!
//! ```
//! use sparta::ops::dynconv::{cpu, DynConvShape};
//! let shape = DynConvShape::new(1, 2, 2).unwrap();
//! let h = [1.0f64, 2.0, /* channel 1 */ 3.0, 4.0];
//! let mut s = vec![0.0; 2];
//! cpu::dynconv_forward(&shape, &h, &[1.0, -1.0], &[0.5], &mut s).unwrap();
//! assert_eq!(s, vec![-1.5, -1.5]);
//! ```

pub mod cpu;
pub mod cuda;

use crate::error::{Error, Result};
use crate::launch::kernel_args::blocks;
use crate::ops::LaunchDims;

/// Shape of the dynamic conv: `n` samples, `k` input channels, `pixels` per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DynConvShape {
    /// Samples.
    pub n: usize,
    /// Input channels (Co).
    pub k: usize,
    /// Pixels per channel plane.
    pub pixels: usize,
}

impl DynConvShape {
    /// Checks that every size is at least one.
    pub fn new(n: usize, k: usize, pixels: usize) -> Result<Self> {
        if n == 0 || k == 0 || pixels == 0 {
            return Err(Error::Config(format!(
                "dynconv: n {n}, k {k} and pixels {pixels} must all be ≥ 1"
            )));
        }
        Ok(DynConvShape { n, k, pixels })
    }

    /// Input elements `n·k·pixels`.
    pub fn h_len(&self) -> usize {
        self.n * self.k * self.pixels
    }

    /// Output elements `n·pixels`.
    pub fn s_len(&self) -> usize {
        self.n * self.pixels
    }
}

/// Threads per block of the dynamic-conv kernels.
pub const DYNCONV_THREADS: u32 = 256;

fn linear(items: usize) -> LaunchDims {
    LaunchDims {
        grid: (blocks(items, DYNCONV_THREADS as usize), 1, 1),
        block: (DYNCONV_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// `dynconv_forward_f32`: one thread per `s[n][p]`.
pub fn dynconv_forward_launch(shape: &DynConvShape) -> LaunchDims {
    linear(shape.s_len())
}

/// `dynconv_backward_input_f32`: one thread per `dh` element.
pub fn dynconv_input_launch(shape: &DynConvShape) -> LaunchDims {
    linear(shape.h_len())
}

/// `dynconv_backward_weight_f32`: one warp per `dw[n][k]`.
pub fn dynconv_weight_launch(shape: &DynConvShape) -> LaunchDims {
    linear(shape.n * shape.k * 32)
}

/// `dynconv_backward_bias_f32`: one block per sample.
pub fn dynconv_bias_launch(shape: &DynConvShape) -> LaunchDims {
    LaunchDims {
        grid: (shape.n.max(1) as u32, 1, 1),
        block: (DYNCONV_THREADS, 1, 1),
        shared_bytes: 0,
    }
}
