//! The command line's flag groups that several subcommands share, with what they turn
//! into: [`SetupFlags`] a [`Setup`], [`AttackFlags`] an [`AttackSpec`]. The subcommands
//! themselves are the `sparta` binary's.

use std::path::PathBuf;

use clap::Args;

use super::{AttackSpec, DataSource, Setup};
use crate::attack::Goal;
use crate::data::DatasetKind;
use crate::device::Device;
use crate::error::Result;

/// Flags every subcommand that reads data and writes results shares.
#[derive(Args, Clone, Debug)]
pub struct SetupFlags {
    /// Data set: cifar10, svhn, tiny-imagenet or fashion-mnist.
    #[arg(long, default_value = "cifar10")]
    pub dataset: DatasetKind,
    /// Folder of the data set's files (default: where its package or download puts them).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Compute device: `cpu`, `cuda` (GPU 0), `cuda:N`, or `auto` (CUDA when a GPU is
    /// found, else the CPU with a notice).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Seed of weights, shuffles, crops and attack targets/starts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder for results (JSON + markdown) and checkpoints; one run at a time.
    #[arg(long, default_value = "runs/latest")]
    pub out: PathBuf,
    /// Use only the first N test images (0: all).
    #[arg(long, default_value_t = 0)]
    pub test_limit: usize,
    /// Images per batch (SGD steps and attacks).
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Use a checkpoint trained on another data set (same image size and classes).
    #[arg(long)]
    pub cross_dataset: bool,
}

impl SetupFlags {
    /// The setup these flags describe (the device is opened here).
    pub fn setup(self) -> Result<Setup> {
        Ok(Setup {
            data: DataSource {
                kind: self.dataset,
                dir: self.data_dir,
            },
            test_limit: self.test_limit,
            batch_size: self.batch_size,
            seed: self.seed,
            device: Device::from_name(&self.device)?,
            out: self.out,
            cross_dataset: self.cross_dataset,
        })
    }
}

/// Attack flags (the paper's targeted L∞ PGD by default; ε and restarts apply to every
/// attack).
#[derive(Args, Clone, Debug)]
pub struct AttackFlags {
    /// L∞ radius in 1/255 units (0 to 255).
    #[arg(long, default_value_t = 16.0, allow_negative_numbers = true)]
    pub epsilon: f32,
    /// Step size in 1/255 units (0 to 255).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub step: f32,
    /// Random restarts per image (PGD and APGD; an image is broken when any restart
    /// breaks it).
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// `targeted` (target uniform among wrong classes) or `untargeted`.
    #[arg(long, default_value = "targeted")]
    pub goal: Goal,
    /// Start at the clean image instead of a random point of the ε-ball.
    #[arg(long)]
    pub no_random_start: bool,
}

impl AttackFlags {
    /// The attack these flags describe.
    pub fn spec(&self) -> AttackSpec {
        AttackSpec {
            epsilon: self.epsilon,
            step: self.step,
            restarts: self.restarts,
            goal: self.goal,
            random_start: !self.no_random_start,
        }
    }
}
