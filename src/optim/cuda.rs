//! The SGD step on a CUDA GPU (`kernels/sgd.cu`), f32, in place over device views.

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::sgd_launch;
use crate::error::{check_len, Result};
use crate::ops::kernel_args::kernel_long;
use crate::Gpu;

/// `v ← μ·v + g + λ·p`, `p ← p − lr·v` element-wise, as [`super::Sgd::update`].
///
/// With every parameter of a model in one flat buffer `p` (and its gradients and
/// velocities at the same offsets in `g` and `v`), one call updates the whole model.
pub fn sgd_update(
    gpu: &Gpu,
    p: &mut CudaViewMut<'_, f32>,
    g: &CudaView<'_, f32>,
    v: &mut CudaViewMut<'_, f32>,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
) -> Result<()> {
    const OP: &str = "sgd_update";
    let len = p.len();
    check_len(OP, "gradient", g.len(), len)?;
    check_len(OP, "velocity", v.len(), len)?;
    let len_arg = kernel_long(OP, "len", len)?;
    let f = gpu.function("sgd", "sgd_update_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(p).arg(g).arg(v);
    launch
        .arg(&len_arg)
        .arg(&lr)
        .arg(&momentum)
        .arg(&weight_decay);
    // SAFETY: matches sgd_update_f32(p, g, v, len, lr, momentum, weight_decay); lengths
    // checked.
    unsafe { launch.launch(sgd_launch(len).into()) }?;
    Ok(())
}
