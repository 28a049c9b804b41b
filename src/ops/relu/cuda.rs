//! ReLU on a CUDA GPU (`kernels/relu.cu`) over caller-owned device buffers.

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::relu_launch;
use crate::error::{check_len, Result};
use crate::ops::dtype::{check_kernel_len, kernel_name, KernelFloat};
use crate::Gpu;

/// `y = max(x, 0)` on the GPU (kernel `relu_forward_<T>`), queued on `gpu.stream()`.
pub fn relu_forward<T: KernelFloat>(
    gpu: &Gpu,
    x: &CudaView<'_, T>,
    y: &mut CudaViewMut<'_, T>,
) -> Result<()> {
    check_len("relu_forward", "y", y.len(), x.len())?;
    check_kernel_len("relu_forward", "x", x.len())?;
    let f = gpu.function("relu", &kernel_name::<T>("relu_forward"))?;
    let len = x.len() as i64;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(x).arg(y).arg(&len);
    // SAFETY: arguments match relu_forward_<T>(const T* x, T* y, long long len) and
    // both buffers hold `len` elements (checked above).
    unsafe { launch.launch(relu_launch(x.len()).into()) }?;
    Ok(())
}

/// `dx = dy · [x > 0]` on the GPU (kernel `relu_backward_<T>`).
pub fn relu_backward<T: KernelFloat>(
    gpu: &Gpu,
    x: &CudaView<'_, T>,
    dy: &CudaView<'_, T>,
    dx: &mut CudaViewMut<'_, T>,
) -> Result<()> {
    check_len("relu_backward", "dy", dy.len(), x.len())?;
    check_len("relu_backward", "dx", dx.len(), x.len())?;
    check_kernel_len("relu_backward", "x", x.len())?;
    let f = gpu.function("relu", &kernel_name::<T>("relu_backward"))?;
    let len = x.len() as i64;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(x).arg(dy).arg(dx).arg(&len);
    // SAFETY: arguments match relu_backward_<T>(const T* x, const T* dy, T* dx,
    // long long len); all three buffers hold `len` elements (checked above).
    unsafe { launch.launch(relu_launch(x.len()).into()) }?;
    Ok(())
}
