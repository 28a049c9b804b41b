//! The pointwise activations on a [`KernelDevice`] (`kernels/pointwise.cu`, f32; ReLU
//! through `kernels/relu.cu`), over caller-owned device views.

use super::{pointwise_launch, Pointwise};
use crate::alloc::CachingDevice;
use crate::backend::{Buf, OnDevice, View};
use crate::error::{check_len, Result};
use crate::launch::{Determinism, KernelArg, KernelDevice, ViewLen};
use crate::ops::dtype::check_kernel_len;
use crate::ops::relu::cuda::{relu_backward, relu_forward};

/// `y = kind(x)` (kernel `pointwise_forward_f32`, or `relu_forward_f32`).
pub fn pointwise_forward<D: KernelDevice>(
    dev: &D,
    kind: Pointwise,
    x: &D::View<'_, f32>,
    y: &mut D::ViewMut<'_, f32>,
) -> Result<()> {
    let Some(code) = kind.kernel_kind() else {
        return relu_forward(dev, x, y);
    };
    const OP: &str = "pointwise_forward";
    check_len(OP, "y", y.len(), x.len())?;
    check_kernel_len(OP, "x", x.len())?;
    let len = x.len();
    let args = [
        dev.read(x),
        dev.write(y),
        KernelArg::I64(len as i64),
        KernelArg::I32(code),
    ];
    // SAFETY: arguments match pointwise_forward_f32(x, y, len, kind); both views hold
    // `len` elements (checked above) and `code` is a kind the kernel knows.
    unsafe {
        dev.launch(
            "pointwise",
            "pointwise_forward_f32",
            pointwise_launch(len),
            Determinism::BitExact,
            &args,
        )
    }
}

/// `dx = dy · kind'(x)` (kernel `pointwise_backward_f32`, or `relu_backward_f32`).
pub fn pointwise_backward<D: KernelDevice>(
    dev: &D,
    kind: Pointwise,
    x: &D::View<'_, f32>,
    dy: &D::View<'_, f32>,
    dx: &mut D::ViewMut<'_, f32>,
) -> Result<()> {
    let Some(code) = kind.kernel_kind() else {
        return relu_backward(dev, x, dy, dx);
    };
    const OP: &str = "pointwise_backward";
    check_len(OP, "dy", dy.len(), x.len())?;
    check_len(OP, "dx", dx.len(), x.len())?;
    check_kernel_len(OP, "x", x.len())?;
    let len = x.len();
    let args = [
        dev.read(x),
        dev.read(dy),
        dev.write(dx),
        KernelArg::I64(len as i64),
        KernelArg::I32(code),
    ];
    // SAFETY: arguments match pointwise_backward_f32(x, dy, dx, len, kind); all three
    // views hold `len` elements (checked above).
    unsafe {
        dev.launch(
            "pointwise",
            "pointwise_backward_f32",
            pointwise_launch(len),
            Determinism::BitExact,
            &args,
        )
    }
}

impl<D: KernelDevice + 'static> super::tape::PointwiseKernels for OnDevice<D> {
    fn pointwise_forward(
        dev: &CachingDevice<D>,
        kind: Pointwise,
        x: &View<'_, Self>,
    ) -> Result<Buf<Self>> {
        let mut y = dev.alloc_scratch::<f32>("act.y", x.len())?;
        pointwise_forward(dev, kind, x, &mut dev.view_mut(&mut y))?;
        Ok(y)
    }

    fn pointwise_backward(
        dev: &CachingDevice<D>,
        kind: Pointwise,
        x: &View<'_, Self>,
        dy: &View<'_, Self>,
    ) -> Result<Buf<Self>> {
        let mut dx = dev.alloc_scratch::<f32>("act.dx", x.len())?;
        pointwise_backward(dev, kind, x, dy, &mut dev.view_mut(&mut dx))?;
        Ok(dx)
    }
}
