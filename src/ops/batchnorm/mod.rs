//! Batch normalization (affine), NCHW, in training mode (batch statistics) or evaluation
//! mode (running statistics): the tape op and its CPU kernel.
//!
//! The op does not own the running statistics: in training mode it updates the ones it
//! is handed ([`BnStats::Batch`]), in evaluation mode it reads them.
//!
//! ```
//! use sparta::autograd::Tape;
//! use sparta::ops::batchnorm::{batch_norm, BnStats};
//!
//! let mut tape = Tape::<f64>::new();
//! let x = tape.leaf(&[2, 1, 1, 1], vec![1.0, 3.0], false)?;
//! let g = tape.leaf(&[1], vec![1.0], true)?;
//! let b = tape.leaf(&[1], vec![0.0], true)?;
//! let (mut running_mean, mut running_var) = (vec![0.0], vec![1.0]);
//! let stats = BnStats::Batch { running_mean: &mut running_mean, running_var: &mut running_var, momentum: 1.0 };
//! let y = batch_norm(&mut tape, x, g, b, stats, 0.0)?;
//! assert_eq!(tape.value(y), &[-1.0, 1.0]);
//! assert_eq!((running_mean, running_var), (vec![2.0], vec![2.0]));
//! # Ok::<(), sparta::Error>(())
//! ```

pub mod cpu;
pub mod cuda;
pub mod relu;

use crate::autograd::{Nodes, Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::launch::kernel_args::blocks;
use crate::launch::ViewLen;
use crate::ops::LaunchDims;

/// Shape of a batch-normalized tensor `[N, C, H·W]` (`hw = 1` for `[N, C]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnShape {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Pixels per channel plane (1 for `[N, C]` inputs).
    pub hw: usize,
}

impl BnShape {
    /// Checks that every size is at least one.
    pub fn new(n: usize, c: usize, hw: usize) -> Result<Self> {
        if n == 0 || c == 0 || hw == 0 {
            return Err(Error::Config(format!(
                "batch_norm: n {n}, c {c} and h·w {hw} must all be ≥ 1"
            )));
        }
        Ok(BnShape { n, c, hw })
    }

    /// Elements of the tensor.
    pub fn len(&self) -> usize {
        self.n * self.c * self.hw
    }

    /// Never true: every size is at least one.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Threads per block of every kernel in `kernels/batchnorm.cu` (`BN_THREADS` there).
pub const BN_THREADS: u32 = 256;

/// Most blocks of the grid-stride element-wise kernels.
pub const BN_MAX_BLOCKS: usize = 8192;

/// `batchnorm_stats_f32`, `batchnorm_grad_sums_f32`: one block per channel.
pub fn batchnorm_channel_launch(shape: &BnShape) -> LaunchDims {
    LaunchDims {
        grid: (blocks(shape.c, 1), 1, 1),
        block: (BN_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// `batchnorm_forward_f32`, `batchnorm_backward_input_{train,eval}_f32`: grid-stride over
/// the elements.
pub fn batchnorm_elementwise_launch(shape: &BnShape) -> LaunchDims {
    LaunchDims {
        grid: (
            blocks(shape.len(), BN_THREADS as usize).min(BN_MAX_BLOCKS as u32),
            1,
            1,
        ),
        block: (BN_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// What the batch-norm rule needs from a backend.
pub trait BatchNormKernels: Backend {
    /// The batch's per-channel mean and biased variance over N·H·W; the running
    /// statistics blended toward the batch's (mean, unbiased variance) by `momentum`.
    fn bn_batch_stats(
        ctx: &Self::Ctx,
        shape: &BnShape,
        x: &Self::View<'_>,
        running_mean: &mut Self::Buf,
        running_var: &mut Self::Buf,
        momentum: f64,
    ) -> Result<(Self::Buf, Self::Buf)>;

    /// `γ·(x − mean)/√(var + eps) + β` per channel.
    #[allow(clippy::too_many_arguments)]
    fn bn_forward(
        ctx: &Self::Ctx,
        shape: &BnShape,
        x: &Self::View<'_>,
        mean: &Self::View<'_>,
        var: &Self::View<'_>,
        gamma: &Self::View<'_>,
        beta: &Self::View<'_>,
        eps: f64,
    ) -> Result<Self::Buf>;

    /// `dx` when `input` (with batch statistics when `train`, fixed ones otherwise) and
    /// `(dγ, dβ)` when `params`, given `dy` and the statistics the forward used.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn bn_backward(
        ctx: &Self::Ctx,
        shape: &BnShape,
        x: &Self::View<'_>,
        dy: &Self::View<'_>,
        mean: &Self::View<'_>,
        var: &Self::View<'_>,
        gamma: &Self::View<'_>,
        train: bool,
        input: bool,
        params: bool,
        eps: f64,
    ) -> Result<(Option<Self::Buf>, Option<(Self::Buf, Self::Buf)>)>;
}

/// Which statistics normalize the input.
pub enum BnStats<'a, B: Backend> {
    /// Training: the batch's own mean and variance; the running statistics are blended
    /// toward them by `momentum`.
    Batch {
        /// Running mean per channel, updated.
        running_mean: &'a mut B::Buf,
        /// Running (unbiased) variance per channel, updated.
        running_var: &'a mut B::Buf,
        /// Weight of the batch's statistics in the blend.
        momentum: f64,
    },
    /// Evaluation: the running mean and variance.
    Running {
        /// Running mean per channel.
        mean: &'a B::Buf,
        /// Running (unbiased) variance per channel.
        var: &'a B::Buf,
    },
}

/// `y = γ·(x − μ)/√(σ² + eps) + β` per channel of `x [N,C,H,W]` (or `[N,C]`).
pub fn batch_norm<B: BatchNormKernels>(
    tape: &mut Tape<'_, B>,
    x: Var,
    gamma: Var,
    beta: Var,
    stats: BnStats<'_, B>,
    eps: f64,
) -> Result<Var> {
    let rule = Rule {
        forward: B::bn_forward,
        backward: |ctx: &B::Ctx, grad: BnGrad<'_, '_, B>| grad.batch_norm_backward(ctx, &grad.dy),
    };
    push(tape, x, gamma, beta, stats, eps, rule)
}

/// What the backward of a batch-norm op (alone, or fused with what follows it) is
/// given: views of the tape's values and the gradient of the op's output.
pub struct BnGrad<'v, 'a, B: Backend> {
    /// The input's shape.
    pub shape: BnShape,
    /// The op's input.
    pub x: B::View<'v>,
    /// The op's output.
    pub y: B::View<'v>,
    /// The gradient of the op's output.
    pub dy: B::View<'a>,
    /// The mean the forward normalized with.
    pub mean: B::View<'a>,
    /// The variance the forward normalized with (the batch's biased one, or the
    /// running one).
    pub var: B::View<'a>,
    /// γ.
    pub gamma: B::View<'v>,
    /// Batch statistics (training) rather than fixed ones.
    pub train: bool,
    /// Whether to return the input's gradient.
    pub input: bool,
    /// Whether to return `(dγ, dβ)`.
    pub params: bool,
    /// The forward's epsilon.
    pub eps: f64,
}

/// The kernels of a batch-norm op: its forward given the statistics
/// ([`BatchNormKernels::bn_forward`]'s arguments), and its backward.
pub(crate) struct Rule<F, G> {
    pub(crate) forward: F,
    pub(crate) backward: G,
}

impl<B: BatchNormKernels> BnGrad<'_, '_, B> {
    /// [`BatchNormKernels::bn_backward`] with these arguments and the output gradient
    /// `dy`: the op's own, or one that a fused op derived from it.
    pub fn batch_norm_backward(&self, ctx: &B::Ctx, dy: &B::View<'_>) -> Result<BnGrads<B>> {
        B::bn_backward(
            ctx,
            &self.shape,
            &self.x,
            dy,
            &self.mean,
            &self.var,
            &self.gamma,
            self.train,
            self.input,
            self.params,
            self.eps,
        )
    }
}

/// Input and parameter gradients `(dx, (dγ, dβ))` a batch-norm backward returns, each
/// where asked for.
pub type BnGrads<B> = (
    Option<<B as Backend>::Buf>,
    Option<(<B as Backend>::Buf, <B as Backend>::Buf)>,
);

/// Pushes a batch-norm op whose kernels are `rule`: checks the shapes, takes the batch's
/// statistics (updating the running ones) or the running ones, runs the forward, and
/// keeps the statistics for the backward.
#[allow(clippy::type_complexity)]
pub(crate) fn push<B, F, G>(
    tape: &mut Tape<'_, B>,
    x: Var,
    gamma: Var,
    beta: Var,
    stats: BnStats<'_, B>,
    eps: f64,
    rule: Rule<F, G>,
) -> Result<Var>
where
    B: BatchNormKernels,
    F: FnOnce(
        &B::Ctx,
        &BnShape,
        &B::View<'_>,
        &B::View<'_>,
        &B::View<'_>,
        &B::View<'_>,
        &B::View<'_>,
        f64,
    ) -> Result<B::Buf>,
    G: FnOnce(&B::Ctx, BnGrad<'_, '_, B>) -> Result<BnGrads<B>> + 'static,
{
    let xs = tape.shape(x).to_vec();
    if xs.len() < 2 || tape.shape(gamma) != [xs[1]] || tape.shape(beta) != [xs[1]] {
        return Err(Error::shape(
            "batch_norm",
            "x / gamma / beta",
            "x [N,C,…] with gamma, beta [C]",
            format!("{xs:?} / {:?} / {:?}", tape.shape(gamma), tape.shape(beta)),
        ));
    }
    let shape = BnShape::new(xs[0], xs[1], xs[2..].iter().product())?;
    let ctx = tape.ctx();
    let needs_grad = [x, gamma, beta].iter().any(|&v| tape.requires_grad(v));
    let (train, saved, y) = match stats {
        BnStats::Batch {
            running_mean,
            running_var,
            momentum,
        } => {
            let (mean, var) = B::bn_batch_stats(
                ctx,
                &shape,
                &tape.value(x),
                running_mean,
                running_var,
                momentum,
            )?;
            let y = (rule.forward)(
                ctx,
                &shape,
                &tape.value(x),
                &B::view(ctx, &mean),
                &B::view(ctx, &var),
                &tape.value(gamma),
                &tape.value(beta),
                eps,
            )?;
            (true, Some((mean, var)), y)
        }
        BnStats::Running { mean, var } => {
            let (mean, var) = (B::view(ctx, mean), B::view(ctx, var));
            crate::error::check_len("batch_norm", "running mean", mean.len(), shape.c)?;
            crate::error::check_len("batch_norm", "running var", var.len(), shape.c)?;
            let y = (rule.forward)(
                ctx,
                &shape,
                &tape.value(x),
                &mean,
                &var,
                &tape.value(gamma),
                &tape.value(beta),
                eps,
            )?;
            // The backward runs after later layers: it keeps copies of the statistics,
            // made only when there will be a backward.
            let saved = match needs_grad {
                true => Some((B::duplicate(ctx, &mean)?, B::duplicate(ctx, &var)?)),
                false => None,
            };
            (false, saved, y)
        }
    };
    let backward = rule.backward;
    tape.push_op(y, &xs, &[x, gamma, beta], || {
        Box::new(move |nodes: &Nodes<'_, B>, dy: B::Buf| {
            let ctx = nodes.ctx();
            let (mean, var) = saved.as_ref().ok_or_else(|| {
                Error::Config("batch_norm: no statistics saved for the backward".into())
            })?;
            let grad = BnGrad {
                shape,
                x: nodes.value(x),
                y: nodes.output(),
                dy: B::view(ctx, &dy),
                mean: B::view(ctx, mean),
                var: B::view(ctx, var),
                gamma: nodes.value(gamma),
                train,
                input: nodes.requires_grad(x),
                params: nodes.requires_grad(gamma) || nodes.requires_grad(beta),
                eps,
            };
            let (dx, dp) = backward(ctx, grad)?;
            let mut grads = Vec::new();
            if let Some(dx) = dx {
                grads.push((x, dx));
            }
            if let Some((dgamma, dbeta)) = dp {
                if nodes.requires_grad(gamma) {
                    grads.push((gamma, dgamma));
                }
                if nodes.requires_grad(beta) {
                    grads.push((beta, dbeta));
                }
            }
            Ok(grads)
        })
    })
}
