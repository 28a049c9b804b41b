//! Clean and adversarial top-1 error of a model over a data set, with the attack's loss
//! per iteration (mean ± std over samples: the paper's Fig. 3).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::pgd::{argmax_rows, pgd, PgdConfig};
use crate::classifier::Classifier;
use crate::data::Dataset;
use crate::error::{Error, Result};

/// Errors and loss curve of one attack over a data set.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RobustnessReport {
    /// The attack.
    pub attack: PgdConfig,
    /// Images evaluated.
    pub images: usize,
    /// Fraction of clean images misclassified.
    pub clean_error: f64,
    /// Fraction of adversarial images misclassified (the paper's metric).
    pub adversarial_error: f64,
    /// Fraction of samples where the attack reached its goal (targeted: predicted as
    /// the target).
    pub attack_success: f64,
    /// Mean attack loss after `k` steps, `k = 0..=iterations`.
    pub loss_mean: Vec<f64>,
    /// Standard deviation over samples of the attack loss after `k` steps.
    pub loss_std: Vec<f64>,
}

/// Attacks every image of `data` in batches of `batch` and reports errors and the loss
/// curve. Batch `b` draws its targets and starts from a ChaCha8 stream `b` of `seed`, so
/// the result does not depend on anything but the model, data, attack and seed.
pub fn evaluate<C: Classifier + ?Sized>(
    model: &mut C,
    data: &Dataset,
    batch: usize,
    attack: &PgdConfig,
    seed: u64,
    mut progress: impl FnMut(usize),
) -> Result<RobustnessReport> {
    if batch == 0 || data.is_empty() {
        return Err(Error::Config(format!(
            "evaluation needs a batch size ≥ 1 and images, got batch {batch} and {} images",
            data.len()
        )));
    }
    let classes = model.num_classes();
    let steps = attack.iterations + 1;
    let (mut sum, mut sum_sq) = (vec![0.0f64; steps], vec![0.0f64; steps]);
    let (mut clean_wrong, mut adv_wrong, mut success) = (0usize, 0usize, 0usize);
    let mut x = Vec::new();
    let indices: Vec<usize> = (0..data.len()).collect();
    for (b, chunk) in indices.chunks(batch).enumerate() {
        let labels = data.batch(chunk, &mut x);
        let shape = [chunk.len(), data.channels, data.height, data.width];
        let clean = argmax_rows(&model.logits(&x, shape)?, classes);
        clean_wrong += clean.iter().zip(&labels).filter(|(p, l)| p != l).count();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(b as u64);
        let out = pgd(model, &x, shape, &labels, attack, &mut rng)?;
        adv_wrong += out
            .predictions
            .iter()
            .zip(&labels)
            .filter(|(p, l)| p != l)
            .count();
        success += out.succeeded(attack.goal).iter().filter(|&&s| s).count();
        for (k, row) in out.losses.iter().enumerate() {
            for &l in row {
                sum[k] += l as f64;
                sum_sq[k] += (l as f64) * (l as f64);
            }
        }
        progress(chunk.len());
    }
    let n = data.len() as f64;
    let loss_mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let loss_std = sum_sq
        .iter()
        .zip(&loss_mean)
        .map(|(sq, m)| (sq / n - m * m).max(0.0).sqrt())
        .collect();
    Ok(RobustnessReport {
        attack: *attack,
        images: data.len(),
        clean_error: clean_wrong as f64 / n,
        adversarial_error: adv_wrong as f64 / n,
        attack_success: success as f64 / n,
        loss_mean,
        loss_std,
    })
}
