//! Batch normalization on a [`KernelDevice`] (`kernels/batchnorm.cu`), f32, over device
//! views.
//!
//! Training step: [`batchnorm_stats`] (batch statistics and the running-average update)
//! then [`batchnorm_forward`] with the batch statistics; backward [`batchnorm_grad_sums`]
//! (dβ, dγ) then [`batchnorm_backward_input_train`]. Evaluation (and PGD):
//! [`batchnorm_forward`] with the running statistics and
//! [`batchnorm_backward_input_eval`]. Every kernel gives the same bits under any block
//! order (fixed-order reductions, no atomics).

use super::{batchnorm_channel_launch, batchnorm_elementwise_launch, BnShape};
use crate::alloc::CachingDevice;
use crate::backend::{Buf, OnDevice, View};
use crate::error::{check_len, Error, Result};
use crate::launch::kernel_args::{element_count, kernel_int, kernel_long};
use crate::launch::{Determinism, KernelArg, KernelDevice, ViewLen};

/// A [`BnShape`] as the kernels take it.
struct KernelShape {
    n: i32,
    c: i32,
    hw: i32,
    /// Elements of x (`n·c·hw`), the length x, y, dy and dx must have.
    len: usize,
    /// `len` as the element-wise kernels' `long long len`.
    len_arg: i64,
}

impl KernelShape {
    /// Checks what [`BnShape::new`] checks (the fields are public, and a per-channel
    /// kernel launches at least one block, which with C = 0 would write channel 0 of an
    /// empty buffer), then that the sizes, `n·h·w` and the element count fit the kernels'
    /// `int` / `long long`.
    fn new(op: &'static str, shape: &BnShape) -> Result<Self> {
        let BnShape { n, c, hw } = *shape;
        if n == 0 || c == 0 || hw == 0 {
            return Err(Error::shape(
                op,
                "shape",
                "N, C, H·W ≥ 1",
                format!("{shape:?}"),
            ));
        }
        kernel_int(op, "n·h·w", element_count(op, "n·h·w", &[n, hw])?)?;
        let len = element_count(op, "n·c·h·w", &[n, c, hw])?;
        Ok(Self {
            n: kernel_int(op, "n", n)?,
            c: kernel_int(op, "c", c)?,
            hw: kernel_int(op, "h·w", hw)?,
            len,
            len_arg: kernel_long(op, "n·c·h·w", len)?,
        })
    }
}

/// Writes the per-channel batch `mean` and biased `var` of `x`, and blends them into
/// `running_mean` and `running_var` (the latter with the unbiased variance) with
/// `momentum`, as the ResNet layer does after the CPU op.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_stats<D: KernelDevice>(
    dev: &D,
    shape: &BnShape,
    x: &D::View<'_, f32>,
    mean: &mut D::ViewMut<'_, f32>,
    var: &mut D::ViewMut<'_, f32>,
    running_mean: &mut D::ViewMut<'_, f32>,
    running_var: &mut D::ViewMut<'_, f32>,
    momentum: f32,
) -> Result<()> {
    const OP: &str = "batchnorm_stats";
    let s = KernelShape::new(OP, shape)?;
    check_len(OP, "x", x.len(), s.len)?;
    for (what, len) in [
        ("mean", mean.len()),
        ("var", var.len()),
        ("running mean", running_mean.len()),
        ("running var", running_var.len()),
    ] {
        check_len(OP, what, len, shape.c)?;
    }
    let args = [
        dev.read(x),
        dev.write(mean),
        dev.write(var),
        dev.write(running_mean),
        dev.write(running_var),
        KernelArg::I32(s.n),
        KernelArg::I32(s.c),
        KernelArg::I32(s.hw),
        KernelArg::F32(momentum),
    ];
    // SAFETY: matches batchnorm_stats_f32(const float* x, float* mean, float* var,
    // float* running_mean, float* running_var, int n, int c, int hw, float momentum);
    // x holds n·c·hw elements and the four per-channel views c (checked above), and
    // block `ch` of the grid of c blocks touches channel ch only.
    unsafe {
        dev.launch(
            "batchnorm",
            "batchnorm_stats_f32",
            batchnorm_channel_launch(shape),
            Determinism::BitExact,
            &args,
        )
    }
}

/// `y = γ·(x − mean)/√(var + eps) + β`; `mean`, `var` are the batch statistics in
/// training and the running ones in evaluation. `y` is overwritten.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_forward<D: KernelDevice>(
    dev: &D,
    shape: &BnShape,
    x: &D::View<'_, f32>,
    mean: &D::View<'_, f32>,
    var: &D::View<'_, f32>,
    gamma: &D::View<'_, f32>,
    beta: &D::View<'_, f32>,
    y: &mut D::ViewMut<'_, f32>,
    eps: f32,
) -> Result<()> {
    const OP: &str = "batchnorm_forward";
    let s = KernelShape::new(OP, shape)?;
    check_len(OP, "x", x.len(), s.len)?;
    check_len(OP, "y", y.len(), s.len)?;
    for (what, len) in [
        ("mean", mean.len()),
        ("var", var.len()),
        ("gamma", gamma.len()),
        ("beta", beta.len()),
    ] {
        check_len(OP, what, len, shape.c)?;
    }
    let args = [
        dev.read(x),
        dev.read(mean),
        dev.read(var),
        dev.read(gamma),
        dev.read(beta),
        dev.write(y),
        KernelArg::I64(s.len_arg),
        KernelArg::I32(s.c),
        KernelArg::I32(s.hw),
        KernelArg::F32(eps),
    ];
    // SAFETY: matches batchnorm_forward_f32(const float* x, const float* mean,
    // const float* var, const float* gamma, const float* beta, float* y, long long len,
    // int c, int hw, float eps); x and y hold len elements, the per-channel views c
    // (checked above), and element i reads channel (i / hw) % c.
    unsafe {
        dev.launch(
            "batchnorm",
            "batchnorm_forward_f32",
            batchnorm_elementwise_launch(shape),
            Determinism::BitExact,
            &args,
        )
    }
}

/// The parameter gradients: `sum_dy = Σ dy` (dβ) and `sum_dy_xhat = Σ dy·x̂` (dγ) per
/// channel, normalized with `mean`, `var`; both overwritten.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_grad_sums<D: KernelDevice>(
    dev: &D,
    shape: &BnShape,
    x: &D::View<'_, f32>,
    dy: &D::View<'_, f32>,
    mean: &D::View<'_, f32>,
    var: &D::View<'_, f32>,
    sum_dy: &mut D::ViewMut<'_, f32>,
    sum_dy_xhat: &mut D::ViewMut<'_, f32>,
    eps: f32,
) -> Result<()> {
    const OP: &str = "batchnorm_grad_sums";
    let s = KernelShape::new(OP, shape)?;
    check_len(OP, "x", x.len(), s.len)?;
    check_len(OP, "dy", dy.len(), s.len)?;
    for (what, len) in [
        ("mean", mean.len()),
        ("var", var.len()),
        ("sum_dy", sum_dy.len()),
        ("sum_dy_xhat", sum_dy_xhat.len()),
    ] {
        check_len(OP, what, len, shape.c)?;
    }
    let args = [
        dev.read(x),
        dev.read(dy),
        dev.read(mean),
        dev.read(var),
        dev.write(sum_dy),
        dev.write(sum_dy_xhat),
        KernelArg::I32(s.n),
        KernelArg::I32(s.c),
        KernelArg::I32(s.hw),
        KernelArg::F32(eps),
    ];
    // SAFETY: matches batchnorm_grad_sums_f32(const float* x, const float* dy,
    // const float* mean, const float* var, float* sum_dy, float* sum_dy_xhat, int n,
    // int c, int hw, float eps); x and dy hold n·c·hw elements, the per-channel views c
    // (checked above), and block `ch` of the grid of c blocks touches channel ch only.
    unsafe {
        dev.launch(
            "batchnorm",
            "batchnorm_grad_sums_f32",
            batchnorm_channel_launch(shape),
            Determinism::BitExact,
            &args,
        )
    }
}

/// Training-mode input gradient from the sums of [`batchnorm_grad_sums`] and the batch
/// statistics: `dx = γ·invstd/M·(M·dy − Σdy − x̂·Σdy·x̂)`; `dx` is overwritten.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward_input_train<D: KernelDevice>(
    dev: &D,
    shape: &BnShape,
    x: &D::View<'_, f32>,
    dy: &D::View<'_, f32>,
    mean: &D::View<'_, f32>,
    var: &D::View<'_, f32>,
    gamma: &D::View<'_, f32>,
    sum_dy: &D::View<'_, f32>,
    sum_dy_xhat: &D::View<'_, f32>,
    dx: &mut D::ViewMut<'_, f32>,
    eps: f32,
) -> Result<()> {
    const OP: &str = "batchnorm_backward_input_train";
    let s = KernelShape::new(OP, shape)?;
    check_len(OP, "x", x.len(), s.len)?;
    check_len(OP, "dy", dy.len(), s.len)?;
    check_len(OP, "dx", dx.len(), s.len)?;
    for (what, len) in [
        ("mean", mean.len()),
        ("var", var.len()),
        ("gamma", gamma.len()),
        ("sum_dy", sum_dy.len()),
        ("sum_dy_xhat", sum_dy_xhat.len()),
    ] {
        check_len(OP, what, len, shape.c)?;
    }
    let args = [
        dev.read(x),
        dev.read(dy),
        dev.read(mean),
        dev.read(var),
        dev.read(gamma),
        dev.read(sum_dy),
        dev.read(sum_dy_xhat),
        dev.write(dx),
        KernelArg::I64(s.len_arg),
        KernelArg::I32(s.n),
        KernelArg::I32(s.c),
        KernelArg::I32(s.hw),
        KernelArg::F32(eps),
    ];
    // SAFETY: matches batchnorm_backward_input_train_f32(const float* x, const float* dy,
    // const float* mean, const float* var, const float* gamma, const float* sum_dy,
    // const float* sum_dy_xhat, float* dx, long long len, int n, int c, int hw,
    // float eps); x, dy and dx hold len elements, the per-channel views c (checked
    // above), and element i reads channel (i / hw) % c.
    unsafe {
        dev.launch(
            "batchnorm",
            "batchnorm_backward_input_train_f32",
            batchnorm_elementwise_launch(shape),
            Determinism::BitExact,
            &args,
        )
    }
}

/// Evaluation-mode input gradient (the statistics are constants):
/// `dx = dy·γ/√(var + eps)`; `dx` is overwritten.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward_input_eval<D: KernelDevice>(
    dev: &D,
    shape: &BnShape,
    dy: &D::View<'_, f32>,
    var: &D::View<'_, f32>,
    gamma: &D::View<'_, f32>,
    dx: &mut D::ViewMut<'_, f32>,
    eps: f32,
) -> Result<()> {
    const OP: &str = "batchnorm_backward_input_eval";
    let s = KernelShape::new(OP, shape)?;
    check_len(OP, "dy", dy.len(), s.len)?;
    check_len(OP, "dx", dx.len(), s.len)?;
    check_len(OP, "var", var.len(), shape.c)?;
    check_len(OP, "gamma", gamma.len(), shape.c)?;
    let args = [
        dev.read(dy),
        dev.read(var),
        dev.read(gamma),
        dev.write(dx),
        KernelArg::I64(s.len_arg),
        KernelArg::I32(s.c),
        KernelArg::I32(s.hw),
        KernelArg::F32(eps),
    ];
    // SAFETY: matches batchnorm_backward_input_eval_f32(const float* dy,
    // const float* var, const float* gamma, float* dx, long long len, int c, int hw,
    // float eps); dy and dx hold len elements, var and gamma c (checked above), and
    // element i reads channel (i / hw) % c.
    unsafe {
        dev.launch(
            "batchnorm",
            "batchnorm_backward_input_eval_f32",
            batchnorm_elementwise_launch(shape),
            Determinism::BitExact,
            &args,
        )
    }
}

/// The default, unfused pair: the batch norm's kernels, then the ReLU's.
impl<D: KernelDevice + 'static> super::relu::BatchNormReluKernels for OnDevice<D> {}

impl<D: KernelDevice + 'static> super::BatchNormKernels for OnDevice<D> {
    fn bn_batch_stats(
        dev: &CachingDevice<D>,
        shape: &BnShape,
        x: &View<'_, Self>,
        running_mean: &mut Buf<Self>,
        running_var: &mut Buf<Self>,
        momentum: f64,
    ) -> Result<(Buf<Self>, Buf<Self>)> {
        let mut mean = dev.alloc_scratch::<f32>("bn.mean", shape.c)?;
        let mut var = dev.alloc_scratch::<f32>("bn.var", shape.c)?;
        batchnorm_stats(
            dev,
            shape,
            x,
            &mut dev.view_mut(&mut mean),
            &mut dev.view_mut(&mut var),
            &mut dev.view_mut(running_mean),
            &mut dev.view_mut(running_var),
            momentum as f32,
        )?;
        Ok((mean, var))
    }

    fn bn_forward(
        dev: &CachingDevice<D>,
        shape: &BnShape,
        x: &View<'_, Self>,
        mean: &View<'_, Self>,
        var: &View<'_, Self>,
        gamma: &View<'_, Self>,
        beta: &View<'_, Self>,
        eps: f64,
    ) -> Result<Buf<Self>> {
        let mut y = dev.alloc_scratch::<f32>("bn.y", shape.len())?;
        {
            let y_view = &mut dev.view_mut(&mut y);
            batchnorm_forward(dev, shape, x, mean, var, gamma, beta, y_view, eps as f32)?;
        }
        Ok(y)
    }

    fn bn_backward(
        dev: &CachingDevice<D>,
        shape: &BnShape,
        x: &View<'_, Self>,
        dy: &View<'_, Self>,
        mean: &View<'_, Self>,
        var: &View<'_, Self>,
        gamma: &View<'_, Self>,
        train: bool,
        input: bool,
        params: bool,
        eps: f64,
    ) -> Result<(Option<Buf<Self>>, Option<(Buf<Self>, Buf<Self>)>)> {
        let eps = eps as f32;
        let sums = match train || params {
            true => {
                let mut sum_dy = dev.alloc_scratch::<f32>("bn.dbeta", shape.c)?;
                let mut sum_dy_xhat = dev.alloc_scratch::<f32>("bn.dgamma", shape.c)?;
                batchnorm_grad_sums(
                    dev,
                    shape,
                    x,
                    dy,
                    mean,
                    var,
                    &mut dev.view_mut(&mut sum_dy),
                    &mut dev.view_mut(&mut sum_dy_xhat),
                    eps,
                )?;
                Some((sum_dy, sum_dy_xhat))
            }
            false => None,
        };
        let dx = match input {
            false => None,
            true => {
                let mut dx = dev.alloc_scratch::<f32>("bn.dx", shape.len())?;
                {
                    let dx_view = &mut dev.view_mut(&mut dx);
                    match (&sums, train) {
                        (Some((sum_dy, sum_dy_xhat)), true) => batchnorm_backward_input_train(
                            dev,
                            shape,
                            x,
                            dy,
                            mean,
                            var,
                            gamma,
                            &dev.view(sum_dy),
                            &dev.view(sum_dy_xhat),
                            dx_view,
                            eps,
                        )?,
                        _ => {
                            batchnorm_backward_input_eval(dev, shape, dy, var, gamma, dx_view, eps)?
                        }
                    }
                }
                Some(dx)
            }
        };
        let dp = sums
            .filter(|_| params)
            .map(|(sum_dy, sum_dy_xhat)| (sum_dy_xhat, sum_dy));
        Ok((dx, dp))
    }
}
