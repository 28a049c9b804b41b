//! Input normalization on a [`KernelDevice`] (`kernels/normalize.cu`), f32, over device
//! views.

use super::normalize_launch;
use crate::alloc::CachingDevice;
use crate::backend::{Buf, OnDevice, View};
use crate::error::{check_len, Error, Result};
use crate::launch::{Determinism, KernelArg, KernelDevice, ViewLen};
use crate::ops::kernel_args::{element_count, kernel_int, kernel_long};

/// `(len, c, hw)` as kernel arguments, after checking `std` and that `x` is whole images.
fn dims<B>(
    op: &'static str,
    x_len: usize,
    channels: usize,
    hw: usize,
    stdev_len: usize,
) -> Result<[KernelArg<B>; 3]> {
    check_len(op, "std", stdev_len, channels)?;
    let image = element_count(op, "c·h·w", &[channels, hw])?;
    if image == 0 || !x_len.is_multiple_of(image) {
        return Err(Error::shape(
            op,
            "x",
            format!("a multiple of C·H·W = {image} elements (C, H·W ≥ 1)"),
            x_len,
        ));
    }
    Ok([
        KernelArg::I64(kernel_long(op, "len", x_len)?),
        KernelArg::I32(kernel_int(op, "c", channels)?),
        KernelArg::I32(kernel_int(op, "h·w", hw)?),
    ])
}

/// `y = (x − mean[c]) / std[c]` on `x [N, channels, hw]` (`N` from `x.len()`), as
/// [`super::normalize`] forms it; `y` is overwritten.
pub fn normalize_forward<D: KernelDevice>(
    dev: &D,
    channels: usize,
    hw: usize,
    x: &D::View<'_, f32>,
    mean: &D::View<'_, f32>,
    stdev: &D::View<'_, f32>,
    y: &mut D::ViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "normalize_forward";
    check_len(OP, "mean", mean.len(), channels)?;
    check_len(OP, "y", y.len(), x.len())?;
    let [len, c, hw_arg] = dims(OP, x.len(), channels, hw, stdev.len())?;
    let args = [
        dev.read(x),
        dev.read(mean),
        dev.read(stdev),
        dev.write(y),
        len,
        c,
        hw_arg,
    ];
    // SAFETY: matches normalize_forward_f32(const float* x, const float* mean,
    // const float* stdev, float* y, long long len, int c, int hw); x and y hold len
    // elements, mean and stdev c (checked above), and element i reads channel
    // (i / hw) % c.
    unsafe {
        dev.launch(
            "normalize",
            "normalize_forward_f32",
            normalize_launch(x.len()),
            Determinism::BitExact,
            &args,
        )
    }
}

/// The input gradient `dx = dy / std[c]`; `dx` is overwritten.
pub fn normalize_backward<D: KernelDevice>(
    dev: &D,
    channels: usize,
    hw: usize,
    dy: &D::View<'_, f32>,
    stdev: &D::View<'_, f32>,
    dx: &mut D::ViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "normalize_backward";
    check_len(OP, "dx", dx.len(), dy.len())?;
    let [len, c, hw_arg] = dims(OP, dy.len(), channels, hw, stdev.len())?;
    let args = [dev.read(dy), dev.read(stdev), dev.write(dx), len, c, hw_arg];
    // SAFETY: matches normalize_backward_f32(const float* dy, const float* stdev,
    // float* dx, long long len, int c, int hw); dy and dx hold len elements, stdev c
    // (checked above), and element i reads channel (i / hw) % c.
    unsafe {
        dev.launch(
            "normalize",
            "normalize_backward_f32",
            normalize_launch(dy.len()),
            Determinism::BitExact,
            &args,
        )
    }
}

impl<D: KernelDevice + 'static> super::NormalizeKernels for OnDevice<D> {
    fn normalize_forward(
        dev: &CachingDevice<D>,
        c: usize,
        hw: usize,
        x: &View<'_, Self>,
        mean: &View<'_, Self>,
        std: &View<'_, Self>,
    ) -> Result<Buf<Self>> {
        let mut y = dev.alloc_scratch::<f32>("normalize.y", x.len())?;
        normalize_forward(dev, c, hw, x, mean, std, &mut dev.view_mut(&mut y))?;
        Ok(y)
    }

    fn normalize_backward(
        dev: &CachingDevice<D>,
        c: usize,
        hw: usize,
        dy: &View<'_, Self>,
        std: &View<'_, Self>,
    ) -> Result<Buf<Self>> {
        let mut dx = dev.alloc_scratch::<f32>("normalize.dx", dy.len())?;
        normalize_backward(dev, c, hw, dy, std, &mut dev.view_mut(&mut dx))?;
        Ok(dx)
    }
}
