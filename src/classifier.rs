//! What the attacks and the trainer need from a model, and nothing more: logits and
//! input gradients ([`Classifier`]), an SGD step and checkpoints ([`Trainable`]), on
//! the backend the model lives on.
//!
//! The required methods take and give tensors on the model's backend, so an attack's
//! loop (`attack::pgd`) or the training recipe (`train::recipe`), written once over
//! these traits, keeps its images where the model is. The provided methods take host
//! slices, for callers that hold images on the host.

use std::path::Path;

use crate::backend::{Backend, Buf, Ctx, View};
use crate::data::augment::AugmentKernels;
use crate::error::{check_len, Result};
use crate::launch::ViewLen;
use crate::ops::loss::{LossKernels, Reduction};
use crate::ops::pgd::PgdKernels;

pub use crate::data::BatchShape;

/// A backend an attack and a training step run on: f32, with the cross-entropy, PGD
/// and augmentation kernels.
pub trait AttackBackend: Backend<Real = f32> + LossKernels + PgdKernels + AugmentKernels {}

impl<B: Backend<Real = f32> + LossKernels + PgdKernels + AugmentKernels> AttackBackend for B {}

/// The gradient of a loss with respect to the logits, given the backend's context and
/// the logits: how an attack tells [`Classifier::input_vjp`] which loss it
/// differentiates.
pub type LossGrad<'a, B> = dyn FnMut(&Ctx<B>, &View<'_, B>) -> Result<Buf<B>> + 'a;

/// A model that maps images in [0, 1] (NCHW, f32) to class logits, in evaluation mode.
pub trait Classifier {
    /// Where its tensors live.
    type Backend: AttackBackend;

    /// The backend context its tensors live in.
    fn ctx(&self) -> &Ctx<Self::Backend>;

    /// Number of classes.
    fn num_classes(&self) -> usize;

    /// Logits `[N, classes]`, row-major, of the images `x` (running BN statistics).
    fn logits_on(
        &mut self,
        x: &Buf<Self::Backend>,
        shape: BatchShape,
    ) -> Result<Buf<Self::Backend>>;

    /// The logits of `x` and the gradient with respect to `x` of `Σ dlogits · logits`,
    /// where `dlogits = loss_grad(logits)` is the gradient of whatever loss the caller
    /// computes from them: one forward and one backward pass. Parameter gradients are
    /// neither computed nor accumulated (an attack calls this once per step).
    #[allow(clippy::type_complexity)]
    fn input_vjp(
        &mut self,
        x: &Buf<Self::Backend>,
        shape: BatchShape,
        loss_grad: &mut LossGrad<'_, Self::Backend>,
    ) -> Result<(Buf<Self::Backend>, Buf<Self::Backend>)>;

    /// [`Self::logits_on`] for images on the host.
    fn logits(&mut self, x: &[f32], shape: BatchShape) -> Result<Vec<f32>> {
        check_len("logits", "x", x.len(), shape.iter().product())?;
        let xb = Self::Backend::upload(self.ctx(), "x", x)?;
        let z = self.logits_on(&xb, shape)?;
        let logits = Self::Backend::download(self.ctx(), &Self::Backend::view(self.ctx(), &z))?;
        Ok(logits)
    }

    /// Per-sample softmax cross-entropy against `labels`, and the gradient of their
    /// **sum** with respect to `x` (host slices).
    fn loss_and_input_grad(
        &mut self,
        x: &[f32],
        shape: BatchShape,
        labels: &[usize],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        check_len("loss_and_input_grad", "x", x.len(), shape.iter().product())?;
        check_len("loss_and_input_grad", "labels", labels.len(), shape[0])?;
        let classes = self.num_classes();
        let xb = Self::Backend::upload(self.ctx(), "x", x)?;
        let labels = Self::Backend::upload_labels(self.ctx(), labels, classes)?;
        let mut rows = None;
        let mut loss_grad = |ctx: &Ctx<Self::Backend>, z: &View<'_, Self::Backend>| {
            let ce =
                Self::Backend::cross_entropy(ctx, shape[0], classes, z, &labels, Reduction::Sum)?;
            rows = Some(ce.rows);
            Ok(ce.dlogits)
        };
        let (_, grad) = self.input_vjp(&xb, shape, &mut loss_grad)?;
        let ctx = self.ctx();
        let rows = rows.ok_or_else(|| {
            crate::error::Error::Config("input_vjp did not evaluate the loss".into())
        })?;
        let rows = Self::Backend::download(ctx, &Self::Backend::view(ctx, &rows))?;
        let grad = Self::Backend::download(ctx, &Self::Backend::view(ctx, &grad))?;
        Ok((rows, grad))
    }

    /// [`Self::input_vjp`] with images, logits and the loss gradient on the host.
    fn logits_and_input_vjp(
        &mut self,
        x: &[f32],
        shape: BatchShape,
        loss_grad: &mut dyn FnMut(&[f32]) -> Result<Vec<f32>>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        check_len("logits_and_input_vjp", "x", x.len(), shape.iter().product())?;
        let xb = Self::Backend::upload(self.ctx(), "x", x)?;
        let mut on_host = |ctx: &Ctx<Self::Backend>, z: &View<'_, Self::Backend>| {
            let dz = loss_grad(&Self::Backend::download(ctx, z)?)?;
            check_len("logits_and_input_vjp", "dlogits", dz.len(), z.len())?;
            Self::Backend::upload(ctx, "dlogits", &dz)
        };
        let (z, grad) = self.input_vjp(&xb, shape, &mut on_host)?;
        let ctx = self.ctx();
        let z = Self::Backend::download(ctx, &Self::Backend::view(ctx, &z))?;
        let grad = Self::Backend::download(ctx, &Self::Backend::view(ctx, &grad))?;
        Ok((z, grad))
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
    /// on the mean cross-entropy of the images `x` against `labels`, in training mode
    /// (batch statistics, running statistics updated), at learning rate `lr`.
    fn train_step_on(
        &mut self,
        x: &Buf<Self::Backend>,
        shape: BatchShape,
        labels: &<Self::Backend as LossKernels>::Labels,
        lr: f32,
    ) -> Result<StepStats>;

    /// Writes parameters, buffers and optimizer state to `path` (safetensors),
    /// atomically: a crash leaves either the old file or the new one.
    fn save(&self, path: &Path) -> Result<()>;

    /// Restores what [`Trainable::save`] wrote; errors name missing, extra or
    /// mis-shaped tensors.
    fn load(&mut self, path: &Path) -> Result<()>;

    /// [`Self::train_step_on`] for a batch on the host.
    fn train_step(
        &mut self,
        x: &[f32],
        shape: BatchShape,
        labels: &[usize],
        lr: f32,
    ) -> Result<StepStats> {
        check_len("train_step", "x", x.len(), shape.iter().product())?;
        check_len("train_step", "labels", labels.len(), shape[0])?;
        let classes = self.num_classes();
        let xb = Self::Backend::upload(self.ctx(), "x", x)?;
        let labels = Self::Backend::upload_labels(self.ctx(), labels, classes)?;
        self.train_step_on(&xb, shape, &labels, lr)
    }
}
