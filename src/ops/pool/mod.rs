//! Average pooling over B×B blocks of each plane; with one block covering the whole
//! plane ([`PoolShape::global`]) it is the spatial mean pool `p = mean_hw(X)`.
//!
//! Partial blocks at the right and bottom edges average over their valid pixels only, so
//! the output is `[planes, ceil(H/B), ceil(W/B)]` and every output is a true mean.
//!
//! ```
//! use sparta::ops::pool::{cpu, PoolShape};
//! // One 2×3 plane pooled by 2×2 blocks: a full block and a 2×1 edge block.
//! let shape = PoolShape::new(1, 2, 3, 2).unwrap();
//! let x = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
//! let mut y = vec![0.0; shape.out_len()];
//! cpu::pool_forward(&shape, &x, &mut y).unwrap();
//! assert_eq!(y, vec![3.0, 4.5]);
//! ```

pub mod cpu;
pub mod cuda;

use crate::error::{Error, Result};
use crate::ops::kernel_args::blocks;
use crate::ops::LaunchDims;

/// Shape of a block average pool: `planes` planes of `h × w`, blocks of `block × block`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    /// Independent planes (N·C).
    pub planes: usize,
    /// Plane height.
    pub h: usize,
    /// Plane width.
    pub w: usize,
    /// Block side B ≥ 1.
    pub block: usize,
}

impl PoolShape {
    /// Checks that every size is at least one.
    pub fn new(planes: usize, h: usize, w: usize, block: usize) -> Result<Self> {
        if planes == 0 || h == 0 || w == 0 || block == 0 {
            return Err(Error::Config(format!(
                "pool: planes {planes}, h {h}, w {w} and block {block} must all be ≥ 1"
            )));
        }
        Ok(PoolShape {
            planes,
            h,
            w,
            block,
        })
    }

    /// The mean over each whole plane: one block covering it.
    pub fn global(planes: usize, h: usize, w: usize) -> Result<Self> {
        Self::new(planes, h, w, h.max(w))
    }

    /// Output height `ceil(h / block)`.
    pub fn oh(&self) -> usize {
        self.h.div_ceil(self.block)
    }

    /// Output width `ceil(w / block)`.
    pub fn ow(&self) -> usize {
        self.w.div_ceil(self.block)
    }

    /// Input elements.
    pub fn in_len(&self) -> usize {
        self.planes * self.h * self.w
    }

    /// Output elements.
    pub fn out_len(&self) -> usize {
        self.planes * self.oh() * self.ow()
    }

    /// Pixels averaged by output cell `(oi, oj)` (fewer at the edges).
    pub fn count(&self, oi: usize, oj: usize) -> usize {
        let rows = self.h.min((oi + 1) * self.block) - oi * self.block;
        let cols = self.w.min((oj + 1) * self.block) - oj * self.block;
        rows * cols
    }
}

/// Threads per block of both pool kernels.
pub const POOL_THREADS: u32 = 256;

/// `pool_forward_f32`: one warp per output cell.
pub fn pool_forward_launch(shape: &PoolShape) -> LaunchDims {
    LaunchDims {
        grid: (blocks(shape.out_len() * 32, POOL_THREADS as usize), 1, 1),
        block: (POOL_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// `pool_backward_f32`: one input pixel per thread.
pub fn pool_backward_launch(shape: &PoolShape) -> LaunchDims {
    LaunchDims {
        grid: (blocks(shape.in_len(), POOL_THREADS as usize), 1, 1),
        block: (POOL_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

pub mod tape;
pub use tape::{avg_pool, global_avg_pool, PoolKernels};
