//! Clean and adversarial top-1 error of a model over a data set, for any list of
//! attacks, with each attack's loss per step (mean ± std over images: the paper's
//! Fig. 3) and which images it broke, so that the worst case over attacks can be taken
//! image by image.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::apgd::apgd;
use super::apgd::ApgdLoss;
use super::outcome::AttackOutcome;
use super::pgd::{argmax_rows, pgd, pgd_snapshots, Goal, PgdConfig};
use super::settings::{Attack, Objective, TransferSource};
use super::square::square;
use crate::classifier::{BatchShape, Classifier};
use crate::data::Dataset;
use crate::error::{Error, Result};

/// Errors and loss curve of one attack over a data set.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RobustnessReport {
    /// The attack's name (`targeted PGD-10`, `APGD-T-100`, `Square-5000`), prefixed
    /// with `transfer: ` for images made on another model.
    pub name: String,
    /// The attack and its settings.
    pub attack: Attack,
    /// For images made on another model and read from a file: where from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferSource>,
    /// Images evaluated.
    pub images: usize,
    /// Fraction of clean images misclassified.
    pub clean_error: f64,
    /// Fraction of adversarial images misclassified (the paper's metric). An image
    /// the attack broke at any of its points (any restart, target or iterate, as the
    /// attack defines it) counts.
    pub adversarial_error: f64,
    /// Fraction of images where the attack reached its goal: classified as the target
    /// for targeted PGD, misclassified for the others.
    pub attack_success: f64,
    /// What the loss curve records.
    pub loss: String,
    /// Which way the attack moves it.
    pub objective: Objective,
    /// Mean loss after `k` steps (queries, for Square), `k = 0..`, over the images of
    /// the curve.
    pub loss_mean: Vec<f64>,
    /// Standard deviation over those images.
    pub loss_std: Vec<f64>,
    /// How many images the curve is over: every image for PGD, the correctly
    /// classified ones (those attacked) for APGD and Square.
    pub curve_images: usize,
    /// Mean model evaluations per image.
    pub queries_mean: f64,
}

/// One attack's report and per-image results over a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluated {
    /// Errors and loss curve.
    pub report: RobustnessReport,
    /// Per image of the data set: whether the attack broke it.
    pub broken: Vec<bool>,
    /// The adversarial images (NCHW, the data set's order), when asked for.
    pub adversarial: Option<Vec<f32>>,
}

/// What [`evaluate_attacks`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Per image: whether the clean image is misclassified.
    pub clean_wrong: Vec<bool>,
    /// One entry per attack, in the order asked.
    pub attacks: Vec<Evaluated>,
}

impl Evaluation {
    /// Fraction of clean images misclassified.
    pub fn clean_error(&self) -> f64 {
        fraction(&self.clean_wrong)
    }
}

/// The share of `true` in `flags` (0 for none).
pub fn fraction(flags: &[bool]) -> f64 {
    flags.iter().filter(|&&f| f).count() as f64 / flags.len().max(1) as f64
}

/// The random stream of `attack` on batch `b` of an evaluation with `seed`: for PGD,
/// ChaCha8 seeded with `seed`, stream `b` (what `sparta eval` always drew); for the
/// others ChaCha8 keyed by `seed` and a number per kind of attack (APGD untargeted CE
/// 1, untargeted DLR 2, targeted CE 3, targeted DLR 4; Square 5), stream `b`. Attacks
/// of one kind that differ only in ε or iterations share their draws.
pub fn attack_rng(seed: u64, attack: &Attack, b: usize) -> ChaCha8Rng {
    let kind: u64 = match attack {
        Attack::Pgd(_) => 0,
        Attack::Apgd(c) => {
            1 + u64::from(c.loss == ApgdLoss::Dlr) + 2 * u64::from(c.goal == Goal::Targeted)
        }
        Attack::Square(_) => 5,
    };
    let mut rng = if kind == 0 {
        ChaCha8Rng::seed_from_u64(seed)
    } else {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&kind.to_le_bytes());
        ChaCha8Rng::from_seed(key)
    };
    rng.set_stream(b as u64);
    rng
}

/// Runs every attack of `attacks` on every image of `data`, in batches of `batch`, and
/// reports each one's errors and loss curve, and which images it broke (and the
/// adversarial images when `keep_images`).
///
/// Batch `b` of each attack draws from [`attack_rng`]`(seed, attack, b)`, so a result
/// depends on nothing but the model, the data, the attack, the batch size and the seed.
/// PGD attacks with one restart that differ only in their iterations are snapshots of
/// one run of the longest (identical to separate runs) unless images are kept.
/// `progress` gets the images done.
pub fn evaluate_attacks<C: Classifier + ?Sized>(
    model: &mut C,
    data: &Dataset,
    batch: usize,
    attacks: &[Attack],
    seed: u64,
    keep_images: bool,
    mut progress: impl FnMut(usize),
) -> Result<Evaluation> {
    if batch == 0 || data.is_empty() {
        return Err(Error::Config(format!(
            "evaluation needs a batch size ≥ 1 and images, got batch {batch}, {} images",
            data.len()
        )));
    }
    for a in attacks {
        a.validate()?;
    }
    let classes = model.num_classes();
    let mut tallies: Vec<Tally> = attacks
        .iter()
        .map(|a| Tally::new(a, data.len(), keep_images))
        .collect();
    let mut clean_wrong = vec![false; data.len()];
    let mut x = Vec::new();
    let indices: Vec<usize> = (0..data.len()).collect();
    let len = data.image_len();
    for (b, chunk) in indices.chunks(batch).enumerate() {
        let labels = data.batch(chunk, &mut x);
        let shape = [chunk.len(), data.channels, data.height, data.width];
        let clean = argmax_rows(&model.logits(&x, shape)?, classes);
        for ((&i, p), l) in chunk.iter().zip(&clean).zip(&labels) {
            clean_wrong[i] = p != l;
        }
        let mut done = vec![false; attacks.len()];
        for (a, attack) in attacks.iter().enumerate() {
            if done[a] {
                continue;
            }
            let mut rng = attack_rng(seed, attack, b);
            match snapshot_group(attacks, a, keep_images) {
                Some((group, config)) => {
                    let at: Vec<usize> = group.iter().map(|&g| tallies[g].iterations()).collect();
                    let (targets, snaps) =
                        pgd_snapshots(model, &x, shape, &labels, &config, &at, &mut rng)?;
                    for (&g, &k) in group.iter().zip(&at) {
                        let s = snaps
                            .iter()
                            .find(|s| s.iterations == k)
                            .ok_or_else(|| Error::Config(format!("no snapshot after {k} steps")))?;
                        let outcome = AttackOutcome {
                            adversarial: Vec::new(),
                            broken: s
                                .predictions
                                .iter()
                                .zip(&labels)
                                .map(|(p, l)| p != l)
                                .collect(),
                            losses: s.losses.clone(),
                            curve_images: (0..chunk.len()).collect(),
                            queries: vec![s.iterations + 1; chunk.len()],
                        };
                        let success = goal_reached(&s.predictions, &targets, &labels, config.goal);
                        tallies[g].add(chunk, &outcome, &success, len);
                        done[g] = true;
                    }
                }
                None => {
                    let (outcome, success) = run_one(attack, model, &x, shape, &labels, &mut rng)?;
                    tallies[a].add(chunk, &outcome, &success, len);
                    done[a] = true;
                }
            }
        }
        progress(chunk.len());
    }
    let clean_error = fraction(&clean_wrong);
    Ok(Evaluation {
        attacks: tallies.into_iter().map(|t| t.finish(clean_error)).collect(),
        clean_wrong,
    })
}

/// One attack on one batch: what it produced, and per image whether it reached its
/// goal (targeted PGD: the target; the others: a misclassification).
fn run_one<C: Classifier + ?Sized>(
    attack: &Attack,
    model: &mut C,
    x: &[f32],
    shape: BatchShape,
    labels: &[usize],
    rng: &mut ChaCha8Rng,
) -> Result<(AttackOutcome, Vec<bool>)> {
    let outcome = match attack {
        Attack::Pgd(c) => {
            let out = pgd(model, x, shape, labels, c, rng)?;
            let success = out.succeeded(c.goal);
            let n = labels.len();
            let outcome = AttackOutcome {
                broken: out
                    .predictions
                    .iter()
                    .zip(labels)
                    .map(|(p, l)| p != l)
                    .collect(),
                adversarial: out.adversarial,
                losses: out.losses,
                curve_images: (0..n).collect(),
                queries: vec![c.restarts * (c.iterations + 1); n],
            };
            return Ok((outcome, success));
        }
        Attack::Apgd(c) => apgd(model, x, shape, labels, c, rng)?,
        Attack::Square(c) => square(model, x, shape, labels, c, rng)?,
    };
    let success = outcome.broken.clone();
    Ok((outcome, success))
}

/// The PGD attacks (indices) that share one run with attack `a`, and that run's
/// configuration, when `a` is a one-restart PGD attack and images are not kept.
fn snapshot_group(
    attacks: &[Attack],
    a: usize,
    keep_images: bool,
) -> Option<(Vec<usize>, PgdConfig)> {
    let Attack::Pgd(first) = attacks[a] else {
        return None;
    };
    if keep_images || first.restarts != 1 {
        return None;
    }
    let base = PgdConfig {
        iterations: 0,
        ..first
    };
    let group: Vec<usize> = (a..attacks.len())
        .filter(
            |&g| matches!(attacks[g], Attack::Pgd(c) if PgdConfig { iterations: 0, ..c } == base),
        )
        .collect();
    let longest = group
        .iter()
        .map(|&g| match attacks[g] {
            Attack::Pgd(c) => c.iterations,
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    Some((
        group,
        PgdConfig {
            iterations: longest,
            ..first
        },
    ))
}

/// Per image: classified as the target (targeted), misclassified (untargeted).
fn goal_reached(
    predictions: &[usize],
    targets: &[usize],
    labels: &[usize],
    goal: Goal,
) -> Vec<bool> {
    predictions
        .iter()
        .zip(targets)
        .zip(labels)
        .map(|((p, t), l)| match goal {
            Goal::Targeted => p == t,
            Goal::Untargeted => p != l,
        })
        .collect()
}

/// Clean and adversarial error of one attack at each of `iterations` (PGD), with its
/// loss curves: [`evaluate_attacks`] with `attack` at each count, as reports.
pub fn evaluate<C: Classifier + ?Sized>(
    model: &mut C,
    data: &Dataset,
    batch: usize,
    attack: &PgdConfig,
    iterations: &[usize],
    seed: u64,
    progress: impl FnMut(usize),
) -> Result<Vec<RobustnessReport>> {
    if iterations.is_empty() {
        return Err(Error::Config("evaluation needs an iteration count".into()));
    }
    let attacks: Vec<Attack> = iterations
        .iter()
        .map(|&k| {
            Attack::Pgd(PgdConfig {
                iterations: k,
                ..*attack
            })
        })
        .collect();
    let evaluation = evaluate_attacks(model, data, batch, &attacks, seed, false, progress)?;
    Ok(evaluation.attacks.into_iter().map(|e| e.report).collect())
}

/// Running counts of one attack.
struct Tally {
    attack: Attack,
    broken: Vec<bool>,
    success: usize,
    queries: usize,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    curve_images: usize,
    adversarial: Option<Vec<f32>>,
}

impl Tally {
    fn new(attack: &Attack, images: usize, keep_images: bool) -> Self {
        Tally {
            attack: *attack,
            broken: vec![false; images],
            success: 0,
            queries: 0,
            sum: Vec::new(),
            sum_sq: Vec::new(),
            curve_images: 0,
            adversarial: keep_images.then(Vec::new),
        }
    }

    fn iterations(&self) -> usize {
        match self.attack {
            Attack::Pgd(c) => c.iterations,
            Attack::Apgd(c) => c.iterations,
            Attack::Square(c) => c.queries,
        }
    }

    /// Adds the outcome on the images `chunk` (data-set indices) of length `len`.
    fn add(&mut self, chunk: &[usize], outcome: &AttackOutcome, success: &[bool], len: usize) {
        for (&i, &b) in chunk.iter().zip(&outcome.broken) {
            self.broken[i] = b;
        }
        self.success += success.iter().filter(|&&s| s).count();
        self.queries += outcome.queries.iter().sum::<usize>();
        if self.sum.len() < outcome.losses.len() {
            self.sum.resize(outcome.losses.len(), 0.0);
            self.sum_sq.resize(outcome.losses.len(), 0.0);
        }
        for (k, row) in outcome.losses.iter().enumerate() {
            for &l in row {
                self.sum[k] += l as f64;
                self.sum_sq[k] += (l as f64) * (l as f64);
            }
        }
        self.curve_images += outcome.curve_images.len();
        if let Some(images) = &mut self.adversarial {
            images.extend_from_slice(&outcome.adversarial[..chunk.len() * len]);
        }
    }

    fn finish(self, clean_error: f64) -> Evaluated {
        let n = self.curve_images.max(1) as f64;
        let loss_mean: Vec<f64> = self.sum.iter().map(|s| s / n).collect();
        let loss_std = self
            .sum_sq
            .iter()
            .zip(&loss_mean)
            .map(|(sq, m)| (sq / n - m * m).max(0.0).sqrt())
            .collect();
        let images = self.broken.len();
        let (loss, objective) = self.attack.loss();
        Evaluated {
            report: RobustnessReport {
                name: self.attack.name(),
                attack: self.attack,
                transfer: None,
                images,
                clean_error,
                adversarial_error: fraction(&self.broken),
                attack_success: self.success as f64 / images as f64,
                loss: loss.into(),
                objective,
                loss_mean,
                loss_std,
                curve_images: self.curve_images,
                queries_mean: self.queries as f64 / images as f64,
            },
            broken: self.broken,
            adversarial: self.adversarial,
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
        SoftmaxRegression::sharp(16, 5, 4)
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
        // Counts in any order: each report is its own count's snapshot.
        let reversed =
            evaluate(&mut model(), &data(), 16, &attack, &[10, 0, 3], 1, |_| {}).unwrap();
        assert_eq!(
            reversed,
            [&reports[2], &reports[0], &reports[1]].map(Clone::clone)
        );
        let r2 = evaluate(&mut model(), &data(), 16, &separate, &[10], 1, |_| {}).unwrap();
        assert_eq!(r2[0].clean_error, reports[2].clean_error);
        assert!(r2[0].attack_success >= reports[2].attack_success);
        assert!(evaluate(&mut model(), &data(), 0, &attack, &[1], 1, |_| {}).is_err());
    }
}
