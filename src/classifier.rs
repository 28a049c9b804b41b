//! What the attacks and the trainer need from a model, and nothing more.
//!
//! `nn` implements these for its ResNets; `attack` and `train` are written against them,
//! so they work the same on any device and model.

use std::path::Path;

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

    /// Writes parameters, buffers and optimizer state to `path` (safetensors),
    /// atomically: a crash leaves either the old file or the new one.
    fn save(&self, path: &Path) -> Result<()>;

    /// Restores what [`Trainable::save`] wrote; errors name missing, extra or
    /// mis-shaped tensors.
    fn load(&mut self, path: &Path) -> Result<()>;
}
