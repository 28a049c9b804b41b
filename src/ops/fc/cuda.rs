//! Batched linear layer on a CUDA GPU (`kernels/fc.cu`), f32, over device views.

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::{fc_forward_launch, fc_input_launch, fc_params_launch, FcShape};
use crate::error::{check_len, Result};
use crate::ops::kernel_args::kernel_int;
use crate::Gpu;

fn dims(op: &'static str, shape: &FcShape) -> Result<[i32; 3]> {
    kernel_int(op, "n·out", shape.n * shape.out.max(shape.inp + 1))?;
    Ok([
        kernel_int(op, "n", shape.n)?,
        kernel_int(op, "in", shape.inp)?,
        kernel_int(op, "out", shape.out)?,
    ])
}

/// `y = x·Wᵀ + b`, then ReLU when `relu`; `y` `[n, out]` is overwritten.
pub fn fc_forward(
    gpu: &Gpu,
    shape: &FcShape,
    x: &CudaView<'_, f32>,
    w: &CudaView<'_, f32>,
    b: &CudaView<'_, f32>,
    y: &mut CudaViewMut<'_, f32>,
    relu: bool,
) -> Result<()> {
    const OP: &str = "fc_forward";
    check_len(OP, "x", x.len(), shape.n * shape.inp)?;
    check_len(OP, "w", w.len(), shape.out * shape.inp)?;
    check_len(OP, "b", b.len(), shape.out)?;
    check_len(OP, "y", y.len(), shape.n * shape.out)?;
    let [n, inp, out] = dims(OP, shape)?;
    let relu = i32::from(relu);
    let f = gpu.function("fc", "fc_forward_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(x).arg(w).arg(b).arg(y);
    launch.arg(&n).arg(&inp).arg(&out).arg(&relu);
    // SAFETY: matches fc_forward_f32(x, w, b, y, n, in, out, relu); lengths checked.
    unsafe { launch.launch(fc_forward_launch(shape).into()) }?;
    Ok(())
}

/// Adds the gradients of [`fc_forward`] (without ReLU): `dx += dy·W` when given, and
/// `dw += dyᵀ·x`, `db += Σ_n dy` when `params` is given.
pub fn fc_backward(
    gpu: &Gpu,
    shape: &FcShape,
    x: &CudaView<'_, f32>,
    w: &CudaView<'_, f32>,
    dy: &CudaView<'_, f32>,
    dx: Option<&mut CudaViewMut<'_, f32>>,
    params: Option<(&mut CudaViewMut<'_, f32>, &mut CudaViewMut<'_, f32>)>,
) -> Result<()> {
    const OP: &str = "fc_backward";
    check_len(OP, "x", x.len(), shape.n * shape.inp)?;
    check_len(OP, "w", w.len(), shape.out * shape.inp)?;
    check_len(OP, "dy", dy.len(), shape.n * shape.out)?;
    let [n, inp, out] = dims(OP, shape)?;
    let stream = gpu.stream();
    if let Some(dx) = dx {
        check_len(OP, "dx", dx.len(), shape.n * shape.inp)?;
        let f = gpu.function("fc", "fc_backward_input_f32")?;
        let mut launch = stream.launch_builder(&f);
        launch.arg(dy).arg(w).arg(dx).arg(&n).arg(&inp).arg(&out);
        // SAFETY: matches fc_backward_input_f32(dy, w, dx, n, in, out).
        unsafe { launch.launch(fc_input_launch(shape).into()) }?;
    }
    if let Some((dw, db)) = params {
        check_len(OP, "dw", dw.len(), shape.out * shape.inp)?;
        check_len(OP, "db", db.len(), shape.out)?;
        let f = gpu.function("fc", "fc_backward_params_f32")?;
        let mut launch = stream.launch_builder(&f);
        launch
            .arg(x)
            .arg(dy)
            .arg(dw)
            .arg(db)
            .arg(&n)
            .arg(&inp)
            .arg(&out);
        // SAFETY: matches fc_backward_params_f32(x, dy, dw, db, n, in, out).
        unsafe { launch.launch(fc_params_launch(shape).into()) }?;
    }
    Ok(())
}
