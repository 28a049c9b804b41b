//! Block average pool on a [`KernelDevice`] (`kernels/pool.cu`) over device views: the
//! activation side (`x`, `dx`) stored as f32, f16 or bf16, the pooled side always f32.

use super::{pool_backward_launch, pool_forward_launch, PoolShape};
use crate::alloc::CachingDevice;
use crate::backend::{Buf, OnDevice, View};
use crate::error::{check_len, Result};
use crate::launch::{Determinism, KernelArg, KernelDevice, ViewLen};
use crate::ops::dtype::{kernel_name, KernelFloat};
use crate::ops::kernel_args::{kernel_int, kernel_long};

/// The shape as the kernels' `int` arguments `(h, w, block)`.
fn dims<B>(op: &'static str, shape: &PoolShape) -> Result<[KernelArg<B>; 3]> {
    Ok([
        KernelArg::I32(kernel_int(op, "h", shape.h)?),
        KernelArg::I32(kernel_int(op, "w", shape.w)?),
        KernelArg::I32(kernel_int(op, "block", shape.block)?),
    ])
}

/// `y` = block means of `x` (overwritten; kernel `pool_forward_<T>`); see
/// [`super::cpu::pool_forward`].
pub fn pool_forward<D: KernelDevice, T: KernelFloat>(
    dev: &D,
    shape: &PoolShape,
    x: &D::View<'_, T>,
    y: &mut D::ViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "pool_forward";
    check_len(OP, "x", x.len(), shape.in_len())?;
    check_len(OP, "y", y.len(), shape.out_len())?;
    let out_len = kernel_long(OP, "y", shape.out_len())?;
    let [h, w, b] = dims(OP, shape)?;
    let args = [dev.read(x), dev.write(y), KernelArg::I64(out_len), h, w, b];
    // SAFETY: matches pool_forward_<T>(x, y, out_len, h, w, block); lengths checked.
    unsafe {
        dev.launch(
            "pool",
            &kernel_name::<T>(OP),
            pool_forward_launch(shape),
            Determinism::BitExact,
            &args,
        )
    }
}

/// Adds the pool's input gradient to `dx` (in f32, rounded once to `T`; kernel
/// `pool_backward_<T>`); see [`super::cpu::pool_backward`].
pub fn pool_backward<D: KernelDevice, T: KernelFloat>(
    dev: &D,
    shape: &PoolShape,
    dy: &D::View<'_, f32>,
    dx: &mut D::ViewMut<'_, T>,
) -> Result<()> {
    const OP: &str = "pool_backward";
    check_len(OP, "dy", dy.len(), shape.out_len())?;
    check_len(OP, "dx", dx.len(), shape.in_len())?;
    let in_len = kernel_long(OP, "dx", shape.in_len())?;
    let [h, w, b] = dims(OP, shape)?;
    let args = [dev.read(dy), dev.write(dx), KernelArg::I64(in_len), h, w, b];
    // SAFETY: matches pool_backward_<T>(dy, dx, in_len, h, w, block); lengths checked.
    unsafe {
        dev.launch(
            "pool",
            &kernel_name::<T>(OP),
            pool_backward_launch(shape),
            Determinism::BitExact,
            &args,
        )
    }
}

impl<D: KernelDevice + 'static> super::tape::PoolKernels for OnDevice<D> {
    fn pool_forward(
        dev: &CachingDevice<D>,
        shape: &PoolShape,
        x: &View<'_, Self>,
    ) -> Result<Buf<Self>> {
        let mut y = dev.alloc_scratch::<f32>("pool.y", shape.out_len())?;
        pool_forward(dev, shape, x, &mut dev.view_mut(&mut y))?;
        Ok(y)
    }

    fn pool_backward(
        dev: &CachingDevice<D>,
        shape: &PoolShape,
        dy: &View<'_, Self>,
    ) -> Result<Buf<Self>> {
        // The kernel adds into dx.
        let mut dx = dev.alloc_zeros::<f32>("pool.dx", shape.in_len())?;
        pool_backward(dev, shape, dy, &mut dev.view_mut(&mut dx))?;
        Ok(dx)
    }
}
