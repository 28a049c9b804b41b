//! The PGD step and projection on a [`KernelDevice`] (`kernels/pgd.cu`), f32, over
//! device views. Both match [`super::cpu::step`] and [`super::cpu::random_start`] bit
//! for bit.

use super::{pgd_launch, PgdKernels};
use crate::alloc::CachingDevice;
use crate::backend::{Buf, OnDevice, View};
use crate::error::{check_len, Result};
use crate::launch::{Determinism, KernelArg, KernelDevice, ViewLen};
use crate::ops::kernel_args::kernel_long;

/// One step in place: `x ← project(x + direction·sign(grad), x0)` onto
/// `[x0 − ε, x0 + ε] ∩ [0, 1]`.
pub fn pgd_step<D: KernelDevice>(
    dev: &D,
    direction: f32,
    eps: f32,
    x: &mut D::ViewMut<'_, f32>,
    grad: &D::View<'_, f32>,
    x0: &D::View<'_, f32>,
) -> Result<()> {
    const OP: &str = "pgd_step";
    let len = x.len();
    check_len(OP, "gradient", grad.len(), len)?;
    check_len(OP, "x0", x0.len(), len)?;
    let len_arg = kernel_long(OP, "len", len)?;
    let args = [
        dev.write(x),
        dev.read(grad),
        dev.read(x0),
        KernelArg::I64(len_arg),
        KernelArg::F32(direction),
        KernelArg::F32(eps),
    ];
    // SAFETY: matches pgd_step_f32(float* x, const float* grad, const float* x0,
    // long long len, float direction, float eps); all three views hold len elements
    // (checked above).
    unsafe {
        dev.launch(
            "pgd",
            "pgd_step_f32",
            pgd_launch(len),
            Determinism::BitExact,
            &args,
        )
    }
}

/// The random start `x = project(x0 + noise, x0)` with `noise` drawn on the host (so
/// the RNG stream is the same on every backend); `x` is overwritten.
pub fn pgd_random_start<D: KernelDevice>(
    dev: &D,
    eps: f32,
    x: &mut D::ViewMut<'_, f32>,
    x0: &D::View<'_, f32>,
    noise: &D::View<'_, f32>,
) -> Result<()> {
    const OP: &str = "pgd_random_start";
    let len = x.len();
    check_len(OP, "x0", x0.len(), len)?;
    check_len(OP, "noise", noise.len(), len)?;
    let len_arg = kernel_long(OP, "len", len)?;
    let args = [
        dev.write(x),
        dev.read(x0),
        dev.read(noise),
        KernelArg::I64(len_arg),
        KernelArg::F32(eps),
    ];
    // SAFETY: matches pgd_random_start_f32(float* x, const float* x0, const float* noise,
    // long long len, float eps); all three views hold len elements (checked above).
    unsafe {
        dev.launch(
            "pgd",
            "pgd_random_start_f32",
            pgd_launch(len),
            Determinism::BitExact,
            &args,
        )
    }
}

impl<D: KernelDevice + 'static> PgdKernels for OnDevice<D> {
    fn pgd_random_start(
        dev: &CachingDevice<D>,
        eps: f32,
        x0: &View<'_, Self>,
        noise: &View<'_, Self>,
    ) -> Result<Buf<Self>> {
        // Not scratch: the steps update it in place (the harness poisons scratch before
        // every launch that writes it).
        let mut x = dev.alloc_zeros::<f32>("pgd.x", x0.len())?;
        pgd_random_start(dev, eps, &mut dev.view_mut(&mut x), x0, noise)?;
        Ok(x)
    }

    fn pgd_step(
        dev: &CachingDevice<D>,
        direction: f32,
        eps: f32,
        x: &mut Buf<Self>,
        grad: &View<'_, Self>,
        x0: &View<'_, Self>,
    ) -> Result<()> {
        pgd_step(dev, direction, eps, &mut dev.view_mut(x), grad, x0)
    }
}
