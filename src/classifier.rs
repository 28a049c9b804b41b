//! What the attacks and the trainer need from a model, and nothing more.
//!
//! `nn` implements these for its ResNets; `attack` and `train` are written against them,
//! so they work the same on any device and model.

use std::path::Path;

use rand::RngCore;

use crate::attack::pgd::{PgdConfig, Snapshot};
use crate::error::Result;

/// Shape of an image batch, NCHW.
pub type BatchShape = [usize; 4];

/// A model that maps images in [0, 1] (NCHW, f32) to class logits.
pub trait Classifier {
    /// Number of classes.
    fn num_classes(&self) -> usize;

    /// Logits `[N, classes]`, row-major, in evaluation mode (running BN statistics).
    fn logits(&mut self, x: &[f32], shape: BatchShape) -> Result<Vec<f32>>;

    /// Per-sample softmax cross-entropy against `labels`, and the gradient of their
    /// **sum** with respect to `x`, in evaluation mode. Parameter gradients are neither
    /// computed nor accumulated (PGD calls this K times per batch).
    fn loss_and_input_grad(
        &mut self,
        x: &[f32],
        shape: BatchShape,
        labels: &[usize],
    ) -> Result<(Vec<f32>, Vec<f32>)>;

    /// The logits of `x` and the gradient with respect to `x` of `Σ dlogits · logits`,
    /// where `dlogits = loss_grad(logits)` is the gradient of whatever loss the caller
    /// computes from them (`[N, classes]`, row-major), in evaluation mode, with one
    /// forward and one backward pass. Attacks with their own losses (APGD's DLR, a
    /// margin) are written over this. Parameter gradients are neither computed nor
    /// accumulated.
    fn logits_and_input_vjp(
        &mut self,
        x: &[f32],
        shape: BatchShape,
        loss_grad: &mut dyn FnMut(&[f32]) -> Result<Vec<f32>>,
    ) -> Result<(Vec<f32>, Vec<f32>)>;

    /// The iterations of one PGD run (see [`crate::attack::pgd::run_on_host`] for the
    /// arguments and results): the attack calls this once per run, so a model on a
    /// device keeps the images there between steps. The default runs the loop on the
    /// host through the two methods above.
    fn pgd_run(
        &mut self,
        x0: &[f32],
        noise: Option<&[f32]>,
        shape: BatchShape,
        targets: &[usize],
        config: &PgdConfig,
        at: &[usize],
    ) -> Result<(Vec<f32>, Vec<Snapshot>)> {
        crate::attack::pgd::run_on_host(self, x0, noise, shape, targets, config, at)
    }
}

/// What one block's post-residual activation (the base activation or SPARTA) took in and
/// gave out for a batch: [`InspectActivations::activation_maps`].
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationMaps<T> {
    /// The block, named as its parameters are in the checkpoint (`layer2.0`).
    pub block: String,
    /// Whether it is the last block of its group, where the paper puts SPARTA.
    pub last_in_group: bool,
    /// Whether the activation is SPARTA.
    pub sparta: bool,
    /// `[N, C, H, W]` of both maps.
    pub shape: [usize; 4],
    /// X, the activation's input.
    pub input: Vec<T>,
    /// Y, its output.
    pub output: Vec<T>,
}

/// A [`Classifier`] whose blocks' activations can be read out: the feature maps
/// `sparta features` compares.
pub trait InspectActivations: Classifier {
    /// The input and output of every block's post-residual activation on the images `x`
    /// (`[N, C, H, W]` in [0, 1]), in evaluation mode, in block order.
    fn activation_maps(&mut self, x: &[f32], shape: BatchShape)
        -> Result<Vec<ActivationMaps<f32>>>;
}

/// What one training step does to its batch before the SGD step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchRecipe {
    /// Random crop (4-pixel padding) and horizontal flip.
    pub augment: bool,
    /// Train on the adversarial images of this attack instead of the batch itself.
    pub attack: Option<PgdConfig>,
}

/// Loss and accuracy of one training step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    /// Mean cross-entropy over the batch.
    pub loss: f32,
    /// Number of correctly classified samples in the batch.
    pub correct: usize,
}

/// A [`Classifier`] that can take SGD steps and be checkpointed.
pub trait Trainable: Classifier {
    /// One SGD step (momentum and weight decay as configured by the model's optimizer)
    /// on the mean cross-entropy of the batch, in training mode (batch statistics,
    /// running statistics updated), at learning rate `lr`.
    fn train_step(
        &mut self,
        x: &[f32],
        shape: BatchShape,
        labels: &[usize],
        lr: f32,
    ) -> Result<StepStats>;

    /// One training step on a batch as the trainer hands it over: augmentation, then
    /// the attack, then [`Trainable::train_step`], drawing from `rng` in that order
    /// (crop and flip per image, the attack's targets, its random start). The default
    /// does the first two on the host; a model on a device does all three there.
    fn train_batch(
        &mut self,
        x: &[f32],
        shape: BatchShape,
        labels: &[usize],
        recipe: &BatchRecipe,
        rng: &mut dyn RngCore,
        lr: f32,
    ) -> Result<StepStats> {
        let mut x = x.to_vec();
        if recipe.augment {
            crate::data::augment::crop_flip_batch(&mut x, shape, &mut &mut *rng)?;
        }
        if let Some(attack) = &recipe.attack {
            x = crate::attack::pgd::pgd(self, &x, shape, labels, attack, &mut &mut *rng)?
                .adversarial;
        }
        self.train_step(&x, shape, labels, lr)
    }

    /// Writes parameters, buffers and optimizer state to `path` (safetensors),
    /// atomically: a crash leaves either the old file or the new one.
    fn save(&self, path: &Path) -> Result<()>;

    /// Restores what [`Trainable::save`] wrote; errors name missing, extra or
    /// mis-shaped tensors.
    fn load(&mut self, path: &Path) -> Result<()>;
}
