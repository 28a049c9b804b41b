//! Ops: each in its own folder with its CPU kernel, CUDA wrapper and backward side by side.

pub mod conv1x1;
pub mod dtype;
pub mod dynconv;
pub mod fc;
pub mod gate;
pub(crate) mod kernel_args;
mod par;
pub mod pointwise;
pub mod pool;
pub(crate) mod reduce;
pub mod relu;
pub mod sanet;

pub use dtype::{GateMapFloat, KernelFloat};

/// Grid, block and dynamic shared memory of one kernel launch.
///
/// Each op computes its launch shape in one function that both the CUDA wrapper and
/// the CPU kernel harness (tests) use, so the harness runs exactly what the GPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchDims {
    /// Blocks in x, y, z.
    pub grid: (u32, u32, u32),
    /// Threads per block in x, y, z.
    pub block: (u32, u32, u32),
    /// Dynamic shared memory in bytes.
    pub shared_bytes: u32,
}

impl From<LaunchDims> for cudarc::driver::LaunchConfig {
    fn from(d: LaunchDims) -> Self {
        cudarc::driver::LaunchConfig {
            grid_dim: d.grid,
            block_dim: d.block,
            shared_mem_bytes: d.shared_bytes,
        }
    }
}

pub mod add;
pub mod batchnorm;
pub mod conv2d;
pub mod loss;
pub mod normalize;
pub mod pgd;
pub mod primitive;

#[cfg(test)]
mod gradcheck_tests;
