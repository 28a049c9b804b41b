//! Step learning-rate schedule: the base rate, multiplied by `gamma` at each milestone
//! epoch (the paper: 0.1, ×0.1 at epochs 30 and 60).

/// `lr(epoch) = base · gamma^(number of milestones ≤ epoch)`, epochs counted from 0.
#[derive(Clone, Debug, PartialEq)]
pub struct StepSchedule {
    /// Learning rate before the first milestone.
    pub base: f32,
    /// Factor applied at each milestone.
    pub gamma: f32,
    /// Epochs at which the rate drops.
    pub milestones: Vec<usize>,
}

impl StepSchedule {
    /// The paper's schedule: 0.1, ×0.1 at epochs 30 and 60.
    pub fn paper() -> Self {
        StepSchedule {
            base: 0.1,
            gamma: 0.1,
            milestones: vec![30, 60],
        }
    }

    /// Learning rate during `epoch`.
    pub fn lr(&self, epoch: usize) -> f32 {
        let drops = self.milestones.iter().filter(|&&m| m <= epoch).count();
        self.base * self.gamma.powi(drops as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_schedule_drops_at_30_and_60() {
        let s = StepSchedule::paper();
        assert_eq!(s.lr(0), 0.1);
        assert_eq!(s.lr(29), 0.1);
        assert!((s.lr(30) - 0.01).abs() < 1e-9);
        assert!((s.lr(60) - 0.001).abs() < 1e-9);
    }
}
