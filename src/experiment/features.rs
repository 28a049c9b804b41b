//! `sparta features`: feature maps before and after each block's activation, clean vs
//! adversarial images, the paper's feature-map figure; and how much of the attack each
//! activation passes on.

use serde::Serialize;

use super::attack::CompareJob;
use super::Reporter;
use super::{load_model_for, on_device, open_output, write_json, write_text};
use crate::attack::features::channel_mean;
use crate::attack::{compare_features, FeatureReport, FeatureShift};
use crate::error::Result;
use crate::plot::{heatmaps_png, Heatmap};

/// The models, attack and output of [`CompareJob`], and the image the figure shows.
#[derive(Clone, Debug)]
pub struct FeaturesJob {
    /// Models, data, attack, output folder.
    pub compare: CompareJob,
    /// The test image the figure shows (an index within the test images used).
    pub image: usize,
}

/// One model's row of `features.json`.
#[derive(Clone, Debug, Serialize)]
pub struct FeaturesRow {
    /// Its label.
    pub label: String,
    /// Its file.
    pub checkpoint: String,
    /// The attack's name.
    pub attack: String,
    /// Images attacked.
    pub images: usize,
    /// Per block, the relative change of the activation's input and output.
    pub shifts: Vec<FeatureShift>,
    /// The maps of the image shown (not in the JSON: the PNG draws them).
    #[serde(skip)]
    pub maps: FeatureReport,
}

/// What [`run`] measured: one row per model, in the order given.
#[derive(Clone, Debug, Serialize)]
pub struct FeaturesReport {
    /// The test data's name.
    pub dataset: String,
    /// The rows.
    pub rows: Vec<FeaturesRow>,
}

impl FeaturesReport {
    /// Per model and block, ‖ΔX‖/‖X‖, ‖ΔY‖/‖Y‖ and their ratio (`features.md`).
    pub fn markdown(&self) -> String {
        let (attack, images) = self
            .rows
            .first()
            .map_or((String::new(), 0), |r| (r.attack.clone(), r.images));
        let mut md = format!(
            "{attack} on {} ({images} images): relative change of each block's activation \
             input X and output Y\n\n\
             | model | block | activation | ‖ΔX‖/‖X‖ | ‖ΔY‖/‖Y‖ | ratio |\n\
             |---|---|---|---:|---:|---:|\n",
            self.dataset
        );
        for row in &self.rows {
            for s in &row.shifts {
                md += &format!(
                    "| {} | {} | {} | {:.3} | {:.3} | {:.2} |\n",
                    row.label,
                    s.block,
                    s.activation,
                    s.input,
                    s.output,
                    s.output / s.input
                );
            }
        }
        md
    }

    /// The figure's rows: per model a clean and an adversarial row; per group-end block
    /// the channel mean of X and of Y, each pair of rows on one colour scale.
    pub fn heatmap_rows(&self) -> Vec<(String, Vec<Heatmap>)> {
        let mut grid = Vec::new();
        for row in &self.rows {
            let (mut clean, mut adv) = (Vec::new(), Vec::new());
            let r = &row.maps;
            for (c, d) in r.clean.iter().zip(&r.adversarial) {
                if !c.last_in_group {
                    continue;
                }
                for (name, before, after) in
                    [("X", &c.input, &d.input), ("Y", &c.output, &d.output)]
                {
                    let clean_mean = channel_mean(before, c.shape);
                    let adv_mean = channel_mean(after, d.shape);
                    let both = || clean_mean.iter().chain(&adv_mean);
                    let lo = both().fold(f32::INFINITY, |m, &v| m.min(v));
                    let hi = both().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    let map = |values: Vec<f32>| Heatmap {
                        title: format!("{} {name} [{lo:.2}, {hi:.2}]", c.block),
                        height: c.shape[2],
                        width: c.shape[3],
                        values,
                        range: (lo, hi),
                    };
                    clean.push(map(clean_mean));
                    adv.push(map(adv_mean));
                }
            }
            grid.push((format!("{}\nclean", row.label), clean));
            grid.push((format!("{}\n{}", row.label, row.attack), adv));
        }
        grid
    }
}

/// Compares each model's feature maps as `job` says and writes `features.json`,
/// `features.md` and the figure `feature_maps.png` into the output folder.
pub fn run(job: &FeaturesJob, reporter: &mut dyn Reporter) -> Result<FeaturesReport> {
    let a = &job.compare;
    let config = a.check()?;
    let attack = config.name();
    let setup = &a.setup;
    let _lock = open_output(&setup.out)?;
    let test = setup.test_data()?;
    let mut rows = Vec::new();
    for (i, path) in a.checkpoints.iter().enumerate() {
        let model = load_model_for(path, &test.info(), setup.cross_dataset, reporter)?;
        let label = a.label(i, &model);
        reporter.start(&format!("{label}: {attack}, feature maps"), test.len(), 0);
        let maps = on_device!(&setup.device, model, |model| compare_features(
            &mut model,
            &test,
            setup.batch_size,
            &config,
            setup.seed,
            job.image,
            |n| reporter.advance(n, None),
        ));
        reporter.finish();
        let maps = maps?;
        rows.push(FeaturesRow {
            label,
            checkpoint: path.display().to_string(),
            attack: attack.clone(),
            images: test.len(),
            shifts: maps.shifts.clone(),
            maps,
        });
    }
    let report = FeaturesReport {
        dataset: test.name.clone(),
        rows,
    };
    write_json(&setup.out.join("features.json"), &report.rows)?;
    write_text(&setup.out.join("features.md"), &report.markdown())?;
    let title = format!(
        "{} image {}: channel mean of each group's last activation, input X and output Y",
        test.name, job.image
    );
    heatmaps_png(
        &setup.out.join("feature_maps.png"),
        &title,
        &report.heatmap_rows(),
    )?;
    Ok(report)
}
