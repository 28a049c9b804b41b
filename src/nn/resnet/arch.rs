//! A ResNet's wiring ([`Arch`]: which parameters each layer uses, in forward order) and
//! one forward pass of it on a tape ([`Pass`]), written once for every backend.

use crate::autograd::{Tape, Var};
use crate::backend::Backend;
use crate::classifier::ActivationMaps;
use crate::error::Result;
use crate::nn::activation::{Activation, ActivationKernels, AnyActivation};
use crate::ops::batchnorm::relu::{batch_norm_relu, BatchNormReluKernels};
use crate::ops::batchnorm::{batch_norm, BnStats};
use crate::ops::conv2d::{conv2d, Conv2dKernels};
use crate::ops::fc::{linear, FcKernels};
use crate::ops::normalize::{normalize, NormalizeKernels};
use crate::ops::pointwise::Pointwise;
use crate::ops::pool::{global_avg_pool, PoolKernels};
use crate::real::Real;

/// The backends a ResNet runs on: every kernel its layers and activations use.
pub trait ResNetBackend:
    NormalizeKernels
    + Conv2dKernels
    + BatchNormReluKernels
    + ActivationKernels
    + PoolKernels
    + FcKernels
{
}

impl<B> ResNetBackend for B where
    B: NormalizeKernels
        + Conv2dKernels
        + BatchNormReluKernels
        + ActivationKernels
        + PoolKernels
        + FcKernels
{
}

/// Batch-norm epsilon, as PyTorch's.
pub(crate) const BN_EPS: f64 = 1e-5;
/// Weight of a batch's statistics in the running ones, as PyTorch's.
pub(crate) const BN_MOMENTUM: f64 = 0.1;

/// Parameter and buffer indices of one batch norm.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bn {
    pub(crate) gamma: usize,
    pub(crate) beta: usize,
    pub(crate) mean: usize,
    pub(crate) var: usize,
}

/// An activation slot: what it runs, and the indices of its learned tensors in the
/// model's parameter list.
#[derive(Clone, Debug)]
pub(crate) struct ActivationSlot<T: Real> {
    pub(crate) activation: AnyActivation<T>,
    pub(crate) params: Vec<usize>,
}

#[derive(Clone, Debug)]
pub(crate) struct Block {
    /// Its parameters' prefix in the checkpoint, `layer{group}.{index}`.
    pub(crate) name: String,
    /// Whether it is the last block of its group.
    pub(crate) last_in_group: bool,
    pub(crate) conv1: usize,
    pub(crate) bn1: Bn,
    pub(crate) conv2: usize,
    pub(crate) bn2: Bn,
    pub(crate) shortcut: Option<(usize, Bn)>,
    pub(crate) stride: usize,
    /// The slot of its post-residual activation.
    pub(crate) act: usize,
}

/// The network's wiring: which parameters each layer uses, in forward order.
#[derive(Clone, Debug)]
pub(crate) struct Arch {
    /// The slot of the activations after the stem and inside the blocks.
    pub(crate) base: usize,
    pub(crate) stem: (usize, Bn),
    pub(crate) blocks: Vec<Block>,
    pub(crate) fc: (usize, usize),
}

/// `(block, input, output)` of each block's post-residual activation, in block order.
pub(crate) type Observed = Vec<(usize, Var, Var)>;

/// One forward pass on a tape: the parameters' handles, the mode, and the running
/// statistics a training pass updates.
pub(crate) struct Pass<'p, 't, B: ResNetBackend> {
    pub(crate) tape: &'p mut Tape<'t, B>,
    /// A handle per model parameter, then the normalization's mean and std.
    pub(crate) pv: Vec<Var>,
    pub(crate) train: bool,
    pub(crate) running: &'p mut [B::Buf],
    pub(crate) activations: &'p [ActivationSlot<B::Real>],
}

impl<B: ResNetBackend> Pass<'_, '_, B> {
    fn conv2d(&mut self, x: Var, weight: usize, stride: usize, pad: usize) -> Result<Var> {
        conv2d(self.tape, x, self.pv[weight], stride, pad)
    }

    fn bn(&mut self, x: Var, bn: Bn) -> Result<Var> {
        let (gamma, beta) = (self.pv[bn.gamma], self.pv[bn.beta]);
        let stats = bn_stats::<B>(self.running, self.train, bn);
        batch_norm(self.tape, x, gamma, beta, stats, BN_EPS)
    }

    fn activation(&mut self, x: Var, slot: usize) -> Result<Var> {
        let slot = &self.activations[slot];
        let params: Vec<Var> = slot.params.iter().map(|&j| self.pv[j]).collect();
        slot.activation.forward(self.tape, x, &params)
    }

    /// `bn` and then the activation of `slot`: one op where that is a ReLU (the same
    /// values, fewer passes over memory: `ops/batchnorm/relu.rs`).
    fn bn_activation(&mut self, x: Var, bn: Bn, slot: usize) -> Result<Var> {
        if matches!(
            self.activations[slot].activation,
            AnyActivation::Pointwise(Pointwise::Relu)
        ) {
            let (gamma, beta) = (self.pv[bn.gamma], self.pv[bn.beta]);
            let stats = bn_stats::<B>(self.running, self.train, bn);
            return batch_norm_relu(self.tape, x, gamma, beta, stats, BN_EPS);
        }
        let h = self.bn(x, bn)?;
        self.activation(h, slot)
    }
}

/// The statistics `bn` normalizes with: the batch's in a training pass (updating the
/// running ones in `running`), else the running ones.
fn bn_stats<B: Backend>(running: &mut [B::Buf], train: bool, bn: Bn) -> BnStats<'_, B> {
    let (mean, var) = two_mut(running, bn.mean, bn.var);
    match train {
        true => BnStats::Batch {
            running_mean: mean,
            running_var: var,
            momentum: BN_MOMENTUM,
        },
        false => BnStats::Running { mean, var },
    }
}

/// `v[i]` and `v[j]` mutably, for distinct `i` and `j` (a batch norm's running mean and
/// variance).
fn two_mut<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert_ne!(i, j, "a batch norm's mean and variance are two buffers");
    if i < j {
        let (a, b) = v.split_at_mut(j);
        (&mut a[i], &mut b[0])
    } else {
        let (a, b) = v.split_at_mut(i);
        (&mut b[0], &mut a[j])
    }
}

impl Arch {
    /// Pushes the forward pass of the images `x` and returns the logits; notes each
    /// block's post-residual activation in `observed` when given.
    pub(crate) fn forward<B: ResNetBackend>(
        &self,
        l: &mut Pass<'_, '_, B>,
        x: Var,
        mut observed: Option<&mut Observed>,
    ) -> Result<Var> {
        let n = l.pv.len() - 2;
        let h = normalize(l.tape, x, l.pv[n], l.pv[n + 1])?;
        let h = l.conv2d(h, self.stem.0, 1, 1)?;
        let mut h = l.bn_activation(h, self.stem.1, self.base)?;
        for (k, blk) in self.blocks.iter().enumerate() {
            let o = l.conv2d(h, blk.conv1, blk.stride, 1)?;
            let o = l.bn_activation(o, blk.bn1, self.base)?;
            let o = l.conv2d(o, blk.conv2, 1, 1)?;
            let o = l.bn(o, blk.bn2)?;
            let short = match blk.shortcut {
                Some((conv, bn)) => {
                    let s = l.conv2d(h, conv, blk.stride, 0)?;
                    l.bn(s, bn)?
                }
                None => h,
            };
            let sum = crate::ops::add::add(l.tape, o, short)?;
            h = l.activation(sum, blk.act)?;
            if let Some(observed) = observed.as_deref_mut() {
                observed.push((k, sum, h));
            }
        }
        let p = global_avg_pool(l.tape, h)?;
        linear(l.tape, p, l.pv[self.fc.0], l.pv[self.fc.1])
    }

    /// The maps of the `observed` activations (of the model whose slots are
    /// `activations`), each tensor's shape and values read by `read` from the tape the
    /// pass ran on.
    pub(crate) fn observed_maps<A: Real, T>(
        &self,
        observed: Observed,
        activations: &[ActivationSlot<A>],
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
                    activation: activations[blk.act].activation.name().to_string(),
                    shape: [dims[0], dims[1], dims[2], dims[3]],
                    input,
                    output,
                })
            })
            .collect()
    }
}
