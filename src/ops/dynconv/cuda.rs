//! Dynamic per-sample Conv5 on a CUDA GPU (`kernels/dynconv.cu`), f32, over device views.
//!
//! Per-sample weights are rows `ld` apart: `ld = k` for a `[n, k]` matrix, `ld = k + 1`
//! for DPNet's `[n, k+1]` output (bias at offset k), `ld = 0` for one learned vector
//! shared by the batch (its gradient then sums over samples).

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::{
    dynconv_bias_launch, dynconv_forward_launch, dynconv_input_launch, dynconv_weight_launch,
    DynConvShape,
};
use crate::error::{check_len, Result};
use crate::ops::kernel_args::{check_at_least, kernel_int, strided_len};
use crate::Gpu;

fn dims(op: &'static str, shape: &DynConvShape) -> Result<[i32; 3]> {
    kernel_int(op, "h", shape.h_len())?;
    Ok([
        kernel_int(op, "n", shape.n)?,
        kernel_int(op, "k", shape.k)?,
        kernel_int(op, "pixels", shape.pixels)?,
    ])
}

/// `s[n][p] = b[n·ldb] + Σ_k w[n·ldw + k]·h[n][k][p]`; `s` is overwritten.
#[allow(clippy::too_many_arguments)]
pub fn dynconv_forward(
    gpu: &Gpu,
    shape: &DynConvShape,
    h: &CudaView<'_, f32>,
    w: &CudaView<'_, f32>,
    ldw: usize,
    b: &CudaView<'_, f32>,
    ldb: usize,
    s: &mut CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "dynconv_forward";
    check_len(OP, "h", h.len(), shape.h_len())?;
    check_at_least(OP, "w", w.len(), strided_len(shape.n, ldw, shape.k))?;
    check_at_least(OP, "b", b.len(), strided_len(shape.n, ldb, 1))?;
    check_len(OP, "s", s.len(), shape.s_len())?;
    let [n, k, pixels] = dims(OP, shape)?;
    let (ldw, ldb) = (kernel_int(OP, "ldw", ldw)?, kernel_int(OP, "ldb", ldb)?);
    let f = gpu.function("dynconv", "dynconv_forward_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(h).arg(w).arg(&ldw).arg(b).arg(&ldb).arg(s);
    launch.arg(&n).arg(&k).arg(&pixels);
    // SAFETY: matches dynconv_forward_f32(h, w, ldw, b, ldb, s, n, k, pixels); lengths
    // (with the strides) checked above.
    unsafe { launch.launch(dynconv_forward_launch(shape).into()) }?;
    Ok(())
}

/// `dh[n][k][p] += w[n·ldw + k]·ds[n][p]`.
pub fn dynconv_backward_input(
    gpu: &Gpu,
    shape: &DynConvShape,
    w: &CudaView<'_, f32>,
    ldw: usize,
    ds: &CudaView<'_, f32>,
    dh: &mut CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "dynconv_backward_input";
    check_at_least(OP, "w", w.len(), strided_len(shape.n, ldw, shape.k))?;
    check_len(OP, "ds", ds.len(), shape.s_len())?;
    check_len(OP, "dh", dh.len(), shape.h_len())?;
    let [n, k, pixels] = dims(OP, shape)?;
    let ldw = kernel_int(OP, "ldw", ldw)?;
    let f = gpu.function("dynconv", "dynconv_backward_input_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch
        .arg(w)
        .arg(&ldw)
        .arg(ds)
        .arg(dh)
        .arg(&n)
        .arg(&k)
        .arg(&pixels);
    // SAFETY: matches dynconv_backward_input_f32(w, ldw, ds, dh, n, k, pixels).
    unsafe { launch.launch(dynconv_input_launch(shape).into()) }?;
    Ok(())
}

/// `dw[n·lddw + k] += Σ_p ds[n][p]·h[n][k][p]` (atomic, so `lddw = 0` sums the batch).
pub fn dynconv_backward_weight(
    gpu: &Gpu,
    shape: &DynConvShape,
    h: &CudaView<'_, f32>,
    ds: &CudaView<'_, f32>,
    dw: &mut CudaViewMut<'_, f32>,
    lddw: usize,
) -> Result<()> {
    const OP: &str = "dynconv_backward_weight";
    check_len(OP, "h", h.len(), shape.h_len())?;
    check_len(OP, "ds", ds.len(), shape.s_len())?;
    check_at_least(OP, "dw", dw.len(), strided_len(shape.n, lddw, shape.k))?;
    let [n, k, pixels] = dims(OP, shape)?;
    let lddw = kernel_int(OP, "lddw", lddw)?;
    let f = gpu.function("dynconv", "dynconv_backward_weight_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch
        .arg(h)
        .arg(ds)
        .arg(dw)
        .arg(&lddw)
        .arg(&n)
        .arg(&k)
        .arg(&pixels);
    // SAFETY: matches dynconv_backward_weight_f32(h, ds, dw, lddw, n, k, pixels).
    unsafe { launch.launch(dynconv_weight_launch(shape).into()) }?;
    Ok(())
}

/// `db[n·lddb] += Σ_p ds[n][p]` (atomic, so `lddb = 0` sums the batch).
pub fn dynconv_backward_bias(
    gpu: &Gpu,
    shape: &DynConvShape,
    ds: &CudaView<'_, f32>,
    db: &mut CudaViewMut<'_, f32>,
    lddb: usize,
) -> Result<()> {
    const OP: &str = "dynconv_backward_bias";
    check_len(OP, "ds", ds.len(), shape.s_len())?;
    check_at_least(OP, "db", db.len(), strided_len(shape.n, lddb, 1))?;
    let [_, _, pixels] = dims(OP, shape)?;
    let lddb = kernel_int(OP, "lddb", lddb)?;
    let f = gpu.function("dynconv", "dynconv_backward_bias_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(ds).arg(db).arg(&lddb).arg(&pixels);
    // SAFETY: matches dynconv_backward_bias_f32(ds, db, lddb, pixels); one block per
    // sample reads ds[n·pixels ..] and writes db[n·lddb].
    unsafe { launch.launch(dynconv_bias_launch(shape).into()) }?;
    Ok(())
}
