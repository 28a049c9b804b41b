//! The gate on a [`KernelDevice`] (`kernels/gate.cu`) over caller-owned device views of
//! f32, f16 or bf16, and the host-slice wrappers behind [`super::forward`] /
//! [`super::backward`]. Every launch is queued on the device; nothing here synchronizes
//! except the host-slice wrappers, which must hand back results.

use super::{
    gate_backward_scratch_len, gate_channel_groups, gate_ds_launch, gate_launch, gate_mul_launch,
    GateShape,
};
use crate::error::{Error, Result};
use crate::launch::{Determinism, KernelArg, KernelDevice, ViewLen};
use crate::ops::dtype::{check_kernel_len, kernel_name, GateMapFloat, KernelFloat};
use crate::Gpu;

/// The shape as the kernels' `int` arguments `(N, C, H, W, B)`.
fn kernel_dims<B>(op: &'static str, shape: &GateShape) -> Result<[KernelArg<B>; 5]> {
    check_kernel_len(op, "x", shape.x_len())?;
    let small = |v: usize| {
        i32::try_from(v)
            .map(KernelArg::I32)
            .map_err(|_| Error::shape(op, "gate shape", "dims below 2^31", v))
    };
    Ok([
        small(shape.n)?,
        small(shape.c)?,
        small(shape.h)?,
        small(shape.w)?,
        small(shape.block)?,
    ])
}

/// `y = max(x, 0) · σ(s ⊗ c)` (kernel `gate_forward_<T>`, or `gate_forward_f32map_<T>`
/// for f32 maps beside f16 / bf16 activations; see [`GateMapFloat`]).
pub fn gate_forward<D: KernelDevice, T: KernelFloat, M: GateMapFloat<T>>(
    dev: &D,
    shape: &GateShape,
    x: &D::View<'_, T>,
    s: &D::View<'_, M>,
    c: &D::View<'_, M>,
    y: &mut D::ViewMut<'_, T>,
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
    let args = [
        dev.read(x),
        dev.read(s),
        dev.read(c),
        dev.write(y),
        n,
        ch,
        h,
        w,
        b,
    ];
    // SAFETY: arguments match gate_forward_<T>(x, s, c, y, N, C, H, W, B) of gate.cu,
    // and every view has the length the shape implies (checked above).
    unsafe {
        dev.launch(
            "gate",
            &M::gate_kernel(OP),
            gate_launch(shape),
            Determinism::BitExact,
            &args,
        )
    }
}

/// Backward of [`gate_forward`]: `dx` gets the direct term, `ds` and `dc` are
/// overwritten (kernels `gate_backward_<T>` then `gate_backward_ds_<T>`, or with f32
/// maps `gate_backward_f32map_<T>` then `gate_backward_ds_f32`; an f32 scratch of
/// [`gate_backward_scratch_len`] elements is allocated on the device).
#[allow(clippy::too_many_arguments)]
pub fn gate_backward<D: KernelDevice, T: KernelFloat, M: GateMapFloat<T>>(
    dev: &D,
    shape: &GateShape,
    x: &D::View<'_, T>,
    s: &D::View<'_, M>,
    c: &D::View<'_, M>,
    dy: &D::View<'_, T>,
    dx: &mut D::ViewMut<'_, T>,
    ds: &mut D::ViewMut<'_, M>,
    dc: &mut D::ViewMut<'_, M>,
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
    kernel_dims::<()>(OP, shape)?; // every size checked before the first launch
    check_kernel_len(OP, "ds_partial", gate_backward_scratch_len(shape))?;
    let groups = gate_channel_groups(shape) as i32;
    let mut partial = dev.alloc_scratch::<f32>("ds_partial", gate_backward_scratch_len(shape))?;
    {
        let mut partial_out = dev.view_mut(&mut partial);
        let [n, ch, h, w, b] = kernel_dims(OP, shape)?;
        let args = [
            dev.read(x),
            dev.read(s),
            dev.read(c),
            dev.read(dy),
            dev.write(dx),
            dev.write(&mut partial_out),
            dev.write(dc),
            n,
            ch,
            h,
            w,
            b,
        ];
        // SAFETY: arguments match gate_backward_<T>(x, s, c, dy, dx, ds_partial, dc, N,
        // C, H, W, B) (or its f32map twin, same order); lengths checked above,
        // ds_partial sized by gate_backward_scratch_len.
        unsafe {
            dev.launch(
                "gate",
                &M::gate_kernel(OP),
                gate_launch(shape),
                Determinism::BitExact,
                &args,
            )
        }?;
    }
    let partial_in = dev.view(&partial);
    let [n, _, h, w, b] = kernel_dims(OP, shape)?;
    let args = [
        dev.read(&partial_in),
        dev.write(ds),
        n,
        KernelArg::I32(groups),
        h,
        w,
        b,
    ];
    // SAFETY: arguments match gate_backward_ds_<M>(ds_partial, ds, N, groups, H, W, B).
    unsafe {
        dev.launch(
            "gate",
            &kernel_name::<M>("gate_backward_ds"),
            gate_ds_launch(shape),
            Determinism::BitExact,
            &args,
        )
    }
}

/// The unfused peer: `relu_forward_<T>` into `relu_out`, `gate_unfused_sigmoid_<T>`
/// into `gate` (a full `[N, C, H, W]` map), then `gate_unfused_mul_<T>` into `y`. For
/// benchmarks; same result as [`gate_forward`].
#[allow(clippy::too_many_arguments)]
pub fn gate_forward_unfused<D: KernelDevice, T: KernelFloat>(
    dev: &D,
    shape: &GateShape,
    x: &D::View<'_, T>,
    s: &D::View<'_, T>,
    c: &D::View<'_, T>,
    relu_out: &mut D::ViewMut<'_, T>,
    gate: &mut D::ViewMut<'_, T>,
    y: &mut D::ViewMut<'_, T>,
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
    kernel_dims::<()>(OP, shape)?; // every size checked before the first launch
    crate::ops::relu::cuda::relu_forward(dev, x, relu_out)?;
    {
        let [n, ch, h, w, b] = kernel_dims(OP, shape)?;
        let args = [dev.read(s), dev.read(c), dev.write(gate), n, ch, h, w, b];
        // SAFETY: arguments match gate_unfused_sigmoid_<T>(s, c, g, N, C, H, W, B).
        unsafe {
            dev.launch(
                "gate",
                &kernel_name::<T>("gate_unfused_sigmoid"),
                gate_launch(shape),
                Determinism::BitExact,
                &args,
            )
        }?;
    }
    let len = shape.x_len();
    let (relu_view, gate_view) = (dev.as_view(relu_out), dev.as_view(gate));
    let args = [
        dev.read(&relu_view),
        dev.read(&gate_view),
        dev.write(y),
        KernelArg::I64(len as i64),
    ];
    // SAFETY: arguments match gate_unfused_mul_<T>(a, b, y, long long len); all three
    // hold len elements.
    unsafe {
        dev.launch(
            "gate",
            &kernel_name::<T>("gate_unfused_mul"),
            gate_mul_launch(len),
            Determinism::BitExact,
            &args,
        )
    }
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
    gate_forward::<Gpu, f32, f32>(
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
    gate_backward::<Gpu, f32, f32>(
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
