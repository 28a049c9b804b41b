//! The training augmentation on a CUDA GPU (`kernels/augment.cu`), f32, over device
//! views.

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::crop_flip_launch;
use crate::classifier::BatchShape;
use crate::error::{check_len, Result};
use crate::ops::kernel_args::{kernel_int, kernel_long};
use crate::Gpu;

/// Crops and flips every image of the NCHW batch `src` into `dst` as `params` says
/// (`[dy, dx, flip]` per image, from [`super::crop_flip_params`] of
/// [`super::crop_flip_draws`]): the device counterpart of [`super::crop_flip_batch`].
pub fn crop_flip_batch(
    gpu: &Gpu,
    shape: BatchShape,
    src: &CudaView<'_, f32>,
    dst: &mut CudaViewMut<'_, f32>,
    params: &CudaView<'_, i32>,
) -> Result<()> {
    const OP: &str = "crop_flip_batch";
    let [n, c, h, w] = shape;
    let len = n * c * h * w;
    check_len(OP, "src", src.len(), len)?;
    check_len(OP, "dst", dst.len(), len)?;
    check_len(OP, "params", params.len(), 3 * n)?;
    kernel_long(OP, "n·c·h·w", len)?;
    let dims = [
        kernel_int(OP, "n", n)?,
        kernel_int(OP, "c", c)?,
        kernel_int(OP, "h", h)?,
        kernel_int(OP, "w", w)?,
    ];
    let f = gpu.function("augment", "augment_crop_flip_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(src).arg(dst).arg(params);
    for d in &dims {
        launch.arg(d);
    }
    // SAFETY: matches augment_crop_flip_f32(src, dst, params, n, c, h, w); lengths
    // checked.
    unsafe { launch.launch(crop_flip_launch(len).into()) }?;
    Ok(())
}
