//! Dynamic per-sample Conv5 on a [`KernelDevice`] (`kernels/dynconv.cu`), f32, over device views.
//!
//! Per-sample weights are rows `ld` apart: `ld = k` for a `[n, k]` matrix, `ld = k + 1`
//! for DPNet's `[n, k+1]` output (bias at offset k), `ld = 0` for one learned vector
//! shared by the batch (its gradient then sums over samples).

use super::{
    dynconv_bias_launch, dynconv_forward_launch, dynconv_input_launch, dynconv_weight_launch,
    DynConvShape,
};
use crate::error::{check_len, Result};
use crate::launch::kernel_args::{check_at_least, kernel_int, strided_len};
use crate::launch::{Determinism, KernelArg, KernelDevice, ViewLen};

/// The shape as the kernels' `int` arguments `(n, k, pixels)`.
fn dims<B>(op: &'static str, shape: &DynConvShape) -> Result<[KernelArg<B>; 3]> {
    kernel_int(op, "h", shape.h_len())?;
    Ok([
        KernelArg::I32(kernel_int(op, "n", shape.n)?),
        KernelArg::I32(kernel_int(op, "k", shape.k)?),
        KernelArg::I32(kernel_int(op, "pixels", shape.pixels)?),
    ])
}

/// A row stride as the kernels' `int`.
fn stride<B>(op: &'static str, what: &str, ld: usize) -> Result<KernelArg<B>> {
    kernel_int(op, what, ld).map(KernelArg::I32)
}

/// `s[n][p] = b[n·ldb] + Σ_k w[n·ldw + k]·h[n][k][p]`; `s` is overwritten.
#[allow(clippy::too_many_arguments)]
pub fn dynconv_forward<D: KernelDevice>(
    dev: &D,
    shape: &DynConvShape,
    h: &D::View<'_, f32>,
    w: &D::View<'_, f32>,
    ldw: usize,
    b: &D::View<'_, f32>,
    ldb: usize,
    s: &mut D::ViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "dynconv_forward";
    check_len(OP, "h", h.len(), shape.h_len())?;
    check_at_least(OP, "w", w.len(), strided_len(shape.n, ldw, shape.k))?;
    check_at_least(OP, "b", b.len(), strided_len(shape.n, ldb, 1))?;
    check_len(OP, "s", s.len(), shape.s_len())?;
    let [n, k, pixels] = dims(OP, shape)?;
    let (ldw, ldb) = (stride(OP, "ldw", ldw)?, stride(OP, "ldb", ldb)?);
    let args = [
        dev.read(h),
        dev.read(w),
        ldw,
        dev.read(b),
        ldb,
        dev.write(s),
        n,
        k,
        pixels,
    ];
    // SAFETY: matches dynconv_forward_f32(h, w, ldw, b, ldb, s, n, k, pixels); lengths
    // (with the strides) checked above.
    unsafe {
        dev.launch(
            "dynconv",
            "dynconv_forward_f32",
            dynconv_forward_launch(shape),
            Determinism::BitExact,
            &args,
        )
    }
}

/// `dh[n][k][p] += w[n·ldw + k]·ds[n][p]`.
pub fn dynconv_backward_input<D: KernelDevice>(
    dev: &D,
    shape: &DynConvShape,
    w: &D::View<'_, f32>,
    ldw: usize,
    ds: &D::View<'_, f32>,
    dh: &mut D::ViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "dynconv_backward_input";
    check_at_least(OP, "w", w.len(), strided_len(shape.n, ldw, shape.k))?;
    check_len(OP, "ds", ds.len(), shape.s_len())?;
    check_len(OP, "dh", dh.len(), shape.h_len())?;
    let [n, k, pixels] = dims(OP, shape)?;
    let ldw = stride(OP, "ldw", ldw)?;
    let args = [dev.read(w), ldw, dev.read(ds), dev.write(dh), n, k, pixels];
    // SAFETY: matches dynconv_backward_input_f32(w, ldw, ds, dh, n, k, pixels); lengths
    // (with the stride) checked above.
    unsafe {
        dev.launch(
            "dynconv",
            "dynconv_backward_input_f32",
            dynconv_input_launch(shape),
            Determinism::BitExact,
            &args,
        )
    }
}

/// `dw[n·lddw + k] += Σ_p ds[n][p]·h[n][k][p]` (atomic, so `lddw = 0` sums the batch).
pub fn dynconv_backward_weight<D: KernelDevice>(
    dev: &D,
    shape: &DynConvShape,
    h: &D::View<'_, f32>,
    ds: &D::View<'_, f32>,
    dw: &mut D::ViewMut<'_, f32>,
    lddw: usize,
) -> Result<()> {
    const OP: &str = "dynconv_backward_weight";
    check_len(OP, "h", h.len(), shape.h_len())?;
    check_len(OP, "ds", ds.len(), shape.s_len())?;
    check_at_least(OP, "dw", dw.len(), strided_len(shape.n, lddw, shape.k))?;
    let [n, k, pixels] = dims(OP, shape)?;
    let lddw = stride(OP, "lddw", lddw)?;
    let args = [dev.read(h), dev.read(ds), dev.write(dw), lddw, n, k, pixels];
    // SAFETY: matches dynconv_backward_weight_f32(h, ds, dw, lddw, n, k, pixels);
    // lengths (with the stride) checked above.
    unsafe {
        dev.launch(
            "dynconv",
            "dynconv_backward_weight_f32",
            dynconv_weight_launch(shape),
            Determinism::FloatAtomics,
            &args,
        )
    }
}

/// `db[n·lddb] += Σ_p ds[n][p]` (atomic, so `lddb = 0` sums the batch).
pub fn dynconv_backward_bias<D: KernelDevice>(
    dev: &D,
    shape: &DynConvShape,
    ds: &D::View<'_, f32>,
    db: &mut D::ViewMut<'_, f32>,
    lddb: usize,
) -> Result<()> {
    const OP: &str = "dynconv_backward_bias";
    check_len(OP, "ds", ds.len(), shape.s_len())?;
    check_at_least(OP, "db", db.len(), strided_len(shape.n, lddb, 1))?;
    let [_, _, pixels] = dims(OP, shape)?;
    let lddb = stride(OP, "lddb", lddb)?;
    let args = [dev.read(ds), dev.write(db), lddb, pixels];
    // SAFETY: matches dynconv_backward_bias_f32(ds, db, lddb, pixels); one block per
    // sample reads ds[n·pixels ..] and writes db[n·lddb].
    unsafe {
        dev.launch(
            "dynconv",
            "dynconv_backward_bias_f32",
            dynconv_bias_launch(shape),
            Determinism::FloatAtomics,
            &args,
        )
    }
}
