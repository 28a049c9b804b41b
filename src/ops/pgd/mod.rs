//! The L∞ PGD step and random start (Madry et al.): `x ← project(x + direction·sign(g),
//! x₀)` onto `[x₀ − ε, x₀ + ε] ∩ [0, 1]`. The host functions in [`cpu`], the CUDA
//! wrappers of `kernels/pgd.cu` in [`cuda`], both behind [`PgdKernels`] for the attack's
//! loop (`crate::attack::pgd`).

pub mod cpu;
pub mod cuda;

use crate::backend::Backend;
use crate::error::Result;
use crate::ops::kernel_args::blocks;
use crate::ops::LaunchDims;

/// Threads per block of the kernels in `kernels/pgd.cu`.
pub const PGD_THREADS: u32 = 256;

/// Most blocks of the grid-stride PGD kernels.
pub const PGD_MAX_BLOCKS: u32 = 8192;

/// `pgd_step_f32`, `pgd_random_start_f32` over `len` pixels: grid-stride.
pub fn pgd_launch(len: usize) -> LaunchDims {
    LaunchDims {
        grid: (blocks(len, PGD_THREADS as usize).min(PGD_MAX_BLOCKS), 1, 1),
        block: (PGD_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// What PGD needs from a backend beyond the model: its start and its step, on the
/// images where they live (f32).
pub trait PgdKernels: Backend<Real = f32> {
    /// The random start `project(x0 + noise, x0)`.
    fn pgd_random_start(
        ctx: &Self::Ctx,
        eps: f32,
        x0: &Self::View<'_>,
        noise: &Self::View<'_>,
    ) -> Result<Self::Buf>;

    /// One step in place: `x ← project(x + direction·sign(grad), x0)`.
    fn pgd_step(
        ctx: &Self::Ctx,
        direction: f32,
        eps: f32,
        x: &mut Self::Buf,
        grad: &Self::View<'_>,
        x0: &Self::View<'_>,
    ) -> Result<()>;
}
