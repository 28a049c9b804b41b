//! CIFAR-style ResNet-18/34 (3×3 stem, no max-pool, BasicBlocks in 4 groups) whose
//! post-residual activations are ReLU or SPARTA, chosen by an [`ActivationSpec`], on
//! any backend: `ResNet<f32>` and `ResNet<f64>` on the host, `ResNet<OnDevice<D>>` on a
//! device. One model, one forward pass, one training step for all of them.
//!
//! The model owns its parameters and buffers as named tensors (the checkpoint names,
//! e.g. `layer2.0.shortcut.conv.weight`) and its SGD velocity, all on its backend. A
//! pass puts the parameters on a [`Tape`] as leaves that refer to the model's buffers.
//!
//! ```
//! use sparta::nn::resnet::{ResNet, ResNetConfig};
//! use sparta::classifier::Classifier;
//!
//! let mut model = ResNet::<f32>::new(ResNetConfig::small(1, 10), 0)?;
//! let logits = model.logits(&vec![0.5; 2 * 28 * 28], [2, 1, 28, 28])?;
//! assert_eq!(logits.len(), 20);
//! # Ok::<(), sparta::Error>(())
//! ```
//!
//! [`ActivationSpec`]: crate::nn::spec::ActivationSpec

mod arch;
mod build;
mod checkpoint;
mod config;

use std::path::Path;

pub use arch::ResNetBackend;
pub use config::{Depth, ResNetConfig, ValueCounts};

use crate::autograd::{Tape, Var};
use crate::backend::{Backend, Buf, Ctx};
use crate::classifier::{
    ActivationMaps, AttackBackend, BatchShape, Classifier, InspectActivations, LossGrad, StepStats,
    Trainable,
};
use crate::error::{check_len, Error, Result};
use crate::launch::ViewLen;
use crate::ops::loss::{CrossEntropy, LossKernels, Reduction};
use crate::optim::{SgdKernels, SgdStep};
use crate::real::Real;
use arch::{Arch, Observed, Pass, SpartaSlot};

/// A named tensor of a model: its checkpoint name and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Dotted name, as written to checkpoints (`layer4.1.conv2.weight`).
    pub name: String,
    /// Its shape (PyTorch's).
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Elements of the tensor.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One row of [`ResNet::summary`].
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    /// Tensor name.
    pub name: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// Learned elements (0 for buffers).
    pub params: usize,
}

/// What a pass computes and keeps: batch or running statistics, which gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// Training mode: batch statistics, the running ones updated.
    pub train: bool,
    /// The images' gradient (an attack step).
    pub input_grad: bool,
    /// The trainable parameters' gradients.
    pub param_grads: bool,
    /// Note every block's activation ([`Forward::observed`]).
    pub observe: bool,
}

impl Mode {
    /// Evaluation, no gradient (logits).
    pub const EVAL: Mode = Mode {
        train: false,
        input_grad: false,
        param_grads: false,
        observe: false,
    };
    /// Evaluation, the images' gradient only (an attack step).
    pub const ATTACK: Mode = Mode {
        input_grad: true,
        ..Mode::EVAL
    };
    /// Training: batch statistics and the trainable parameters' gradients.
    pub const TRAIN: Mode = Mode {
        train: true,
        param_grads: true,
        ..Mode::EVAL
    };
    /// Evaluation, noting every block's activation (feature maps).
    pub const INSPECT: Mode = Mode {
        observe: true,
        ..Mode::EVAL
    };
}

/// The handles of a pass on its tape.
pub struct Forward {
    /// The images.
    pub x: Var,
    /// The logits `[N, classes]`.
    pub logits: Var,
    /// One handle per learned parameter, in [`ResNet::params`] order.
    pub params: Vec<Var>,
    /// `(block, input, output)` of every block's post-residual activation, in
    /// [`Mode::observe`] passes.
    pub(crate) observed: Option<Observed>,
}

/// A CIFAR-style ResNet with its SGD state, on backend `B`.
pub struct ResNet<B: Backend = f32> {
    config: ResNetConfig,
    ctx: B::Ctx,
    arch: Arch,
    /// The learned parameters, then the normalization's mean and std (constants the
    /// tape reads like parameters).
    params: Vec<B::Buf>,
    param_info: Vec<TensorInfo>,
    /// Batch-norm running statistics.
    buffers: Vec<B::Buf>,
    buffer_info: Vec<TensorInfo>,
    /// SGD velocity, one per learned parameter.
    velocity: Vec<B::Buf>,
    sparta: Vec<SpartaSlot<B::Real>>,
    /// Per parameter: whether training updates it (false for frozen SPARTA layers).
    trainable: Vec<bool>,
}

impl<T: Real> ResNet<T> {
    /// Builds the network on the host with weights drawn from `seed`.
    pub fn new(config: ResNetConfig, seed: u64) -> Result<Self> {
        Self::new_on((), config, seed)
    }
}

impl<B: ResNetBackend> ResNet<B> {
    /// The configuration it was built from.
    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// The backend context its tensors live in.
    pub fn backend(&self) -> &B::Ctx {
        &self.ctx
    }

    /// Learned parameters: name and shape, and values, in a fixed order.
    pub fn params(&self) -> impl Iterator<Item = (&TensorInfo, &B::Buf)> {
        self.param_info.iter().zip(&self.params)
    }

    /// Mutable learned parameters (tests, transfers).
    pub fn params_mut(&mut self) -> impl Iterator<Item = (&TensorInfo, &mut B::Buf)> {
        self.param_info.iter().zip(&mut self.params)
    }

    /// Buffers: batch-norm running statistics.
    pub fn buffers(&self) -> impl Iterator<Item = (&TensorInfo, &B::Buf)> {
        self.buffer_info.iter().zip(&self.buffers)
    }

    /// SGD velocity, one per learned parameter, in [`Self::params`] order.
    pub fn velocity(&self) -> &[B::Buf] {
        &self.velocity
    }

    /// Number of learned scalars.
    pub fn param_count(&self) -> usize {
        self.param_info.iter().map(TensorInfo::len).sum()
    }

    /// Learned elements that training updates (all but those of frozen SPARTA layers).
    pub fn trainable_count(&self) -> usize {
        self.param_info
            .iter()
            .zip(&self.trainable)
            .filter(|(_, &t)| t)
            .map(|(p, _)| p.len())
            .sum()
    }

    /// One row per parameter and buffer tensor: name, shape, learned elements.
    pub fn summary(&self) -> Vec<SummaryRow> {
        let row = |p: &TensorInfo, learned: bool| SummaryRow {
            name: p.name.clone(),
            shape: p.shape.clone(),
            params: if learned { p.len() } else { 0 },
        };
        let mut rows: Vec<SummaryRow> = self.param_info.iter().map(|p| row(p, true)).collect();
        rows.extend(self.buffer_info.iter().map(|p| row(p, false)));
        rows
    }

    /// The same model on another backend of the same element type (the host and a
    /// device, either way): every parameter, buffer and velocity copied.
    pub fn to_backend<B2>(&self, ctx: B2::Ctx) -> Result<ResNet<B2>>
    where
        B2: ResNetBackend<Real = B::Real>,
    {
        let copy = |bufs: &[B::Buf], what: &'static str| -> Result<Vec<B2::Buf>> {
            bufs.iter()
                .map(|b| B2::upload(&ctx, what, &B::download(&self.ctx, &B::view(&self.ctx, b))?))
                .collect()
        };
        let (params, buffers, velocity) = (
            copy(&self.params, "param")?,
            copy(&self.buffers, "running")?,
            copy(&self.velocity, "velocity")?,
        );
        Ok(ResNet {
            config: self.config.clone(),
            ctx,
            arch: self.arch.clone(),
            params,
            param_info: self.param_info.clone(),
            buffers,
            buffer_info: self.buffer_info.clone(),
            velocity,
            sparta: self.sparta.clone(),
            trainable: self.trainable.clone(),
        })
    }

    /// Checks a batch shape against the model: `[N ≥ 1, in_channels, H ≥ 1, W ≥ 1]`.
    fn check_shape(&self, shape: BatchShape) -> Result<()> {
        let c = self.config.in_channels;
        if shape[1] != c || shape.contains(&0) {
            return Err(Error::shape(
                "resnet",
                "x",
                format!("[N ≥ 1, {c}, H ≥ 1, W ≥ 1]"),
                format!("{shape:?}"),
            ));
        }
        Ok(())
    }

    /// Runs the forward pass of the images `x` (`shape`, on the backend) in `mode` on a
    /// new tape over the model's parameters, and hands the tape and the pass's handles
    /// to `body` (to read the logits, run a backward, take gradients).
    pub fn pass<R>(
        &mut self,
        x: &B::Buf,
        shape: BatchShape,
        mode: Mode,
        body: impl FnOnce(&mut Tape<'_, B>, &Forward) -> Result<R>,
    ) -> Result<R> {
        self.check_shape(shape)?;
        let ResNet {
            config,
            ctx,
            arch,
            params,
            param_info,
            buffers,
            sparta,
            trainable,
            ..
        } = self;
        let mut tape = Tape::on(ctx, params);
        let xv = tape.input(&shape, x, mode.input_grad)?;
        let mut pv = param_info
            .iter()
            .zip(trainable.iter())
            .enumerate()
            .map(|(i, (p, &t))| tape.param(i, &p.shape, mode.param_grads && t))
            .collect::<Result<Vec<Var>>>()?;
        let (n, c) = (param_info.len(), config.in_channels);
        pv.push(tape.param(n, &[c], false)?);
        pv.push(tape.param(n + 1, &[c], false)?);
        let mut observed = mode.observe.then(Vec::new);
        let logits = {
            let mut pass = Pass {
                tape: &mut tape,
                pv,
                train: mode.train,
                running: buffers,
                sparta,
            };
            let logits = arch.forward(&mut pass, xv, observed.as_mut())?;
            pv = pass.pv;
            logits
        };
        pv.truncate(n);
        let forward = Forward {
            x: xv,
            logits,
            params: pv,
            observed,
        };
        body(&mut tape, &forward)
    }

    /// One SGD step on the mean cross-entropy of the images `x` against `labels`
    /// (training mode), at learning rate `lr`.
    pub fn sgd_step(
        &mut self,
        x: &B::Buf,
        shape: BatchShape,
        labels: &B::Labels,
        lr: f32,
    ) -> Result<StepStats>
    where
        B: LossKernels + SgdKernels,
    {
        let classes = self.config.classes;
        let (grads, total, correct) = self.pass(x, shape, Mode::TRAIN, |tape, f| {
            let CrossEntropy {
                dlogits,
                total,
                correct,
                ..
            } = B::cross_entropy(
                tape.ctx(),
                shape[0],
                classes,
                &tape.value(f.logits),
                labels,
                Reduction::Mean,
            )?;
            tape.backward_with(f.logits, dlogits)?;
            let grads: Vec<Option<B::Buf>> = f.params.iter().map(|&v| tape.take_grad(v)).collect();
            Ok((grads, total, correct))
        })?;
        let step = SgdStep {
            lr,
            momentum: self.config.momentum,
            weight_decay: self.config.weight_decay,
        };
        let ctx = &self.ctx;
        for (i, g) in grads.into_iter().enumerate() {
            if !self.trainable[i] {
                continue;
            }
            let g = match g {
                Some(g) => g,
                None => B::zeros(ctx, "grad", self.param_info[i].len())?,
            };
            B::sgd_update(
                ctx,
                &mut self.params[i],
                &B::view(ctx, &g),
                &mut self.velocity[i],
                &step,
            )?;
        }
        let loss = B::download(ctx, &B::view(ctx, &total))?[0].as_f64() as f32;
        Ok(StepStats {
            loss,
            correct: B::read_count(ctx, &correct)?,
        })
    }

    /// Copies the SPARTA layers' weights (`*.sparta.*`) from the checkpoint at `path`,
    /// which may hold a different model, as long as it has the same SPARTA slots: the
    /// paper's transferred SPARTA (with `frozen` in the activation spec, they then stay
    /// fixed). Returns how many tensors were copied; a missing or differently shaped
    /// tensor is an error naming it, and so is a model without SPARTA layers.
    pub fn load_sparta_from(&mut self, path: &Path) -> Result<usize> {
        let (mut file, _) = crate::checkpoint::load::<B::Real>(path)?;
        let targets: Vec<usize> = self.sparta.iter().flat_map(|s| s.params.clone()).collect();
        if targets.is_empty() {
            return Err(Error::Config(format!(
                "activation {:?} has no SPARTA layer to load weights from {} into",
                self.config.activation,
                path.display()
            )));
        }
        let mut values = Vec::with_capacity(targets.len());
        for &i in &targets {
            let p = &self.param_info[i];
            let (shape, v) = file.remove(&p.name).ok_or_else(|| {
                Error::format(path, format!("missing tensor {} (SPARTA weights)", p.name))
            })?;
            if shape != p.shape {
                return Err(Error::format(
                    path,
                    format!(
                        "tensor {} has shape {shape:?}, this model's is {:?}",
                        p.name, p.shape
                    ),
                ));
            }
            values.push(v);
        }
        for (&i, v) in targets.iter().zip(values) {
            B::overwrite(&self.ctx, &mut self.params[i], &v)?;
        }
        Ok(targets.len())
    }
}

impl<B: ResNetBackend + AttackBackend> Classifier for ResNet<B> {
    type Backend = B;

    fn ctx(&self) -> &Ctx<B> {
        &self.ctx
    }

    fn num_classes(&self) -> usize {
        self.config.classes
    }

    fn logits_on(&mut self, x: &Buf<B>, shape: BatchShape) -> Result<Buf<B>> {
        self.pass(x, shape, Mode::EVAL, |tape, f| {
            B::duplicate(tape.ctx(), &tape.value(f.logits))
        })
    }

    fn input_vjp(
        &mut self,
        x: &Buf<B>,
        shape: BatchShape,
        loss_grad: &mut LossGrad<'_, B>,
    ) -> Result<(Buf<B>, Buf<B>)> {
        let len = shape.iter().product();
        self.pass(x, shape, Mode::ATTACK, |tape, f| {
            let ctx = tape.ctx();
            let (logits, dz) = {
                let z = tape.value(f.logits);
                let dz = loss_grad(ctx, &z)?;
                check_len("input_vjp", "dlogits", B::len(ctx, &dz), z.len())?;
                (B::duplicate(ctx, &z)?, dz)
            };
            tape.backward_with(f.logits, dz)?;
            let grad = match tape.take_grad(f.x) {
                Some(g) => g,
                None => B::zeros(ctx, "dx", len)?,
            };
            Ok((logits, grad))
        })
    }
}

impl<B: ResNetBackend + AttackBackend + SgdKernels> Trainable for ResNet<B> {
    fn train_step_on(
        &mut self,
        x: &Buf<B>,
        shape: BatchShape,
        labels: &B::Labels,
        lr: f32,
    ) -> Result<StepStats> {
        self.sgd_step(x, shape, labels, lr)
    }

    fn save(&self, path: &Path) -> Result<()> {
        self.save_checkpoint(path)
    }

    fn load(&mut self, path: &Path) -> Result<()> {
        self.load_checkpoint(path)
    }
}

impl<B: ResNetBackend + AttackBackend> InspectActivations for ResNet<B> {
    fn activation_maps(
        &mut self,
        x: &[f32],
        shape: BatchShape,
    ) -> Result<Vec<ActivationMaps<f32>>> {
        check_len("activation_maps", "x", x.len(), shape.iter().product())?;
        let xb = B::upload(&self.ctx, "x", x)?;
        let arch = self.arch.clone();
        self.pass(&xb, shape, Mode::INSPECT, |tape, f| {
            let read = |v| {
                Ok((
                    tape.shape(v).to_vec(),
                    B::download(tape.ctx(), &tape.value(v))?,
                ))
            };
            arch.observed_maps(f.observed.clone().unwrap_or_default(), read)
        })
    }
}
