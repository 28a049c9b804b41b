//! Activations as plug-ins of a model's activation slots.
//!
//! An activation spec ([`crate::nn::spec`]) names an [`ActivationKind`] per slot: plain
//! data, with no element type and no weights. Building it for a slot of C channels
//! ([`ActivationKind::build`]) draws its learned tensors and gives an
//! [`AnyActivation`], whose [`Activation::forward`] pushes the activation on a tape of
//! any backend. A model's wiring holds slots and calls `forward`; it names no
//! activation (but for running a batch norm and a ReLU after it as one op).
//!
//! Adding an activation (docs/architecture.md#a-new-activation): its op folder under
//! `src/ops/` (CPU kernel, CUDA wrapper, tape rule over a kernels trait), its kernels
//! trait added to [`ActivationKernels`], a variant of [`ActivationKind`] and of
//! [`AnyActivation`] with their arms in this file, and its name in the spec parser.
//!
//! ```
//! use rand::SeedableRng;
//! use sparta::autograd::Tape;
//! use sparta::nn::activation::{Activation, ActivationKind};
//! use sparta::ops::pointwise::Pointwise;
//!
//! let kind = ActivationKind::Sparta { dpnet: true, block: 1, frozen: false };
//! let built = kind.build::<f64>(4, &mut rand::rngs::StdRng::seed_from_u64(0));
//! assert_eq!(built.activation.name(), "sparta");
//! assert_eq!(built.params.len(), kind.param_shapes(4).len());
//!
//! let mut tape = Tape::<f64>::new();
//! let params = built
//!     .params
//!     .into_iter()
//!     .map(|p| tape.leaf(&p.shape, p.values, true))
//!     .collect::<Result<Vec<_>, _>>()?;
//! let x = tape.leaf(&[1, 4, 2, 2], vec![0.5; 16], true)?;
//! let y = built.activation.forward(&mut tape, x, &params)?;
//! assert_eq!(tape.shape(y), &[1, 4, 2, 2]);
//!
//! let relu = ActivationKind::Pointwise(Pointwise::Relu).build::<f64>(4, &mut rand::rngs::StdRng::seed_from_u64(0));
//! assert!(relu.params.is_empty());
//! # Ok::<(), sparta::Error>(())
//! ```

use std::rc::Rc;

use rand::rngs::StdRng;

use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::nn::sparta::{SpartaConfig, SpartaLayer};
use crate::nn::sparta_node::{sparta, SpartaKernels};
use crate::ops::pointwise::tape::{pointwise, PointwiseKernels};
use crate::ops::pointwise::Pointwise;
use crate::real::Real;

/// The kernels every activation needs from a backend.
pub trait ActivationKernels: PointwiseKernels + SpartaKernels {}

impl<B> ActivationKernels for B where B: PointwiseKernels + SpartaKernels {}

/// An activation as a slot runs it: `y = act(x)` on a tape, with its learned tensors.
pub trait Activation<T: Real> {
    /// The name specs and reports use (`relu`, `sparta`); it also names the learned
    /// tensors in checkpoints (`layer1.0.sparta.conv1.weight`).
    fn name(&self) -> &'static str;

    /// Pushes the activation of `x [N, C, H, W]`; `params` are the handles of its learned
    /// tensors on the tape, in the order [`ActivationKind::param_shapes`] gives.
    fn forward<B: ActivationKernels<Real = T>>(
        &self,
        tape: &mut Tape<'_, B>,
        x: Var,
        params: &[Var],
    ) -> Result<Var>;
}

impl<T: Real> Activation<T> for Pointwise {
    fn name(&self) -> &'static str {
        Pointwise::name(*self)
    }

    fn forward<B: ActivationKernels<Real = T>>(
        &self,
        tape: &mut Tape<'_, B>,
        x: Var,
        _params: &[Var],
    ) -> Result<Var> {
        pointwise(tape, x, *self)
    }
}

impl<T: Real> Activation<T> for Rc<SpartaLayer<T>> {
    fn name(&self) -> &'static str {
        SPARTA
    }

    fn forward<B: ActivationKernels<Real = T>>(
        &self,
        tape: &mut Tape<'_, B>,
        x: Var,
        params: &[Var],
    ) -> Result<Var> {
        sparta(tape, x, self, params)
    }
}

const SPARTA: &str = "sparta";

/// Which activation a slot holds, as a spec names it: one variant per activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationKind {
    /// A parameter-free elementwise activation: ReLU and the smooth baselines.
    Pointwise(Pointwise),
    /// A SPARTA layer as wide as its slot ([`SpartaConfig`]'s other fields).
    Sparta {
        /// DPNet on (false: SPARTA-w/o-DPNet).
        dpnet: bool,
        /// SANet block size B ≥ 1.
        block: usize,
        /// Its weights stay fixed during training.
        frozen: bool,
    },
}

/// One learned tensor of an activation: its name within the activation, its shape
/// (PyTorch's) and its initial values.
#[derive(Clone, Debug, PartialEq)]
pub struct LearnedTensor<T> {
    /// Name within the activation (`conv1.weight`).
    pub name: &'static str,
    /// Shape.
    pub shape: Vec<usize>,
    /// Initial values.
    pub values: Vec<T>,
}

/// An activation built for one slot: what its forward needs, and its learned tensors.
#[derive(Clone, Debug)]
pub struct BuiltActivation<T: Real> {
    /// What the slot runs.
    pub activation: AnyActivation<T>,
    /// Its learned tensors with their initial values, in forward order.
    pub params: Vec<LearnedTensor<T>>,
    /// Whether training updates them.
    pub trainable: bool,
}

/// Every built activation a slot can hold: one variant per activation, each forwarding
/// to its [`Activation`] implementation.
#[derive(Clone, Debug)]
pub enum AnyActivation<T: Real> {
    /// See [`ActivationKind::Pointwise`].
    Pointwise(Pointwise),
    /// See [`ActivationKind::Sparta`]; the layer supplies the configuration, its weights
    /// live in the model's parameter list.
    Sparta(Rc<SpartaLayer<T>>),
}

impl<T: Real> Activation<T> for AnyActivation<T> {
    fn name(&self) -> &'static str {
        match self {
            AnyActivation::Pointwise(p) => Activation::<T>::name(p),
            AnyActivation::Sparta(l) => l.name(),
        }
    }

    fn forward<B: ActivationKernels<Real = T>>(
        &self,
        tape: &mut Tape<'_, B>,
        x: Var,
        params: &[Var],
    ) -> Result<Var> {
        match self {
            AnyActivation::Pointwise(p) => p.forward(tape, x, params),
            AnyActivation::Sparta(l) => l.forward(tape, x, params),
        }
    }
}

impl ActivationKind {
    /// The plain SPARTA layer: DPNet on, B = 1, trainable.
    pub const SPARTA: ActivationKind = ActivationKind::Sparta {
        dpnet: true,
        block: 1,
        frozen: false,
    };

    /// The name specs and reports use, as [`Activation::name`].
    pub fn name(&self) -> &'static str {
        match self {
            ActivationKind::Pointwise(p) => Pointwise::name(*p),
            ActivationKind::Sparta { .. } => SPARTA,
        }
    }

    /// Names and shapes of its learned tensors in a slot of `channels` channels.
    pub fn param_shapes(&self, channels: usize) -> Vec<(&'static str, Vec<usize>)> {
        match *self {
            ActivationKind::Pointwise(_) => Vec::new(),
            ActivationKind::Sparta {
                dpnet,
                block,
                frozen,
            } => sparta_config(channels, dpnet, block, frozen).param_shapes(),
        }
    }

    /// Builds it for a slot of `channels` channels, drawing its initial weights from
    /// `rng`.
    pub fn build<T: Real>(&self, channels: usize, rng: &mut StdRng) -> BuiltActivation<T> {
        match *self {
            ActivationKind::Pointwise(p) => BuiltActivation {
                activation: AnyActivation::Pointwise(p),
                params: Vec::new(),
                trainable: true,
            },
            ActivationKind::Sparta {
                dpnet,
                block,
                frozen,
            } => {
                let layer = SpartaLayer::new(sparta_config(channels, dpnet, block, frozen), rng);
                let params = layer
                    .params()
                    .into_iter()
                    .map(|(name, values, shape)| LearnedTensor {
                        name,
                        shape,
                        values: values.to_vec(),
                    })
                    .collect();
                BuiltActivation {
                    activation: AnyActivation::Sparta(Rc::new(layer)),
                    params,
                    trainable: !frozen,
                }
            }
        }
    }
}

fn sparta_config(channels: usize, dpnet: bool, block: usize, frozen: bool) -> SpartaConfig {
    SpartaConfig {
        channels,
        dpnet,
        block,
        frozen,
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn built_tensors_match_the_declared_shapes() {
        let mut rng = StdRng::seed_from_u64(0);
        for kind in [
            ActivationKind::Pointwise(Pointwise::Gelu),
            ActivationKind::SPARTA,
            ActivationKind::Sparta {
                dpnet: false,
                block: 2,
                frozen: true,
            },
        ] {
            let built = kind.build::<f32>(8, &mut rng);
            let shapes: Vec<_> = built
                .params
                .iter()
                .map(|p| (p.name, p.shape.clone()))
                .collect();
            assert_eq!(shapes, kind.param_shapes(8), "{kind:?}");
            for p in &built.params {
                assert_eq!(
                    p.values.len(),
                    p.shape.iter().product::<usize>(),
                    "{}",
                    p.name
                );
            }
            assert_eq!(built.activation.name(), kind.name());
            assert_eq!(
                built.trainable,
                !matches!(kind, ActivationKind::Sparta { frozen: true, .. })
            );
        }
    }
}
