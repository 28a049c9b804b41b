//! 1×1 convolution on a CUDA GPU (`kernels/conv1x1.cu`), f32, over device views.

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::{
    conv1x1_bias_launch, conv1x1_tile_launch, conv1x1_weight_launch, relu_mask_launch, Conv1x1Shape,
};
use crate::error::{check_len, Result};
use crate::ops::kernel_args::{check_grid_z, kernel_int, kernel_long};
use crate::Gpu;

fn dims(op: &'static str, shape: &Conv1x1Shape) -> Result<[i32; 4]> {
    kernel_long(op, "x", shape.x_len().max(shape.y_len()))?;
    Ok([
        kernel_int(op, "n", shape.n)?,
        kernel_int(op, "cin", shape.cin)?,
        kernel_int(op, "cout", shape.cout)?,
        kernel_int(op, "pixels", shape.pixels)?,
    ])
}

/// `y[n] = W·x[n] + b`, then ReLU when `relu`; `y` is overwritten.
pub fn conv1x1_forward(
    gpu: &Gpu,
    shape: &Conv1x1Shape,
    x: &CudaView<'_, f32>,
    w: &CudaView<'_, f32>,
    b: &CudaView<'_, f32>,
    y: &mut CudaViewMut<'_, f32>,
    relu: bool,
) -> Result<()> {
    const OP: &str = "conv1x1_forward";
    check_len(OP, "x", x.len(), shape.x_len())?;
    check_len(OP, "w", w.len(), shape.w_len())?;
    check_len(OP, "b", b.len(), shape.cout)?;
    check_len(OP, "y", y.len(), shape.y_len())?;
    check_grid_z(OP, "n", shape.n)?;
    let [_, cin, cout, pixels] = dims(OP, shape)?;
    let relu = i32::from(relu);
    let f = gpu.function("conv1x1", "conv1x1_forward_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(x).arg(w).arg(b).arg(y);
    launch.arg(&cin).arg(&cout).arg(&pixels).arg(&relu);
    let cfg = conv1x1_tile_launch(shape.cout, shape.pixels, shape.n);
    // SAFETY: matches conv1x1_forward_f32(x, w, b, y, cin, cout, pixels, relu); lengths
    // checked above.
    unsafe { launch.launch(cfg.into()) }?;
    Ok(())
}

/// Adds the gradients of [`conv1x1_forward`] (without ReLU) given `dy`; a `None`
/// gradient is not computed. See [`super::cpu::conv1x1_backward`].
#[allow(clippy::too_many_arguments)]
pub fn conv1x1_backward(
    gpu: &Gpu,
    shape: &Conv1x1Shape,
    x: &CudaView<'_, f32>,
    w: &CudaView<'_, f32>,
    dy: &CudaView<'_, f32>,
    dx: Option<&mut CudaViewMut<'_, f32>>,
    dw: Option<&mut CudaViewMut<'_, f32>>,
    db: Option<&mut CudaViewMut<'_, f32>>,
) -> Result<()> {
    const OP: &str = "conv1x1_backward";
    check_len(OP, "x", x.len(), shape.x_len())?;
    check_len(OP, "w", w.len(), shape.w_len())?;
    check_len(OP, "dy", dy.len(), shape.y_len())?;
    check_grid_z(OP, "n", shape.n)?;
    let [n, cin, cout, pixels] = dims(OP, shape)?;
    let stream = gpu.stream();
    if let Some(dx) = dx {
        check_len(OP, "dx", dx.len(), shape.x_len())?;
        let f = gpu.function("conv1x1", "conv1x1_backward_input_f32")?;
        let mut launch = stream.launch_builder(&f);
        launch
            .arg(dy)
            .arg(w)
            .arg(dx)
            .arg(&cin)
            .arg(&cout)
            .arg(&pixels);
        let cfg = conv1x1_tile_launch(shape.cin, shape.pixels, shape.n);
        // SAFETY: matches conv1x1_backward_input_f32(dy, w, dx, cin, cout, pixels).
        unsafe { launch.launch(cfg.into()) }?;
    }
    if let Some(dw) = dw {
        check_len(OP, "dw", dw.len(), shape.w_len())?;
        let f = gpu.function("conv1x1", "conv1x1_backward_weight_f32")?;
        let mut launch = stream.launch_builder(&f);
        launch.arg(x).arg(dy).arg(dw);
        launch.arg(&n).arg(&cin).arg(&cout).arg(&pixels);
        // SAFETY: matches conv1x1_backward_weight_f32(x, dy, dw, n, cin, cout, pixels).
        unsafe { launch.launch(conv1x1_weight_launch(shape).into()) }?;
    }
    if let Some(db) = db {
        check_len(OP, "db", db.len(), shape.cout)?;
        let f = gpu.function("conv1x1", "conv1x1_backward_bias_f32")?;
        let mut launch = stream.launch_builder(&f);
        launch.arg(dy).arg(db).arg(&n).arg(&cout).arg(&pixels);
        // SAFETY: matches conv1x1_backward_bias_f32(dy, db, n, cout, pixels).
        unsafe { launch.launch(conv1x1_bias_launch(shape).into()) }?;
    }
    Ok(())
}

/// `dh[i] = 0` where `h[i] ≤ 0`: the backward of a ReLU whose output is `h`.
pub fn relu_mask(gpu: &Gpu, h: &CudaView<'_, f32>, dh: &mut CudaViewMut<'_, f32>) -> Result<()> {
    const OP: &str = "relu_mask";
    check_len(OP, "dh", dh.len(), h.len())?;
    let len = kernel_long(OP, "h", h.len())?;
    let f = gpu.function("conv1x1", "relu_mask_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(h).arg(dh).arg(&len);
    // SAFETY: matches relu_mask_f32(h, dh, len); both hold len elements.
    unsafe { launch.launch(relu_mask_launch(h.len()).into()) }?;
    Ok(())
}
