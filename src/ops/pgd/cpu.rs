//! The PGD step and random start on the host, f32.

use super::PgdKernels;
use crate::error::{check_len, Result};

/// `v` projected onto `[origin − ε, origin + ε] ∩ [0, 1]` (the ball first).
pub fn project(v: f32, origin: f32, eps: f32) -> f32 {
    v.clamp(origin - eps, origin + eps).clamp(0.0, 1.0)
}

/// The random start `project(x₀ + noise, x₀)`.
pub fn random_start(x0: &[f32], noise: &[f32], eps: f32) -> Vec<f32> {
    x0.iter()
        .zip(noise)
        .map(|(&o, &u)| project(o + u, o, eps))
        .collect()
}

/// One PGD step in place: `x ← project(x + direction·sign(g), x₀)` with `sign(0) = 0`
/// (and 0 for NaN).
pub fn step(x: &mut [f32], grad: &[f32], x0: &[f32], direction: f32, eps: f32) {
    for ((v, &g), &o) in x.iter_mut().zip(grad).zip(x0) {
        let sign = if g > 0.0 {
            1.0
        } else if g < 0.0 {
            -1.0
        } else {
            0.0
        };
        *v = project(*v + direction * sign, o, eps);
    }
}

impl PgdKernels for f32 {
    fn pgd_random_start(_: &(), eps: f32, x0: &&[f32], noise: &&[f32]) -> Result<Vec<f32>> {
        check_len("pgd", "noise", noise.len(), x0.len())?;
        Ok(random_start(x0, noise, eps))
    }

    fn pgd_step(
        _: &(),
        direction: f32,
        eps: f32,
        x: &mut Vec<f32>,
        grad: &&[f32],
        x0: &&[f32],
    ) -> Result<()> {
        check_len("pgd", "input gradient", grad.len(), x.len())?;
        check_len("pgd", "x0", x0.len(), x.len())?;
        step(x, grad, x0, direction, eps);
        Ok(())
    }
}
