//! Clean and adversarial top-1 error of a model over a data set, with the attack's loss
//! per iteration (mean ± std over samples: the paper's Fig. 3).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::pgd::{argmax_rows, pgd, pgd_snapshots, Goal, PgdConfig};
use crate::classifier::Classifier;
use crate::data::Dataset;
use crate::error::{Error, Result};

/// Errors and loss curve of one attack over a data set.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RobustnessReport {
    /// The attack.
    pub attack: PgdConfig,
    /// Images evaluated.
    pub images: usize,
    /// Fraction of clean images misclassified.
    pub clean_error: f64,
    /// Fraction of adversarial images misclassified (the paper's metric).
    pub adversarial_error: f64,
    /// Fraction of samples where the attack reached its goal (targeted: predicted as
    /// the target).
    pub attack_success: f64,
    /// Mean attack loss after `k` steps, `k = 0..=iterations`.
    pub loss_mean: Vec<f64>,
    /// Standard deviation over samples of the attack loss after `k` steps.
    pub loss_std: Vec<f64>,
}

/// Attacks every image of `data` in batches of `batch` with `attack` at each iteration
/// count of `iterations`, and reports errors and loss curves, one report per count.
///
/// Batch `b` draws its targets and starts from ChaCha8 stream `b` of `seed`, for every
/// count alike: with one restart, PGD-10/30/50 are snapshots of a single 50-step run
/// (identical to separate runs, at the cost of the longest). The result depends on
/// nothing but the model, data, attack and seed. `progress` gets the images done.
pub fn evaluate<C: Classifier + ?Sized>(
    model: &mut C,
    data: &Dataset,
    batch: usize,
    attack: &PgdConfig,
    iterations: &[usize],
    seed: u64,
    mut progress: impl FnMut(usize),
) -> Result<Vec<RobustnessReport>> {
    if batch == 0 || data.is_empty() || iterations.is_empty() {
        return Err(Error::Config(format!(
            "evaluation needs a batch size ≥ 1, images and an iteration count, got batch {batch}, {} images, iterations {iterations:?}",
            data.len()
        )));
    }
    for &k in iterations {
        PgdConfig {
            iterations: k,
            ..*attack
        }
        .validate()?;
    }
    let classes = model.num_classes();
    let mut tallies: Vec<Tally> = iterations.iter().map(|&k| Tally::new(k)).collect();
    let mut clean_wrong = 0usize;
    let mut x = Vec::new();
    let indices: Vec<usize> = (0..data.len()).collect();
    for (b, chunk) in indices.chunks(batch).enumerate() {
        let labels = data.batch(chunk, &mut x);
        let shape = [chunk.len(), data.channels, data.height, data.width];
        let clean = argmax_rows(&model.logits(&x, shape)?, classes);
        clean_wrong += clean.iter().zip(&labels).filter(|(p, l)| p != l).count();
        let batch_rng = || {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(b as u64);
            rng
        };
        if attack.restarts == 1 {
            let (targets, snaps) = pgd_snapshots(
                model,
                &x,
                shape,
                &labels,
                attack,
                iterations,
                &mut batch_rng(),
            )?;
            for t in tallies.iter_mut() {
                let s = snaps
                    .iter()
                    .find(|s| s.iterations == t.iterations)
                    .expect("a snapshot per asked count");
                t.add(&s.predictions, &targets, &labels, &s.losses, attack.goal);
            }
        } else {
            for t in tallies.iter_mut() {
                let config = PgdConfig {
                    iterations: t.iterations,
                    ..*attack
                };
                let out = pgd(model, &x, shape, &labels, &config, &mut batch_rng())?;
                t.add(
                    &out.predictions,
                    &out.targets,
                    &labels,
                    &out.losses,
                    attack.goal,
                );
            }
        }
        progress(chunk.len());
    }
    let n = data.len() as f64;
    Ok(tallies
        .into_iter()
        .map(|t| {
            let loss_mean: Vec<f64> = t.sum.iter().map(|s| s / n).collect();
            let loss_std = t
                .sum_sq
                .iter()
                .zip(&loss_mean)
                .map(|(sq, m)| (sq / n - m * m).max(0.0).sqrt())
                .collect();
            RobustnessReport {
                attack: PgdConfig {
                    iterations: t.iterations,
                    ..*attack
                },
                images: data.len(),
                clean_error: clean_wrong as f64 / n,
                adversarial_error: t.wrong as f64 / n,
                attack_success: t.success as f64 / n,
                loss_mean,
                loss_std,
            }
        })
        .collect())
}

/// Running counts of one iteration count.
struct Tally {
    iterations: usize,
    wrong: usize,
    success: usize,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

impl Tally {
    fn new(iterations: usize) -> Self {
        Tally {
            iterations,
            wrong: 0,
            success: 0,
            sum: vec![0.0; iterations + 1],
            sum_sq: vec![0.0; iterations + 1],
        }
    }

    fn add(
        &mut self,
        predictions: &[usize],
        targets: &[usize],
        labels: &[usize],
        losses: &[Vec<f32>],
        goal: Goal,
    ) {
        self.wrong += predictions
            .iter()
            .zip(labels)
            .filter(|(p, l)| p != l)
            .count();
        self.success += predictions
            .iter()
            .zip(targets)
            .filter(|(p, t)| match goal {
                Goal::Targeted => p == t,
                Goal::Untargeted => p != t,
            })
            .count();
        for (k, row) in losses.iter().enumerate() {
            for &l in row {
                self.sum[k] += l as f64;
                self.sum_sq[k] += (l as f64) * (l as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SoftmaxRegression;

    fn data() -> Dataset {
        Dataset {
            name: "noise".into(),
            images: (0..50 * 16).map(|i| ((i * 37) % 256) as u8).collect(),
            labels: (0..50).map(|i| (i % 5) as u16).collect(),
            channels: 1,
            height: 4,
            width: 4,
            classes: 5,
        }
    }

    fn model() -> SoftmaxRegression {
        let mut m = SoftmaxRegression::new(16, 5, 4);
        m.weight.iter_mut().for_each(|w| *w *= 10.0);
        m
    }

    #[test]
    fn errors_grow_with_iterations_and_restarts_agree_on_clean_error() {
        let attack = PgdConfig {
            epsilon: 0.05,
            step: 0.005,
            ..PgdConfig::paper(0)
        };
        let mut seen = 0;
        let reports = evaluate(&mut model(), &data(), 16, &attack, &[0, 3, 10], 1, |n| {
            seen += n
        })
        .unwrap();
        assert_eq!(seen, 50);
        let errors: Vec<f64> = reports.iter().map(|r| r.adversarial_error).collect();
        assert!(errors.windows(2).all(|w| w[0] <= w[1]), "{errors:?}");
        assert!(errors[2] > errors[0], "{errors:?}");
        assert_eq!(reports[0].loss_mean.len(), 1);
        assert_eq!(reports[2].loss_mean.len(), 11);
        assert_eq!(reports[1].loss_mean[..], reports[2].loss_mean[..4]);
        assert!(reports.iter().all(|r| r.loss_std.iter().all(|&s| s > 0.0)));
        // Zero steps from a random start is a small perturbation of the clean images.
        assert!((errors[0] - reports[0].clean_error).abs() <= 0.1);

        let separate = PgdConfig {
            restarts: 2,
            ..attack
        };
        let r2 = evaluate(&mut model(), &data(), 16, &separate, &[10], 1, |_| {}).unwrap();
        assert_eq!(r2[0].clean_error, reports[2].clean_error);
        assert!(r2[0].attack_success >= reports[2].attack_success);
        assert!(evaluate(&mut model(), &data(), 0, &attack, &[1], 1, |_| {}).is_err());
    }
}
