//! The per-image losses the attacks compute from a model's logits, each with its
//! gradient with respect to the logits (what [`Classifier::logits_and_input_vjp`] turns
//! into an input gradient). Every loss here is one an attack *maximises*; rows are
//! images, `[n, classes]` row-major. Generic over [`Real`] so that the gradients are
//! checked against f64 finite differences.
//!
//! The difference of logits ratio (DLR) of Croce & Hein (2020, Eq. 6), with
//! `π` the classes sorted by decreasing logit:
//!
//! ```text
//! DLR(z, y)      = −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + δ)
//! DLR-T(z, y, t) = −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + δ)        δ = 1e-12
//! ```
//!
//! It is invariant to shifting and (positively) scaling the logits, so a model cannot
//! hide from it by saturating its softmax, which the cross-entropy can be fooled by.
//!
//! [`Classifier::logits_and_input_vjp`]: crate::classifier::Classifier::logits_and_input_vjp

use crate::error::{check_len, Error, Result};
use crate::real::Real;

/// The DLR denominators' guard against a zero spread of the logits.
pub const DLR_DELTA: f64 = 1e-12;

/// A loss an attack maximises, per image, from the logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttackLoss<'a> {
    /// `CE(z, y)`: the cross-entropy of the true class (untargeted).
    CrossEntropy,
    /// `−CE(z, t)`: the cross-entropy toward target `t`, negated (targeted).
    TargetCrossEntropy(&'a [usize]),
    /// `DLR(z, y)` (untargeted).
    Dlr,
    /// `DLR-T(z, y, t)` toward the targets (targeted).
    TargetDlr(&'a [usize]),
}

impl AttackLoss<'_> {
    /// The loss's name in messages and reports.
    pub fn name(&self) -> &'static str {
        match self {
            AttackLoss::CrossEntropy => "CE",
            AttackLoss::TargetCrossEntropy(_) => "targeted CE",
            AttackLoss::Dlr => "DLR",
            AttackLoss::TargetDlr(_) => "targeted DLR",
        }
    }

    /// The fewest classes the loss is defined for: DLR reads the third largest logit,
    /// DLR-T the fourth.
    pub fn min_classes(&self) -> usize {
        match self {
            AttackLoss::CrossEntropy | AttackLoss::TargetCrossEntropy(_) => 2,
            AttackLoss::Dlr => 3,
            AttackLoss::TargetDlr(_) => 4,
        }
    }

    /// Per-image loss of `logits` against `labels`, and its gradient with respect to
    /// the logits (same layout as `logits`).
    pub fn value_and_grad<T: Real>(
        &self,
        logits: &[T],
        classes: usize,
        labels: &[usize],
    ) -> Result<(Vec<T>, Vec<T>)> {
        const OP: &str = "attack loss";
        let n = labels.len();
        check_len(OP, "logits", logits.len(), n * classes)?;
        if classes < self.min_classes() {
            return Err(Error::Config(format!(
                "the {} loss needs at least {} classes, the model has {classes}",
                self.name(),
                self.min_classes()
            )));
        }
        if let AttackLoss::TargetCrossEntropy(t) | AttackLoss::TargetDlr(t) = self {
            check_len(OP, "targets", t.len(), n)?;
        }
        let mut loss = Vec::with_capacity(n);
        let mut grad = vec![T::zero(); logits.len()];
        for (i, (row, g)) in logits
            .chunks_exact(classes)
            .zip(grad.chunks_exact_mut(classes))
            .enumerate()
        {
            let y = labels[i];
            if y >= classes {
                return Err(Error::shape(OP, "labels", format!("< {classes}"), y));
            }
            loss.push(match self {
                AttackLoss::CrossEntropy => cross_entropy_row(row, y, T::one(), g),
                AttackLoss::TargetCrossEntropy(t) => -cross_entropy_row(row, t[i], -T::one(), g),
                AttackLoss::Dlr => dlr_row(row, y, g),
                AttackLoss::TargetDlr(t) => target_dlr_row(row, y, t[i], g),
            });
        }
        Ok((loss, grad))
    }
}

/// `CE(row, y)`; adds `scale · (softmax − onehot(y))` to `g`.
fn cross_entropy_row<T: Real>(row: &[T], y: usize, scale: T, g: &mut [T]) -> T {
    let max = row.iter().copied().fold(T::neg_infinity(), T::max);
    let sum: T = row.iter().map(|&z| (z - max).exp()).sum();
    for (gj, &z) in g.iter_mut().zip(row) {
        *gj += scale * (z - max).exp() / sum;
    }
    g[y] -= scale;
    max + sum.ln() - row[y]
}

/// The classes of `row` by decreasing logit (ties by index): the first `k`.
fn top<T: Real>(row: &[T], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| {
        row[b]
            .partial_cmp(&row[a])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    order.truncate(k);
    order
}

/// `DLR(row, y)`; its gradient into `g`.
fn dlr_row<T: Real>(row: &[T], y: usize, g: &mut [T]) -> T {
    let p = top(row, 3);
    let other = if p[0] == y { p[1] } else { p[0] };
    let num = row[y] - row[other];
    let den = row[p[0]] - row[p[2]] + T::of_f64(DLR_DELTA);
    // L = −num/den: ∂L/∂num = −1/den, ∂L/∂den = num/den².
    let (d_num, d_den) = (-T::one() / den, num / (den * den));
    g[y] += d_num;
    g[other] -= d_num;
    g[p[0]] += d_den;
    g[p[2]] -= d_den;
    -num / den
}

/// `DLR-T(row, y, t)`; its gradient into `g`.
fn target_dlr_row<T: Real>(row: &[T], y: usize, t: usize, g: &mut [T]) -> T {
    let p = top(row, 4);
    let half = T::of_f64(0.5);
    let num = row[y] - row[t];
    let den = row[p[0]] - half * (row[p[2]] + row[p[3]]) + T::of_f64(DLR_DELTA);
    let (d_num, d_den) = (-T::one() / den, num / (den * den));
    g[y] += d_num;
    g[t] -= d_num;
    g[p[0]] += d_den;
    g[p[2]] -= half * d_den;
    g[p[3]] -= half * d_den;
    -num / den
}

/// The margin `z_y − max_{j≠y} z_j` of each row (the Square attack's loss, which it
/// lowers): negative exactly when another class has the larger logit.
pub fn margin(logits: &[f32], classes: usize, labels: &[usize]) -> Vec<f32> {
    logits
        .chunks_exact(classes)
        .zip(labels)
        .map(|(row, &y)| {
            let other = row
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != y)
                .map(|(_, &z)| z)
                .fold(f32::NEG_INFINITY, f32::max);
            row[y] - other
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Rows with distinct logits, spread enough that a finite-difference step of 1e-6
    /// never reorders the classes.
    fn logits(rng: &mut ChaCha8Rng, n: usize, classes: usize) -> Vec<f64> {
        let mut z = Vec::new();
        for _ in 0..n {
            let mut row: Vec<f64> = (0..classes).map(|j| j as f64 * 0.37).collect();
            for j in (1..classes).rev() {
                row.swap(j, rng.random_range(0..=j));
            }
            z.extend(row.iter().map(|v| v * 3.0 + rng.random_range(-0.01..0.01)));
        }
        z
    }

    /// Every loss's analytic gradient against central differences in f64, for labels
    /// that are and are not the top class (DLR's two cases) and targets among the top
    /// four and below. Fails with a sign flipped in any term of the DLR gradients
    /// (checked by negating the `g[p[2]]` term of `dlr_row`).
    #[test]
    fn gradients_match_finite_differences_in_f64() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (n, classes) = (12, 10);
        let z = logits(&mut rng, n, classes);
        let mut labels: Vec<usize> = (0..n).map(|_| rng.random_range(0..classes)).collect();
        // Labels that are the top class, so `other` is π2.
        for i in 0..4 {
            let row = &z[i * classes..(i + 1) * classes];
            labels[i] = top(row, 1)[0];
        }
        let targets: Vec<usize> = labels.iter().map(|&y| (y + 1 + y % 7) % classes).collect();
        let losses = [
            AttackLoss::CrossEntropy,
            AttackLoss::TargetCrossEntropy(&targets),
            AttackLoss::Dlr,
            AttackLoss::TargetDlr(&targets),
        ];
        for loss in losses {
            let (value, grad) = loss.value_and_grad(&z, classes, &labels).unwrap();
            let h = 1e-6;
            for k in 0..z.len() {
                let mut zp = z.clone();
                zp[k] += h;
                let mut zm = z.clone();
                zm[k] -= h;
                let i = k / classes;
                let fp = loss.value_and_grad(&zp, classes, &labels).unwrap().0[i];
                let fm = loss.value_and_grad(&zm, classes, &labels).unwrap().0[i];
                let numeric = (fp - fm) / (2.0 * h);
                assert!(
                    (numeric - grad[k]).abs() <= 1e-7 * (1.0 + numeric.abs()),
                    "{loss:?} logit {k}: analytic {} numeric {numeric}",
                    grad[k]
                );
            }
            assert!(value.iter().all(|v| v.is_finite()));
        }
    }

    /// DLR is shift- and scale-invariant, negative for correctly classified rows and
    /// positive for misclassified ones; the margin's sign says the same.
    #[test]
    fn dlr_is_invariant_and_its_sign_is_the_classification() {
        let z = [3.0f64, 1.0, 0.5, -1.0, 2.0, 4.0, 0.0, 1.0];
        let labels = [0, 0];
        let (d, _) = AttackLoss::Dlr.value_and_grad(&z, 4, &labels).unwrap();
        assert!(d[0] < 0.0 && d[1] > 0.0, "{d:?}");
        let moved: Vec<f64> = z.iter().map(|v| 7.0 * v - 3.0).collect();
        let (e, _) = AttackLoss::Dlr.value_and_grad(&moved, 4, &labels).unwrap();
        for (a, b) in d.iter().zip(&e) {
            assert!((a - b).abs() < 1e-12, "{d:?} vs {e:?}");
        }
        let zf: Vec<f32> = z.iter().map(|&v| v as f32).collect();
        assert_eq!(margin(&zf, 4, &labels), vec![2.0, -2.0]);
    }

    #[test]
    fn too_few_classes_and_bad_labels_are_errors() {
        let z = [1.0f32, 2.0, 3.0];
        assert!(AttackLoss::TargetDlr(&[1])
            .value_and_grad(&z, 3, &[0])
            .is_err());
        assert!(AttackLoss::Dlr.value_and_grad(&z, 3, &[0]).is_ok());
        assert!(AttackLoss::Dlr.value_and_grad(&z, 3, &[3]).is_err());
        assert!(AttackLoss::CrossEntropy
            .value_and_grad(&z, 3, &[0, 1])
            .is_err());
    }
}
