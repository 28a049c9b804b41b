//! SGD with momentum and L2 weight decay, in PyTorch's form:
//! `v ← μ·v + (g + λ·p)`, `p ← p − lr·v`.

use crate::error::{check_len, Result};
use crate::real::Real;

/// SGD state: hyper-parameters and one velocity buffer per parameter tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Sgd<T> {
    /// Momentum μ.
    pub momentum: T,
    /// Weight decay λ (applied to every parameter).
    pub weight_decay: T,
    /// Velocity per parameter tensor, in the model's parameter order.
    pub velocity: Vec<Vec<T>>,
}

impl<T: Real> Sgd<T> {
    /// Zero velocity for parameters of the given sizes.
    pub fn new(momentum: T, weight_decay: T, sizes: impl IntoIterator<Item = usize>) -> Self {
        Sgd {
            momentum,
            weight_decay,
            velocity: sizes.into_iter().map(|n| vec![T::zero(); n]).collect(),
        }
    }

    /// Updates parameter `i` (values `p`) with gradient `g` at learning rate `lr`.
    pub fn update(&mut self, i: usize, p: &mut [T], g: &[T], lr: T) -> Result<()> {
        let v = &mut self.velocity[i];
        check_len("sgd", "parameter", p.len(), v.len())?;
        check_len("sgd", "gradient", g.len(), v.len())?;
        for ((p, v), &g) in p.iter_mut().zip(v.iter_mut()).zip(g) {
            *v = self.momentum * *v + g + self.weight_decay * *p;
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
        let mut sgd = Sgd::new(0.9, 0.1, [1]);
        let mut p = [1.0f64];
        sgd.update(0, &mut p, &[0.5], 0.1).unwrap();
        // v = 0.5 + 0.1 = 0.6; p = 1 − 0.06
        assert!((p[0] - 0.94).abs() < 1e-12);
        sgd.update(0, &mut p, &[0.5], 0.1).unwrap();
        // v = 0.54 + 0.5 + 0.094 = 1.134; p = 0.94 − 0.1134
        assert!((p[0] - 0.8266).abs() < 1e-12, "{}", p[0]);
        assert!(sgd.update(0, &mut [0.0, 0.0], &[0.0, 0.0], 0.1).is_err());
    }
}
