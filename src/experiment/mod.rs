//! The paper's experiments as library calls: what `sparta train`, `eval`, `attack`,
//! `features` and `info` do, each a job description in and a report out.
//!
//! A job writes its files (JSON and markdown reports, CSV, PNG charts, checkpoints) into
//! its output folder, each atomically, while holding the folder's
//! [`crate::storage::RunLock`]: two jobs never write into one folder at once,
//! and what an interrupted write left there is removed when the next job starts. Progress
//! and notices go to a [`Reporter`]: [`ProgressBars`] draws them on stderr, [`Quiet`]
//! says nothing.
//!
//! ```no_run
//! use sparta::data::DatasetKind;
//! use sparta::attack::Suite;
//! use sparta::experiment::{eval, AttackSpec, DataSource, Quiet, Setup};
//!
//! let job = eval::EvalJob {
//!     setup: Setup {
//!         data: DataSource::new(DatasetKind::FashionMnist),
//!         test_limit: 100,
//!         batch_size: 128,
//!         seed: 0,
//!         device: sparta::Device::Cpu,
//!         out: "runs/a".into(),
//!         cross_dataset: false,
//!     },
//!     checkpoint: "runs/a/model.safetensors".into(),
//!     attack: AttackSpec::paper(),
//!     iterations: vec![10, 50],
//!     suites: vec![Suite::Paper, Suite::Quick],
//!     apgd_iterations: 100,
//!     square_queries: None,
//!     adversarial: vec![],
//! };
//! let report = eval::run(&job, &mut Quiet)?;
//! println!("clean error {:.1} %, worst case {:.1} %", 100.0 * report.clean_error,
//!          100.0 * report.worst_case_error);
//! # Ok::<(), sparta::Error>(())
//! ```

pub mod attack;
pub mod eval;
pub mod features;
pub mod flags;
pub mod info;
mod progress;
pub mod train;

pub use progress::ProgressBars;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::attack::apgd::ApgdConfig;
use crate::attack::square::SquareConfig;
use crate::attack::{Attack, Goal, PgdConfig};
use crate::data::{Dataset, DatasetInfo, DatasetKind, Split};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::resnet::{Depth, ResNet, ResNetConfig};
use crate::storage::{remove_stale_temporaries, write_atomically, RunLock};

/// Where a job's progress and notices go.
pub trait Reporter {
    /// A line for the user: what is resumed, a data set that is not checked, …
    fn note(&mut self, line: &str);
    /// A task over `total` images starts, `done` of them already done (a resumed epoch).
    fn start(&mut self, label: &str, total: usize, done: usize);
    /// `images` more are done; `status` sums up the task so far when there is something
    /// to say (loss, accuracy, learning rate).
    fn advance(&mut self, images: usize, status: Option<&str>);
    /// The task ended.
    fn finish(&mut self);
}

/// A [`Reporter`] that says nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Reporter for Quiet {
    fn note(&mut self, _: &str) {}
    fn start(&mut self, _: &str, _: usize, _: usize) {}
    fn advance(&mut self, _: usize, _: Option<&str>) {}
    fn finish(&mut self) {}
}

/// Where a job's images come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataSource {
    /// Which data set (and so which file format and image size).
    pub kind: DatasetKind,
    /// Its folder; `None`: where its package or download puts it
    /// ([`DatasetKind::default_dir`]).
    pub dir: Option<PathBuf>,
}

impl DataSource {
    /// The data set in its default folder.
    pub fn new(kind: DatasetKind) -> Self {
        DataSource { kind, dir: None }
    }

    /// The first `limit` images of `split` (all of them for 0), checked to be this data
    /// set ([`DatasetKind::load`]).
    pub fn load(&self, split: Split, limit: usize) -> Result<Dataset> {
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(self.kind.default_dir()));
        let data = self.kind.load(&dir, split)?;
        Ok(if limit > 0 { data.take(limit) } else { data })
    }
}

/// What every job shares: its images, batches, seed, device and output folder.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The images.
    pub data: DataSource,
    /// Use only the first N test images (0: all).
    pub test_limit: usize,
    /// Images per batch (SGD steps and attacks).
    pub batch_size: usize,
    /// Seed of the initial weights, shuffles, crops, and the attacks' targets and starts.
    pub seed: u64,
    /// Where models run.
    pub device: Device,
    /// The output folder: one job at a time holds it.
    pub out: PathBuf,
    /// Use a checkpoint trained on another data set (resume, evaluate, attack it).
    pub cross_dataset: bool,
}

impl Setup {
    /// The test images ([`Self::test_limit`] of them).
    pub fn test_data(&self) -> Result<Dataset> {
        self.data.load(Split::Test, self.test_limit)
    }
}

/// An L∞ PGD attack as a user states it: radius and step in units of 1/255 of the
/// pixel range.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AttackSpec {
    /// Radius ε, in 1/255 units (the paper's 16).
    pub epsilon: f32,
    /// Step α, in 1/255 units (the paper's 1).
    pub step: f32,
    /// Random restarts per image.
    pub restarts: usize,
    /// Targeted (the paper's) or untargeted.
    pub goal: Goal,
    /// Start at a random point of the ε-ball (else at the clean image).
    pub random_start: bool,
}

impl AttackSpec {
    /// The paper's attack: targeted, ε = 16/255, α = 1/255, random start, one run.
    pub fn paper() -> Self {
        AttackSpec {
            epsilon: 16.0,
            step: 1.0,
            restarts: 1,
            goal: Goal::Targeted,
            random_start: true,
        }
    }

    /// The attack with `iterations` steps in the pixel range [0, 1]; ε and α outside
    /// [0, 255], and whatever [`PgdConfig::validate`] refuses, are errors.
    pub fn config(&self, iterations: usize) -> Result<PgdConfig> {
        for (flag, value) in [("epsilon", self.epsilon), ("step", self.step)] {
            if !(0.0..=255.0).contains(&value) {
                return Err(Error::Config(format!(
                    "--{flag} {value}: it is in units of 1/255 of the pixel range, so 0 to 255"
                )));
            }
        }
        let config = PgdConfig {
            epsilon: self.epsilon / 255.0,
            step: self.step / 255.0,
            iterations,
            restarts: self.restarts,
            random_start: self.random_start,
            goal: self.goal,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Which attack `sparta attack` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// PGD with the cross-entropy (the paper's, with the attack flags' goal).
    Pgd,
    /// APGD-CE, untargeted.
    ApgdCe,
    /// APGD-T: targeted DLR toward the 9 classes ranked after the top one.
    ApgdT,
    /// The black-box Square attack.
    Square,
}

impl std::str::FromStr for AttackKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pgd" => Ok(AttackKind::Pgd),
            "apgd-ce" => Ok(AttackKind::ApgdCe),
            "apgd-t" => Ok(AttackKind::ApgdT),
            "square" => Ok(AttackKind::Square),
            _ => Err(Error::Config(format!(
                "attack {s:?}: expected pgd, apgd-ce, apgd-t or square"
            ))),
        }
    }
}

impl AttackSpec {
    /// The attack of `kind` with this spec's ε (and, for PGD, everything else; for
    /// APGD its restarts) and `iterations` steps, or `queries` for Square; checked.
    pub fn attack(&self, kind: AttackKind, iterations: usize, queries: usize) -> Result<Attack> {
        let pgd = self.config(iterations)?;
        let apgd = |c: ApgdConfig| {
            Attack::Apgd(ApgdConfig {
                restarts: pgd.restarts,
                ..c
            })
        };
        let attack = match kind {
            AttackKind::Pgd => Attack::Pgd(pgd),
            AttackKind::ApgdCe => apgd(ApgdConfig::ce(pgd.epsilon, iterations)),
            AttackKind::ApgdT => apgd(ApgdConfig::targeted_dlr(pgd.epsilon, iterations)),
            AttackKind::Square => Attack::Square(SquareConfig {
                epsilon: pgd.epsilon,
                queries,
            }),
        };
        attack.validate()?;
        Ok(attack)
    }
}

/// The configuration of a ResNet of `depth` (`18`, `34` or `small`) with activation
/// `act` for `kind`'s images and classes. `act` is an [`ActivationSpec`] or one of the
/// short forms `relu`, `sparta` (the paper's placement: the last block of every group),
/// `sparta OPTIONS` (`sparta nodpnet`, `sparta frozen`).
///
/// [`ActivationSpec`]: crate::nn::spec::ActivationSpec
pub fn model_config(depth: &str, act: &str, kind: DatasetKind) -> Result<ResNetConfig> {
    let ([channels, _, _], classes) = kind.shape_and_classes();
    let config = match depth.parse::<Depth>()? {
        Depth::R18 => ResNetConfig::resnet18(channels, classes),
        Depth::R34 => ResNetConfig::resnet34(channels, classes),
        Depth::Small => ResNetConfig::small(channels, classes),
    };
    let spec = match act.split_once(' ') {
        _ if act == "sparta" => "G1-4.Blast".to_string(),
        Some(("sparta", options)) => format!("G1-4.Blast {options}"),
        _ => act.to_string(),
    };
    Ok(config.with_activation(&spec))
}

/// The model in the checkpoint at `path`, after checking that it was trained on `data`:
/// a checkpoint of another data set is refused unless `cross_dataset`, and one that
/// records none is loaded with a notice.
pub fn load_model_for(
    path: &Path,
    data: &DatasetInfo,
    cross_dataset: bool,
    reporter: &mut dyn Reporter,
) -> Result<ResNet<f32>> {
    let model = ResNet::<f32>::from_checkpoint(path)?;
    match &model.config().dataset {
        None => reporter.note(&format!(
            "{} records no data set (written before checkpoints recorded one): not checked \
             against {data}",
            path.display()
        )),
        Some(trained_on) if trained_on != data && !cross_dataset => {
            return Err(Error::Config(format!(
                "{} was trained on {trained_on}, not on {data}; pass --cross-dataset if \
                 evaluating it there is intended",
                path.display()
            )))
        }
        Some(_) => {}
    }
    Ok(model)
}

/// Evaluates `$body` with `$m` bound to the host model `$model` moved to `$device`: the
/// model itself on the CPU, a copy on the GPU (`ResNet<OnDevice<Arc<Gpu>>>`: parameters,
/// activations and optimizer state there). `$body` is compiled once per backend.
macro_rules! on_device {
    ($device:expr, $model:expr, |$m:ident| $body:expr) => {
        match $device {
            $crate::device::Device::Cpu => {
                #[allow(unused_mut)]
                let mut $m = $model;
                $body
            }
            $crate::device::Device::Cuda(gpu) => {
                let ctx = $crate::alloc::CachingDevice::new(gpu.clone());
                #[allow(unused_mut)]
                let mut $m = $model
                    .to_backend::<$crate::backend::OnDevice<std::sync::Arc<$crate::Gpu>>>(ctx)?;
                $body
            }
        }
    };
}
pub(crate) use on_device;

/// Takes the lock of the output folder `out` (creating it) and removes what
/// interrupted writes left there.
fn open_output(out: &Path) -> Result<RunLock> {
    let lock = RunLock::acquire(out)?;
    remove_stale_temporaries(out)?;
    Ok(lock)
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| Error::format(path, e.to_string()))?;
    write_atomically(path, &json)
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomically(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_units_are_checked_before_they_are_converted() {
        let config = AttackSpec::paper().config(10).unwrap();
        assert_eq!(config, PgdConfig::paper(10));
        for (epsilon, step) in [(256.0, 1.0), (-1.0, 1.0), (8.0, f32::NAN), (8.0, 300.0)] {
            let spec = AttackSpec {
                epsilon,
                step,
                ..AttackSpec::paper()
            };
            let msg = spec.config(10).unwrap_err().to_string();
            assert!(msg.contains("units of 1/255"), "{msg}");
        }
        let msg = AttackSpec::paper()
            .config(usize::MAX)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("iterations"), "{msg}");
        let none = AttackSpec {
            restarts: 0,
            ..AttackSpec::paper()
        };
        assert!(none.config(1).is_err());
    }

    #[test]
    fn short_activation_names_expand_to_specs() {
        let kind = DatasetKind::FashionMnist;
        let c = model_config("small", "sparta", kind).unwrap();
        assert_eq!(
            (c.activation.as_str(), c.in_channels, c.classes),
            ("G1-4.Blast", 1, 10)
        );
        let c = model_config("18", "sparta frozen", DatasetKind::Cifar10).unwrap();
        assert_eq!(
            (c.activation.as_str(), c.in_channels),
            ("G1-4.Blast frozen", 3)
        );
        assert_eq!(
            model_config("34", "G4.B2", kind).unwrap().activation,
            "G4.B2"
        );
        assert!(model_config("50", "relu", kind).is_err());
    }
}
