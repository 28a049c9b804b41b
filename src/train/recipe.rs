//! One training step as the paper trains: augmentation, then the attack, then the SGD
//! step, each on the model's backend, so the images go there once per batch.

use rand::Rng;

use crate::attack::pgd::{self, draw_targets, start_noise, PgdConfig};
use crate::backend::Backend;
use crate::classifier::{BatchShape, StepStats, Trainable};
use crate::data::augment::{crop_flip_draws, AugmentKernels};
use crate::error::{check_len, Result};
use crate::ops::loss::LossKernels;

/// What one training step does to its batch before the SGD step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchRecipe {
    /// Random crop (4-pixel padding) and horizontal flip.
    pub augment: bool,
    /// Train on the adversarial images of this attack instead of the batch itself.
    pub attack: Option<PgdConfig>,
}

/// One training step on the batch `x` (NCHW in [0, 1], on the host) with true
/// `labels`, drawing from `rng` in this order: a crop and flip per image, the attack's
/// targets, its random start (per restart). With one restart the attack runs on the
/// backend from the augmented images; with more, [`pgd::pgd`] keeps each image's most
/// successful run.
pub fn train_batch<M: Trainable + ?Sized>(
    model: &mut M,
    x: &[f32],
    shape: BatchShape,
    labels: &[usize],
    recipe: &BatchRecipe,
    rng: &mut impl Rng,
    lr: f32,
) -> Result<StepStats> {
    check_len("train_batch", "x", x.len(), shape.iter().product())?;
    let mut xb = M::Backend::upload(model.ctx(), "x", x)?;
    if recipe.augment {
        let draws = crop_flip_draws(shape[0], rng);
        let ctx = model.ctx();
        let augmented = M::Backend::crop_flip(ctx, shape, &M::Backend::view(ctx, &xb), &draws)?;
        xb = augmented;
    }
    if let Some(attack) = &recipe.attack {
        xb = match attack.restarts {
            1 => {
                let classes = model.num_classes();
                let targets = draw_targets(classes, x.len(), shape, labels, attack, rng)?;
                let noise = start_noise(attack, x.len(), rng);
                pgd::run(model, &xb, noise.as_deref(), shape, &targets, attack, &[])?.0
            }
            _ => {
                let ctx = model.ctx();
                let clean = M::Backend::download(ctx, &M::Backend::view(ctx, &xb))?;
                let outcome = pgd::pgd(model, &clean, shape, labels, attack, rng)?;
                M::Backend::upload(model.ctx(), "x", &outcome.adversarial)?
            }
        };
    }
    let labels = M::Backend::upload_labels(model.ctx(), labels, model.num_classes())?;
    model.train_step_on(&xb, shape, &labels, lr)
}
