//! Optimizers and learning-rate schedules.

pub mod cuda;
pub mod schedule;
pub mod sgd;

pub use schedule::LrSchedule;
pub use sgd::{SgdKernels, SgdStep};

use crate::ops::kernel_args::blocks;
use crate::ops::LaunchDims;

/// Threads per block of `sgd_update_f32`.
pub const SGD_THREADS: u32 = 256;

/// Most blocks of `sgd_update_f32` (it is grid-stride).
pub const SGD_MAX_BLOCKS: u32 = 8192;

/// `sgd_update_f32` over `len` elements: grid-stride, one element per thread per step.
pub fn sgd_launch(len: usize) -> LaunchDims {
    LaunchDims {
        grid: (blocks(len, SGD_THREADS as usize).min(SGD_MAX_BLOCKS), 1, 1),
        block: (SGD_THREADS, 1, 1),
        shared_bytes: 0,
    }
}
