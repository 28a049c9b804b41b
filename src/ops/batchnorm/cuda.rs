//! Batch normalization on a CUDA GPU (`kernels/batchnorm.cu`), f32, over device views.
//!
//! Training step: [`batchnorm_stats`] (batch statistics and the running-average update)
//! then [`batchnorm_forward`] with the batch statistics; backward [`batchnorm_grad_sums`]
//! (dβ, dγ) then [`batchnorm_backward_input_train`]. Evaluation (and PGD):
//! [`batchnorm_forward`] with the running statistics and
//! [`batchnorm_backward_input_eval`].

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::{batchnorm_channel_launch, batchnorm_elementwise_launch, BnShape};
use crate::error::{check_len, Result};
use crate::ops::kernel_args::{kernel_int, kernel_long};
use crate::Gpu;

/// `[n, c, hw]` as kernel ints, and the element count as a kernel `long long`.
fn dims(op: &'static str, shape: &BnShape) -> Result<([i32; 3], i64)> {
    kernel_int(op, "n·h·w", shape.n * shape.hw)?;
    Ok((
        [
            kernel_int(op, "n", shape.n)?,
            kernel_int(op, "c", shape.c)?,
            kernel_int(op, "h·w", shape.hw)?,
        ],
        kernel_long(op, "n·c·h·w", shape.len())?,
    ))
}

/// Writes the per-channel batch `mean` and biased `var` of `x`, and blends them into
/// `running_mean` and `running_var` (the latter with the unbiased variance) with
/// `momentum`, as the ResNet layer does after the CPU op.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_stats(
    gpu: &Gpu,
    shape: &BnShape,
    x: &CudaView<'_, f32>,
    mean: &mut CudaViewMut<'_, f32>,
    var: &mut CudaViewMut<'_, f32>,
    running_mean: &mut CudaViewMut<'_, f32>,
    running_var: &mut CudaViewMut<'_, f32>,
    momentum: f32,
) -> Result<()> {
    const OP: &str = "batchnorm_stats";
    check_len(OP, "x", x.len(), shape.len())?;
    for (what, len) in [
        ("mean", mean.len()),
        ("var", var.len()),
        ("running mean", running_mean.len()),
        ("running var", running_var.len()),
    ] {
        check_len(OP, what, len, shape.c)?;
    }
    let ([n, c, hw], _) = dims(OP, shape)?;
    let f = gpu.function("batchnorm", "batchnorm_stats_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch
        .arg(x)
        .arg(mean)
        .arg(var)
        .arg(running_mean)
        .arg(running_var);
    launch.arg(&n).arg(&c).arg(&hw).arg(&momentum);
    // SAFETY: matches batchnorm_stats_f32(x, mean, var, running_mean, running_var, n, c,
    // hw, momentum); lengths checked.
    unsafe { launch.launch(batchnorm_channel_launch(shape).into()) }?;
    Ok(())
}

/// `y = γ·(x − mean)/√(var + eps) + β`; `mean`, `var` are the batch statistics in
/// training and the running ones in evaluation. `y` is overwritten.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_forward(
    gpu: &Gpu,
    shape: &BnShape,
    x: &CudaView<'_, f32>,
    mean: &CudaView<'_, f32>,
    var: &CudaView<'_, f32>,
    gamma: &CudaView<'_, f32>,
    beta: &CudaView<'_, f32>,
    y: &mut CudaViewMut<'_, f32>,
    eps: f32,
) -> Result<()> {
    const OP: &str = "batchnorm_forward";
    check_len(OP, "x", x.len(), shape.len())?;
    check_len(OP, "y", y.len(), shape.len())?;
    for (what, len) in [
        ("mean", mean.len()),
        ("var", var.len()),
        ("gamma", gamma.len()),
        ("beta", beta.len()),
    ] {
        check_len(OP, what, len, shape.c)?;
    }
    let ([_, c, hw], len) = dims(OP, shape)?;
    let f = gpu.function("batchnorm", "batchnorm_forward_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(x).arg(mean).arg(var).arg(gamma).arg(beta).arg(y);
    launch.arg(&len).arg(&c).arg(&hw).arg(&eps);
    // SAFETY: matches batchnorm_forward_f32(x, mean, var, gamma, beta, y, len, c, hw,
    // eps); lengths checked.
    unsafe { launch.launch(batchnorm_elementwise_launch(shape).into()) }?;
    Ok(())
}

/// The parameter gradients: `sum_dy = Σ dy` (dβ) and `sum_dy_xhat = Σ dy·x̂` (dγ) per
/// channel, normalized with `mean`, `var`; both overwritten.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_grad_sums(
    gpu: &Gpu,
    shape: &BnShape,
    x: &CudaView<'_, f32>,
    dy: &CudaView<'_, f32>,
    mean: &CudaView<'_, f32>,
    var: &CudaView<'_, f32>,
    sum_dy: &mut CudaViewMut<'_, f32>,
    sum_dy_xhat: &mut CudaViewMut<'_, f32>,
    eps: f32,
) -> Result<()> {
    const OP: &str = "batchnorm_grad_sums";
    check_len(OP, "x", x.len(), shape.len())?;
    check_len(OP, "dy", dy.len(), shape.len())?;
    for (what, len) in [
        ("mean", mean.len()),
        ("var", var.len()),
        ("sum_dy", sum_dy.len()),
        ("sum_dy_xhat", sum_dy_xhat.len()),
    ] {
        check_len(OP, what, len, shape.c)?;
    }
    let ([n, c, hw], _) = dims(OP, shape)?;
    let f = gpu.function("batchnorm", "batchnorm_grad_sums_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch
        .arg(x)
        .arg(dy)
        .arg(mean)
        .arg(var)
        .arg(sum_dy)
        .arg(sum_dy_xhat);
    launch.arg(&n).arg(&c).arg(&hw).arg(&eps);
    // SAFETY: matches batchnorm_grad_sums_f32(x, dy, mean, var, sum_dy, sum_dy_xhat, n, c,
    // hw, eps); lengths checked.
    unsafe { launch.launch(batchnorm_channel_launch(shape).into()) }?;
    Ok(())
}

/// Training-mode input gradient from the sums of [`batchnorm_grad_sums`] and the batch
/// statistics: `dx = γ·invstd/M·(M·dy − Σdy − x̂·Σdy·x̂)`; `dx` is overwritten.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward_input_train(
    gpu: &Gpu,
    shape: &BnShape,
    x: &CudaView<'_, f32>,
    dy: &CudaView<'_, f32>,
    mean: &CudaView<'_, f32>,
    var: &CudaView<'_, f32>,
    gamma: &CudaView<'_, f32>,
    sum_dy: &CudaView<'_, f32>,
    sum_dy_xhat: &CudaView<'_, f32>,
    dx: &mut CudaViewMut<'_, f32>,
    eps: f32,
) -> Result<()> {
    const OP: &str = "batchnorm_backward_input_train";
    check_len(OP, "x", x.len(), shape.len())?;
    check_len(OP, "dy", dy.len(), shape.len())?;
    check_len(OP, "dx", dx.len(), shape.len())?;
    for (what, len) in [
        ("mean", mean.len()),
        ("var", var.len()),
        ("gamma", gamma.len()),
        ("sum_dy", sum_dy.len()),
        ("sum_dy_xhat", sum_dy_xhat.len()),
    ] {
        check_len(OP, what, len, shape.c)?;
    }
    let ([n, c, hw], len) = dims(OP, shape)?;
    let f = gpu.function("batchnorm", "batchnorm_backward_input_train_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(x).arg(dy).arg(mean).arg(var).arg(gamma);
    launch.arg(sum_dy).arg(sum_dy_xhat).arg(dx);
    launch.arg(&len).arg(&n).arg(&c).arg(&hw).arg(&eps);
    // SAFETY: matches batchnorm_backward_input_train_f32(x, dy, mean, var, gamma, sum_dy,
    // sum_dy_xhat, dx, len, n, c, hw, eps); lengths checked.
    unsafe { launch.launch(batchnorm_elementwise_launch(shape).into()) }?;
    Ok(())
}

/// Evaluation-mode input gradient (the statistics are constants):
/// `dx = dy·γ/√(var + eps)`; `dx` is overwritten.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward_input_eval(
    gpu: &Gpu,
    shape: &BnShape,
    dy: &CudaView<'_, f32>,
    var: &CudaView<'_, f32>,
    gamma: &CudaView<'_, f32>,
    dx: &mut CudaViewMut<'_, f32>,
    eps: f32,
) -> Result<()> {
    const OP: &str = "batchnorm_backward_input_eval";
    check_len(OP, "dy", dy.len(), shape.len())?;
    check_len(OP, "dx", dx.len(), shape.len())?;
    check_len(OP, "var", var.len(), shape.c)?;
    check_len(OP, "gamma", gamma.len(), shape.c)?;
    let ([_, c, hw], len) = dims(OP, shape)?;
    let f = gpu.function("batchnorm", "batchnorm_backward_input_eval_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(dy).arg(var).arg(gamma).arg(dx);
    launch.arg(&len).arg(&c).arg(&hw).arg(&eps);
    // SAFETY: matches batchnorm_backward_input_eval_f32(dy, var, gamma, dx, len, c, hw,
    // eps); lengths checked.
    unsafe { launch.launch(batchnorm_elementwise_launch(shape).into()) }?;
    Ok(())
}
