//! SGD with momentum and L2 weight decay, in PyTorch's form:
//! `v ← μ·v + (g + λ·p)`, `p ← p − lr·v`, on any backend ([`SgdKernels`]).

use crate::backend::Backend;
use crate::error::{check_len, Result};
use crate::real::Real;

/// The hyper-parameters of one SGD update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f32,
    /// Momentum μ.
    pub momentum: f32,
    /// Weight decay λ.
    pub weight_decay: f32,
}

/// What the SGD step needs from a backend.
pub trait SgdKernels: Backend {
    /// Updates parameter `p` and its velocity `v` in place with gradient `g`.
    fn sgd_update(
        ctx: &Self::Ctx,
        p: &mut Self::Buf,
        g: &Self::View<'_>,
        v: &mut Self::Buf,
        step: &SgdStep,
    ) -> Result<()>;
}

impl<T: Real> SgdKernels for T {
    fn sgd_update(_: &(), p: &mut Vec<T>, g: &&[T], v: &mut Vec<T>, step: &SgdStep) -> Result<()> {
        check_len("sgd", "gradient", g.len(), p.len())?;
        check_len("sgd", "velocity", v.len(), p.len())?;
        let (lr, momentum, decay) = (
            T::of_f32(step.lr),
            T::of_f32(step.momentum),
            T::of_f32(step.weight_decay),
        );
        for ((p, v), &g) in p.iter_mut().zip(v.iter_mut()).zip(g.iter()) {
            *v = momentum * *v + g + decay * *p;
            *p -= lr * *v;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_steps_match_hand_computation() {
        let step = SgdStep {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.1,
        };
        let (mut p, mut v) = (vec![1.0f64], vec![0.0f64]);
        f64::sgd_update(&(), &mut p, &&[0.5][..], &mut v, &step).unwrap();
        // v = 0.5 + 0.1 = 0.6; p = 1 − 0.06 (the hyper-parameters are f32, so within
        // their rounding)
        assert!((p[0] - 0.94).abs() < 1e-8);
        f64::sgd_update(&(), &mut p, &&[0.5][..], &mut v, &step).unwrap();
        // v = 0.54 + 0.5 + 0.094 = 1.134; p = 0.94 − 0.1134
        assert!((p[0] - 0.8266).abs() < 1e-8, "{}", p[0]);
        let mut short = vec![0.0, 0.0];
        assert!(f64::sgd_update(&(), &mut short, &&[0.0][..], &mut v, &step).is_err());
    }
}
