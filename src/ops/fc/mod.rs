//! Small fully connected layer over a batch of vectors: `y[n] = W · x[n] + b`.
//!
//! DSCANet's per-sample layers are this op: Conv1 and Conv2 (CANet) on the pooled vector
//! p, and Conv4 (DPNet) on q. A 1×1 conv on a 1×1 map is a linear layer, so the weight
//! `[out, in]` is PyTorch's `[out, in, 1, 1]` without the trailing ones.
//!
//! ```
//! use sparta::ops::fc::{cpu, FcShape};
//! let shape = FcShape::new(1, 2, 1).unwrap();
//! let mut y = vec![0.0f64];
//! cpu::fc_forward(&shape, &[3.0, 4.0], &[1.0, 2.0], &[0.5], &mut y).unwrap();
//! assert_eq!(y, vec![11.5]);
//! ```

pub mod cpu;
pub mod cuda;
pub mod tape;

pub use tape::{linear, FcKernels};

use crate::error::{Error, Result};
use crate::ops::kernel_args::blocks;
use crate::ops::LaunchDims;

/// Shape of a batched linear layer: `n` vectors, `inp → out` features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FcShape {
    /// Batch size.
    pub n: usize,
    /// Input features.
    pub inp: usize,
    /// Output features.
    pub out: usize,
}

impl FcShape {
    /// Checks that every size is at least one.
    pub fn new(n: usize, inp: usize, out: usize) -> Result<Self> {
        if n == 0 || inp == 0 || out == 0 {
            return Err(Error::Config(format!(
                "fc: n {n}, in {inp} and out {out} must all be ≥ 1"
            )));
        }
        Ok(FcShape { n, inp, out })
    }
}

/// Threads per block of the FC kernels.
pub const FC_THREADS: u32 = 256;

fn threads_per_item(items: usize) -> LaunchDims {
    LaunchDims {
        grid: (blocks(items, FC_THREADS as usize), 1, 1),
        block: (FC_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// `fc_forward_f32`: one warp per output `y[n][o]`.
pub fn fc_forward_launch(shape: &FcShape) -> LaunchDims {
    threads_per_item(shape.n * shape.out * 32)
}

/// `fc_backward_input_f32`: one thread per `dx[n][i]`.
pub fn fc_input_launch(shape: &FcShape) -> LaunchDims {
    threads_per_item(shape.n * shape.inp)
}

/// `fc_backward_params_f32`: one thread per weight `dw[o][i]` and per bias `db[o]`.
pub fn fc_params_launch(shape: &FcShape) -> LaunchDims {
    threads_per_item(shape.out * (shape.inp + 1))
}
