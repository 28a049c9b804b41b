//! `sparta eval`: clean and adversarial error of a trained model.

use std::path::PathBuf;

use serde::Serialize;

use super::{
    attack_name, load_model_for, on_device, open_output, write_json, write_text, AttackSpec,
    Reporter, Setup,
};
use crate::attack::{evaluate, RobustnessReport};
use crate::error::Result;
use crate::nn::resnet::ResNetConfig;

/// What to evaluate, on what, and where to put the report.
#[derive(Clone, Debug)]
pub struct EvalJob {
    /// Data, batch size, seed, device; `eval.json` and `eval.md` go to its folder.
    pub setup: Setup,
    /// The model file `sparta train` wrote.
    pub checkpoint: PathBuf,
    /// The attack; its iteration counts are `iterations`.
    pub attack: AttackSpec,
    /// PGD iteration counts to evaluate (one report each).
    pub iterations: Vec<usize>,
}

/// Clean and adversarial error of one model (`eval.json`).
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// The model file.
    pub checkpoint: String,
    /// The test data's name.
    pub dataset: String,
    /// Test images evaluated.
    pub images: usize,
    /// The model.
    pub model: ResNetConfig,
    /// The attack as asked for (ε and step in 1/255 units).
    pub attack: AttackSpec,
    /// Seed of the attack.
    pub seed: u64,
    /// Fraction of clean test images misclassified.
    pub clean_error: f64,
    /// One report per iteration count.
    pub attacks: Vec<RobustnessReport>,
}

impl EvalReport {
    /// The errors as a markdown table (`eval.md`).
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "{} on {} ({} images), ε = {}/255, step {}/255, seed {}\n\n\
             | attack | error | attack success |\n|---|---:|---:|\n| clean | {:.2}% | |\n",
            self.model.activation,
            self.dataset,
            self.images,
            self.attack.epsilon,
            self.attack.step,
            self.seed,
            100.0 * self.clean_error
        );
        for r in &self.attacks {
            md += &format!(
                "| {} | {:.2}% | {:.2}% |\n",
                attack_name(&r.attack),
                100.0 * r.adversarial_error,
                100.0 * r.attack_success
            );
        }
        md
    }
}

/// Evaluates as `job` says and writes `eval.json` and `eval.md` into `job.out`.
pub fn run(job: &EvalJob, reporter: &mut dyn Reporter) -> Result<EvalReport> {
    let configs = job
        .iterations
        .iter()
        .map(|&k| job.attack.config(k))
        .collect::<Result<Vec<_>>>()?;
    let setup = &job.setup;
    let _lock = open_output(&setup.out)?;
    let test = setup.test_data()?;
    let model = load_model_for(&job.checkpoint, &test.info(), setup.cross_dataset, reporter)?;
    let config = model.config().clone();
    let mut counts = job.iterations.clone();
    counts.insert(0, 0);
    let names: Vec<String> = configs.iter().map(attack_name).collect();
    let base = job.attack.config(0)?;
    reporter.start(&format!("clean + {}", names.join(", ")), test.len(), 0);
    let reports = on_device!(&setup.device, model, |model| evaluate(
        &mut model,
        &test,
        setup.batch_size,
        &base,
        &counts,
        setup.seed,
        |n| reporter.advance(n, None),
    ));
    reporter.finish();
    let mut reports = reports?;
    let clean_error = reports[0].clean_error;
    let report = EvalReport {
        checkpoint: job.checkpoint.display().to_string(),
        dataset: test.name.clone(),
        images: test.len(),
        model: config,
        attack: job.attack,
        seed: setup.seed,
        clean_error,
        attacks: reports.split_off(1),
    };
    write_json(&setup.out.join("eval.json"), &report)?;
    write_text(&setup.out.join("eval.md"), &report.markdown())?;
    Ok(report)
}
