//! Standard and PGD-adversarial training of any [`Trainable`], deterministic for a seed
//! and resumable from a checkpoint mid-epoch.
//!
//! Every random choice is drawn from a ChaCha8 stream named by `(purpose, epoch, batch)`
//! of the seed: the epoch's shuffle, and each batch's crops, flips, attack targets and
//! starts. Resuming therefore needs only the counters in [`TrainState`], and a resumed
//! run takes exactly the steps an uninterrupted one would.

pub mod checkpoint;
pub mod recipe;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::attack::pgd::PgdConfig;
use crate::classifier::Trainable;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::optim::LrSchedule;
use crate::storage::RunLock;
pub use checkpoint::TrainState;
pub use recipe::{train_batch, BatchRecipe};

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

    /// Checks what no run can use: a batch size of 0 or above [`MAX_BATCH_SIZE`], more
    /// than [`MAX_EPOCHS`] epochs, a learning rate or decay factor that is not positive
    /// and finite, and an invalid attack ([`PgdConfig::validate`]).
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Config(what));
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return bad(format!(
                "batch size {} (1 to {MAX_BATCH_SIZE})",
                self.batch_size
            ));
        }
        if self.epochs > MAX_EPOCHS {
            return bad(format!("{} epochs (at most {MAX_EPOCHS})", self.epochs));
        }
        let positive = |v: f32| v.is_finite() && v > 0.0;
        match &self.schedule {
            LrSchedule::Step { base, gamma, .. } if !positive(*base) || !positive(*gamma) => {
                return bad(format!(
                    "learning rate {base} and decay factor {gamma}: both must be positive and finite"
                ))
            }
            LrSchedule::Linear { base } if !positive(*base) => {
                return bad(format!(
                    "learning rate {base}: it must be positive and finite"
                ))
            }
            _ => {}
        }
        match &self.adversarial {
            Some(attack) => attack.validate(),
            None => Ok(()),
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

/// The largest batch [`TrainConfig::validate`] accepts.
pub const MAX_BATCH_SIZE: usize = 1 << 16;

/// The most epochs [`TrainConfig::validate`] accepts.
pub const MAX_EPOCHS: usize = 100_000;

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
    /// The global step a checkpoint resumed training at (`None`: from the start).
    pub resumed_at: Option<usize>,
}

/// Named streams of the seed.
const SHUFFLE_STREAM: u64 = 1 << 62;
const BATCH_STREAM: u64 = 2 << 62;

fn stream(seed: u64, purpose: u64, epoch: usize, batch: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(purpose | ((epoch as u64) << 32) | batch as u64);
    rng
}

/// Where [`train`] keeps its checkpoints, and whether it carries on from one.
#[derive(Clone, Copy, Debug)]
pub struct Checkpoints<'a> {
    /// The folder. Training holds its [`RunLock`] throughout, so a second run there
    /// fails at once instead of interleaving its files with this one's.
    pub dir: &'a Path,
    /// Restore the model and state from a checkpoint in `dir`, if there is one, and
    /// carry on from there.
    pub resume: bool,
    /// Resume even if the checkpoint was trained on another data set (same image count
    /// and configuration still required): a transfer the caller intends.
    pub other_dataset: bool,
}

/// Trains `model` on `data` under `config`.
///
/// With `checkpoints`, a checkpoint is written at each epoch end, every
/// `config.checkpoint_every` steps and when `stop` is seen set (after the step in
/// progress); what interrupted checkpoints left in the folder is removed first; and when
/// resuming and the folder holds a checkpoint, the model and state are restored from it
/// and training carries on from there.
///
/// A non-finite loss, or non-finite weights found when a checkpoint is due, end
/// training with [`Error::Diverged`]; no checkpoint is written from such a step.
pub fn train<M: Trainable + ?Sized>(
    model: &mut M,
    data: &Dataset,
    config: &TrainConfig,
    checkpoints: Option<Checkpoints>,
    stop: &AtomicBool,
    mut progress: impl FnMut(&Progress),
) -> Result<TrainOutcome> {
    config.validate()?;
    if data.is_empty() {
        return Err(Error::Config(format!(
            "training needs images, {} has none",
            data.name
        )));
    }
    let steps_per_epoch = data.len().div_ceil(config.batch_size);
    let _lock = checkpoints
        .map(|c| -> Result<RunLock> {
            let lock = RunLock::acquire(c.dir)?;
            checkpoint::remove_leftovers(c.dir)?;
            Ok(lock)
        })
        .transpose()?;
    let checkpoint_dir = checkpoints.map(|c| c.dir);
    let mut state = match checkpoints {
        Some(c) if c.resume && c.dir.join(checkpoint::STATE_FILE).exists() => {
            resume(model, data, config, c, steps_per_epoch)?
        }
        _ => TrainState {
            config: config.clone(),
            train_images: data.len(),
            dataset: Some(data.info()),
            epoch: 0,
            step: 0,
            global_step: 0,
            running: RunningStats::default(),
            history: Vec::new(),
            model_file: String::new(),
        },
    };
    // Saves a checkpoint after step `step` (1-based) of epoch `epoch` (0-based); a model
    // that is no longer finite is the divergence it is.
    let save = |model: &M, state: &mut TrainState, epoch: usize, step: usize| -> Result<()> {
        let Some(dir) = checkpoint_dir else {
            return Ok(());
        };
        let last_good = checkpoint::model_path(dir, state);
        checkpoint::save(dir, model, state).map_err(|e| match e {
            Error::NonFinite {
                tensor,
                index,
                value,
            } => Error::Diverged {
                epoch: epoch + 1,
                step,
                what: format!("after the update, tensor {tensor} holds {value} at index {index}"),
                last_good,
            },
            other => other,
        })
    };
    let resumed_at = (!state.model_file.is_empty()).then_some(state.global_step);
    let shape_of = |n| [n, data.channels, data.height, data.width];
    let mut x = Vec::new();
    while state.epoch < config.epochs {
        let epoch = state.epoch;
        let epoch_lr = config.lr_at(epoch, 0, steps_per_epoch);
        let mut order: Vec<usize> = (0..data.len()).collect();
        order.shuffle(&mut stream(config.seed, SHUFFLE_STREAM, epoch, 0));
        while state.step < steps_per_epoch {
            if stop.load(Ordering::SeqCst) {
                let step = state.step;
                save(model, &mut state, epoch, step)?;
                return Ok(TrainOutcome {
                    state,
                    interrupted: true,
                    resumed_at,
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
            let stats = train_batch(model, &x, shape, &labels, &recipe, &mut rng, lr)?;
            if !stats.loss.is_finite() {
                return Err(Error::Diverged {
                    epoch: epoch + 1,
                    step: b + 1,
                    what: format!("the loss is {} (lr {lr})", stats.loss),
                    last_good: checkpoint_dir.and_then(|d| checkpoint::model_path(d, &state)),
                });
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
            if periodic {
                let step = state.step;
                save(model, &mut state, epoch, step)?;
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
        save(model, &mut state, epoch, steps_per_epoch)?;
    }
    Ok(TrainOutcome {
        state,
        interrupted: false,
        resumed_at,
    })
}

/// The state of the checkpoint in `c.dir`, checked against this run, with `model`
/// restored from it.
fn resume<M: Trainable + ?Sized>(
    model: &mut M,
    data: &Dataset,
    config: &TrainConfig,
    c: Checkpoints,
    steps_per_epoch: usize,
) -> Result<TrainState> {
    let mut state = checkpoint::load_state(c.dir)?;
    if !state.config.resumable_as(config) || state.train_images != data.len() {
        return Err(Error::Config(format!(
            "the checkpoint in {} was written by a different run ({} images, {:?}); \
             this run has {} images and {:?}",
            c.dir.display(),
            state.train_images,
            state.config,
            data.len(),
            config
        )));
    }
    let info = data.info();
    if let Some(trained_on) = state.dataset.as_ref().filter(|d| **d != info) {
        if !c.other_dataset {
            return Err(Error::Config(format!(
                "the checkpoint in {} was trained on {trained_on}, this run's data is \
                 {info}; resuming on other data must be asked for",
                c.dir.display()
            )));
        }
    }
    state.check(
        &c.dir.join(checkpoint::STATE_FILE),
        steps_per_epoch,
        config.batch_size,
    )?;
    let path = checkpoint::model_path(c.dir, &state).ok_or_else(|| {
        Error::format(
            c.dir.join(checkpoint::STATE_FILE),
            "inconsistent state: no model file",
        )
    })?;
    model.load(&path)?;
    state.config = config.clone();
    state.dataset = Some(info);
    Ok(state)
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;
    use crate::classifier::{BatchShape, Classifier, LossGrad, StepStats};
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

    fn resuming(dir: &Path) -> Checkpoints<'_> {
        Checkpoints {
            dir,
            resume: true,
            other_dataset: false,
        }
    }

    /// A fresh folder and, in it, a run folder not yet made.
    fn temp_dir(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let (tmp, dir) = crate::temp_folder::temp_dir(&format!("train-{name}"));
        (tmp, dir.join("run"))
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
            let out = train(&mut m, &data, &config(), None, &never, |_| {}).unwrap();
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
        train(&mut m3, &data, &other, None, &never, |_| {}).unwrap();
        assert_ne!(m1, m3);
    }

    #[test]
    fn interrupted_and_resumed_run_matches_an_uninterrupted_one() {
        // 60 images / batch 8 = 8 steps per epoch; Ctrl-C during epoch 1, step 3.
        let data = toy_data(60, 2);
        let never = AtomicBool::new(false);
        let mut reference = SoftmaxRegression::new(100, 2, 7);
        let full = train(&mut reference, &data, &config(), None, &never, |_| {}).unwrap();

        let (_tmp, dir) = temp_dir("resume");
        let stop = AtomicBool::new(false);
        let mut first = SoftmaxRegression::new(100, 2, 7);
        let out = train(
            &mut first,
            &data,
            &config(),
            Some(resuming(&dir)),
            &stop,
            |p| {
                if p.epoch == 1 && p.step == 3 {
                    stop.store(true, Ordering::SeqCst);
                }
            },
        )
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
            Some(resuming(&dir)),
            &never2,
            |_| {},
        )
        .unwrap();
        assert!(!done.interrupted);
        assert_eq!((out.resumed_at, done.resumed_at), (None, Some(11)));
        assert_eq!(resumed, reference);
        assert_eq!(done.state.history, full.state.history);
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|name| name != crate::storage::LOCK_FILE)
            .collect();
        assert_eq!(files.len(), 2, "state.json and one model file: {files:?}");

        // A killed process (no checkpoint at the kill) resumes from the last periodic
        // one: global step 12 = epoch 1, step 4; killed during step 14.
        let (_tmp, dir2) = temp_dir("killed");
        let mut killed = SoftmaxRegression::new(100, 2, 7);
        let crash = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            train(
                &mut killed,
                &data,
                &config(),
                Some(resuming(&dir2)),
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
            Some(resuming(&dir2)),
            &never,
            |_| {},
        )
        .unwrap();
        assert_eq!(later, reference);

        // Asking for more epochs later continues the same run.
        let (_tmp, dir3) = temp_dir("extend");
        let mut short = config();
        short.epochs = 2;
        let mut m = SoftmaxRegression::new(100, 2, 7);
        train(&mut m, &data, &short, Some(resuming(&dir3)), &never, |_| {}).unwrap();
        let mut extended = SoftmaxRegression::new(100, 2, 3);
        train(
            &mut extended,
            &data,
            &config(),
            Some(resuming(&dir3)),
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
            Some(resuming(&dir3)),
            &never,
            |_| {},
        );
        assert!(err.unwrap_err().to_string().contains("different run"));
    }

    /// A model whose weights turn NaN in the update of step `breaks_at` (1-based) while
    /// that step's loss, computed before the update, is finite: a divergence only the
    /// weights show.
    struct BreaksAt {
        inner: SoftmaxRegression,
        steps: usize,
        breaks_at: usize,
    }

    impl Classifier for BreaksAt {
        type Backend = f32;
        fn ctx(&self) -> &() {
            &()
        }
        fn num_classes(&self) -> usize {
            self.inner.num_classes()
        }
        fn logits_on(&mut self, x: &Vec<f32>, shape: BatchShape) -> Result<Vec<f32>> {
            self.inner.logits_on(x, shape)
        }
        fn input_vjp(
            &mut self,
            x: &Vec<f32>,
            shape: BatchShape,
            loss_grad: &mut LossGrad<'_, f32>,
        ) -> Result<(Vec<f32>, Vec<f32>)> {
            self.inner.input_vjp(x, shape, loss_grad)
        }
    }

    impl Trainable for BreaksAt {
        fn train_step_on(
            &mut self,
            x: &Vec<f32>,
            shape: BatchShape,
            labels: &Vec<usize>,
            lr: f32,
        ) -> Result<StepStats> {
            let stats = self.inner.train_step_on(x, shape, labels, lr)?;
            self.steps += 1;
            if self.steps == self.breaks_at {
                self.inner.weight[3] = f32::NAN;
            }
            Ok(stats)
        }
        fn save(&self, path: &Path) -> Result<()> {
            self.inner.save(path)
        }
        fn load(&mut self, path: &Path) -> Result<()> {
            self.inner.load(path)
        }
    }

    fn standard(checkpoint_every: usize, lr: f32) -> TrainConfig {
        TrainConfig {
            adversarial: None,
            augment: false,
            checkpoint_every,
            schedule: LrSchedule::Step {
                base: lr,
                gamma: 0.1,
                milestones: vec![],
            },
            ..config()
        }
    }

    /// Data loss 3 of the issue: weights that went NaN in an update were written as the
    /// last checkpoint, and a resume diverged forever. The planted fault: dropping the
    /// finiteness check in `crate::checkpoint::save` makes this test fail.
    #[test]
    fn a_diverging_step_never_becomes_the_last_checkpoint() {
        let data = toy_data(60, 3);
        let never = AtomicBool::new(false);
        let (_tmp, dir) = temp_dir("diverge");
        // 8 steps per epoch: breaks in step 3 of epoch 2.
        let mut model = BreaksAt {
            inner: SoftmaxRegression::new(100, 2, 4),
            steps: 0,
            breaks_at: 11,
        };
        let err = train(
            &mut model,
            &data,
            &standard(1, 0.05),
            Some(resuming(&dir)),
            &never,
            |_| {},
        )
        .unwrap_err();
        let last_good = dir.join("model-step00000010.safetensors");
        match &err {
            Error::Diverged {
                epoch: 2,
                step: 3,
                what,
                last_good: Some(path),
            } => {
                assert!(
                    what.contains("tensor weight holds NaN at index 3"),
                    "{what}"
                );
                assert_eq!(path, &last_good);
            }
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.starts_with("training diverged at epoch 2, step 3"),
            "{msg}"
        );
        assert!(msg.contains(&last_good.display().to_string()), "{msg}");
        let state = checkpoint::load_state(&dir).unwrap();
        assert_eq!((state.epoch, state.step, state.global_step), (1, 2, 10));
        let mut restored = SoftmaxRegression::new(100, 2, 0);
        restored.load(&last_good).unwrap();
        assert!(restored.weight.iter().all(|w| w.is_finite()));

        // A loss that is no longer finite is the same error, naming no checkpoint when
        // none was written.
        let mut wild = SoftmaxRegression::new(100, 2, 4);
        let err = train(
            &mut wild,
            &data,
            &standard(0, f32::MAX),
            None,
            &never,
            |_| {},
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Diverged { last_good: None, what, .. } if what.contains("loss")),
            "{err:?}"
        );
    }

    /// Data loss 1 of the issue: a state file naming a model outside its folder had it
    /// loaded, and deleted at the next checkpoint.
    #[test]
    fn a_state_file_cannot_name_a_model_outside_its_folder() {
        let data = toy_data(24, 5);
        let never = AtomicBool::new(false);
        let (_tmp, root) = temp_dir("escape");
        let dir = root.join("run");
        let victim = root.join("victim.safetensors");
        let mut m = SoftmaxRegression::new(100, 2, 1);
        let short = TrainConfig {
            epochs: 1,
            ..standard(0, 0.05)
        };
        train(&mut m, &data, &short, Some(resuming(&dir)), &never, |_| {}).unwrap();
        m.save(&victim).unwrap();
        let state_path = dir.join(checkpoint::STATE_FILE);
        let original = std::fs::read_to_string(&state_path).unwrap();
        let good = checkpoint::load_state(&dir).unwrap().model_file;
        for bad in ["../victim.safetensors", victim.to_str().unwrap(), "sub/x"] {
            std::fs::write(&state_path, original.replace(&good, bad)).unwrap();
            let longer = TrainConfig {
                epochs: 2,
                ..short.clone()
            };
            let err = train(&mut m, &data, &longer, Some(resuming(&dir)), &never, |_| {})
                .unwrap_err()
                .to_string();
            assert!(err.contains("not a checkpoint's model file name"), "{err}");
            assert!(
                victim.is_file(),
                "{bad}: the file outside the folder is gone"
            );
        }
    }

    /// Data loss 2 of the issue, at the library's depth: a second run in a folder that
    /// another run trains in fails at once and touches nothing.
    #[test]
    fn a_second_run_in_the_folder_fails_at_once() {
        let data = toy_data(24, 6);
        let never = AtomicBool::new(false);
        let (_tmp, dir) = temp_dir("busy");
        let held = RunLock::acquire(&dir).unwrap();
        std::fs::write(dir.join("model-step00000001.safetensors"), b"theirs").unwrap();
        let mut m = SoftmaxRegression::new(100, 2, 1);
        let err = train(
            &mut m,
            &data,
            &standard(1, 0.05),
            Some(resuming(&dir)),
            &never,
            |_| {},
        )
        .unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err:?}");
        assert_eq!(
            std::fs::read(dir.join("model-step00000001.safetensors")).unwrap(),
            b"theirs"
        );
        drop(held);
        train(
            &mut m,
            &data,
            &standard(1, 0.05),
            Some(resuming(&dir)),
            &never,
            |_| {},
        )
        .unwrap();
    }

    /// What a killed write leaves (a temporary file, a model file no state names) is
    /// removed when the next run starts; counters that disagree are refused; a
    /// checkpoint of other data resumes only when asked to.
    #[test]
    fn leftovers_inconsistent_states_and_other_data_at_resume() {
        let data = toy_data(24, 7);
        let never = AtomicBool::new(false);
        let (_tmp, dir) = temp_dir("leftovers");
        let one = TrainConfig {
            epochs: 1,
            ..standard(0, 0.05)
        };
        let mut m = SoftmaxRegression::new(100, 2, 1);
        train(&mut m, &data, &one, Some(resuming(&dir)), &never, |_| {}).unwrap();
        let stale = [
            dir.join(".state.json.tmp-4242"),
            dir.join("model-step00000099.safetensors"),
        ];
        for path in &stale {
            std::fs::write(path, b"half").unwrap();
        }
        let two = TrainConfig {
            epochs: 2,
            ..one.clone()
        };
        train(&mut m, &data, &two, Some(resuming(&dir)), &never, |_| {}).unwrap();
        for path in &stale {
            assert!(!path.exists(), "{} left", path.display());
        }

        let state_path = dir.join(checkpoint::STATE_FILE);
        let mut state = checkpoint::load_state(&dir).unwrap();
        state.global_step += 1;
        std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
        let three = TrainConfig {
            epochs: 3,
            ..one.clone()
        };
        let err = train(&mut m, &data, &three, Some(resuming(&dir)), &never, |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("inconsistent state: global step"), "{err}");
        state.global_step -= 1;
        std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();

        let other = Dataset {
            name: "other/train".into(),
            ..data.clone()
        };
        let err = train(&mut m, &other, &three, Some(resuming(&dir)), &never, |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("trained on toy (1×10×10 images, 2 classes)"),
            "{err}"
        );
        let across = Checkpoints {
            other_dataset: true,
            ..resuming(&dir)
        };
        let done = train(&mut m, &other, &three, Some(across), &never, |_| {}).unwrap();
        assert_eq!(done.state.history.len(), 3);
    }

    #[test]
    fn configurations_no_run_can_use_are_refused() {
        let cases = [
            TrainConfig {
                batch_size: 0,
                ..config()
            },
            TrainConfig {
                epochs: MAX_EPOCHS + 1,
                ..config()
            },
            standard(0, -0.1),
            standard(0, f32::NAN),
            TrainConfig {
                schedule: LrSchedule::Step {
                    base: 0.1,
                    gamma: 0.0,
                    milestones: vec![],
                },
                ..config()
            },
            TrainConfig {
                adversarial: Some(PgdConfig {
                    epsilon: 16.0,
                    ..PgdConfig::paper(1)
                }),
                ..config()
            },
        ];
        for c in cases {
            assert!(c.validate().is_err(), "{c:?}");
        }
        config().validate().unwrap();
    }
}
