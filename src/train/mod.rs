//! Standard and PGD-adversarial training of any [`Trainable`], deterministic for a seed
//! and resumable from a checkpoint mid-epoch.
//!
//! Every random choice is drawn from a ChaCha8 stream named by `(purpose, epoch, batch)`
//! of the seed: the epoch's shuffle, and each batch's crops, flips, attack targets and
//! starts. Resuming therefore needs only the counters in [`TrainState`], and a resumed
//! run takes exactly the steps an uninterrupted one would.

pub mod checkpoint;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::attack::pgd::PgdConfig;
use crate::classifier::{BatchRecipe, Trainable};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::optim::LrSchedule;
pub use checkpoint::TrainState;

/// How to train.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per SGD step.
    pub batch_size: usize,
    /// The learning rate over the run.
    pub schedule: LrSchedule,
    /// Train on PGD examples of each batch (adversarial training) instead of the clean
    /// batch.
    pub adversarial: Option<PgdConfig>,
    /// Random crop (4-pixel zero padding) and horizontal flip.
    pub augment: bool,
    /// Seed of every random choice.
    pub seed: u64,
    /// Also checkpoint every this many steps (0: only at the end of each epoch).
    pub checkpoint_every: usize,
}

impl TrainConfig {
    /// The paper's recipe: batch 128, lr 0.1 ×0.1 at epochs 30 and 60, crop + flip,
    /// adversarial on targeted PGD-10 (ε = 16/255, α = 1/255) when `adversarial`.
    /// Momentum 0.9 and weight decay 1e-4 belong to the model's optimizer.
    pub fn paper(epochs: usize, adversarial: bool, seed: u64) -> Self {
        TrainConfig {
            epochs,
            batch_size: 128,
            schedule: LrSchedule::paper(),
            adversarial: adversarial.then(|| PgdConfig::paper(10)),
            augment: true,
            seed,
            checkpoint_every: 0,
        }
    }

    /// Learning rate of step `step` (0-based) of epoch `epoch` (0-based) when an epoch
    /// has `steps_per_epoch` steps.
    pub fn lr_at(&self, epoch: usize, step: usize, steps_per_epoch: usize) -> f32 {
        self.schedule.lr(epoch, step, steps_per_epoch, self.epochs)
    }

    /// Whether a checkpoint written under `self` can be resumed under `other`: all but
    /// the number of epochs and the checkpoint interval must agree (a linear schedule
    /// depends on the number of epochs, so there it must agree too).
    fn resumable_as(&self, other: &TrainConfig) -> bool {
        let epochs = match self.schedule {
            LrSchedule::Step { .. } => other.epochs,
            LrSchedule::Linear { .. } => self.epochs,
        };
        TrainConfig {
            epochs,
            checkpoint_every: other.checkpoint_every,
            ..self.clone()
        } == *other
    }
}

/// Sums over the batches of an epoch so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunningStats {
    /// Σ batch mean loss × batch size.
    pub loss_sum: f64,
    /// Correctly classified training images (adversarial ones when adversarial).
    pub correct: usize,
    /// Images seen.
    pub images: usize,
}

impl RunningStats {
    /// Mean loss so far (NaN before the first batch).
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.images as f64
    }

    /// Training accuracy so far.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.images as f64
    }
}

/// Loss and accuracy of one finished epoch.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochStats {
    /// The epoch (0-based).
    pub epoch: usize,
    /// Its learning rate at the first step.
    pub lr: f32,
    /// Mean training loss.
    pub loss: f64,
    /// Training accuracy.
    pub accuracy: f64,
}

/// What the trainer reports after each step.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Current epoch (0-based) and the number of epochs.
    pub epoch: usize,
    /// Of `epochs`.
    pub epochs: usize,
    /// Batches done in this epoch, of `steps_per_epoch`.
    pub step: usize,
    /// Batches per epoch.
    pub steps_per_epoch: usize,
    /// Images in the batch just done.
    pub batch_images: usize,
    /// Running statistics of the epoch.
    pub running: RunningStats,
    /// The learning rate of the step just done.
    pub lr: f32,
}

/// How a call to [`train`] ended.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOutcome {
    /// The state at the end (also in the checkpoint, when there is one).
    pub state: TrainState,
    /// Whether training stopped early because `stop` was set.
    pub interrupted: bool,
}

/// Named streams of the seed.
const SHUFFLE_STREAM: u64 = 1 << 62;
const BATCH_STREAM: u64 = 2 << 62;

fn stream(seed: u64, purpose: u64, epoch: usize, batch: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(purpose | ((epoch as u64) << 32) | batch as u64);
    rng
}

/// Trains `model` on `data` under `config`.
///
/// With `checkpoint_dir`, a checkpoint is written at each epoch end, every
/// `config.checkpoint_every` steps and when `stop` is seen set (after the step in
/// progress); and when `resume` is set and the folder holds a checkpoint, the model and
/// state are restored from it first and training carries on from there.
pub fn train<M: Trainable + ?Sized>(
    model: &mut M,
    data: &Dataset,
    config: &TrainConfig,
    checkpoint_dir: Option<&Path>,
    resume: bool,
    stop: &AtomicBool,
    mut progress: impl FnMut(&Progress),
) -> Result<TrainOutcome> {
    if config.batch_size == 0 || data.is_empty() {
        return Err(Error::Config(format!(
            "training needs a batch size ≥ 1 and images, got batch {} and {} images",
            config.batch_size,
            data.len()
        )));
    }
    let mut state = match checkpoint_dir {
        Some(dir) if resume && dir.join(checkpoint::STATE_FILE).exists() => {
            let mut state = checkpoint::load_state(dir)?;
            if !state.config.resumable_as(config) || state.train_images != data.len() {
                return Err(Error::Config(format!(
                    "the checkpoint in {} was written by a different run ({} images, {:?}); \
                     this run has {} images and {:?}",
                    dir.display(),
                    state.train_images,
                    state.config,
                    data.len(),
                    config
                )));
            }
            model.load(&checkpoint::model_path(dir, &state))?;
            state.config = config.clone();
            state
        }
        _ => TrainState {
            config: config.clone(),
            train_images: data.len(),
            epoch: 0,
            step: 0,
            global_step: 0,
            running: RunningStats::default(),
            history: Vec::new(),
            model_file: String::new(),
        },
    };
    let steps_per_epoch = data.len().div_ceil(config.batch_size);
    let shape_of = |n| [n, data.channels, data.height, data.width];
    let mut x = Vec::new();
    while state.epoch < config.epochs {
        let epoch = state.epoch;
        let epoch_lr = config.lr_at(epoch, 0, steps_per_epoch);
        let mut order: Vec<usize> = (0..data.len()).collect();
        order.shuffle(&mut stream(config.seed, SHUFFLE_STREAM, epoch, 0));
        while state.step < steps_per_epoch {
            if stop.load(Ordering::SeqCst) {
                if let Some(dir) = checkpoint_dir {
                    checkpoint::save(dir, model, &mut state)?;
                }
                return Ok(TrainOutcome {
                    state,
                    interrupted: true,
                });
            }
            let b = state.step;
            let indices =
                &order[b * config.batch_size..((b + 1) * config.batch_size).min(data.len())];
            let labels = data.batch(indices, &mut x);
            let shape = shape_of(indices.len());
            let lr = config.lr_at(epoch, b, steps_per_epoch);
            let mut rng = stream(config.seed, BATCH_STREAM, epoch, b);
            let recipe = BatchRecipe {
                augment: config.augment,
                attack: config.adversarial,
            };
            let stats = model.train_batch(&x, shape, &labels, &recipe, &mut rng, lr)?;
            if !stats.loss.is_finite() {
                return Err(Error::Config(format!(
                    "training diverged: loss {} at epoch {epoch} step {b} (lr {lr})",
                    stats.loss
                )));
            }
            state.running.loss_sum += stats.loss as f64 * indices.len() as f64;
            state.running.correct += stats.correct;
            state.running.images += indices.len();
            state.step += 1;
            state.global_step += 1;
            progress(&Progress {
                epoch,
                epochs: config.epochs,
                step: state.step,
                steps_per_epoch,
                batch_images: indices.len(),
                running: state.running,
                lr,
            });
            let periodic = config.checkpoint_every > 0
                && state.global_step % config.checkpoint_every == 0
                && state.step < steps_per_epoch;
            if let (true, Some(dir)) = (periodic, checkpoint_dir) {
                checkpoint::save(dir, model, &mut state)?;
            }
        }
        state.history.push(EpochStats {
            epoch,
            lr: epoch_lr,
            loss: state.running.loss(),
            accuracy: state.running.accuracy(),
        });
        state.epoch += 1;
        state.step = 0;
        state.running = RunningStats::default();
        if let Some(dir) = checkpoint_dir {
            checkpoint::save(dir, model, &mut state)?;
        }
    }
    Ok(TrainOutcome {
        state,
        interrupted: false,
    })
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;
    use crate::testing::SoftmaxRegression;

    /// Two gray 10×10 classes, dark and bright, with noise: crops and flips keep the
    /// class visible.
    fn toy_data(n: usize, seed: u64) -> Dataset {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let label = (i % 2) as u16;
            let base = if label == 0 { 30 } else { 190 };
            images.extend((0..100).map(|_| base + rng.random_range(0..40u8)));
            labels.push(label);
        }
        Dataset {
            name: "toy".into(),
            images,
            labels,
            channels: 1,
            height: 10,
            width: 10,
            classes: 2,
        }
    }

    fn config() -> TrainConfig {
        TrainConfig {
            epochs: 3,
            batch_size: 8,
            schedule: LrSchedule::Step {
                base: 0.05,
                gamma: 0.1,
                milestones: vec![2],
            },
            adversarial: Some(PgdConfig {
                iterations: 2,
                ..PgdConfig::paper(2)
            }),
            augment: true,
            seed: 11,
            checkpoint_every: 4,
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sparta-train-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn lr_follows_the_step_schedule() {
        let c = TrainConfig::paper(90, true, 0);
        let lrs: Vec<f32> = [0, 29, 30, 59, 60, 89]
            .iter()
            .map(|&e| c.lr_at(e, 3, 10))
            .collect();
        let want = [0.1, 0.1, 0.01, 0.01, 0.001, 0.001];
        for (g, w) in lrs.iter().zip(want) {
            assert!((g - w).abs() <= 1e-6 * w, "{lrs:?}");
        }
    }

    #[test]
    fn training_learns_and_is_deterministic() {
        let data = toy_data(60, 1);
        let never = AtomicBool::new(false);
        let run = || {
            let mut m = SoftmaxRegression::new(100, 2, 5);
            let out = train(&mut m, &data, &config(), None, false, &never, |_| {}).unwrap();
            (m, out)
        };
        let (m1, o1) = run();
        let (m2, o2) = run();
        assert_eq!(m1, m2);
        assert_eq!(o1, o2);
        let h = &o1.state.history;
        assert_eq!(h.len(), 3);
        assert!(h[2].accuracy > 0.9, "{h:?}");
        assert!((h[2].lr - 0.005).abs() < 1e-9);
        let mut other = config();
        other.seed = 12;
        let mut m3 = SoftmaxRegression::new(100, 2, 5);
        train(&mut m3, &data, &other, None, false, &never, |_| {}).unwrap();
        assert_ne!(m1, m3);
    }

    #[test]
    fn interrupted_and_resumed_run_matches_an_uninterrupted_one() {
        // 60 images / batch 8 = 8 steps per epoch; Ctrl-C during epoch 1, step 3.
        let data = toy_data(60, 2);
        let never = AtomicBool::new(false);
        let mut reference = SoftmaxRegression::new(100, 2, 7);
        let full = train(
            &mut reference,
            &data,
            &config(),
            None,
            false,
            &never,
            |_| {},
        )
        .unwrap();

        let dir = temp_dir("resume");
        let stop = AtomicBool::new(false);
        let mut first = SoftmaxRegression::new(100, 2, 7);
        let out = train(&mut first, &data, &config(), Some(&dir), true, &stop, |p| {
            if p.epoch == 1 && p.step == 3 {
                stop.store(true, Ordering::SeqCst);
            }
        })
        .unwrap();
        assert!(out.interrupted);
        assert_eq!((out.state.epoch, out.state.step), (1, 3));

        // A fresh process: a differently initialised model, restored from the folder.
        let mut resumed = SoftmaxRegression::new(100, 2, 99);
        let never2 = AtomicBool::new(false);
        let done = train(
            &mut resumed,
            &data,
            &config(),
            Some(&dir),
            true,
            &never2,
            |_| {},
        )
        .unwrap();
        assert!(!done.interrupted);
        assert_eq!(resumed, reference);
        assert_eq!(done.state.history, full.state.history);
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(files.len(), 2, "state.json and one model file: {files:?}");

        // A killed process (no checkpoint at the kill) resumes from the last periodic
        // one: global step 12 = epoch 1, step 4; killed during step 14.
        let dir2 = temp_dir("killed");
        let mut killed = SoftmaxRegression::new(100, 2, 7);
        let crash = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            train(
                &mut killed,
                &data,
                &config(),
                Some(&dir2),
                true,
                &never,
                |p| {
                    assert!(p.epoch < 1 || p.step < 6, "killed");
                },
            )
        }));
        assert!(crash.is_err());
        let state = checkpoint::load_state(&dir2).unwrap();
        assert_eq!((state.epoch, state.step, state.global_step), (1, 4, 12));
        let mut later = SoftmaxRegression::new(100, 2, 1);
        train(
            &mut later,
            &data,
            &config(),
            Some(&dir2),
            true,
            &never,
            |_| {},
        )
        .unwrap();
        assert_eq!(later, reference);

        // Asking for more epochs later continues the same run.
        let dir3 = temp_dir("extend");
        let mut short = config();
        short.epochs = 2;
        let mut m = SoftmaxRegression::new(100, 2, 7);
        train(&mut m, &data, &short, Some(&dir3), true, &never, |_| {}).unwrap();
        let mut extended = SoftmaxRegression::new(100, 2, 3);
        train(
            &mut extended,
            &data,
            &config(),
            Some(&dir3),
            true,
            &never,
            |_| {},
        )
        .unwrap();
        assert_eq!(extended, reference);

        let mut changed = config();
        changed.seed = 1;
        let err = train(
            &mut later,
            &data,
            &changed,
            Some(&dir3),
            true,
            &never,
            |_| {},
        );
        assert!(err.unwrap_err().to_string().contains("different run"));
    }
}
