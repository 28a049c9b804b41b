//! The training augmentation on a [`KernelDevice`] (`kernels/augment.cu`), f32, over
//! device views.

use super::{crop_flip_launch, crop_flip_params, AugmentKernels, CropFlip};
use crate::alloc::CachingDevice;
use crate::backend::{Buf, OnDevice, View};
use crate::data::BatchShape;
use crate::error::{check_len, Result};
use crate::launch::{Determinism, KernelArg, KernelDevice, ViewLen};
use crate::ops::kernel_args::{element_count, kernel_int, kernel_long};

/// Crops and flips every image of the NCHW batch `src` into `dst` as `params` says
/// (`[dy, dx, flip]` per image, from [`super::crop_flip_params`] of
/// [`super::crop_flip_draws`]): what [`super::AugmentKernels::crop_flip`] does on the host.
pub fn crop_flip_batch<D: KernelDevice>(
    dev: &D,
    shape: BatchShape,
    src: &D::View<'_, f32>,
    dst: &mut D::ViewMut<'_, f32>,
    params: &D::View<'_, i32>,
) -> Result<()> {
    const OP: &str = "crop_flip_batch";
    let [n, c, h, w] = shape;
    let len = element_count(OP, "n·c·h·w", &shape)?;
    check_len(OP, "src", src.len(), len)?;
    check_len(OP, "dst", dst.len(), len)?;
    check_len(
        OP,
        "params",
        params.len(),
        element_count(OP, "3·n", &[3, n])?,
    )?;
    kernel_long(OP, "n·c·h·w", len)?;
    let [n, c, h, w] = [
        kernel_int(OP, "n", n)?,
        kernel_int(OP, "c", c)?,
        kernel_int(OP, "h", h)?,
        kernel_int(OP, "w", w)?,
    ];
    let args = [
        dev.read(src),
        dev.write(dst),
        dev.read(params),
        KernelArg::I32(n),
        KernelArg::I32(c),
        KernelArg::I32(h),
        KernelArg::I32(w),
    ];
    // SAFETY: matches augment_crop_flip_f32(const float* src, float* dst,
    // const int* params, int n, int c, int h, int w); src and dst hold n·c·h·w elements
    // and params 3·n (checked above), and a source pixel is read only where the shifted
    // row and column fall inside the image.
    unsafe {
        dev.launch(
            "augment",
            "augment_crop_flip_f32",
            crop_flip_launch(len),
            Determinism::BitExact,
            &args,
        )
    }
}

impl<D: KernelDevice + 'static> AugmentKernels for OnDevice<D> {
    fn crop_flip(
        dev: &CachingDevice<D>,
        shape: BatchShape,
        x: &View<'_, Self>,
        draws: &[CropFlip],
    ) -> Result<Buf<Self>> {
        let params = dev.upload("augment.params", &crop_flip_params(draws))?;
        let mut y = dev.alloc_scratch::<f32>("augment.x", x.len())?;
        crop_flip_batch(dev, shape, x, &mut dev.view_mut(&mut y), &dev.view(&params))?;
        Ok(y)
    }
}
