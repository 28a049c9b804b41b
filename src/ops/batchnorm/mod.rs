//! Batch normalization (affine), NCHW, in training mode (batch statistics) or evaluation
//! mode (running statistics): the tape op and its CPU kernel.
//!
//! The op does not own the running statistics; in training mode it returns the batch
//! mean and the unbiased variance so the layer can update them.
//!
//! ```
//! use sparta::autograd::Tape;
//! use sparta::ops::batchnorm::{batch_norm, BnMode};
//! use sparta::tensor::Tensor;
//!
//! let mut tape = Tape::<f64>::new();
//! let x = tape.leaf(Tensor::new(&[2, 1, 1, 1], vec![1.0, 3.0])?, false);
//! let g = tape.leaf(Tensor::new(&[1], vec![1.0])?, true);
//! let b = tape.leaf(Tensor::new(&[1], vec![0.0])?, true);
//! let (y, stats) = batch_norm(&mut tape, x, g, b, BnMode::Train, 0.0)?;
//! assert_eq!(tape.value(y).data(), &[-1.0, 1.0]);
//! assert_eq!(stats.unwrap().mean, vec![2.0]);
//! # Ok::<(), sparta::Error>(())
//! ```

pub mod cpu;
pub mod cuda;

use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};
use crate::ops::kernel_args::blocks;
use crate::ops::LaunchDims;
use crate::real::Real;
use crate::tensor::Tensor;

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

/// Which statistics normalize the input.
#[derive(Clone, Copy, Debug)]
pub enum BnMode<'a, T> {
    /// The batch's own mean and variance.
    Train,
    /// The running mean and variance (evaluation).
    Eval {
        /// Running mean per channel.
        mean: &'a [T],
        /// Running (unbiased) variance per channel.
        var: &'a [T],
    },
}

/// Statistics of a training-mode batch, for the running averages.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchStats<T> {
    /// Per-channel mean.
    pub mean: Vec<T>,
    /// Per-channel unbiased variance (N·H·W − 1 in the denominator).
    pub var_unbiased: Vec<T>,
}

/// `y = γ·(x − μ)/√(σ² + eps) + β` per channel of `x [N,C,H,W]` (or `[N,C]`).
pub fn batch_norm<T: Real>(
    tape: &mut Tape<T>,
    x: Var,
    gamma: Var,
    beta: Var,
    mode: BnMode<'_, T>,
    eps: f64,
) -> Result<(Var, Option<BatchStats<T>>)> {
    let xs = tape.shape(x).to_vec();
    if xs.len() < 2 || tape.shape(gamma) != [xs[1]] || tape.shape(beta) != [xs[1]] {
        return Err(Error::shape(
            "batch_norm",
            "x / gamma / beta",
            "x [N,C,…] with gamma, beta [C]",
            format!("{xs:?} / {:?} / {:?}", tape.shape(gamma), tape.shape(beta)),
        ));
    }
    let (n, c) = (xs[0], xs[1]);
    let hw: usize = xs[2..].iter().product();
    let eps = T::of_f64(eps);
    let xv = tape.value(x).data();
    let (mean, var, stats) = match mode {
        BnMode::Train => {
            let (mean, var) = cpu::batch_stats(xv, n, c, hw);
            let m = (n * hw) as f64;
            let bessel = T::of_f64(if m > 1.0 { m / (m - 1.0) } else { 1.0 });
            let stats = BatchStats {
                mean: mean.clone(),
                var_unbiased: var.iter().map(|&v| v * bessel).collect(),
            };
            (mean, var, Some(stats))
        }
        BnMode::Eval { mean, var } => {
            crate::error::check_len("batch_norm", "running mean", mean.len(), c)?;
            crate::error::check_len("batch_norm", "running var", var.len(), c)?;
            (mean.to_vec(), var.to_vec(), None)
        }
    };
    let invstd: Vec<T> = var.iter().map(|&v| T::one() / (v + eps).sqrt()).collect();
    let gv = tape.value(gamma).data();
    let scale: Vec<T> = gv.iter().zip(&invstd).map(|(&g, &s)| g * s).collect();
    let shift: Vec<T> = (0..c)
        .map(|i| tape.value(beta).data()[i] - mean[i] * scale[i])
        .collect();
    let y = Tensor::new(&xs, cpu::affine(xv, c, hw, &scale, &shift))?;
    let train = stats.is_some();
    let out = tape.push_op(y, &[x, gamma, beta], || {
        Box::new(move |nodes, dy| {
            let xv = nodes.value(x).data();
            let (rx, rg, rb) = (
                nodes.requires_grad(x),
                nodes.requires_grad(gamma),
                nodes.requires_grad(beta),
            );
            // Evaluation-mode input gradients (PGD) need no reductions at all.
            let (sum_dy, sum_dy_xhat) = if (train && rx) || rg || rb {
                cpu::grad_sums(xv, dy, n, c, hw, &mean, &invstd)
            } else {
                (Vec::new(), Vec::new())
            };
            let mut grads = Vec::new();
            if rx {
                let dx = if train {
                    let gv = nodes.value(gamma).data();
                    cpu::train_input_grad(
                        xv,
                        dy,
                        c,
                        hw,
                        n * hw,
                        gv,
                        &mean,
                        &invstd,
                        &sum_dy,
                        &sum_dy_xhat,
                    )
                } else {
                    cpu::affine(dy, c, hw, &scale, &vec![T::zero(); c])
                };
                grads.push((x, dx));
            }
            if rg {
                grads.push((gamma, sum_dy_xhat));
            }
            if rb {
                grads.push((beta, sum_dy));
            }
            Ok(grads)
        })
    });
    Ok((out, stats))
}
