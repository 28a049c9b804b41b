//! 1×1 convolution on a [`KernelDevice`] (`kernels/conv1x1.cu`) over device views: the
//! input `x` and its gradient `dx` stored as f32, f16 or bf16 (`T`), everything else f32.

use super::{
    conv1x1_bias_launch, conv1x1_tile_launch, conv1x1_weight_launch, relu_mask_launch, Conv1x1Shape,
};
use crate::error::{check_len, Result};
use crate::launch::kernel_args::{check_grid_z, kernel_int, kernel_long};
use crate::launch::{Determinism, KernelArg, KernelDevice, ViewLen};
use crate::ops::dtype::{kernel_name, KernelFloat};

/// The shape as the kernels' `int` arguments `(n, cin, cout, pixels)`.
fn dims<B>(op: &'static str, shape: &Conv1x1Shape) -> Result<[KernelArg<B>; 4]> {
    kernel_long(op, "x", shape.x_len().max(shape.y_len()))?;
    Ok([
        KernelArg::I32(kernel_int(op, "n", shape.n)?),
        KernelArg::I32(kernel_int(op, "cin", shape.cin)?),
        KernelArg::I32(kernel_int(op, "cout", shape.cout)?),
        KernelArg::I32(kernel_int(op, "pixels", shape.pixels)?),
    ])
}

/// `y[n] = W·x[n] + b`, then ReLU when `relu`; `y` is overwritten (kernel
/// `conv1x1_forward_<T>`).
pub fn conv1x1_forward<D: KernelDevice, T: KernelFloat>(
    dev: &D,
    shape: &Conv1x1Shape,
    x: &D::View<'_, T>,
    w: &D::View<'_, f32>,
    b: &D::View<'_, f32>,
    y: &mut D::ViewMut<'_, f32>,
    relu: bool,
) -> Result<()> {
    const OP: &str = "conv1x1_forward";
    check_len(OP, "x", x.len(), shape.x_len())?;
    check_len(OP, "w", w.len(), shape.w_len())?;
    check_len(OP, "b", b.len(), shape.cout)?;
    check_len(OP, "y", y.len(), shape.y_len())?;
    check_grid_z(OP, "n", shape.n)?;
    let [_, cin, cout, pixels] = dims(OP, shape)?;
    let args = [
        dev.read(x),
        dev.read(w),
        dev.read(b),
        dev.write(y),
        cin,
        cout,
        pixels,
        KernelArg::I32(i32::from(relu)),
    ];
    // SAFETY: matches conv1x1_forward_<T>(x, w, b, y, cin, cout, pixels, relu); lengths
    // checked above.
    unsafe {
        dev.launch(
            "conv1x1",
            &kernel_name::<T>(OP),
            conv1x1_tile_launch(shape.cout, shape.pixels, shape.n),
            Determinism::BitExact,
            &args,
        )
    }
}

/// Adds the gradients of [`conv1x1_forward`] (without ReLU) given `dy`; a `None`
/// gradient is not computed; `dx` is accumulated in f32 and rounded once to `T`. See
/// [`super::cpu::conv1x1_backward`].
#[allow(clippy::too_many_arguments)]
pub fn conv1x1_backward<D: KernelDevice, T: KernelFloat>(
    dev: &D,
    shape: &Conv1x1Shape,
    x: &D::View<'_, T>,
    w: &D::View<'_, f32>,
    dy: &D::View<'_, f32>,
    dx: Option<&mut D::ViewMut<'_, T>>,
    dw: Option<&mut D::ViewMut<'_, f32>>,
    db: Option<&mut D::ViewMut<'_, f32>>,
) -> Result<()> {
    const OP: &str = "conv1x1_backward";
    check_len(OP, "x", x.len(), shape.x_len())?;
    check_len(OP, "w", w.len(), shape.w_len())?;
    check_len(OP, "dy", dy.len(), shape.y_len())?;
    check_grid_z(OP, "n", shape.n)?;
    dims::<()>(OP, shape)?; // every size checked before the first launch
    if let Some(dx) = &dx {
        check_len(OP, "dx", dx.len(), shape.x_len())?;
    }
    if let Some(dw) = &dw {
        check_len(OP, "dw", dw.len(), shape.w_len())?;
    }
    if let Some(db) = &db {
        check_len(OP, "db", db.len(), shape.cout)?;
    }
    if let Some(dx) = dx {
        let [_, cin, cout, pixels] = dims(OP, shape)?;
        let args = [dev.read(dy), dev.read(w), dev.write(dx), cin, cout, pixels];
        // SAFETY: matches conv1x1_backward_input_<T>(dy, w, dx, cin, cout, pixels).
        unsafe {
            dev.launch(
                "conv1x1",
                &kernel_name::<T>("conv1x1_backward_input"),
                conv1x1_tile_launch(shape.cin, shape.pixels, shape.n),
                Determinism::BitExact,
                &args,
            )
        }?;
    }
    if let Some(dw) = dw {
        let [n, cin, cout, pixels] = dims(OP, shape)?;
        let args = [
            dev.read(x),
            dev.read(dy),
            dev.write(dw),
            n,
            cin,
            cout,
            pixels,
        ];
        // SAFETY: matches conv1x1_backward_weight_<T>(x, dy, dw, n, cin, cout, pixels).
        unsafe {
            dev.launch(
                "conv1x1",
                &kernel_name::<T>("conv1x1_backward_weight"),
                conv1x1_weight_launch(shape),
                Determinism::FloatAtomics,
                &args,
            )
        }?;
    }
    if let Some(db) = db {
        let [n, _, cout, pixels] = dims(OP, shape)?;
        let args = [dev.read(dy), dev.write(db), n, cout, pixels];
        // SAFETY: matches conv1x1_backward_bias_f32(dy, db, n, cout, pixels).
        unsafe {
            dev.launch(
                "conv1x1",
                "conv1x1_backward_bias_f32",
                conv1x1_bias_launch(shape),
                Determinism::BitExact,
                &args,
            )
        }?;
    }
    Ok(())
}

/// `dh[i] = 0` where `h[i] ≤ 0`: the backward of a ReLU whose output is `h`.
pub fn relu_mask<D: KernelDevice>(
    dev: &D,
    h: &D::View<'_, f32>,
    dh: &mut D::ViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "relu_mask";
    check_len(OP, "dh", dh.len(), h.len())?;
    let len = kernel_long(OP, "h", h.len())?;
    let args = [dev.read(h), dev.write(dh), KernelArg::I64(len)];
    // SAFETY: matches relu_mask_f32(h, dh, len); both hold len elements.
    unsafe {
        dev.launch(
            "conv1x1",
            "relu_mask_f32",
            relu_mask_launch(h.len()),
            Determinism::BitExact,
            &args,
        )
    }
}
