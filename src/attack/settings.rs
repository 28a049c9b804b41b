//! One attack of an evaluation, whichever kind it is: its settings as reports record
//! them, its name, and what its loss curve measures.

use super::apgd::{ApgdConfig, ApgdLoss};
use super::pgd::{Goal, PgdConfig};
use super::square::SquareConfig;
use crate::error::Result;

/// An attack and its settings.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Attack {
    /// Projected gradient descent with the cross-entropy ([`mod@super::pgd`]).
    Pgd(PgdConfig),
    /// Auto-PGD ([`super::apgd`]).
    Apgd(ApgdConfig),
    /// The black-box Square attack ([`super::square`]).
    Square(SquareConfig),
}

/// Which way an attack moves its loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// The attack raises its loss.
    Maximised,
    /// The attack lowers its loss.
    Minimised,
}

impl Attack {
    /// `targeted PGD-10`, `APGD-CE-100`, `APGD-T-100`, `Square-5000`.
    pub fn name(&self) -> String {
        match self {
            Attack::Pgd(c) => c.name(),
            Attack::Apgd(c) => format!("{}-{}", c.name(), c.iterations),
            Attack::Square(c) => c.name(),
        }
    }

    /// The radius of its L∞ ball.
    pub fn epsilon(&self) -> f32 {
        match self {
            Attack::Pgd(c) => c.epsilon,
            Attack::Apgd(c) => c.epsilon,
            Attack::Square(c) => c.epsilon,
        }
    }

    /// Whether it reads the model's gradients.
    pub fn white_box(&self) -> bool {
        !matches!(self, Attack::Square(_))
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        match self {
            Attack::Pgd(c) => c.validate(),
            Attack::Apgd(c) => c.validate(),
            Attack::Square(c) => c.validate(),
        }
    }

    /// The loss its curve records, in words, and which way the attack moves it.
    pub fn loss(&self) -> (&'static str, Objective) {
        match self {
            Attack::Pgd(c) if c.goal == Goal::Targeted => {
                ("cross-entropy to the target", Objective::Minimised)
            }
            Attack::Pgd(_) => ("cross-entropy to the true class", Objective::Maximised),
            Attack::Apgd(c) => match (c.goal, c.loss) {
                (Goal::Untargeted, ApgdLoss::Ce) => {
                    ("cross-entropy to the true class", Objective::Maximised)
                }
                (Goal::Untargeted, ApgdLoss::Dlr) => ("DLR", Objective::Maximised),
                (Goal::Targeted, ApgdLoss::Ce) => (
                    "minus the cross-entropy to the target",
                    Objective::Maximised,
                ),
                (Goal::Targeted, ApgdLoss::Dlr) => ("targeted DLR", Objective::Maximised),
            },
            Attack::Square(_) => ("margin z_y − max other z", Objective::Minimised),
        }
    }
}

/// Where a file's adversarial images came from.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TransferSource {
    /// The file they were read from (empty before they are written).
    pub file: String,
    /// The checkpoint the attack ran on.
    pub checkpoint: String,
    /// The attack that made them.
    pub attack: Attack,
    /// The data set and range of the clean images (`fashion-mnist/test[..100]`).
    pub dataset: String,
    /// The seed of the attack.
    pub seed: u64,
}
