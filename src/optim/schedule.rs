//! Learning-rate schedules: the paper's step schedule (0.1, ×0.1 at epochs 30 and 60) and
//! a linear decay to zero for short runs.

/// How the learning rate moves over a run of `epochs` epochs of `steps_per_epoch` steps.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// `base · gamma^(number of milestones ≤ epoch)`, epochs counted from 0.
    Step {
        /// Learning rate before the first milestone.
        base: f32,
        /// Factor applied at each milestone.
        gamma: f32,
        /// Epochs at which the rate drops.
        milestones: Vec<usize>,
    },
    /// `base · (1 − t/T)` at step `t` of the run's `T` steps. A run of a few epochs ends
    /// at a small rate instead of stopping at a noisy high-rate iterate, which is what
    /// the step schedule's late milestones do for the paper's 90 epochs.
    Linear {
        /// Learning rate of the first step.
        base: f32,
    },
}

impl LrSchedule {
    /// The paper's schedule: 0.1, ×0.1 at epochs 30 and 60.
    pub fn paper() -> Self {
        LrSchedule::Step {
            base: 0.1,
            gamma: 0.1,
            milestones: vec![30, 60],
        }
    }

    /// Learning rate of step `step` (0-based) of epoch `epoch` (0-based).
    pub fn lr(&self, epoch: usize, step: usize, steps_per_epoch: usize, epochs: usize) -> f32 {
        match self {
            LrSchedule::Step {
                base,
                gamma,
                milestones,
            } => {
                let drops = milestones.iter().filter(|&&m| m <= epoch).count();
                base * gamma.powi(drops as i32)
            }
            LrSchedule::Linear { base } => {
                let total = (steps_per_epoch * epochs).max(1) as f64;
                let done = (epoch * steps_per_epoch + step) as f64;
                (f64::from(*base) * (1.0 - done / total)).max(0.0) as f32
            }
        }
    }

    /// The schedule a command line names: `step` (×0.1 at each of `milestones`, the
    /// paper's kind) or `linear` (from `base` down to zero), starting at `base`.
    pub fn named(name: &str, base: f32, milestones: Vec<usize>) -> crate::Result<Self> {
        match name {
            "step" => Ok(LrSchedule::Step {
                base,
                gamma: 0.1,
                milestones,
            }),
            "linear" => Ok(LrSchedule::Linear { base }),
            _ => Err(crate::Error::Config(format!(
                "learning-rate schedule {name:?}: expected step or linear"
            ))),
        }
    }

    /// The first learning rate of the run.
    pub fn base(&self) -> f32 {
        match self {
            LrSchedule::Step { base, .. } | LrSchedule::Linear { base } => *base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_schedule_drops_at_30_and_60() {
        let s = LrSchedule::paper();
        let lr = |epoch| s.lr(epoch, 5, 10, 90);
        assert_eq!(lr(0), 0.1);
        assert_eq!(lr(29), 0.1);
        assert!((lr(30) - 0.01).abs() < 1e-9);
        assert!((lr(60) - 0.001).abs() < 1e-9);
    }

    #[test]
    fn linear_schedule_falls_to_zero_over_the_run() {
        let s = LrSchedule::Linear { base: 0.2 };
        // 2 epochs × 4 steps: step t of 8 gets 0.2 · (1 − t/8).
        assert_eq!(s.lr(0, 0, 4, 2), 0.2);
        assert!((s.lr(0, 2, 4, 2) - 0.15).abs() < 1e-7);
        assert!((s.lr(1, 0, 4, 2) - 0.1).abs() < 1e-7);
        assert!((s.lr(1, 3, 4, 2) - 0.025).abs() < 1e-7);
        assert!(s.lr(1, 3, 4, 2) > 0.0);
    }
}
