//! Optimizers and learning-rate schedules.

pub mod schedule;
pub mod sgd;

pub use schedule::StepSchedule;
pub use sgd::Sgd;
