//! Adversarial attacks against any [`Classifier`](crate::classifier::Classifier), and
//! the robustness evaluation built on them.

pub mod evaluate;
pub mod features;
pub mod pgd;

pub use evaluate::{evaluate, RobustnessReport};
pub use features::{compare_features, FeatureReport, FeatureShift};
pub use pgd::{pgd, Goal, PgdConfig, PgdOutcome};
