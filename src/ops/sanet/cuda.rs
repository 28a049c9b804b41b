//! Fused SANet kernels on a [`KernelDevice`] (`kernels/sanet.cu`) over device views: h is
//! recomputed tile by tile in each kernel and never stored. `xs` is stored as f32, f16 or
//! bf16 (`T`, kernel suffix `_<T>`); weights, maps and gradients are f32.
//!
//! Conv5's per-sample weights use the row strides of [`crate::ops::dynconv::cuda`].

use super::{sanet_conv5_launch, sanet_tile_launch, SanetShape};
use crate::error::{check_len, Result};
use crate::launch::kernel_args::{
    check_at_least, check_grid_z, kernel_int, kernel_long, strided_len,
};
use crate::launch::{Determinism, KernelArg, KernelDevice, ViewLen};
use crate::ops::dtype::{kernel_name, KernelFloat};

/// The shape as the kernels' `int` arguments `(c, co, pixels)`.
fn dims<B>(op: &'static str, shape: &SanetShape) -> Result<[KernelArg<B>; 3]> {
    kernel_long(op, "xs", shape.xs_len().max(shape.h_len()))?;
    check_grid_z(op, "n", shape.n)?;
    Ok([
        KernelArg::I32(kernel_int(op, "c", shape.c)?),
        KernelArg::I32(kernel_int(op, "co", shape.co)?),
        KernelArg::I32(kernel_int(op, "pixels", shape.pixels)?),
    ])
}

/// A row stride as the kernels' `int`.
fn stride<B>(op: &'static str, what: &str, ld: usize) -> Result<KernelArg<B>> {
    kernel_int(op, what, ld).map(KernelArg::I32)
}

fn check_conv3(
    op: &'static str,
    shape: &SanetShape,
    xs: &impl ViewLen,
    w3: &impl ViewLen,
    b3: &impl ViewLen,
) -> Result<()> {
    check_len(op, "xs", xs.len(), shape.xs_len())?;
    check_len(op, "w3", w3.len(), shape.co * shape.c)?;
    check_len(op, "b3", b3.len(), shape.co)
}

/// `q[n][o] = mean_p ReLU(Conv3(xs))[n][o][p]` (q `[n, co]` is overwritten).
pub fn sanet_pool<D: KernelDevice, T: KernelFloat>(
    dev: &D,
    shape: &SanetShape,
    xs: &D::View<'_, T>,
    w3: &D::View<'_, f32>,
    b3: &D::View<'_, f32>,
    q: &mut D::ViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "sanet_pool";
    check_conv3(OP, shape, xs, w3, b3)?;
    check_len(OP, "q", q.len(), shape.n * shape.co)?;
    let [c, co, pixels] = dims(OP, shape)?;
    dev.zero(q)?;
    let args = [
        dev.read(xs),
        dev.read(w3),
        dev.read(b3),
        dev.write(q),
        c,
        co,
        pixels,
    ];
    // SAFETY: matches sanet_pool_<T>(xs, w3, b3, q, c, co, pixels); lengths checked.
    unsafe {
        dev.launch(
            "sanet",
            &kernel_name::<T>(OP),
            sanet_tile_launch(shape),
            Determinism::FloatAtomics,
            &args,
        )
    }
}

/// `s[n][p] = b5[n·ldb5] + Σ_o w5[n·ldw5 + o]·ReLU(Conv3(xs))[n][o][p]` (overwritten).
#[allow(clippy::too_many_arguments)]
pub fn sanet_conv5<D: KernelDevice, T: KernelFloat>(
    dev: &D,
    shape: &SanetShape,
    xs: &D::View<'_, T>,
    w3: &D::View<'_, f32>,
    b3: &D::View<'_, f32>,
    w5: &D::View<'_, f32>,
    ldw5: usize,
    b5: &D::View<'_, f32>,
    ldb5: usize,
    s: &mut D::ViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "sanet_conv5";
    check_conv3(OP, shape, xs, w3, b3)?;
    check_at_least(OP, "w5", w5.len(), strided_len(shape.n, ldw5, shape.co))?;
    check_at_least(OP, "b5", b5.len(), strided_len(shape.n, ldb5, 1))?;
    check_len(OP, "s", s.len(), shape.n * shape.pixels)?;
    let [c, co, pixels] = dims(OP, shape)?;
    let (ldw5, ldb5) = (stride(OP, "ldw5", ldw5)?, stride(OP, "ldb5", ldb5)?);
    let args = [
        dev.read(xs),
        dev.read(w3),
        dev.read(b3),
        dev.read(w5),
        ldw5,
        dev.read(b5),
        ldb5,
        dev.write(s),
        c,
        co,
        pixels,
    ];
    // SAFETY: matches sanet_conv5_<T>(xs, w3, b3, w5, ldw5, b5, ldb5, s, c, co, pixels);
    // lengths (with strides) checked above.
    unsafe {
        dev.launch(
            "sanet",
            &kernel_name::<T>(OP),
            sanet_conv5_launch(shape),
            Determinism::BitExact,
            &args,
        )
    }
}

/// `dw5[n·lddw5 + o] += Σ_p ds[n][p]·h[n][o][p]` with h recomputed (atomic).
#[allow(clippy::too_many_arguments)]
pub fn sanet_dw5<D: KernelDevice, T: KernelFloat>(
    dev: &D,
    shape: &SanetShape,
    xs: &D::View<'_, T>,
    w3: &D::View<'_, f32>,
    b3: &D::View<'_, f32>,
    ds: &D::View<'_, f32>,
    dw5: &mut D::ViewMut<'_, f32>,
    lddw5: usize,
) -> Result<()> {
    const OP: &str = "sanet_dw5";
    check_conv3(OP, shape, xs, w3, b3)?;
    check_len(OP, "ds", ds.len(), shape.n * shape.pixels)?;
    check_at_least(OP, "dw5", dw5.len(), strided_len(shape.n, lddw5, shape.co))?;
    let [c, co, pixels] = dims(OP, shape)?;
    let lddw5 = stride(OP, "lddw5", lddw5)?;
    let args = [
        dev.read(xs),
        dev.read(w3),
        dev.read(b3),
        dev.read(ds),
        dev.write(dw5),
        lddw5,
        c,
        co,
        pixels,
    ];
    // SAFETY: matches sanet_dw5_<T>(xs, w3, b3, ds, dw5, lddw5, c, co, pixels); lengths
    // (with the stride) checked above.
    unsafe {
        dev.launch(
            "sanet",
            &kernel_name::<T>(OP),
            sanet_tile_launch(shape),
            Determinism::FloatAtomics,
            &args,
        )
    }
}

/// `dh[n][o][p] = h > 0 ? w5[n·ldw5 + o]·ds[n][p] + dq[n][o]/P : 0` with h recomputed;
/// `dh` `[n, co, pixels]` is overwritten. Conv3's backward then runs on dh.
#[allow(clippy::too_many_arguments)]
pub fn sanet_dh<D: KernelDevice, T: KernelFloat>(
    dev: &D,
    shape: &SanetShape,
    xs: &D::View<'_, T>,
    w3: &D::View<'_, f32>,
    b3: &D::View<'_, f32>,
    w5: &D::View<'_, f32>,
    ldw5: usize,
    ds: &D::View<'_, f32>,
    dq: &D::View<'_, f32>,
    dh: &mut D::ViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "sanet_dh";
    check_conv3(OP, shape, xs, w3, b3)?;
    check_at_least(OP, "w5", w5.len(), strided_len(shape.n, ldw5, shape.co))?;
    check_len(OP, "ds", ds.len(), shape.n * shape.pixels)?;
    check_len(OP, "dq", dq.len(), shape.n * shape.co)?;
    check_len(OP, "dh", dh.len(), shape.h_len())?;
    let [c, co, pixels] = dims(OP, shape)?;
    let ldw5 = stride(OP, "ldw5", ldw5)?;
    let args = [
        dev.read(xs),
        dev.read(w3),
        dev.read(b3),
        dev.read(w5),
        ldw5,
        dev.read(ds),
        dev.read(dq),
        dev.write(dh),
        c,
        co,
        pixels,
    ];
    // SAFETY: matches sanet_dh_<T>(xs, w3, b3, w5, ldw5, ds, dq, dh, c, co, pixels);
    // lengths (with the stride) checked above.
    unsafe {
        dev.launch(
            "sanet",
            &kernel_name::<T>(OP),
            sanet_tile_launch(shape),
            Determinism::BitExact,
            &args,
        )
    }
}
