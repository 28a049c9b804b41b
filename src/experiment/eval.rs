//! `sparta eval`: clean error, each attack's error, the worst case over attacks and the
//! gradient-masking sanity checks of a trained model ([`crate::attack::suite`]).

use std::path::PathBuf;

use serde::Serialize;

use super::{
    load_model_for, on_device, open_output, write_json, write_text, AttackSpec, Reporter, Setup,
};
use crate::attack::sanity::{Sanity, Status};
use crate::attack::suite::{run_suite, Suite, SuiteConfig};
use crate::attack::{transfer, Attack, RobustnessReport};
use crate::error::Result;
use crate::nn::resnet::ResNetConfig;

/// What to evaluate, on what, and where to put the report.
#[derive(Clone, Debug)]
pub struct EvalJob {
    /// Data, batch size, seed, device; `eval.json` and `eval.md` go to its folder.
    pub setup: Setup,
    /// The model file `sparta train` wrote.
    pub checkpoint: PathBuf,
    /// The paper suite's PGD; its ε and restarts are every attack's.
    pub attack: AttackSpec,
    /// The paper suite's PGD iteration counts (one row each).
    pub iterations: Vec<usize>,
    /// The suites to run.
    pub suites: Vec<Suite>,
    /// APGD's iterations (`quick`, `standard`).
    pub apgd_iterations: usize,
    /// The Square attack's query budget (`standard`'s, or Square added to the others).
    pub square_queries: Option<usize>,
    /// Files of adversarial images made on other models (`sparta attack
    /// --save-adversarial`), evaluated as transfer attacks.
    pub adversarial: Vec<PathBuf>,
}

/// What `sparta eval` measured (`eval.json`).
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
    /// The paper suite's attack as asked for (ε and step in 1/255 units).
    pub attack: AttackSpec,
    /// The suites run.
    pub suites: Vec<Suite>,
    /// Seed of the attacks.
    pub seed: u64,
    /// Images per batch (the attacks' random streams are per batch).
    pub batch_size: usize,
    /// Fraction of clean test images misclassified.
    pub clean_error: f64,
    /// Fraction misclassified clean or by any attack, image by image: the headline.
    pub worst_case_error: f64,
    /// One row per attack, then per file of transferred images.
    pub attacks: Vec<RobustnessReport>,
    /// Check (a)'s untargeted attack at ε = 1.
    pub unbounded: RobustnessReport,
    /// The gradient-masking checks.
    pub sanity: Sanity,
}

impl EvalReport {
    /// The report in markdown (`eval.md`): the headline, each attack, the sanity block.
    pub fn markdown(&self) -> String {
        let pct = |e: f64| format!("{:.2}%", 100.0 * e);
        let suites: Vec<&str> = self.suites.iter().map(|s| s.name()).collect();
        let mut md = format!(
            "{} ({}) on {} ({} images), ε = {}/255, seed {}, batch {}, suites {}\n\n",
            self.model.activation,
            self.checkpoint,
            self.dataset,
            self.images,
            self.attack.epsilon,
            self.seed,
            self.batch_size,
            suites.join(", ")
        );
        // The paper's protocol: its longest PGD row.
        let paper = self
            .attacks
            .iter()
            .filter(|r| r.transfer.is_none())
            .filter_map(|r| match r.attack {
                Attack::Pgd(c) => Some((c.iterations, r)),
                _ => None,
            })
            .max_by_key(|(k, _)| *k)
            .map(|(_, r)| r);
        md += "| clean | worst case |";
        md += &paper.map_or(String::new(), |r| format!(" {} (paper) |", r.name));
        md += "\n|---:|---:|";
        md += if paper.is_some() { "---:|\n" } else { "\n" };
        md += &format!(
            "| {} | **{}** |",
            pct(self.clean_error),
            pct(self.worst_case_error)
        );
        md += &paper.map_or(String::new(), |r| {
            format!(" {} |", pct(r.adversarial_error))
        });
        md += "\n\n| attack | error | attack success | queries / image |\n|---|---:|---:|---:|\n";
        for r in &self.attacks {
            md += &format!(
                "| {} | {} | {} | {:.1} |\n",
                r.name,
                pct(r.adversarial_error),
                pct(r.attack_success),
                r.queries_mean
            );
        }
        md += &format!(
            "\n**Sanity: {}**\n\n| check | result | detail |\n|---|---|---|\n",
            if self.sanity.possible_gradient_masking {
                "possible gradient masking"
            } else {
                "no sign of gradient masking"
            }
        );
        for c in &self.sanity.checks {
            let status = match c.status {
                Status::Passed => "passed",
                Status::Failed => "**failed**",
                Status::NotRun => "not run",
            };
            md += &format!("| ({}) {} | {status} | {} |\n", c.id, c.rule, c.detail);
        }
        md
    }
}

/// Evaluates as `job` says and writes `eval.json` and `eval.md` into `job.out`.
pub fn run(job: &EvalJob, reporter: &mut dyn Reporter) -> Result<EvalReport> {
    let config = SuiteConfig {
        suites: job.suites.clone(),
        pgd: job.attack.config(0)?,
        pgd_iterations: job.iterations.clone(),
        apgd_iterations: job.apgd_iterations,
        square_queries: job.square_queries,
    };
    let attacks = config.attacks()?;
    let setup = &job.setup;
    let _lock = open_output(&setup.out)?;
    let test = setup.test_data()?;
    let transfers = job
        .adversarial
        .iter()
        .map(|p| transfer::load(p))
        .collect::<Result<Vec<_>>>()?;
    let model = load_model_for(&job.checkpoint, &test.info(), setup.cross_dataset, reporter)?;
    let model_config = model.config().clone();
    let names: Vec<String> = attacks.iter().map(Attack::name).collect();
    reporter.start(&format!("clean + {}", names.join(", ")), test.len(), 0);
    let suite = on_device!(&setup.device, model, |model| run_suite(
        &mut model,
        &test,
        setup.batch_size,
        &config,
        setup.seed,
        &transfers,
        |n| reporter.advance(n, None),
    ));
    reporter.finish();
    let suite = suite?;
    let report = EvalReport {
        checkpoint: job.checkpoint.display().to_string(),
        dataset: test.name.clone(),
        images: test.len(),
        model: model_config,
        attack: job.attack,
        suites: job.suites.clone(),
        seed: setup.seed,
        batch_size: setup.batch_size,
        clean_error: suite.clean_error,
        worst_case_error: suite.worst_case_error,
        attacks: suite.attacks,
        unbounded: suite.unbounded,
        sanity: suite.sanity,
    };
    write_json(&setup.out.join("eval.json"), &report)?;
    write_text(&setup.out.join("eval.md"), &report.markdown())?;
    Ok(report)
}
