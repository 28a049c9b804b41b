//! Adversarial attacks against any [`Classifier`](crate::classifier::Classifier), and
//! the robustness evaluation built on them.

pub mod apgd;
pub mod cuda;
pub mod evaluate;
pub mod features;
pub mod losses;
pub mod outcome;
pub mod pgd;
pub mod sanity;
pub mod settings;
pub mod square;
pub mod suite;
pub mod transfer;
pub mod worst_case;

pub use evaluate::{evaluate, evaluate_attacks, Evaluated, Evaluation, RobustnessReport};
pub use features::{compare_features, FeatureReport, FeatureShift};
pub use pgd::{pgd, Goal, PgdConfig, PgdOutcome};
pub use settings::{Attack, Objective};
pub use suite::{run_suite, Suite, SuiteConfig, SuiteReport};

use crate::ops::kernel_args::blocks;
use crate::ops::LaunchDims;

/// Threads per block of the kernels in `kernels/pgd.cu`.
pub const PGD_THREADS: u32 = 256;

/// Most blocks of the grid-stride PGD kernels.
pub const PGD_MAX_BLOCKS: u32 = 8192;

/// `pgd_step_f32`, `pgd_random_start_f32` over `len` pixels: grid-stride.
pub fn pgd_launch(len: usize) -> LaunchDims {
    LaunchDims {
        grid: (blocks(len, PGD_THREADS as usize).min(PGD_MAX_BLOCKS), 1, 1),
        block: (PGD_THREADS, 1, 1),
        shared_bytes: 0,
    }
}
