//! The SGD step on a [`KernelDevice`] (`kernels/sgd.cu`), f32, in place over device
//! views.

use super::sgd_launch;
use crate::alloc::CachingDevice;
use crate::backend::{Buf, OnDevice, View};
use crate::error::{check_len, Result};
use crate::launch::{Determinism, KernelArg, KernelDevice, ViewLen};
use crate::ops::kernel_args::kernel_long;

/// `v ← μ·v + g + λ·p`, `p ← p − lr·v` element-wise, as [`super::Sgd::update`].
///
/// With every parameter of a model in one flat buffer `p` (and its gradients and
/// velocities at the same offsets in `g` and `v`), one call updates the whole model.
pub fn sgd_update<D: KernelDevice>(
    dev: &D,
    p: &mut D::ViewMut<'_, f32>,
    g: &D::View<'_, f32>,
    v: &mut D::ViewMut<'_, f32>,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
) -> Result<()> {
    const OP: &str = "sgd_update";
    let len = p.len();
    check_len(OP, "gradient", g.len(), len)?;
    check_len(OP, "velocity", v.len(), len)?;
    let len_arg = kernel_long(OP, "len", len)?;
    let args = [
        dev.write(p),
        dev.read(g),
        dev.write(v),
        KernelArg::I64(len_arg),
        KernelArg::F32(lr),
        KernelArg::F32(momentum),
        KernelArg::F32(weight_decay),
    ];
    // SAFETY: matches sgd_update_f32(float* p, const float* g, float* v, long long len,
    // float lr, float momentum, float weight_decay); all three views hold len elements
    // (checked above).
    unsafe {
        dev.launch(
            "sgd",
            "sgd_update_f32",
            sgd_launch(len),
            Determinism::BitExact,
            &args,
        )
    }
}

impl<D: KernelDevice + 'static> super::SgdKernels for OnDevice<D> {
    fn sgd_update(
        dev: &CachingDevice<D>,
        p: &mut Buf<Self>,
        g: &View<'_, Self>,
        v: &mut Buf<Self>,
        step: &super::SgdStep,
    ) -> Result<()> {
        sgd_update(
            dev,
            &mut dev.view_mut(p),
            g,
            &mut dev.view_mut(v),
            step.lr,
            step.momentum,
            step.weight_decay,
        )
    }
}
