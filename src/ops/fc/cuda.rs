//! Batched linear layer on a [`KernelDevice`] (`kernels/fc.cu`), f32, over device views.

use super::{fc_forward_launch, fc_input_launch, fc_params_launch, FcShape};
use crate::alloc::CachingDevice;
use crate::backend::{Buf, OnDevice, View};
use crate::error::{check_len, Result};
use crate::launch::{Determinism, KernelArg, KernelDevice, ViewLen};
use crate::ops::kernel_args::kernel_int;

/// The shape as the kernels' `int` arguments `(n, in, out)`.
fn dims<B>(op: &'static str, shape: &FcShape) -> Result<[KernelArg<B>; 3]> {
    kernel_int(op, "n·out", shape.n * shape.out.max(shape.inp + 1))?;
    Ok([
        KernelArg::I32(kernel_int(op, "n", shape.n)?),
        KernelArg::I32(kernel_int(op, "in", shape.inp)?),
        KernelArg::I32(kernel_int(op, "out", shape.out)?),
    ])
}

/// `y = x·Wᵀ + b`, then ReLU when `relu`; `y` `[n, out]` is overwritten.
pub fn fc_forward<D: KernelDevice>(
    dev: &D,
    shape: &FcShape,
    x: &D::View<'_, f32>,
    w: &D::View<'_, f32>,
    b: &D::View<'_, f32>,
    y: &mut D::ViewMut<'_, f32>,
    relu: bool,
) -> Result<()> {
    const OP: &str = "fc_forward";
    check_len(OP, "x", x.len(), shape.n * shape.inp)?;
    check_len(OP, "w", w.len(), shape.out * shape.inp)?;
    check_len(OP, "b", b.len(), shape.out)?;
    check_len(OP, "y", y.len(), shape.n * shape.out)?;
    let [n, inp, out] = dims(OP, shape)?;
    let args = [
        dev.read(x),
        dev.read(w),
        dev.read(b),
        dev.write(y),
        n,
        inp,
        out,
        KernelArg::I32(i32::from(relu)),
    ];
    // SAFETY: matches fc_forward_f32(x, w, b, y, n, in, out, relu); lengths checked.
    unsafe {
        dev.launch(
            "fc",
            "fc_forward_f32",
            fc_forward_launch(shape),
            Determinism::BitExact,
            &args,
        )
    }
}

/// Adds the gradients of [`fc_forward`] (without ReLU): `dx += dy·W` when given, and
/// `dw += dyᵀ·x`, `db += Σ_n dy` when `params` is given.
#[allow(clippy::type_complexity)]
pub fn fc_backward<D: KernelDevice>(
    dev: &D,
    shape: &FcShape,
    x: &D::View<'_, f32>,
    w: &D::View<'_, f32>,
    dy: &D::View<'_, f32>,
    dx: Option<&mut D::ViewMut<'_, f32>>,
    params: Option<(&mut D::ViewMut<'_, f32>, &mut D::ViewMut<'_, f32>)>,
) -> Result<()> {
    const OP: &str = "fc_backward";
    check_len(OP, "x", x.len(), shape.n * shape.inp)?;
    check_len(OP, "w", w.len(), shape.out * shape.inp)?;
    check_len(OP, "dy", dy.len(), shape.n * shape.out)?;
    dims::<()>(OP, shape)?; // every size checked before the first launch
    if let Some(dx) = &dx {
        check_len(OP, "dx", dx.len(), shape.n * shape.inp)?;
    }
    if let Some((dw, db)) = &params {
        check_len(OP, "dw", dw.len(), shape.out * shape.inp)?;
        check_len(OP, "db", db.len(), shape.out)?;
    }
    if let Some(dx) = dx {
        let [n, inp, out] = dims(OP, shape)?;
        let args = [dev.read(dy), dev.read(w), dev.write(dx), n, inp, out];
        // SAFETY: matches fc_backward_input_f32(dy, w, dx, n, in, out); lengths checked.
        unsafe {
            dev.launch(
                "fc",
                "fc_backward_input_f32",
                fc_input_launch(shape),
                Determinism::BitExact,
                &args,
            )
        }?;
    }
    if let Some((dw, db)) = params {
        let [n, inp, out] = dims(OP, shape)?;
        let args = [
            dev.read(x),
            dev.read(dy),
            dev.write(dw),
            dev.write(db),
            n,
            inp,
            out,
        ];
        // SAFETY: matches fc_backward_params_f32(x, dy, dw, db, n, in, out); lengths
        // checked.
        unsafe {
            dev.launch(
                "fc",
                "fc_backward_params_f32",
                fc_params_launch(shape),
                Determinism::BitExact,
                &args,
            )
        }?;
    }
    Ok(())
}

impl<D: KernelDevice + 'static> super::tape::FcKernels for OnDevice<D> {
    fn fc_forward(
        dev: &CachingDevice<D>,
        shape: &FcShape,
        x: &View<'_, Self>,
        w: &View<'_, Self>,
        b: &View<'_, Self>,
    ) -> Result<Buf<Self>> {
        let mut y = dev.alloc_scratch::<f32>("linear.y", shape.n * shape.out)?;
        fc_forward(dev, shape, x, w, b, &mut dev.view_mut(&mut y), false)?;
        Ok(y)
    }

    fn fc_backward(
        dev: &CachingDevice<D>,
        shape: &FcShape,
        x: &View<'_, Self>,
        w: &View<'_, Self>,
        dy: &View<'_, Self>,
        input: bool,
        params: bool,
    ) -> Result<(Option<Buf<Self>>, Option<(Buf<Self>, Buf<Self>)>)> {
        // The kernels add into their outputs.
        let mut dx = match input {
            true => Some(dev.alloc_zeros::<f32>("linear.dx", shape.n * shape.inp)?),
            false => None,
        };
        let mut dp = match params {
            true => Some((
                dev.alloc_zeros::<f32>("linear.dw", shape.out * shape.inp)?,
                dev.alloc_zeros::<f32>("linear.db", shape.out)?,
            )),
            false => None,
        };
        {
            let mut dx_view = dx.as_mut().map(|b| dev.view_mut(b));
            let mut dp_views = dp
                .as_mut()
                .map(|(dw, db)| (dev.view_mut(dw), dev.view_mut(db)));
            fc_backward(
                dev,
                shape,
                x,
                w,
                dy,
                dx_view.as_mut(),
                dp_views.as_mut().map(|(dw, db)| (dw, db)),
            )?;
        }
        Ok((dx, dp))
    }
}
