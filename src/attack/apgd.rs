//! Auto-PGD in the L∞ ball (Croce & Hein, "Reliable evaluation of adversarial
//! robustness with an ensemble of diverse parameter-free attacks", ICML 2020), with the
//! cross-entropy or the DLR loss ([`super::losses`]), untargeted or targeted (APGD-T:
//! one run toward each of the classes with the largest clean logits after the top one).
//!
//! Per image, with `P` the projection onto `[x₀ − ε, x₀ + ε] ∩ [0, 1]` and `L` the loss
//! the attack maximises:
//!
//! ```text
//! x⁰ = P(x₀ + ε·u/‖u‖∞)                    u uniform in [−1, 1]ⁿ
//! z  = P(xᵏ + ηᵏ·sign(∇L(xᵏ)))              η⁰ = 2ε
//! xᵏ⁺¹ = P(xᵏ + a·(z − xᵏ) + (1 − a)·(xᵏ − xᵏ⁻¹))   a = 1 at k = 0, then 0.75
//! ```
//!
//! At the checkpoints `w₀ = 0, w₁ = ⌊0.22·N⌋`, each later gap `⌊0.03·N⌋` shorter than
//! the one before down to `⌊0.06·N⌋` (each at least 1), the step size of an image is
//! halved, and the image returns to its best point so far (with that point's
//! gradient), when over the last gap its loss rose in at most `ρ = 0.75` of the steps,
//! or when the step was not halved at the previous checkpoint and the best loss has not
//! risen since. The image is broken when the model misclassifies any iterate; an image
//! leaves the run once broken (its state is its own, so the others' runs do not change).
//!
//! Only correctly classified images are attacked. Every random draw comes from the
//! `rng` handed in, in this order: per run (targets in order of rank, within each the
//! restarts), one uniform value in [−1, 1] per pixel of the **whole** batch, image by
//! image, whether or not the image is still attacked, so the draws do not depend on
//! what the model answered.

use rand::Rng;

use super::batch::check_batch;
use super::losses::AttackLoss;
use super::outcome::AttackOutcome;
use super::pgd::{argmax_rows, Goal, MAX_ITERATIONS, MAX_RESTARTS};
use crate::classifier::{BatchShape, Classifier};
use crate::error::{check_len, Error, Result};
use crate::ops::pgd::cpu::project;

/// The loss APGD maximises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApgdLoss {
    /// Cross-entropy (of the label; toward the target, negated, when targeted).
    Ce,
    /// Difference of logits ratio (targeted: DLR-T).
    Dlr,
}

/// Settings of one APGD attack.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApgdConfig {
    /// Radius of the L∞ ball, in [0, 1] pixel units.
    pub epsilon: f32,
    /// Iterations N of each run.
    pub iterations: usize,
    /// Runs per image (per target, when targeted), each from its own random start.
    pub restarts: usize,
    /// The loss.
    pub loss: ApgdLoss,
    /// Untargeted, or targeted toward each of `target_classes` classes in turn.
    pub goal: Goal,
    /// Targeted: how many classes, those with the largest clean logits after the top
    /// one (at most the number of classes − 1). Unused when untargeted.
    pub target_classes: usize,
}

/// The fraction ρ of the steps since the last checkpoint in which the loss must have
/// risen for the step size to stay.
pub const RHO: f32 = 0.75;

/// The momentum weight `a` of the gradient step after the first iteration.
pub const MOMENTUM: f32 = 0.75;

impl ApgdConfig {
    /// APGD-CE as AutoAttack runs it: untargeted cross-entropy, one run.
    pub fn ce(epsilon: f32, iterations: usize) -> Self {
        ApgdConfig {
            epsilon,
            iterations,
            restarts: 1,
            loss: ApgdLoss::Ce,
            goal: Goal::Untargeted,
            target_classes: 0,
        }
    }

    /// APGD-T as AutoAttack runs it: targeted DLR toward each of the 9 classes ranked
    /// after the top one (fewer when the model has fewer classes), one run each.
    pub fn targeted_dlr(epsilon: f32, iterations: usize) -> Self {
        ApgdConfig {
            goal: Goal::Targeted,
            loss: ApgdLoss::Dlr,
            target_classes: 9,
            ..Self::ce(epsilon, iterations)
        }
    }

    /// `APGD-CE`, `APGD-DLR`, `APGD-T` (targeted DLR), `APGD-T-CE`.
    pub fn name(&self) -> String {
        match (self.goal, self.loss) {
            (Goal::Untargeted, ApgdLoss::Ce) => "APGD-CE".into(),
            (Goal::Untargeted, ApgdLoss::Dlr) => "APGD-DLR".into(),
            (Goal::Targeted, ApgdLoss::Dlr) => "APGD-T".into(),
            (Goal::Targeted, ApgdLoss::Ce) => "APGD-T-CE".into(),
        }
    }

    /// Checks ε in [0, 1], 1 to [`MAX_ITERATIONS`] iterations, 1 to [`MAX_RESTARTS`]
    /// restarts, and at least one target class when targeted.
    pub fn validate(&self) -> Result<()> {
        let fault = if !(0.0..=1.0).contains(&self.epsilon) {
            format!("ε {} is outside [0, 1] (of the pixel range)", self.epsilon)
        } else if !(1..=MAX_ITERATIONS).contains(&self.iterations) {
            format!("{} iterations, 1 to {MAX_ITERATIONS}", self.iterations)
        } else if !(1..=MAX_RESTARTS).contains(&self.restarts) {
            format!("{} restarts, 1 to {MAX_RESTARTS}", self.restarts)
        } else if self.goal == Goal::Targeted && self.target_classes == 0 {
            "a targeted attack needs at least one target class".to_string()
        } else {
            return Ok(());
        };
        Err(Error::Config(format!("{}: {fault}", self.name())))
    }

    /// The step counts after which the checkpoints fall (`w₁, w₂, …` up to N).
    pub fn checkpoints(&self) -> Vec<usize> {
        let n = self.iterations;
        let at_least_one = |f: f64| ((f * n as f64) as usize).max(1);
        let (first, min_gap, shrink) = (at_least_one(0.22), at_least_one(0.06), at_least_one(0.03));
        let mut out = Vec::new();
        let (mut at, mut gap) = (0, first);
        while at + gap <= n {
            at += gap;
            out.push(at);
            gap = gap.saturating_sub(shrink).max(min_gap);
        }
        out
    }
}

/// Attacks the batch `x` (NCHW in [0, 1]) with true `labels`; see the module docs for
/// the algorithm and the order of the random draws.
pub fn apgd<C: Classifier + ?Sized>(
    model: &mut C,
    x: &[f32],
    shape: BatchShape,
    labels: &[usize],
    config: &ApgdConfig,
    rng: &mut impl Rng,
) -> Result<AttackOutcome> {
    config.validate()?;
    let [n, c, h, w] = shape;
    let len = c * h * w;
    let classes = model.num_classes();
    check_batch("apgd", x.len(), shape, labels, classes)?;
    let needed = match (config.goal, config.loss) {
        (Goal::Untargeted, ApgdLoss::Ce) => AttackLoss::CrossEntropy.min_classes(),
        (Goal::Untargeted, ApgdLoss::Dlr) => AttackLoss::Dlr.min_classes(),
        (Goal::Targeted, ApgdLoss::Ce) => AttackLoss::TargetCrossEntropy(&[]).min_classes(),
        (Goal::Targeted, ApgdLoss::Dlr) => AttackLoss::TargetDlr(&[]).min_classes(),
    };
    if classes < needed {
        return Err(Error::Config(format!(
            "{} needs at least {needed} classes, the model has {classes}",
            config.name()
        )));
    }
    let clean = model.logits(x, shape)?;
    check_len("apgd", "logits", clean.len(), n * classes)?;
    let broken: Vec<bool> = argmax_rows(&clean, classes)
        .iter()
        .zip(labels)
        .map(|(p, l)| p != l)
        .collect();
    // Targeted: the classes ranked 2nd, 3rd, … by the clean logits, one run each.
    let ranks = match config.goal {
        Goal::Untargeted => vec![None],
        Goal::Targeted => (1..=config.target_classes.min(classes - 1))
            .map(Some)
            .collect(),
    };
    let ranked: Vec<Vec<usize>> = clean.chunks_exact(classes).map(ranking).collect();
    let mut out = AttackOutcome {
        adversarial: x.to_vec(),
        broken,
        losses: Vec::new(),
        curve_images: Vec::new(),
        queries: vec![0; n],
    };
    let mut first = true;
    for rank in ranks {
        for _ in 0..config.restarts {
            let noise: Vec<f32> = (0..x.len()).map(|_| rng.random_range(-1.0..=1.0)).collect();
            let images: Vec<usize> = (0..n).filter(|&i| !out.broken[i]).collect();
            if images.is_empty() {
                continue;
            }
            let targets: Option<Vec<usize>> =
                rank.map(|r| images.iter().map(|&i| ranked[i][r]).collect());
            let pick = |v: &[f32]| -> Vec<f32> {
                images
                    .iter()
                    .flat_map(|&i| v[i * len..(i + 1) * len].iter().copied())
                    .collect()
            };
            let run_labels: Vec<usize> = images.iter().map(|&i| labels[i]).collect();
            let run = Run {
                x0: pick(x),
                shape: [images.len(), c, h, w],
                labels: &run_labels,
                targets: targets.as_deref(),
                config,
                classes,
            }
            .go(model, &pick(&noise))?;
            for (j, &i) in images.iter().enumerate() {
                // Only unbroken images run: each takes the run's misclassified point, or
                // else its point of highest loss.
                out.queries[i] += run.queries[j];
                out.broken[i] = run.broken[j];
                out.adversarial[i * len..(i + 1) * len]
                    .copy_from_slice(&run.images[j * len..(j + 1) * len]);
            }
            if first {
                out.losses = run.losses;
                out.curve_images = images;
                first = false;
            }
        }
    }
    Ok(out)
}

/// The classes of a row of logits by decreasing value (ties by index).
fn ranking(row: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| {
        row[b]
            .partial_cmp(&row[a])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    order
}

/// One APGD run over the images of `x0` (all of them attacked).
struct Run<'a> {
    x0: Vec<f32>,
    shape: BatchShape,
    labels: &'a [usize],
    targets: Option<&'a [usize]>,
    config: &'a ApgdConfig,
    classes: usize,
}

/// What one run found, per image of the run.
struct RunResult {
    images: Vec<f32>,
    broken: Vec<bool>,
    losses: Vec<Vec<f32>>,
    queries: Vec<usize>,
}

impl Run<'_> {
    /// The loss of each of the `live` images at `x` (their rows, in order), its input
    /// gradient, and which of them the model misclassifies.
    fn evaluate<C: Classifier + ?Sized>(
        &self,
        model: &mut C,
        x: &[f32],
        live: &[usize],
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<bool>)> {
        let labels: Vec<usize> = live.iter().map(|&j| self.labels[j]).collect();
        let targets: Option<Vec<usize>> =
            self.targets.map(|t| live.iter().map(|&j| t[j]).collect());
        let loss = match (self.config.loss, &targets) {
            (ApgdLoss::Ce, None) => AttackLoss::CrossEntropy,
            (ApgdLoss::Dlr, None) => AttackLoss::Dlr,
            (ApgdLoss::Ce, Some(t)) => AttackLoss::TargetCrossEntropy(t),
            (ApgdLoss::Dlr, Some(t)) => AttackLoss::TargetDlr(t),
        };
        let [_, c, h, w] = self.shape;
        let shape = [live.len(), c, h, w];
        let classes = self.classes;
        let mut values = Vec::new();
        let (logits, grad) = model.logits_and_input_vjp(x, shape, &mut |z| {
            let (v, g) = loss.value_and_grad(z, classes, &labels)?;
            values = v;
            Ok(g)
        })?;
        check_len("apgd", "input gradient", grad.len(), x.len())?;
        let wrong = argmax_rows(&logits, classes)
            .iter()
            .zip(&labels)
            .map(|(p, l)| p != l)
            .collect();
        Ok((values, grad, wrong))
    }

    fn go<C: Classifier + ?Sized>(&self, model: &mut C, noise: &[f32]) -> Result<RunResult> {
        let [m, c, h, w] = self.shape;
        let len = c * h * w;
        let eps = self.config.epsilon;
        let x0 = &self.x0;
        // The start: x₀ + ε·u/‖u‖∞, projected.
        let mut x = vec![0.0f32; x0.len()];
        for j in 0..m {
            let (u, o) = (&noise[j * len..(j + 1) * len], &x0[j * len..(j + 1) * len]);
            let scale = eps / (u.iter().fold(0.0f32, |a, &v| a.max(v.abs())) + 1e-12);
            for ((xv, &uv), &ov) in x[j * len..(j + 1) * len].iter_mut().zip(u).zip(o) {
                *xv = project(ov + scale * uv, ov, eps);
            }
        }
        let all: Vec<usize> = (0..m).collect();
        let (loss0, mut grad, wrong) = self.evaluate(model, &x, &all)?;
        let mut queries = vec![1; m];
        let mut broken = wrong;
        let mut images = x.clone();
        let mut x_best = x.clone();
        let mut grad_best = grad.clone();
        let mut loss_best = loss0.clone();
        let mut losses = vec![loss0];
        let mut x_prev = x.clone();
        let mut step = vec![2.0 * eps; m];
        let mut best_at_last_check = loss_best.clone();
        let mut reduced_at_last_check = vec![true; m];
        let checkpoints = self.config.checkpoints();
        let mut last_checkpoint = 0;
        let mut live: Vec<usize> = (0..m).filter(|&j| !broken[j]).collect();
        let mut batch = Vec::with_capacity(x.len());
        for it in 0..self.config.iterations {
            if live.is_empty() {
                losses.push(losses[it].clone());
                continue;
            }
            let a = if it == 0 { 1.0 } else { MOMENTUM };
            batch.clear();
            for &j in &live {
                let r = j * len..(j + 1) * len;
                let (xs, prev) = (&mut x[r.clone()], &mut x_prev[r.clone()]);
                for (((xv, pv), &g), &o) in xs
                    .iter_mut()
                    .zip(prev.iter_mut())
                    .zip(&grad[r.clone()])
                    .zip(&x0[r.clone()])
                {
                    let sign = if g > 0.0 {
                        1.0
                    } else if g < 0.0 {
                        -1.0
                    } else {
                        0.0
                    };
                    let z = project(*xv + step[j] * sign, o, eps);
                    let next = project(*xv + a * (z - *xv) + (1.0 - a) * (*xv - *pv), o, eps);
                    *pv = *xv;
                    *xv = next;
                }
                batch.extend_from_slice(&x[r]);
            }
            let (loss, g, wrong) = self.evaluate(model, &batch, &live)?;
            let mut row = losses[it].clone();
            for (k, &j) in live.iter().enumerate() {
                let r = j * len..(j + 1) * len;
                queries[j] += 1;
                grad[r.clone()].copy_from_slice(&g[k * len..(k + 1) * len]);
                row[j] = loss[k];
                if wrong[k] {
                    broken[j] = true;
                    images[r.clone()].copy_from_slice(&x[r.clone()]);
                }
                if loss[k] > loss_best[j] {
                    loss_best[j] = loss[k];
                    x_best[r.clone()].copy_from_slice(&x[r.clone()]);
                    grad_best[r.clone()].copy_from_slice(&grad[r]);
                }
            }
            losses.push(row);
            if checkpoints.contains(&(it + 1)) {
                let gap = it + 1 - last_checkpoint;
                for &j in &live {
                    let rises = (last_checkpoint..=it)
                        .filter(|&k| losses[k + 1][j] > losses[k][j])
                        .count();
                    let oscillates = rises as f32 <= RHO * gap as f32;
                    let stalled =
                        !reduced_at_last_check[j] && best_at_last_check[j] >= loss_best[j];
                    let reduce = oscillates || stalled;
                    reduced_at_last_check[j] = reduce;
                    best_at_last_check[j] = loss_best[j];
                    if reduce {
                        step[j] /= 2.0;
                        let r = j * len..(j + 1) * len;
                        x[r.clone()].copy_from_slice(&x_best[r.clone()]);
                        grad[r.clone()].copy_from_slice(&grad_best[r]);
                    }
                }
                last_checkpoint = it + 1;
            }
            live.retain(|&j| !broken[j]);
        }
        for j in (0..m).filter(|&j| !broken[j]) {
            let r = j * len..(j + 1) * len;
            images[r.clone()].copy_from_slice(&x_best[r]);
        }
        Ok(RunResult {
            images,
            broken,
            losses,
            queries,
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::attack::pgd::{pgd, PgdConfig};
    use crate::testing::{random_batch, SoftmaxRegression};

    const SHAPE: BatchShape = [64, 1, 4, 4];

    fn batch(seed: u64) -> (Vec<f32>, Vec<usize>) {
        random_batch(64, 16, 5, seed)
    }

    fn model() -> SoftmaxRegression {
        SoftmaxRegression::sharp(16, 5, 3)
    }

    fn run(config: &ApgdConfig, seed: u64) -> (Vec<f32>, Vec<usize>, AttackOutcome) {
        let (x, labels) = batch(1);
        let out = apgd(
            &mut model(),
            &x,
            SHAPE,
            &labels,
            config,
            &mut ChaCha8Rng::seed_from_u64(seed),
        )
        .unwrap();
        (x, labels, out)
    }

    fn mean(v: &[f32]) -> f32 {
        v.iter().sum::<f32>() / v.len() as f32
    }

    /// The paper's checkpoints for N = 100: gaps 22, 19, 16, … down to 6.
    #[test]
    fn checkpoints_follow_the_paper() {
        let c = ApgdConfig::ce(0.1, 100).checkpoints();
        assert_eq!(c, [22, 41, 57, 70, 80, 87, 93, 99]);
        assert_eq!(ApgdConfig::ce(0.1, 5).checkpoints(), [1, 2, 3, 4, 5]);
    }

    /// Every loss and goal: images in the ε-ball and [0, 1], broken images
    /// misclassified, the first run's mean loss higher at the end than at the start,
    /// the same seed the same attack. Fails when the step follows −sign(∇) (checked).
    #[test]
    fn stays_in_the_ball_raises_its_loss_and_repeats_with_the_seed() {
        for (loss, goal) in [
            (ApgdLoss::Ce, Goal::Untargeted),
            (ApgdLoss::Dlr, Goal::Untargeted),
            (ApgdLoss::Ce, Goal::Targeted),
            (ApgdLoss::Dlr, Goal::Targeted),
        ] {
            let config = ApgdConfig {
                epsilon: 0.04,
                iterations: 12,
                restarts: 2,
                loss,
                goal,
                target_classes: 3,
            };
            let (x, labels, out) = run(&config, 5);
            let name = config.name();
            for (&a, &o) in out.adversarial.iter().zip(&x) {
                assert!((0.0..=1.0).contains(&a), "{name}: {a} outside [0, 1]");
                assert!((a - o).abs() <= 0.04 + 1e-6, "{name}: moved {}", a - o);
            }
            let logits = model().logits(&out.adversarial, SHAPE).unwrap();
            let predicted = argmax_rows(&logits, 5);
            for i in 0..64 {
                assert_eq!(out.broken[i], predicted[i] != labels[i], "{name} image {i}");
            }
            assert_eq!(out.losses.len(), 13);
            let (start, end) = (mean(&out.losses[0]), mean(&out.losses[12]));
            assert!(end > start + 0.1, "{name}: loss {start} → {end}");
            let runs = if goal == Goal::Targeted { 3 * 2 } else { 2 };
            assert!(out.queries.iter().all(|&q| q <= runs * 13), "{name}");
            assert_eq!(out, run(&config, 5).2, "{name}: same seed");
            assert_ne!(out.adversarial, run(&config, 6).2.adversarial, "{name}");
        }
    }

    /// APGD-CE breaks at least as many images as untargeted PGD with the same number of
    /// gradient steps and the same random stream, at each of PGD's usual step sizes,
    /// and more than with the smallest (which cannot cross the ball in 10 steps).
    /// Fails when APGD steps along −sign(∇) (checked).
    #[test]
    fn apgd_breaks_at_least_what_pgd_breaks_with_as_many_steps() {
        // Labels the model gets right, so that every image is attacked.
        let (x, _) = batch(7);
        let labels = argmax_rows(&model().logits(&x, SHAPE).unwrap(), 5);
        let eps = 0.04;
        let out = apgd(
            &mut model(),
            &x,
            SHAPE,
            &labels,
            &ApgdConfig::ce(eps, 10),
            &mut ChaCha8Rng::seed_from_u64(1),
        )
        .unwrap();
        let apgd_broken = out.broken.iter().filter(|&&b| b).count();
        let mut pgd_broken = Vec::new();
        for step in [eps / 10.0, eps / 4.0, eps] {
            let config = PgdConfig {
                epsilon: eps,
                step,
                iterations: 10,
                restarts: 1,
                random_start: true,
                goal: Goal::Untargeted,
            };
            let p = pgd(
                &mut model(),
                &x,
                SHAPE,
                &labels,
                &config,
                &mut ChaCha8Rng::seed_from_u64(1),
            )
            .unwrap();
            pgd_broken.push(
                p.predictions
                    .iter()
                    .zip(&labels)
                    .filter(|(p, l)| p != l)
                    .count(),
            );
        }
        assert!(
            pgd_broken.iter().all(|&p| apgd_broken >= p) && apgd_broken > pgd_broken[0],
            "APGD-CE {apgd_broken}, PGD at ε/10, ε/4, ε: {pgd_broken:?}"
        );
    }

    /// APGD-T attacks toward the classes ranked after the top one: with 5 classes at
    /// most 4 targets, and an image broken by any target's run counts.
    #[test]
    fn targeted_runs_cover_the_ranked_classes() {
        let config = ApgdConfig {
            target_classes: 9,
            ..ApgdConfig::targeted_dlr(0.03, 4)
        };
        let (_, _, out) = run(&config, 2);
        // 4 targets × (start + 4 steps).
        assert!(out.queries.iter().all(|&q| q <= 20));
        assert!(out.queries.iter().any(|&q| q > 5), "only one target's run");
        let one = ApgdConfig {
            target_classes: 1,
            ..config
        };
        let (_, _, first) = run(&one, 2);
        let more = |o: &AttackOutcome| o.broken.iter().filter(|&&b| b).count();
        assert!(more(&out) >= more(&first));
        assert_eq!(out.losses, first.losses, "the first run is the same");
    }

    #[test]
    fn bad_settings_and_inputs_are_errors() {
        let (x, labels) = batch(1);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut three = SoftmaxRegression::new(16, 3, 0);
        let small: Vec<usize> = labels.iter().map(|l| l % 3).collect();
        let t = ApgdConfig::targeted_dlr(0.1, 3);
        let msg = apgd(&mut three, &x, SHAPE, &small, &t, &mut rng)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("at least 4 classes"), "{msg}");
        for bad in [
            ApgdConfig {
                iterations: 0,
                ..ApgdConfig::ce(0.1, 1)
            },
            ApgdConfig {
                restarts: 0,
                ..ApgdConfig::ce(0.1, 1)
            },
            ApgdConfig {
                epsilon: 2.0,
                ..ApgdConfig::ce(0.1, 1)
            },
            ApgdConfig {
                target_classes: 0,
                ..t
            },
        ] {
            assert!(
                apgd(&mut model(), &x, SHAPE, &labels, &bad, &mut rng).is_err(),
                "{bad:?}"
            );
        }
        assert!(apgd(
            &mut model(),
            &x[1..],
            SHAPE,
            &labels,
            &ApgdConfig::ce(0.1, 1),
            &mut rng
        )
        .is_err());
    }
}
