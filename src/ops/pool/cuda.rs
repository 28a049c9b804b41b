//! Block average pool on a CUDA GPU (`kernels/pool.cu`), f32, over device views.

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::{pool_backward_launch, pool_forward_launch, PoolShape};
use crate::error::{check_len, Result};
use crate::ops::kernel_args::{kernel_int, kernel_long};
use crate::Gpu;

fn dims(op: &'static str, shape: &PoolShape) -> Result<[i32; 3]> {
    Ok([
        kernel_int(op, "h", shape.h)?,
        kernel_int(op, "w", shape.w)?,
        kernel_int(op, "block", shape.block)?,
    ])
}

/// `y` = block means of `x` (overwritten); see [`super::cpu::pool_forward`].
pub fn pool_forward(
    gpu: &Gpu,
    shape: &PoolShape,
    x: &CudaView<'_, f32>,
    y: &mut CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "pool_forward";
    check_len(OP, "x", x.len(), shape.in_len())?;
    check_len(OP, "y", y.len(), shape.out_len())?;
    let out_len = kernel_long(OP, "y", shape.out_len())?;
    let [h, w, b] = dims(OP, shape)?;
    let f = gpu.function("pool", "pool_forward_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(x).arg(y).arg(&out_len).arg(&h).arg(&w).arg(&b);
    // SAFETY: matches pool_forward_f32(x, y, out_len, h, w, block); lengths checked.
    unsafe { launch.launch(pool_forward_launch(shape).into()) }?;
    Ok(())
}

/// Adds the pool's input gradient to `dx`; see [`super::cpu::pool_backward`].
pub fn pool_backward(
    gpu: &Gpu,
    shape: &PoolShape,
    dy: &CudaView<'_, f32>,
    dx: &mut CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "pool_backward";
    check_len(OP, "dy", dy.len(), shape.out_len())?;
    check_len(OP, "dx", dx.len(), shape.in_len())?;
    let in_len = kernel_long(OP, "dx", shape.in_len())?;
    let [h, w, b] = dims(OP, shape)?;
    let f = gpu.function("pool", "pool_backward_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(dy).arg(dx).arg(&in_len).arg(&h).arg(&w).arg(&b);
    // SAFETY: matches pool_backward_f32(dy, dx, in_len, h, w, block); lengths checked.
    unsafe { launch.launch(pool_backward_launch(shape).into()) }?;
    Ok(())
}
