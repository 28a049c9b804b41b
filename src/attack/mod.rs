//! Adversarial attacks against any [`Classifier`](crate::classifier::Classifier), and
//! the robustness evaluation built on them.

pub mod apgd;
mod batch;
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
