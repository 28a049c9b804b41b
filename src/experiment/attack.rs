//! `sparta attack`: the attack's loss per iteration (mean ± std) of several models side
//! by side, the paper's loss-curve figure.

use std::path::PathBuf;

use serde::Serialize;

use super::{
    attack_name, load_model_for, on_device, open_output, write_json, write_text, AttackSpec,
    Reporter, Setup,
};
use crate::attack::{evaluate, Goal, PgdConfig, RobustnessReport};
use crate::error::{Error, Result};
use crate::nn::resnet::ResNet;
use crate::plot::{loss_curves_png, CurveSeries};

/// Models attacked side by side, on what, and where the results go (`attack`,
/// `features`).
#[derive(Clone, Debug)]
pub struct CompareJob {
    /// Data, batch size, seed, device, output folder.
    pub setup: Setup,
    /// The model files.
    pub checkpoints: Vec<PathBuf>,
    /// One label per checkpoint, or none (each model's activation spec then).
    pub labels: Vec<String>,
    /// The attack.
    pub attack: AttackSpec,
    /// Its iterations.
    pub iterations: usize,
}

impl CompareJob {
    /// Checks what can be checked before any file is read (labels given once per
    /// checkpoint or not at all, at least one checkpoint, a valid attack) and returns
    /// the attack.
    pub(super) fn check(&self) -> Result<PgdConfig> {
        if self.checkpoints.is_empty() {
            return Err(Error::Config("no --checkpoint to attack".into()));
        }
        if !self.labels.is_empty() && self.labels.len() != self.checkpoints.len() {
            return Err(Error::Config(format!(
                "{} --label for {} --checkpoint",
                self.labels.len(),
                self.checkpoints.len()
            )));
        }
        self.attack.config(self.iterations)
    }

    /// Checkpoint `i`'s label: its own, else the model's activation spec.
    pub(super) fn label(&self, i: usize, model: &ResNet<f32>) -> String {
        self.labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| model.config().activation.clone())
    }
}

/// One model's row of `attack.json`.
#[derive(Clone, Debug, Serialize)]
pub struct AttackRow {
    /// Its label on the chart.
    pub label: String,
    /// Its file.
    pub checkpoint: String,
    /// Errors and loss curve.
    pub report: RobustnessReport,
}

/// What [`run`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct AttackReport {
    /// The attack's name (`targeted PGD-10`).
    pub attack: String,
    /// The test data's name.
    pub dataset: String,
    /// Images attacked.
    pub images: usize,
    /// One row per model, in the order given.
    pub rows: Vec<AttackRow>,
}

impl AttackReport {
    /// Errors and the loss at the first and last iteration (`attack.md`).
    pub fn markdown(&self) -> String {
        let iterations = self
            .rows
            .first()
            .map_or(0, |r| r.report.loss_mean.len().saturating_sub(1));
        let mut md = format!(
            "| model | clean error | {} error | loss at 0 | loss at {iterations} |\n\
             |---|---:|---:|---:|---:|\n",
            self.attack
        );
        for row in &self.rows {
            let r = &row.report;
            let last = r.loss_mean.len() - 1;
            md += &format!(
                "| {} | {:.2}% | {:.2}% | {:.3} ± {:.3} | {:.3} ± {:.3} |\n",
                row.label,
                100.0 * r.clean_error,
                100.0 * r.adversarial_error,
                r.loss_mean[0],
                r.loss_std[0],
                r.loss_mean[last],
                r.loss_std[last]
            );
        }
        md
    }

    /// The loss curves as CSV (`attack_loss.csv`): series, iteration, mean, std.
    pub fn csv(&self) -> String {
        let mut csv = String::from("series,iteration,loss_mean,loss_std\n");
        for row in &self.rows {
            let r = &row.report;
            for (k, (m, d)) in r.loss_mean.iter().zip(&r.loss_std).enumerate() {
                csv += &format!("{},{k},{m},{d}\n", row.label);
            }
        }
        csv
    }
}

/// Attacks each model as `job` says and writes `attack.json`, `attack.md`,
/// `attack_loss.csv` and the chart `attack_loss.png` into `job.out`.
pub fn run(job: &CompareJob, reporter: &mut dyn Reporter) -> Result<AttackReport> {
    let config = job.check()?;
    let setup = &job.setup;
    let _lock = open_output(&setup.out)?;
    let test = setup.test_data()?;
    let mut rows = Vec::new();
    for (i, path) in job.checkpoints.iter().enumerate() {
        let model = load_model_for(path, &test.info(), setup.cross_dataset, reporter)?;
        let label = job.label(i, &model);
        reporter.start(&format!("{label}: {}", attack_name(&config)), test.len(), 0);
        let reports = on_device!(&setup.device, model, |model| evaluate(
            &mut model,
            &test,
            setup.batch_size,
            &config,
            &[job.iterations],
            setup.seed,
            |n| reporter.advance(n, None),
        ));
        reporter.finish();
        rows.push(AttackRow {
            label,
            checkpoint: path.display().to_string(),
            report: reports?.remove(0),
        });
    }
    let report = AttackReport {
        attack: attack_name(&config),
        dataset: test.name.clone(),
        images: test.len(),
        rows,
    };
    let out = &setup.out;
    write_text(&out.join("attack_loss.csv"), &report.csv())?;
    let series: Vec<CurveSeries> = report
        .rows
        .iter()
        .map(|row| CurveSeries {
            label: row.label.clone(),
            mean: row.report.loss_mean.clone(),
            std: row.report.loss_std.clone(),
        })
        .collect();
    let y = match config.goal {
        Goal::Targeted => "cross-entropy to the target",
        Goal::Untargeted => "cross-entropy to the true class",
    };
    let title = format!(
        "{} on {} ({} images): loss mean ± std",
        report.attack, report.dataset, report.images
    );
    loss_curves_png(&out.join("attack_loss.png"), &title, y, &series)?;
    write_json(&out.join("attack.json"), &report.rows)?;
    write_text(&out.join("attack.md"), &report.markdown())?;
    Ok(report)
}
