//! Element-wise addition on a CUDA GPU (`kernels/add.cu`), f32, over device views.

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::add_launch;
use crate::error::{check_len, Result};
use crate::ops::kernel_args::kernel_long;
use crate::Gpu;

/// `y = a + b` (the residual connection); `y` is overwritten. The gradient of both
/// inputs is the incoming gradient itself, so there is no backward kernel.
pub fn add_forward(
    gpu: &Gpu,
    a: &CudaView<'_, f32>,
    b: &CudaView<'_, f32>,
    y: &mut CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "add_forward";
    check_len(OP, "b", b.len(), a.len())?;
    check_len(OP, "y", y.len(), a.len())?;
    let len = kernel_long(OP, "len", a.len())?;
    let f = gpu.function("add", "add_forward_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(a).arg(b).arg(y).arg(&len);
    // SAFETY: matches add_forward_f32(a, b, y, len); lengths checked.
    unsafe { launch.launch(add_launch(a.len()).into()) }?;
    Ok(())
}
