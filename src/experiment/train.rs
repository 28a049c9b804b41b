//! `sparta train`: train a ResNet, standard or adversarial, resumable; then its clean
//! test error.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

use super::{on_device, open_output, write_json, write_text, Reporter, Setup};
use crate::attack::{evaluate, PgdConfig};
use crate::classifier::Trainable;
use crate::data::Dataset;
use crate::data::Split;
use crate::error::{Error, Result};
use crate::nn::resnet::{ResNet, ResNetConfig};
use crate::train::{checkpoint, train, Checkpoints, EpochStats, TrainConfig, TrainOutcome};

/// Name of the checkpoint folder inside a training run's output folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// Name of the trained model's file inside the output folder.
pub const MODEL_FILE: &str = "model.safetensors";

/// What to train, on what, and where to put it.
#[derive(Clone, Debug)]
pub struct TrainJob {
    /// Data, batch size (also `config`'s), seed of the initial weights (the training's
    /// is `config`'s), device, output folder (reports, the final model, the checkpoint
    /// folder); with `cross_dataset`, a checkpoint of another data set resumes.
    pub setup: Setup,
    /// Train on the first N training images (0: all).
    pub train_limit: usize,
    /// Whether to measure the clean test error afterwards. The test split is then
    /// loaded and checked before training starts.
    pub test: bool,
    /// The model; its `dataset` is set to the training data's.
    pub model: ResNetConfig,
    /// Start the SPARTA layers from this checkpoint's (the paper's transferred SPARTA).
    pub sparta_from: Option<PathBuf>,
    /// How to train.
    pub config: TrainConfig,
    /// Start over even if the output folder holds a checkpoint of this run.
    pub fresh: bool,
}

/// What a training run did (`train.json`).
#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    /// The training data's name.
    pub dataset: String,
    /// Images trained on.
    pub train_images: usize,
    /// The model.
    pub model: ResNetConfig,
    /// Its learned parameters.
    pub parameters: usize,
    /// How it was trained.
    pub config: TrainConfig,
    /// Loss and accuracy of every finished epoch.
    pub history: Vec<EpochStats>,
    /// Wall time of this call's training.
    pub seconds: f64,
    /// Whether training ran to its last epoch (false: stopped, a checkpoint written).
    pub finished: bool,
    /// The global step this call resumed at, from the checkpoint in the output folder
    /// (`None`: it started from the beginning).
    pub resumed_at_step: Option<usize>,
    /// SGD steps this call took.
    pub steps: usize,
    /// Clean error on the test images, when measured.
    pub clean_test_error: Option<f64>,
    /// Test images measured.
    pub test_images: usize,
    /// The trained model's file.
    pub checkpoint: String,
}

impl TrainReport {
    /// The epochs as a markdown table, and the test error (`train.md`).
    pub fn markdown(&self) -> String {
        let mut md =
            String::from("| epoch | lr | train loss | train acc |\n|---:|---:|---:|---:|\n");
        for h in &self.history {
            md += &format!(
                "| {} | {} | {:.4} | {:.2}% |\n",
                h.epoch + 1,
                h.lr,
                h.loss,
                100.0 * h.accuracy
            );
        }
        if let Some(err) = self.clean_test_error {
            md += &format!(
                "\nclean test error: {:.2}% ({} images)\n",
                100.0 * err,
                self.test_images
            );
        }
        md
    }
}

/// Makes Ctrl-C (SIGINT), SIGTERM and SIGHUP set the returned flag, for [`run`]'s
/// `stop`: training then checkpoints after the step in progress and returns. A second
/// signal ends the process at once (exit status 130). For programs, not libraries: it
/// takes the process's handlers, once.
pub fn stop_on_signals() -> Result<&'static AtomicBool> {
    static STOP: AtomicBool = AtomicBool::new(false);
    ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing this step, writing a checkpoint (again to quit now)");
    })
    .map_err(|e| Error::Config(format!("cannot install the signal handler: {e}")))?;
    Ok(&STOP)
}

/// Trains as `job` says, writing `train.json`, `train.md` and (when training finished)
/// the model into `job.out`, checkpoints into its `checkpoint` folder. Setting `stop`
/// ends training after the step in progress with a checkpoint; the same job then
/// resumes from it.
pub fn run(job: &TrainJob, stop: &AtomicBool, reporter: &mut dyn Reporter) -> Result<TrainReport> {
    job.config.validate()?;
    let setup = &job.setup;
    let _lock = open_output(&setup.out)?;
    let data = setup.data.load(Split::Train, job.train_limit)?;
    let test = match job.test {
        true => Some(setup.test_data()?),
        false => None,
    };
    let model_config = ResNetConfig {
        dataset: Some(data.info()),
        ..job.model.clone()
    };
    let mut model = ResNet::<f32>::new(model_config.clone(), setup.seed)?;
    if let Some(from) = &job.sparta_from {
        let copied = model.load_sparta_from(from)?;
        reporter.note(&format!(
            "SPARTA weights: {copied} tensors from {}",
            from.display()
        ));
    }
    let parameters = model.param_count();
    let checkpoint_dir = setup.out.join(CHECKPOINT_DIR);
    if job.fresh && checkpoint_dir.exists() {
        std::fs::remove_dir_all(&checkpoint_dir).map_err(|e| Error::io(&checkpoint_dir, e))?;
    }
    let mode = match &job.config.adversarial {
        Some(attack) => format!("adversarial PGD-{}", attack.iterations),
        None => "standard".into(),
    };
    reporter.note(&format!(
        "train: {} ({} images), ResNet-{} act {:?} ({parameters} parameters), {mode}, \
         {} epochs, seed {}, {}",
        data.name,
        data.len(),
        model_config.depth,
        model_config.activation,
        job.config.epochs,
        job.config.seed,
        setup.device
    ));
    if let Ok(state) = checkpoint::load_state(&checkpoint_dir) {
        reporter.note(&format!(
            "resuming from {} at epoch {} step {} (--fresh starts over)",
            checkpoint_dir.display(),
            state.epoch + 1,
            state.step
        ));
    }
    let run = Run {
        job,
        data: &data,
        test: test.as_ref(),
        checkpoint_dir: &checkpoint_dir,
        model_file: setup.out.join(MODEL_FILE),
        stop,
    };
    let (outcome, seconds, clean_test) =
        on_device!(&setup.device, model, |model| run.on(&mut model, reporter))?;
    let model_file = run.model_file;
    let report = TrainReport {
        dataset: data.name.clone(),
        train_images: data.len(),
        model: model_config,
        parameters,
        config: job.config.clone(),
        history: outcome.state.history,
        seconds,
        finished: !outcome.interrupted,
        resumed_at_step: outcome.resumed_at,
        steps: outcome.state.global_step - outcome.resumed_at.unwrap_or(0),
        clean_test_error: clean_test.map(|t| t.0),
        test_images: clean_test.map_or(0, |t| t.1),
        checkpoint: model_file.display().to_string(),
    };
    write_json(&setup.out.join("train.json"), &report)?;
    write_text(&setup.out.join("train.md"), &report.markdown())?;
    Ok(report)
}

/// What a training run needs besides the model, for [`Run::on`] on whichever backend.
struct Run<'a> {
    job: &'a TrainJob,
    data: &'a Dataset,
    test: Option<&'a Dataset>,
    checkpoint_dir: &'a Path,
    model_file: PathBuf,
    stop: &'a AtomicBool,
}

impl Run<'_> {
    /// Trains `model`, saves it unless stopped, and measures the clean test error when
    /// asked: the outcome, the training's seconds, and the error with its image count.
    #[allow(clippy::type_complexity)]
    fn on<M: Trainable>(
        &self,
        model: &mut M,
        reporter: &mut dyn Reporter,
    ) -> Result<(TrainOutcome, f64, Option<(f64, usize)>)> {
        let (job, data) = (self.job, self.data);
        let start = Instant::now();
        let mut epoch_shown = None;
        let checkpoints = Checkpoints {
            dir: self.checkpoint_dir,
            resume: true,
            other_dataset: job.setup.cross_dataset,
        };
        let outcome = train(
            model,
            data,
            &job.config,
            Some(checkpoints),
            self.stop,
            |p| {
                if epoch_shown != Some(p.epoch) {
                    if epoch_shown.is_some() {
                        reporter.finish();
                    }
                    let label = format!("epoch {}/{}", p.epoch + 1, p.epochs);
                    reporter.start(&label, data.len(), p.running.images - p.batch_images);
                    epoch_shown = Some(p.epoch);
                }
                let status = format!(
                    "loss {:.4} acc {:.1}% lr {}",
                    p.running.loss(),
                    100.0 * p.running.accuracy(),
                    p.lr
                );
                reporter.advance(p.batch_images, Some(&status));
            },
        );
        if epoch_shown.is_some() {
            reporter.finish();
        }
        let outcome = outcome?;
        let seconds = start.elapsed().as_secs_f64();
        if outcome.interrupted {
            reporter.note(&format!(
                "stopped at epoch {} step {}; checkpoint in {} (rerun the same command to resume)",
                outcome.state.epoch + 1,
                outcome.state.step,
                self.checkpoint_dir.display()
            ));
        } else {
            model.save(&self.model_file)?;
        }
        let clean_test = match (self.test, outcome.interrupted) {
            (Some(test), false) => {
                let clean = PgdConfig {
                    iterations: 0,
                    random_start: false,
                    ..PgdConfig::paper(0)
                };
                reporter.start("clean test", test.len(), 0);
                let reports = evaluate(
                    model,
                    test,
                    job.config.batch_size,
                    &clean,
                    &[0],
                    job.config.seed,
                    |n| reporter.advance(n, None),
                );
                reporter.finish();
                Some((reports?[0].clean_error, test.len()))
            }
            _ => None,
        };
        Ok((outcome, seconds, clean_test))
    }
}
