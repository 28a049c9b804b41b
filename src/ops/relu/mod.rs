//! ReLU, forward and backward: the baseline the SPARTA gate is measured against.
//!
//! CPU functions in [`cpu`] (generic over [`crate::Real`]), CUDA wrappers over device
//! buffers in [`cuda`], and [`forward`] / [`backward`] taking host slices on any
//! [`Device`]. Convention at 0: `dx = dy · [x > 0]`.

pub mod cpu;
pub mod cuda;

use crate::error::{check_len, Result};
use crate::ops::LaunchDims;
use crate::Device;

/// Threads per block of the ReLU kernels.
pub const RELU_THREADS: u32 = 256;
/// Elements each thread loads before storing (`RELU_ILP` in `kernels/relu.cu`).
pub const RELU_ILP: usize = 4;
/// Upper bound on blocks: past it the grid-stride loop gives each thread more work.
pub const RELU_MAX_BLOCKS: usize = 8192;

/// Launch shape of `relu_forward_*` and `relu_backward_*` for `len` elements: 1-D,
/// [`RELU_THREADS`] threads, `min(ceil(len / (256·RELU_ILP)), RELU_MAX_BLOCKS)` blocks.
pub fn relu_launch(len: usize) -> LaunchDims {
    let per_block = RELU_THREADS as usize * RELU_ILP;
    let blocks = len.div_ceil(per_block).clamp(1, RELU_MAX_BLOCKS);
    LaunchDims {
        grid: (blocks as u32, 1, 1),
        block: (RELU_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// `y = max(x, 0)` on `device` with host slices (the CUDA path uploads, runs, downloads).
///
/// ```
/// use sparta::{ops::relu, Device};
/// let mut y = [0.0f32; 2];
/// relu::forward(&Device::Cpu, &[-3.0, 4.0], &mut y)?;
/// assert_eq!(y, [0.0, 4.0]);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn forward(device: &Device, x: &[f32], y: &mut [f32]) -> Result<()> {
    match device {
        Device::Cpu => cpu::relu_forward(x, y),
        Device::Cuda(gpu) => {
            check_len("relu_forward", "y", y.len(), x.len())?;
            let stream = gpu.stream();
            let x_dev = stream.clone_htod(x)?;
            let mut y_dev = stream.alloc_zeros::<f32>(x.len())?;
            cuda::relu_forward(gpu, &x_dev.as_view(), &mut y_dev.as_view_mut())?;
            stream.memcpy_dtoh(&y_dev, y)?;
            stream.synchronize()?;
            Ok(())
        }
    }
}

/// `dx = dy · [x > 0]` on `device` with host slices.
///
/// ```
/// use sparta::{ops::relu, Device};
/// let mut dx = [0.0f32; 2];
/// relu::backward(&Device::Cpu, &[-3.0, 4.0], &[1.0, 2.0], &mut dx)?;
/// assert_eq!(dx, [0.0, 2.0]);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn backward(device: &Device, x: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
    match device {
        Device::Cpu => cpu::relu_backward(x, dy, dx),
        Device::Cuda(gpu) => {
            check_len("relu_backward", "dy", dy.len(), x.len())?;
            check_len("relu_backward", "dx", dx.len(), x.len())?;
            let stream = gpu.stream();
            let x_dev = stream.clone_htod(x)?;
            let dy_dev = stream.clone_htod(dy)?;
            let mut dx_dev = stream.alloc_zeros::<f32>(x.len())?;
            cuda::relu_backward(
                gpu,
                &x_dev.as_view(),
                &dy_dev.as_view(),
                &mut dx_dev.as_view_mut(),
            )?;
            stream.memcpy_dtoh(&dx_dev, dx)?;
            stream.synchronize()?;
            Ok(())
        }
    }
}

mod tape;
pub use tape::relu;
