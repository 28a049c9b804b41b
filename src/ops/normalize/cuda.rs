//! Input normalization on a CUDA GPU (`kernels/normalize.cu`), f32, over device views.

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::normalize_launch;
use crate::error::{check_len, Error, Result};
use crate::ops::kernel_args::{kernel_int, kernel_long};
use crate::Gpu;

/// `(len, c, hw)` as kernel arguments, after checking `std` and that `x` is whole images.
fn dims(
    op: &'static str,
    x_len: usize,
    channels: usize,
    hw: usize,
    stdev_len: usize,
) -> Result<(i64, i32, i32)> {
    check_len(op, "std", stdev_len, channels)?;
    let image = channels * hw;
    if image == 0 || x_len % image != 0 {
        return Err(Error::shape(
            op,
            "x",
            format!("a multiple of C·H·W = {image} elements (C, H·W ≥ 1)"),
            x_len,
        ));
    }
    Ok((
        kernel_long(op, "len", x_len)?,
        kernel_int(op, "c", channels)?,
        kernel_int(op, "h·w", hw)?,
    ))
}

/// `y = (x − mean[c]) / std[c]` on `x [N, channels, hw]` (`N` from `x.len()`), as
/// [`super::normalize`] forms it; `y` is overwritten.
pub fn normalize_forward(
    gpu: &Gpu,
    channels: usize,
    hw: usize,
    x: &CudaView<'_, f32>,
    mean: &CudaView<'_, f32>,
    stdev: &CudaView<'_, f32>,
    y: &mut CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "normalize_forward";
    check_len(OP, "mean", mean.len(), channels)?;
    check_len(OP, "y", y.len(), x.len())?;
    let (len, c, hw_arg) = dims(OP, x.len(), channels, hw, stdev.len())?;
    let f = gpu.function("normalize", "normalize_forward_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(x).arg(mean).arg(stdev).arg(y);
    launch.arg(&len).arg(&c).arg(&hw_arg);
    // SAFETY: matches normalize_forward_f32(x, mean, stdev, y, len, c, hw); lengths
    // checked.
    unsafe { launch.launch(normalize_launch(x.len()).into()) }?;
    Ok(())
}

/// The input gradient `dx = dy / std[c]`; `dx` is overwritten.
pub fn normalize_backward(
    gpu: &Gpu,
    channels: usize,
    hw: usize,
    dy: &CudaView<'_, f32>,
    stdev: &CudaView<'_, f32>,
    dx: &mut CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "normalize_backward";
    check_len(OP, "dx", dx.len(), dy.len())?;
    let (len, c, hw_arg) = dims(OP, dy.len(), channels, hw, stdev.len())?;
    let f = gpu.function("normalize", "normalize_backward_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(dy).arg(stdev).arg(dx);
    launch.arg(&len).arg(&c).arg(&hw_arg);
    // SAFETY: matches normalize_backward_f32(dy, stdev, dx, len, c, hw); lengths checked.
    unsafe { launch.launch(normalize_launch(dy.len()).into()) }?;
    Ok(())
}
