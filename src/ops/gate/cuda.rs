//! The gate on a CUDA GPU (`kernels/gate.cu`) over caller-owned device buffers of f32,
//! f16 or bf16, and the host-slice wrappers behind [`super::forward`] / [`super::backward`].
//! Every launch is queued on `gpu.stream()`; nothing here synchronizes except the
//! host-slice wrappers, which must hand back results.

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::{
    gate_backward_scratch_len, gate_channel_groups, gate_ds_launch, gate_launch, gate_mul_launch,
    GateShape,
};
use crate::error::{Error, Result};
use crate::ops::dtype::{check_kernel_len, kernel_name, KernelFloat};
use crate::Gpu;

/// The shape as the kernels' `int` arguments `(N, C, H, W, B)`.
fn kernel_dims(op: &'static str, shape: &GateShape) -> Result<[i32; 5]> {
    check_kernel_len(op, "x", shape.x_len())?;
    let small = |v: usize| {
        i32::try_from(v).map_err(|_| Error::shape(op, "gate shape", "dims below 2^31", v))
    };
    Ok([
        small(shape.n)?,
        small(shape.c)?,
        small(shape.h)?,
        small(shape.w)?,
        small(shape.block)?,
    ])
}

/// `y = max(x, 0) · σ(s ⊗ c)` on the GPU (kernel `gate_forward_<T>`).
pub fn gate_forward<T: KernelFloat>(
    gpu: &Gpu,
    shape: &GateShape,
    x: &CudaView<'_, T>,
    s: &CudaView<'_, T>,
    c: &CudaView<'_, T>,
    y: &mut CudaViewMut<'_, T>,
) -> Result<()> {
    const OP: &str = "gate_forward";
    shape.check_all(
        OP,
        &[
            ("x", x.len()),
            ("s", s.len()),
            ("c", c.len()),
            ("y", y.len()),
        ],
    )?;
    let [n, ch, h, w, b] = kernel_dims(OP, shape)?;
    let f = gpu.function("gate", &kernel_name::<T>(OP))?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(x).arg(s).arg(c).arg(y);
    launch.arg(&n).arg(&ch).arg(&h).arg(&w).arg(&b);
    // SAFETY: arguments match gate_forward_<T>(x, s, c, y, N, C, H, W, B) of gate.cu,
    // and every buffer has the length the shape implies (checked above).
    unsafe { launch.launch(gate_launch(shape).into()) }?;
    Ok(())
}

/// Backward of [`gate_forward`] on the GPU: `dx` gets the direct term, `ds` and `dc`
/// are overwritten (kernels `gate_backward_<T>` then `gate_backward_ds_<T>`, with an
/// f32 scratch of [`gate_backward_scratch_len`] elements allocated on the stream).
#[allow(clippy::too_many_arguments)]
pub fn gate_backward<T: KernelFloat>(
    gpu: &Gpu,
    shape: &GateShape,
    x: &CudaView<'_, T>,
    s: &CudaView<'_, T>,
    c: &CudaView<'_, T>,
    dy: &CudaView<'_, T>,
    dx: &mut CudaViewMut<'_, T>,
    ds: &mut CudaViewMut<'_, T>,
    dc: &mut CudaViewMut<'_, T>,
) -> Result<()> {
    const OP: &str = "gate_backward";
    shape.check_all(
        OP,
        &[
            ("x", x.len()),
            ("s", s.len()),
            ("c", c.len()),
            ("dy", dy.len()),
            ("dx", dx.len()),
            ("ds", ds.len()),
            ("dc", dc.len()),
        ],
    )?;
    let [n, ch, h, w, b] = kernel_dims(OP, shape)?;
    check_kernel_len(OP, "ds_partial", gate_backward_scratch_len(shape))?;
    let groups = gate_channel_groups(shape) as i32;
    let stream = gpu.stream();
    let mut ds_partial = stream.alloc_zeros::<f32>(gate_backward_scratch_len(shape))?;

    let main = gpu.function("gate", &kernel_name::<T>(OP))?;
    let mut launch = stream.launch_builder(&main);
    launch
        .arg(x)
        .arg(s)
        .arg(c)
        .arg(dy)
        .arg(dx)
        .arg(&mut ds_partial)
        .arg(dc);
    launch.arg(&n).arg(&ch).arg(&h).arg(&w).arg(&b);
    // SAFETY: arguments match gate_backward_<T>(x, s, c, dy, dx, ds_partial, dc, N, C,
    // H, W, B); lengths checked above, ds_partial sized by gate_backward_scratch_len.
    unsafe { launch.launch(gate_launch(shape).into()) }?;

    let pool = gpu.function("gate", &kernel_name::<T>("gate_backward_ds"))?;
    let mut launch = stream.launch_builder(&pool);
    launch.arg(&ds_partial).arg(ds);
    launch.arg(&n).arg(&groups).arg(&h).arg(&w).arg(&b);
    // SAFETY: arguments match gate_backward_ds_<T>(ds_partial, ds, N, groups, H, W, B).
    unsafe { launch.launch(gate_ds_launch(shape).into()) }?;
    Ok(())
}

/// The unfused peer on the GPU: `relu_forward_<T>` into `relu_out`,
/// `gate_unfused_sigmoid_<T>` into `gate` (a full `[N, C, H, W]` map), then
/// `gate_unfused_mul_<T>` into `y`. For benchmarks; same result as [`gate_forward`].
#[allow(clippy::too_many_arguments)]
pub fn gate_forward_unfused<T: KernelFloat>(
    gpu: &Gpu,
    shape: &GateShape,
    x: &CudaView<'_, T>,
    s: &CudaView<'_, T>,
    c: &CudaView<'_, T>,
    relu_out: &mut CudaViewMut<'_, T>,
    gate: &mut CudaViewMut<'_, T>,
    y: &mut CudaViewMut<'_, T>,
) -> Result<()> {
    const OP: &str = "gate_forward_unfused";
    shape.check_all(
        OP,
        &[
            ("x", x.len()),
            ("s", s.len()),
            ("c", c.len()),
            ("relu_out", relu_out.len()),
            ("gate", gate.len()),
            ("y", y.len()),
        ],
    )?;
    let [n, ch, h, w, b] = kernel_dims(OP, shape)?;
    crate::ops::relu::cuda::relu_forward(gpu, x, relu_out)?;

    let stream = gpu.stream();
    let sigmoid = gpu.function("gate", &kernel_name::<T>("gate_unfused_sigmoid"))?;
    let mut launch = stream.launch_builder(&sigmoid);
    launch.arg(s).arg(c).arg(&mut *gate);
    launch.arg(&n).arg(&ch).arg(&h).arg(&w).arg(&b);
    // SAFETY: arguments match gate_unfused_sigmoid_<T>(s, c, g, N, C, H, W, B).
    unsafe { launch.launch(gate_launch(shape).into()) }?;

    let mul = gpu.function("gate", &kernel_name::<T>("gate_unfused_mul"))?;
    let len = shape.x_len() as i64;
    let (relu_view, gate_view) = (relu_out.as_view(), gate.as_view());
    let mut launch = stream.launch_builder(&mul);
    launch.arg(&relu_view).arg(&gate_view).arg(y).arg(&len);
    // SAFETY: arguments match gate_unfused_mul_<T>(a, b, y, long long len); all three
    // hold len elements.
    unsafe { launch.launch(gate_mul_launch(shape.x_len()).into()) }?;
    Ok(())
}

pub(super) fn gate_forward_host(
    gpu: &Gpu,
    shape: &GateShape,
    x: &[f32],
    s: &[f32],
    c: &[f32],
    y: &mut [f32],
) -> Result<()> {
    // The device wrapper below checks every length (the copies have the host lengths).
    let stream = gpu.stream();
    let (x_d, s_d, c_d) = (
        stream.clone_htod(x)?,
        stream.clone_htod(s)?,
        stream.clone_htod(c)?,
    );
    let mut y_d = stream.alloc_zeros::<f32>(y.len())?;
    gate_forward(
        gpu,
        shape,
        &x_d.as_view(),
        &s_d.as_view(),
        &c_d.as_view(),
        &mut y_d.as_view_mut(),
    )?;
    stream.memcpy_dtoh(&y_d, y)?;
    stream.synchronize()?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn gate_backward_host(
    gpu: &Gpu,
    shape: &GateShape,
    x: &[f32],
    s: &[f32],
    c: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    ds: &mut [f32],
    dc: &mut [f32],
) -> Result<()> {
    // The device wrapper below checks every length (the copies have the host lengths).
    let stream = gpu.stream();
    let (x_d, s_d, c_d) = (
        stream.clone_htod(x)?,
        stream.clone_htod(s)?,
        stream.clone_htod(c)?,
    );
    let dy_d = stream.clone_htod(dy)?;
    let mut dx_d = stream.alloc_zeros::<f32>(dx.len())?;
    let mut ds_d = stream.alloc_zeros::<f32>(ds.len())?;
    let mut dc_d = stream.alloc_zeros::<f32>(dc.len())?;
    gate_backward(
        gpu,
        shape,
        &x_d.as_view(),
        &s_d.as_view(),
        &c_d.as_view(),
        &dy_d.as_view(),
        &mut dx_d.as_view_mut(),
        &mut ds_d.as_view_mut(),
        &mut dc_d.as_view_mut(),
    )?;
    stream.memcpy_dtoh(&dx_d, dx)?;
    stream.memcpy_dtoh(&ds_d, ds)?;
    stream.memcpy_dtoh(&dc_d, dc)?;
    stream.synchronize()?;
    Ok(())
}
