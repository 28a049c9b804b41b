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

use crate::autograd::{Nodes, Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::launch::ViewLen;
use crate::ops::kernel_args::blocks;
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
            let y = B::bn_forward(
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
            let y = B::bn_forward(
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
    tape.push_op(y, &xs, &[x, gamma, beta], || {
        Box::new(move |nodes: &Nodes<'_, B>, dy: B::Buf| {
            let ctx = nodes.ctx();
            let (mean, var) = saved.as_ref().ok_or_else(|| {
                Error::Config("batch_norm: no statistics saved for the backward".into())
            })?;
            let (dx, dp) = B::bn_backward(
                ctx,
                &shape,
                &nodes.value(x),
                &B::view(ctx, &dy),
                &B::view(ctx, mean),
                &B::view(ctx, var),
                &nodes.value(gamma),
                train,
                nodes.requires_grad(x),
                nodes.requires_grad(gamma) || nodes.requires_grad(beta),
                eps,
            )?;
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
