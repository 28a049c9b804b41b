//! The PGD step and projection on a CUDA GPU (`kernels/pgd.cu`), f32, over device views.
//! Both match [`super::pgd::step`] and [`super::pgd::random_start`] bit for bit.

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::pgd::{step_direction, PgdConfig};
use super::pgd_launch;
use crate::error::{check_len, Result};
use crate::ops::kernel_args::kernel_long;
use crate::Gpu;

/// One step of `config`'s attack in place: `x ← project(x ∓ α·sign(grad), x0)` onto
/// `[x0 − ε, x0 + ε] ∩ [0, 1]`, descending for a targeted attack.
pub fn pgd_step(
    gpu: &Gpu,
    config: &PgdConfig,
    x: &mut CudaViewMut<'_, f32>,
    grad: &CudaView<'_, f32>,
    x0: &CudaView<'_, f32>,
) -> Result<()> {
    const OP: &str = "pgd_step";
    let len = x.len();
    check_len(OP, "gradient", grad.len(), len)?;
    check_len(OP, "x0", x0.len(), len)?;
    let len_arg = kernel_long(OP, "len", len)?;
    let direction = step_direction(config);
    let f = gpu.function("pgd", "pgd_step_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(x).arg(grad).arg(x0);
    launch.arg(&len_arg).arg(&direction).arg(&config.epsilon);
    // SAFETY: matches pgd_step_f32(x, grad, x0, len, direction, eps); lengths checked.
    unsafe { launch.launch(pgd_launch(len).into()) }?;
    Ok(())
}

/// The random start `x = project(x0 + noise, x0)` with `noise` from
/// [`super::pgd::random_start_noise`] (drawn on the host, so the RNG stream is the CPU
/// attack's); `x` is overwritten.
pub fn pgd_random_start(
    gpu: &Gpu,
    eps: f32,
    x: &mut CudaViewMut<'_, f32>,
    x0: &CudaView<'_, f32>,
    noise: &CudaView<'_, f32>,
) -> Result<()> {
    const OP: &str = "pgd_random_start";
    let len = x.len();
    check_len(OP, "x0", x0.len(), len)?;
    check_len(OP, "noise", noise.len(), len)?;
    let len_arg = kernel_long(OP, "len", len)?;
    let f = gpu.function("pgd", "pgd_random_start_f32")?;
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(x).arg(x0).arg(noise);
    launch.arg(&len_arg).arg(&eps);
    // SAFETY: matches pgd_random_start_f32(x, x0, noise, len, eps); lengths checked.
    unsafe { launch.launch(pgd_launch(len).into()) }?;
    Ok(())
}
