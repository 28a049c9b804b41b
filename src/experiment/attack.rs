//! `sparta attack`: the attack's loss per iteration (mean ± std) of several models side
//! by side, the paper's loss-curve figure; with `--save-adversarial`, the adversarial
//! images of one model in a file, for transfer attacks on others.

use std::path::PathBuf;

use serde::Serialize;

use super::{
    load_model_for, on_device, open_output, write_json, write_text, AttackKind, AttackSpec,
    Reporter, Setup,
};
use crate::attack::transfer::{self, TransferSource};
use crate::attack::{evaluate_attacks, Attack, PgdConfig, RobustnessReport};
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

/// `sparta attack`: models attacked side by side with one attack, and optionally the
/// adversarial images saved.
#[derive(Clone, Debug)]
pub struct AttackJob {
    /// The models, data, attack flags and iterations.
    pub compare: CompareJob,
    /// Which attack.
    pub kind: AttackKind,
    /// The Square attack's query budget.
    pub square_queries: usize,
    /// Write the adversarial images here (one checkpoint only).
    pub save_adversarial: Option<PathBuf>,
}

impl AttackJob {
    /// Checks what can be checked before any file is read and returns the attack.
    fn check(&self) -> Result<Attack> {
        self.compare.check()?;
        if self.save_adversarial.is_some() && self.compare.checkpoints.len() != 1 {
            return Err(Error::Config(format!(
                "--save-adversarial writes one model's images: give one --checkpoint, not {}",
                self.compare.checkpoints.len()
            )));
        }
        self.compare
            .attack
            .attack(self.kind, self.compare.iterations, self.square_queries)
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
            // No curve when no image was attacked (all misclassified clean).
            let at = |k: usize| {
                r.loss_mean
                    .get(k)
                    .zip(r.loss_std.get(k))
                    .map_or("–".to_string(), |(m, s)| format!("{m:.3} ± {s:.3}"))
            };
            md += &format!(
                "| {} | {:.2}% | {:.2}% | {} | {} |\n",
                row.label,
                100.0 * r.clean_error,
                100.0 * r.adversarial_error,
                at(0),
                at(r.loss_mean.len().saturating_sub(1)),
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
/// `attack_loss.csv` and the chart `attack_loss.png` into `job.out`, and the adversarial
/// images when asked.
pub fn run(attack_job: &AttackJob, reporter: &mut dyn Reporter) -> Result<AttackReport> {
    let attack = attack_job.check()?;
    let job = &attack_job.compare;
    let save = attack_job.save_adversarial.as_deref();
    let setup = &job.setup;
    let _lock = open_output(&setup.out)?;
    let test = setup.test_data()?;
    let mut rows = Vec::new();
    for (i, path) in job.checkpoints.iter().enumerate() {
        let model = load_model_for(path, &test.info(), setup.cross_dataset, reporter)?;
        let label = job.label(i, &model);
        reporter.start(&format!("{label}: {}", attack.name()), test.len(), 0);
        let evaluation = on_device!(&setup.device, model, |model| evaluate_attacks(
            &mut model,
            &test,
            setup.batch_size,
            &[attack],
            setup.seed,
            save.is_some(),
            |n| reporter.advance(n, None),
        ));
        reporter.finish();
        let evaluated = evaluation?.attacks.remove(0);
        if let (Some(file), Some(images)) = (save, &evaluated.adversarial) {
            let source = TransferSource {
                file: String::new(),
                checkpoint: path.display().to_string(),
                attack,
                dataset: test.name.clone(),
                seed: setup.seed,
            };
            let shape = [test.len(), test.channels, test.height, test.width];
            let indices: Vec<usize> = (0..test.len()).collect();
            let labels = test.batch(&indices, &mut Vec::new());
            transfer::save(file, images, shape, &labels, &source)?;
            reporter.note(&format!(
                "wrote {} adversarial images to {}",
                test.len(),
                file.display()
            ));
        }
        rows.push(AttackRow {
            label,
            checkpoint: path.display().to_string(),
            report: evaluated.report,
        });
    }
    let report = AttackReport {
        attack: attack.name(),
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
    let (y, _) = attack.loss();
    let title = format!(
        "{} on {} ({} images): loss mean ± std",
        report.attack, report.dataset, report.images
    );
    loss_curves_png(&out.join("attack_loss.png"), &title, y, &series)?;
    write_json(&out.join("attack.json"), &report.rows)?;
    write_text(&out.join("attack.md"), &report.markdown())?;
    Ok(report)
}
