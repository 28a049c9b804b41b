//! Element-wise addition on a [`KernelDevice`] (`kernels/add.cu`), f32, over device
//! views: the device backend's [`super::Backend::add`], which sums gradients on the tape
//! and adds residuals (`crate::ops::add`).

use crate::error::{check_len, Result};
use crate::launch::kernel_args::{blocks, kernel_long};
use crate::launch::{Determinism, KernelArg, KernelDevice, LaunchDims, ViewLen};

/// Threads per block of `add_forward_f32`.
pub const ADD_THREADS: u32 = 256;

/// Most blocks of `add_forward_f32` (it is grid-stride).
pub const ADD_MAX_BLOCKS: u32 = 8192;

/// `add_forward_f32` over `len` elements: grid-stride.
pub fn add_launch(len: usize) -> LaunchDims {
    LaunchDims {
        grid: (blocks(len, ADD_THREADS as usize).min(ADD_MAX_BLOCKS), 1, 1),
        block: (ADD_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// `y = a + b` (the residual connection); `y` is overwritten. The gradient of both
/// inputs is the incoming gradient itself, so there is no backward kernel.
pub fn add_forward<D: KernelDevice>(
    dev: &D,
    a: &D::View<'_, f32>,
    b: &D::View<'_, f32>,
    y: &mut D::ViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "add_forward";
    check_len(OP, "b", b.len(), a.len())?;
    check_len(OP, "y", y.len(), a.len())?;
    let len = kernel_long(OP, "len", a.len())?;
    let args = [dev.read(a), dev.read(b), dev.write(y), KernelArg::I64(len)];
    // SAFETY: matches add_forward_f32(const float* a, const float* b, float* y,
    // long long len); all three views hold len elements (checked above).
    unsafe {
        dev.launch(
            "add",
            "add_forward_f32",
            add_launch(a.len()),
            Determinism::BitExact,
            &args,
        )
    }
}
