//! CIFAR-style ResNet-18/34 (3×3 stem, no max-pool, BasicBlocks in 4 groups) whose
//! post-residual activations are ReLU or SPARTA, chosen by an [`ActivationSpec`].
//!
//! The model owns its parameters and buffers as named tensors (the checkpoint names,
//! e.g. `layer2.0.shortcut.conv.weight`) and its SGD state. A forward pass pushes every
//! parameter onto a [`Tape`] as a leaf and then the layers' ops.
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

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::param::{normal, uniform, Named};
use super::sparta::{SpartaConfig, SpartaLayer};
use super::sparta_node::sparta;
use super::spec::ActivationSpec;
use crate::autograd::{Tape, Var};
use crate::classifier::{
    ActivationMaps, BatchShape, Classifier, InspectActivations, StepStats, Trainable,
};
use crate::data::DatasetInfo;
use crate::error::{Error, Result};
use crate::ops::batchnorm::{batch_norm, BnMode};
use crate::ops::loss::{cross_entropy, softmax_losses, Reduction};
use crate::ops::pointwise::Pointwise;
use crate::ops::{
    add::add, conv2d::conv2d, linear::linear, normalize::normalize, pointwise::tape::pointwise,
    pool, relu::relu,
};
use crate::optim::Sgd;
use crate::real::Real;
use crate::tensor::Tensor;

/// Depth preset: blocks per group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Depth {
    /// ResNet-18: 2, 2, 2, 2 blocks.
    R18,
    /// ResNet-34: 3, 4, 6, 3 blocks.
    R34,
    /// CPU demo: 1 block per group.
    Small,
}

impl Depth {
    /// Blocks in each of the 4 groups.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            Depth::R18 => [2, 2, 2, 2],
            Depth::R34 => [3, 4, 6, 3],
            Depth::Small => [1, 1, 1, 1],
        }
    }
}

impl std::fmt::Display for Depth {
    /// The name [`FromStr`] reads: `18`, `34`, `small`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Depth::R18 => "18",
            Depth::R34 => "34",
            Depth::Small => "small",
        })
    }
}

impl FromStr for Depth {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "18" | "resnet18" => Ok(Depth::R18),
            "34" | "resnet34" => Ok(Depth::R34),
            "small" => Ok(Depth::Small),
            _ => Err(Error::Config(format!(
                "depth {s:?}: expected 18, 34 or small"
            ))),
        }
    }
}

/// Everything that defines a ResNet's architecture and optimizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Blocks per group.
    pub depth: Depth,
    /// Image channels.
    pub in_channels: usize,
    /// Number of classes.
    pub classes: usize,
    /// Channels of the 4 groups (the stem has the first group's width).
    pub widths: [usize; 4],
    /// Which activations are SPARTA ([`ActivationSpec`] syntax, e.g. `G1-4.B2`).
    pub activation: String,
    /// Per-channel mean of the input normalization layer (inputs are in [0, 1]).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of the input normalization layer.
    pub std: Vec<f32>,
    /// SGD momentum.
    pub momentum: f32,
    /// SGD weight decay.
    pub weight_decay: f32,
    /// The data set the model is trained on, recorded in its checkpoints so that
    /// evaluating or resuming it on other data is refused unless asked for; `None` for a
    /// model made without one (and in checkpoints written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetInfo>,
}

impl ResNetConfig {
    fn preset(depth: Depth, widths: [usize; 4], in_channels: usize, classes: usize) -> Self {
        ResNetConfig {
            depth,
            in_channels,
            classes,
            widths,
            activation: "G1-4.Blast".into(),
            mean: vec![0.5; in_channels],
            std: vec![0.25; in_channels],
            momentum: 0.9,
            weight_decay: 1e-4,
            dataset: None,
        }
    }

    /// ResNet-18 (64/128/256/512) with SPARTA on the last block of each group.
    pub fn resnet18(in_channels: usize, classes: usize) -> Self {
        Self::preset(Depth::R18, [64, 128, 256, 512], in_channels, classes)
    }

    /// ResNet-34 (64/128/256/512) with SPARTA on the last block of each group.
    pub fn resnet34(in_channels: usize, classes: usize) -> Self {
        Self::preset(Depth::R34, [64, 128, 256, 512], in_channels, classes)
    }

    /// CPU demo preset: one block per group, widths 16/32/64/128.
    pub fn small(in_channels: usize, classes: usize) -> Self {
        Self::preset(Depth::Small, [16, 32, 64, 128], in_channels, classes)
    }

    /// The same configuration with another activation spec.
    pub fn with_activation(mut self, spec: &str) -> Self {
        self.activation = spec.into();
        self
    }

    /// How many values the model this configuration describes holds: learned
    /// parameters and buffers (running statistics), counted from the configuration
    /// alone with checked arithmetic, so that a configuration read from a file can be
    /// checked against the file before the model is allocated. Errors on an invalid
    /// spec or a count that overflows.
    pub fn value_counts(&self) -> Result<ValueCounts> {
        let spec = ActivationSpec::parse(&self.activation)?;
        let on = spec.resolve(&self.depth.blocks())?;
        let mut n = ValueCounter {
            counts: ValueCounts::default(),
            config: self,
        };
        let w = self.widths;
        n.learned(&[w[0], self.in_channels, 3, 3])?;
        n.batch_norm(w[0])?;
        let mut c_in = w[0];
        for (g, group_on) in on.iter().enumerate() {
            for (i, &use_sparta) in group_on.iter().enumerate() {
                let c = w[g];
                n.learned(&[c, c_in, 3, 3])?;
                n.batch_norm(c)?;
                n.learned(&[c, c, 3, 3])?;
                n.batch_norm(c)?;
                if (g > 0 && i == 0) || c_in != c {
                    n.learned(&[c, c_in])?;
                    n.batch_norm(c)?;
                }
                if use_sparta {
                    let sparta = SpartaConfig {
                        dpnet: spec.dpnet,
                        ..SpartaConfig::new(c)
                    };
                    for (_, shape) in sparta.param_shapes() {
                        n.learned(&shape)?;
                    }
                }
                c_in = c;
            }
        }
        n.learned(&[self.classes, c_in])?;
        n.learned(&[self.classes])?;
        Ok(n.counts)
    }
}

/// Sums tensor sizes for [`ResNetConfig::value_counts`], failing on overflow.
struct ValueCounter<'a> {
    counts: ValueCounts,
    config: &'a ResNetConfig,
}

impl ValueCounter<'_> {
    fn size(&self, shape: &[usize]) -> Result<usize> {
        shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| self.overflow())
    }

    fn overflow(&self) -> Error {
        Error::Config(format!(
            "the model of {:?} has more values than can be counted",
            self.config
        ))
    }

    fn learned(&mut self, shape: &[usize]) -> Result<()> {
        let size = self.size(shape)?;
        self.counts.parameters =
            (self.counts.parameters.checked_add(size)).ok_or_else(|| self.overflow())?;
        Ok(())
    }

    /// Weight and bias learned, running mean and variance kept.
    fn batch_norm(&mut self, c: usize) -> Result<()> {
        self.learned(&[2, c])?;
        let size = self.size(&[2, c])?;
        self.counts.buffers =
            (self.counts.buffers.checked_add(size)).ok_or_else(|| self.overflow())?;
        Ok(())
    }
}

/// What [`ResNetConfig::value_counts`] counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValueCounts {
    /// Learned scalars ([`ResNet::param_count`]).
    pub parameters: usize,
    /// Running statistics.
    pub buffers: usize,
}

/// Parameter and buffer indices of one batch norm.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bn {
    pub(crate) gamma: usize,
    pub(crate) beta: usize,
    pub(crate) mean: usize,
    pub(crate) var: usize,
}

/// A block's post-residual activation.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Act {
    /// The network's base activation ([`Arch`]'s `base`).
    Base,
    /// Index into [`ResNet::sparta`].
    Sparta(usize),
}

/// A SPARTA slot: the layer (for its configuration; weights live in the model's
/// parameter list) and the indices of its parameters there.
#[derive(Clone)]
pub(crate) struct SpartaSlot<T: Real> {
    pub(crate) layer: SpartaLayer<T>,
    pub(crate) params: Vec<usize>,
}

#[derive(Clone, Debug)]
struct Block {
    /// Its parameters' prefix in the checkpoint, `layer{group}.{index}`.
    name: String,
    /// Whether it is the last block of its group.
    last_in_group: bool,
    conv1: usize,
    bn1: Bn,
    conv2: usize,
    bn2: Bn,
    shortcut: Option<(usize, Bn)>,
    stride: usize,
    act: Act,
}

/// The ops a ResNet forward pass is made of, on some tape: the CPU pass here and the
/// device pass of [`super::device_resnet`] implement them, so the network's wiring
/// ([`Arch::forward`]) is written once. Weights are named by their index in the model's
/// parameter list.
pub(crate) trait Layers {
    /// The input normalization layer.
    fn normalize(&mut self, x: Var) -> Result<Var>;
    /// A bias-free square convolution with parameter `weight`.
    fn conv2d(&mut self, x: Var, weight: usize, stride: usize, pad: usize) -> Result<Var>;
    /// Batch norm (batch statistics in training, running ones otherwise).
    fn bn(&mut self, x: Var, bn: Bn) -> Result<Var>;
    /// The network's base activation (ReLU, or a smooth baseline).
    fn pointwise(&mut self, x: Var, kind: Pointwise) -> Result<Var>;
    /// The residual addition.
    fn add(&mut self, a: Var, b: Var) -> Result<Var>;
    /// SPARTA slot `slot` as one fused node.
    fn sparta(&mut self, x: Var, slot: usize) -> Result<Var>;
    /// Mean over H×W.
    fn global_avg_pool(&mut self, x: Var) -> Result<Var>;
    /// `x·Wᵀ + b`.
    fn linear(&mut self, x: Var, weight: usize, bias: usize) -> Result<Var>;
}

/// The network's wiring: which parameters each layer uses, in forward order.
#[derive(Clone, Debug)]
pub(crate) struct Arch {
    /// The activation everywhere SPARTA is not.
    base: Pointwise,
    stem: (usize, Bn),
    blocks: Vec<Block>,
    fc: (usize, usize),
}

impl Arch {
    /// Pushes the forward pass of the images `x` and returns the logits; notes each
    /// block's post-residual activation in `observed` when given.
    pub(crate) fn forward<L: Layers>(
        &self,
        l: &mut L,
        x: Var,
        mut observed: Option<&mut Observed>,
    ) -> Result<Var> {
        let h = l.normalize(x)?;
        let h = l.conv2d(h, self.stem.0, 1, 1)?;
        let h = l.bn(h, self.stem.1)?;
        let mut h = l.pointwise(h, self.base)?;
        for (k, blk) in self.blocks.iter().enumerate() {
            let o = l.conv2d(h, blk.conv1, blk.stride, 1)?;
            let o = l.bn(o, blk.bn1)?;
            let o = l.pointwise(o, self.base)?;
            let o = l.conv2d(o, blk.conv2, 1, 1)?;
            let o = l.bn(o, blk.bn2)?;
            let short = match blk.shortcut {
                Some((conv, bn)) => {
                    let s = l.conv2d(h, conv, blk.stride, 0)?;
                    l.bn(s, bn)?
                }
                None => h,
            };
            let sum = l.add(o, short)?;
            h = match blk.act {
                Act::Base => l.pointwise(sum, self.base)?,
                Act::Sparta(i) => l.sparta(sum, i)?,
            };
            if let Some(observed) = observed.as_deref_mut() {
                observed.push((k, sum, h));
            }
        }
        let p = l.global_avg_pool(h)?;
        l.linear(p, self.fc.0, self.fc.1)
    }

    /// The maps of the `observed` activations, each tensor's shape and values read by
    /// `read` from whichever tape the pass ran on.
    pub(crate) fn observed_maps<T>(
        &self,
        observed: Observed,
        mut read: impl FnMut(Var) -> Result<(Vec<usize>, Vec<T>)>,
    ) -> Result<Vec<ActivationMaps<T>>> {
        observed
            .into_iter()
            .map(|(k, input, output)| {
                let blk = &self.blocks[k];
                let (dims, input) = read(input)?;
                let (_, output) = read(output)?;
                Ok(ActivationMaps {
                    block: blk.name.clone(),
                    last_in_group: blk.last_in_group,
                    sparta: matches!(blk.act, Act::Sparta(_)),
                    shape: [dims[0], dims[1], dims[2], dims[3]],
                    input,
                    output,
                })
            })
            .collect()
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

pub(crate) const BN_EPS: f64 = 1e-5;
pub(crate) const BN_MOMENTUM: f64 = 0.1;

/// A CIFAR-style ResNet with its SGD state.
#[derive(Clone)]
pub struct ResNet<T: Real> {
    config: ResNetConfig,
    params: Vec<Named<T>>,
    buffers: Vec<Named<T>>,
    pub(crate) arch: Arch,
    pub(crate) sparta: Vec<SpartaSlot<T>>,
    pub(crate) sgd: Sgd<T>,
    /// Per parameter: whether training updates it (false for frozen SPARTA layers).
    pub(crate) trainable: Vec<bool>,
}

struct Builder<'a, T> {
    rng: StdRng,
    params: &'a mut Vec<Named<T>>,
    buffers: &'a mut Vec<Named<T>>,
}

impl<T: Real> Builder<'_, T> {
    fn param(&mut self, name: String, shape: &[usize], data: Vec<T>) -> usize {
        self.params.push(Named {
            name,
            value: Tensor::new(shape, data).expect("initializer length"),
        });
        self.params.len() - 1
    }

    fn buffer(&mut self, name: String, c: usize, v: f64) -> usize {
        self.buffers.push(Named {
            name,
            value: Tensor::new(&[c], vec![T::of_f64(v); c]).expect("buffer length"),
        });
        self.buffers.len() - 1
    }

    /// Kaiming-normal (fan-in, ReLU gain), as for ResNets.
    fn conv(&mut self, name: String, co: usize, ci: usize, k: usize) -> usize {
        let data = normal(
            &mut self.rng,
            co * ci * k * k,
            (2.0 / (ci * k * k) as f64).sqrt(),
        );
        self.param(name, &[co, ci, k, k], data)
    }

    fn bn(&mut self, name: &str, c: usize) -> Bn {
        Bn {
            gamma: self.param(format!("{name}.weight"), &[c], vec![T::one(); c]),
            beta: self.param(format!("{name}.bias"), &[c], vec![T::zero(); c]),
            mean: self.buffer(format!("{name}.running_mean"), c, 0.0),
            var: self.buffer(format!("{name}.running_var"), c, 1.0),
        }
    }
}

/// Per-forward context on the CPU tape: parameter handles, mode and buffers to update.
struct Pass<'a, T: Real> {
    tape: &'a mut Tape<T>,
    sparta: &'a [SpartaSlot<T>],
    pv: Vec<Var>,
    train: bool,
    buffers: &'a mut [Named<T>],
    config: &'a ResNetConfig,
}

/// `(block, input, output)` of each block's post-residual activation, in block order.
pub(crate) type Observed = Vec<(usize, Var, Var)>;

impl<T: Real> Layers for Pass<'_, T> {
    fn normalize(&mut self, x: Var) -> Result<Var> {
        normalize(self.tape, x, &self.config.mean, &self.config.std)
    }

    fn conv2d(&mut self, x: Var, weight: usize, stride: usize, pad: usize) -> Result<Var> {
        conv2d(self.tape, x, self.pv[weight], stride, pad)
    }

    fn bn(&mut self, x: Var, bn: Bn) -> Result<Var> {
        let (y, stats) = if self.train {
            batch_norm(
                self.tape,
                x,
                self.pv[bn.gamma],
                self.pv[bn.beta],
                BnMode::Train,
                BN_EPS,
            )?
        } else {
            let mode = BnMode::Eval {
                mean: self.buffers[bn.mean].value.data(),
                var: self.buffers[bn.var].value.data(),
            };
            batch_norm(
                self.tape,
                x,
                self.pv[bn.gamma],
                self.pv[bn.beta],
                mode,
                BN_EPS,
            )?
        };
        if let Some(stats) = stats {
            let m = T::of_f64(BN_MOMENTUM);
            for (buf, new) in [(bn.mean, &stats.mean), (bn.var, &stats.var_unbiased)] {
                crate::ops::batchnorm::cpu::update_running(
                    self.buffers[buf].value.data_mut(),
                    new,
                    m,
                );
            }
        }
        Ok(y)
    }

    fn pointwise(&mut self, x: Var, kind: Pointwise) -> Result<Var> {
        match kind {
            Pointwise::Relu => relu(self.tape, x),
            _ => pointwise(self.tape, x, kind),
        }
    }

    fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        add(self.tape, a, b)
    }

    fn sparta(&mut self, x: Var, slot: usize) -> Result<Var> {
        let slot = &self.sparta[slot];
        let params: Vec<Var> = slot.params.iter().map(|&j| self.pv[j]).collect();
        sparta(self.tape, x, slot.layer.clone(), &params)
    }

    fn global_avg_pool(&mut self, x: Var) -> Result<Var> {
        pool::global_avg_pool(self.tape, x)
    }

    fn linear(&mut self, x: Var, weight: usize, bias: usize) -> Result<Var> {
        linear(self.tape, x, self.pv[weight], self.pv[bias])
    }
}

impl<T: Real> ResNet<T> {
    /// Builds the network with weights drawn from `seed`.
    pub fn new(config: ResNetConfig, seed: u64) -> Result<Self> {
        let spec = ActivationSpec::parse(&config.activation)?;
        let blocks_per_group = config.depth.blocks();
        let on = spec.resolve(&blocks_per_group)?;
        if config.in_channels == 0 || config.classes == 0 || config.widths.contains(&0) {
            return Err(Error::Config(format!(
                "ResNet needs positive channels, classes and widths, got {config:?}"
            )));
        }
        if config.mean.len() != config.in_channels || config.std.len() != config.in_channels {
            return Err(Error::Config(format!(
                "normalization needs {} means and stds, got {} and {}",
                config.in_channels,
                config.mean.len(),
                config.std.len()
            )));
        }
        let (mut params, mut buffers) = (Vec::new(), Vec::new());
        let mut b = Builder {
            rng: StdRng::seed_from_u64(seed),
            params: &mut params,
            buffers: &mut buffers,
        };
        let w = config.widths;
        let stem = (
            b.conv("conv1.weight".into(), w[0], config.in_channels, 3),
            b.bn("bn1", w[0]),
        );
        let mut blocks = Vec::new();
        let mut sparta_slots = Vec::new();
        let mut c_in = w[0];
        for (g, group_on) in on.iter().enumerate() {
            for (i, &use_sparta) in group_on.iter().enumerate() {
                let p = format!("layer{}.{i}", g + 1);
                let stride = if g > 0 && i == 0 { 2 } else { 1 };
                let c = w[g];
                let conv1 = b.conv(format!("{p}.conv1.weight"), c, c_in, 3);
                let bn1 = b.bn(&format!("{p}.bn1"), c);
                let conv2 = b.conv(format!("{p}.conv2.weight"), c, c, 3);
                let bn2 = b.bn(&format!("{p}.bn2"), c);
                let shortcut = (stride != 1 || c_in != c).then(|| {
                    let conv = b.conv(format!("{p}.shortcut.conv.weight"), c, c_in, 1);
                    (conv, b.bn(&format!("{p}.shortcut.bn"), c))
                });
                let act = if use_sparta {
                    let cfg = SpartaConfig {
                        dpnet: spec.dpnet,
                        block: spec.block,
                        frozen: spec.frozen,
                        ..SpartaConfig::new(c)
                    };
                    let layer = SpartaLayer::new(cfg, &mut b.rng);
                    let params = layer
                        .params()
                        .into_iter()
                        .map(|(name, v, shape)| {
                            b.param(format!("{p}.sparta.{name}"), &shape, v.to_vec())
                        })
                        .collect();
                    sparta_slots.push(SpartaSlot { layer, params });
                    Act::Sparta(sparta_slots.len() - 1)
                } else {
                    Act::Base
                };
                blocks.push(Block {
                    name: p,
                    last_in_group: i + 1 == group_on.len(),
                    conv1,
                    bn1,
                    conv2,
                    bn2,
                    shortcut,
                    stride,
                    act,
                });
                c_in = c;
            }
        }
        let bound = 1.0 / (c_in as f64).sqrt();
        let fc_w = uniform(&mut b.rng, config.classes * c_in, bound);
        let fc_b = uniform(&mut b.rng, config.classes, bound);
        let fc = (
            b.param("fc.weight".into(), &[config.classes, c_in], fc_w),
            b.param("fc.bias".into(), &[config.classes], fc_b),
        );
        let sgd = Sgd::new(
            T::of_f32(config.momentum),
            T::of_f32(config.weight_decay),
            params.iter().map(|p| p.value.len()),
        );
        let mut trainable = vec![true; params.len()];
        if spec.frozen {
            for &i in sparta_slots.iter().flat_map(|slot| &slot.params) {
                trainable[i] = false;
            }
        }
        Ok(ResNet {
            config,
            params,
            buffers,
            arch: Arch {
                base: spec.base,
                stem,
                blocks,
                fc,
            },
            sparta: sparta_slots,
            sgd,
            trainable,
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// Learned parameters, in a fixed order.
    pub fn params(&self) -> &[Named<T>] {
        &self.params
    }

    /// Mutable learned parameters (tests, transfers).
    pub fn params_mut(&mut self) -> &mut [Named<T>] {
        &mut self.params
    }

    /// Buffers: batch-norm running statistics.
    pub fn buffers(&self) -> &[Named<T>] {
        &self.buffers
    }

    /// Mutable buffers (to copy a device model's state back).
    pub fn buffers_mut(&mut self) -> &mut [Named<T>] {
        &mut self.buffers
    }

    /// Number of learned scalars.
    pub fn param_count(&self) -> usize {
        self.params.iter().map(|p| p.value.len()).sum()
    }

    /// Learned elements that training updates (all but those of frozen SPARTA layers).
    pub fn trainable_count(&self) -> usize {
        self.params
            .iter()
            .zip(&self.trainable)
            .filter(|(_, &t)| t)
            .map(|(p, _)| p.value.len())
            .sum()
    }

    /// Copies the SPARTA layers' weights (`*.sparta.*`) from the checkpoint at `path`,
    /// which may hold a different model, as long as it has the same SPARTA slots: the
    /// paper's transferred SPARTA (with `frozen` in the activation spec, they then stay
    /// fixed). Returns how many tensors were copied; a missing or differently shaped
    /// tensor is an error naming it, and so is a model without SPARTA layers.
    pub fn load_sparta_from(&mut self, path: &Path) -> Result<usize> {
        let (mut file, _) = crate::checkpoint::load::<T>(path)?;
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
            let p = &self.params[i];
            let (shape, v) = file.remove(&p.name).ok_or_else(|| {
                Error::format(path, format!("missing tensor {} (SPARTA weights)", p.name))
            })?;
            if shape != p.value.shape() {
                return Err(Error::format(
                    path,
                    format!(
                        "tensor {} has shape {shape:?}, this model's is {:?}",
                        p.name,
                        p.value.shape()
                    ),
                ));
            }
            values.push(v);
        }
        for (&i, v) in targets.iter().zip(values) {
            self.params[i].value.data_mut().copy_from_slice(&v);
        }
        Ok(targets.len())
    }

    /// One row per parameter and buffer tensor: name, shape, learned elements.
    pub fn summary(&self) -> Vec<SummaryRow> {
        let row = |p: &Named<T>, learned: bool| SummaryRow {
            name: p.name.clone(),
            shape: p.value.shape().to_vec(),
            params: if learned { p.value.len() } else { 0 },
        };
        let mut rows: Vec<SummaryRow> = self.params.iter().map(|p| row(p, true)).collect();
        rows.extend(self.buffers.iter().map(|p| row(p, false)));
        rows
    }

    /// Pushes the forward pass of images `x` (a tape node, `[N, C, H, W]` in [0, 1]) and
    /// returns the logits and the parameters' handles. `train` selects batch statistics
    /// (and updates the running ones); `param_grads` marks parameters as needing
    /// gradients.
    pub fn forward(
        &mut self,
        tape: &mut Tape<T>,
        x: Var,
        train: bool,
        param_grads: bool,
    ) -> Result<(Var, Vec<Var>)> {
        let (logits, pv, _) = self.pass(tape, x, train, param_grads, false)?;
        Ok((logits, pv))
    }

    /// [`ResNet::forward`], and with `observe` the `(block, input, output)` of every
    /// block's post-residual activation.
    fn pass(
        &mut self,
        tape: &mut Tape<T>,
        x: Var,
        train: bool,
        param_grads: bool,
        observe: bool,
    ) -> Result<(Var, Vec<Var>, Option<Observed>)> {
        let xs = tape.shape(x).to_vec();
        if xs.len() != 4 || xs[1] != self.config.in_channels {
            return Err(Error::shape(
                "resnet",
                "x",
                format!("[N, {}, H, W]", self.config.in_channels),
                format!("{xs:?}"),
            ));
        }
        let pv: Vec<Var> = self
            .params
            .iter()
            .zip(&self.trainable)
            .map(|(p, &t)| tape.leaf(p.value.clone(), param_grads && t))
            .collect();
        let mut pass = Pass {
            tape,
            sparta: &self.sparta,
            pv,
            train,
            buffers: &mut self.buffers,
            config: &self.config,
        };
        let mut observed = observe.then(Vec::new);
        let logits = self.arch.forward(&mut pass, x, observed.as_mut())?;
        Ok((logits, pass.pv, observed))
    }

    /// The input and output of every block's post-residual activation on the images `x`
    /// (`[N, C, H, W]` in [0, 1]), in evaluation mode, in block order: the feature maps
    /// before and after the activation that the paper's figure compares.
    ///
    /// ```
    /// use sparta::nn::resnet::{ResNet, ResNetConfig};
    ///
    /// let config = ResNetConfig::small(1, 10).with_activation("G1-4.Blast");
    /// let mut model = ResNet::<f32>::new(config, 0)?;
    /// let maps = model.activation_maps(&vec![0.5; 28 * 28], [1, 1, 28, 28])?;
    /// assert_eq!(maps.len(), 4); // one block per group in the small preset
    /// assert_eq!((maps[1].block.as_str(), maps[1].shape), ("layer2.0", [1, 32, 14, 14]));
    /// assert!(maps.iter().all(|m| m.sparta && m.input.len() == m.output.len()));
    /// # Ok::<(), sparta::Error>(())
    /// ```
    pub fn activation_maps(
        &mut self,
        x: &[T],
        shape: BatchShape,
    ) -> Result<Vec<ActivationMaps<T>>> {
        self.check_batch(x, shape, None)?;
        let mut tape = Tape::new();
        let xv = tape.leaf(Tensor::new(&shape, x.to_vec())?, false);
        let (_, _, observed) = self.pass(&mut tape, xv, false, false, true)?;
        let read = |v| Ok((tape.shape(v).to_vec(), tape.value(v).data().to_vec()));
        self.arch.observed_maps(observed.unwrap_or_default(), read)
    }

    /// Checks a host batch before it goes into a pass (on the CPU or a device): its
    /// shape, its length and the labels' count and range.
    pub(crate) fn check_batch(
        &self,
        x: &[T],
        shape: BatchShape,
        labels: Option<&[usize]>,
    ) -> Result<()> {
        let c = self.config.in_channels;
        if shape[1] != c || shape.contains(&0) {
            return Err(Error::shape(
                "resnet",
                "x",
                format!("[N ≥ 1, {c}, H ≥ 1, W ≥ 1]"),
                format!("{shape:?}"),
            ));
        }
        crate::error::check_len("resnet", "x", x.len(), shape.iter().product())?;
        if let Some(l) = labels {
            crate::error::check_len("resnet", "labels", l.len(), shape[0])?;
            let k = self.config.classes;
            if let Some(&bad) = l.iter().find(|&&l| l >= k) {
                return Err(Error::Config(format!(
                    "resnet: label {bad} with {k} classes"
                )));
            }
        }
        Ok(())
    }

    /// One SGD step on the mean cross-entropy of the batch (training mode); the
    /// generic form of [`Trainable::train_step`].
    pub fn sgd_step(
        &mut self,
        x: &[T],
        shape: BatchShape,
        labels: &[usize],
        lr: T,
    ) -> Result<StepStats> {
        self.check_batch(x, shape, Some(labels))?;
        let mut tape = Tape::new();
        let xv = tape.leaf(Tensor::new(&shape, x.to_vec())?, false);
        let (logits, pv) = self.forward(&mut tape, xv, true, true)?;
        let k = self.config.classes;
        let correct = count_correct(tape.value(logits).data(), k, labels);
        let loss = cross_entropy(&mut tape, logits, labels, Reduction::Mean)?;
        let loss_value = tape.value(loss).data()[0].as_f64() as f32;
        tape.backward(loss)?;
        for (i, v) in pv.into_iter().enumerate() {
            if !self.trainable[i] {
                continue;
            }
            let g = tape
                .take_grad(v)
                .unwrap_or_else(|| vec![T::zero(); self.params[i].value.len()]);
            self.sgd
                .update(i, self.params[i].value.data_mut(), &g, lr)?;
        }
        Ok(StepStats {
            loss: loss_value,
            correct,
        })
    }

    /// Writes parameters, buffers, SGD velocity (`optim.velocity.<name>`) and the
    /// configuration (JSON metadata `config`) to `path`, atomically.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Vec<usize>, &[T])> = Vec::new();
        for p in self.params.iter().chain(&self.buffers) {
            tensors.push((p.name.clone(), p.value.shape().to_vec(), p.value.data()));
        }
        for (p, v) in self.params.iter().zip(&self.sgd.velocity) {
            tensors.push((
                format!("optim.velocity.{}", p.name),
                p.value.shape().to_vec(),
                v,
            ));
        }
        let config =
            serde_json::to_string(&self.config).map_err(|e| Error::format(path, e.to_string()))?;
        let meta = HashMap::from([("config".to_string(), config)]);
        crate::checkpoint::save(path, &tensors, meta)
    }

    /// Restores what [`ResNet::save_checkpoint`] wrote. Every tensor must be present
    /// with its shape, and nothing else; every value must be finite and every running
    /// variance non-negative; the model is unchanged on error.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<()> {
        let (file, _) = crate::checkpoint::load::<T>(path)?;
        self.assign(path, file)
    }

    /// Builds the model a checkpoint holds: its configuration (metadata `config`),
    /// then its tensors. The configuration is untrusted: the values it implies
    /// ([`ResNetConfig::value_counts`], plus one SGD velocity per parameter) must be the
    /// values the file holds before anything is allocated for the model.
    pub fn from_checkpoint(path: &Path) -> Result<Self> {
        let (file, meta) = crate::checkpoint::load::<T>(path)?;
        let config = config_of(path, &meta)?;
        let counts = config
            .value_counts()
            .map_err(|e| Error::format(path, format!("config: {e}")))?;
        let implied = counts
            .parameters
            .checked_mul(2)
            .and_then(|v| v.checked_add(counts.buffers));
        let stored: usize = file.values().map(|(_, v)| v.len()).sum();
        if implied != Some(stored) {
            return Err(Error::format(
                path,
                format!(
                    "its config describes a model of {} parameters and {} buffer values \
                     (with SGD velocity, {} values) but the file holds {stored}",
                    counts.parameters,
                    counts.buffers,
                    implied.map_or("more than can be counted".into(), |v| v.to_string())
                ),
            ));
        }
        let mut model = ResNet::new(config, 0)?;
        model.assign(path, file)?;
        Ok(model)
    }

    /// Moves the tensors of `file` (read from `path`) into the model: see
    /// [`ResNet::load_checkpoint`].
    fn assign(&mut self, path: &Path, mut file: crate::checkpoint::TensorMap<T>) -> Result<()> {
        let mut take = |name: &str, shape: &[usize]| -> Result<Vec<T>> {
            let (s, v) = file
                .remove(name)
                .ok_or_else(|| Error::format(path, format!("missing tensor {name}")))?;
            if s != shape {
                return Err(Error::format(
                    path,
                    format!("tensor {name} has shape {s:?}, expected {shape:?}"),
                ));
            }
            Ok(v)
        };
        let params = self
            .params
            .iter()
            .map(|p| take(&p.name, p.value.shape()))
            .collect::<Result<Vec<_>>>()?;
        let buffers = self
            .buffers
            .iter()
            .map(|p| take(&p.name, p.value.shape()))
            .collect::<Result<Vec<_>>>()?;
        let velocity = self
            .params
            .iter()
            .map(|p| take(&format!("optim.velocity.{}", p.name), p.value.shape()))
            .collect::<Result<Vec<_>>>()?;
        if let Some(extra) = file.keys().min() {
            return Err(Error::format(path, format!("unexpected tensor {extra}")));
        }
        for (b, v) in self.buffers.iter().zip(&buffers) {
            let negative = v.iter().position(|x| x.as_f64() < 0.0);
            if let (true, Some(i)) = (b.name.ends_with(".running_var"), negative) {
                return Err(Error::format(
                    path,
                    format!(
                        "tensor {} holds the negative variance {} at index {i}",
                        b.name,
                        v[i].as_f64()
                    ),
                ));
            }
        }
        for (p, v) in self.params.iter_mut().zip(params) {
            p.value.data_mut().copy_from_slice(&v);
        }
        for (p, v) in self.buffers.iter_mut().zip(buffers) {
            p.value.data_mut().copy_from_slice(&v);
        }
        self.sgd.velocity = velocity;
        Ok(())
    }
}

/// The configuration in a checkpoint's metadata.
fn config_of(path: &Path, meta: &HashMap<String, String>) -> Result<ResNetConfig> {
    let json = meta
        .get("config")
        .ok_or_else(|| Error::format(path, "no config in metadata"))?;
    serde_json::from_str(json).map_err(|e| Error::format(path, format!("config: {e}")))
}

fn count_correct<T: Real>(logits: &[T], k: usize, labels: &[usize]) -> usize {
    logits
        .chunks(k)
        .zip(labels)
        .filter(|(row, &l)| {
            let best = (0..k).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            best == l
        })
        .count()
}

impl Classifier for ResNet<f32> {
    fn num_classes(&self) -> usize {
        self.config.classes
    }

    fn logits(&mut self, x: &[f32], shape: BatchShape) -> Result<Vec<f32>> {
        self.check_batch(x, shape, None)?;
        let mut tape = Tape::new();
        let xv = tape.leaf(Tensor::new(&shape, x.to_vec())?, false);
        let (logits, _) = self.forward(&mut tape, xv, false, false)?;
        Ok(tape.value(logits).data().to_vec())
    }

    fn loss_and_input_grad(
        &mut self,
        x: &[f32],
        shape: BatchShape,
        labels: &[usize],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.check_batch(x, shape, Some(labels))?;
        let mut tape = Tape::new();
        let xv = tape.leaf(Tensor::new(&shape, x.to_vec())?, true);
        let (logits, _) = self.forward(&mut tape, xv, false, false)?;
        let (_, losses) = softmax_losses(tape.value(logits).data(), self.config.classes, labels);
        let total = cross_entropy(&mut tape, logits, labels, Reduction::Sum)?;
        tape.backward(total)?;
        let grad = tape.take_grad(xv).unwrap_or_else(|| vec![0.0; x.len()]);
        Ok((losses, grad))
    }

    fn logits_and_input_vjp(
        &mut self,
        x: &[f32],
        shape: BatchShape,
        loss_grad: &mut dyn FnMut(&[f32]) -> Result<Vec<f32>>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.vjp(x, shape, loss_grad)
    }
}

impl ResNet<f32> {
    /// [`Classifier::logits_and_input_vjp`].
    fn vjp(
        &mut self,
        x: &[f32],
        shape: BatchShape,
        loss_grad: &mut dyn FnMut(&[f32]) -> Result<Vec<f32>>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.check_batch(x, shape, None)?;
        let mut tape = Tape::new();
        let xv = tape.leaf(Tensor::new(&shape, x.to_vec())?, true);
        let (logits, _) = self.forward(&mut tape, xv, false, false)?;
        let z = tape.value(logits).data().to_vec();
        let dz = loss_grad(&z)?;
        crate::error::check_len("logits_and_input_vjp", "dlogits", dz.len(), z.len())?;
        tape.backward_with(logits, dz)?;
        let grad = tape.take_grad(xv).unwrap_or_else(|| vec![0.0; x.len()]);
        Ok((z, grad))
    }
}

impl InspectActivations for ResNet<f32> {
    fn activation_maps(
        &mut self,
        x: &[f32],
        shape: BatchShape,
    ) -> Result<Vec<ActivationMaps<f32>>> {
        ResNet::activation_maps(self, x, shape)
    }
}

impl Trainable for ResNet<f32> {
    fn train_step(
        &mut self,
        x: &[f32],
        shape: BatchShape,
        labels: &[usize],
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
