//! ReLU on a [`KernelDevice`] (`kernels/relu.cu`) over caller-owned device views.

use super::relu_launch;
use crate::error::{check_len, Result};
use crate::launch::{Determinism, KernelArg, KernelDevice, ViewLen};
use crate::ops::dtype::{check_kernel_len, kernel_name, KernelFloat};

/// `y = max(x, 0)` (kernel `relu_forward_<T>`), queued on the device.
pub fn relu_forward<D: KernelDevice, T: KernelFloat>(
    dev: &D,
    x: &D::View<'_, T>,
    y: &mut D::ViewMut<'_, T>,
) -> Result<()> {
    check_len("relu_forward", "y", y.len(), x.len())?;
    check_kernel_len("relu_forward", "x", x.len())?;
    let len = x.len();
    let args = [dev.read(x), dev.write(y), KernelArg::I64(len as i64)];
    // SAFETY: arguments match relu_forward_<T>(const T* x, T* y, long long len) and
    // both views hold `len` elements (checked above).
    unsafe {
        dev.launch(
            "relu",
            &kernel_name::<T>("relu_forward"),
            relu_launch(len),
            Determinism::BitExact,
            &args,
        )
    }
}

/// `dx = dy · [x > 0]` (kernel `relu_backward_<T>`).
pub fn relu_backward<D: KernelDevice, T: KernelFloat>(
    dev: &D,
    x: &D::View<'_, T>,
    dy: &D::View<'_, T>,
    dx: &mut D::ViewMut<'_, T>,
) -> Result<()> {
    check_len("relu_backward", "dy", dy.len(), x.len())?;
    check_len("relu_backward", "dx", dx.len(), x.len())?;
    check_kernel_len("relu_backward", "x", x.len())?;
    let len = x.len();
    let args = [
        dev.read(x),
        dev.read(dy),
        dev.write(dx),
        KernelArg::I64(len as i64),
    ];
    // SAFETY: arguments match relu_backward_<T>(const T* x, const T* dy, T* dx,
    // long long len); all three views hold `len` elements (checked above).
    unsafe {
        dev.launch(
            "relu",
            &kernel_name::<T>("relu_backward"),
            relu_launch(len),
            Determinism::BitExact,
            &args,
        )
    }
}
