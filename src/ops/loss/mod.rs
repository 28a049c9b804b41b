//! Softmax cross-entropy of logits `[N,K]` against class labels, summed or averaged
//! over the batch.
//!
//! ```
//! use sparta::autograd::Tape;
//! use sparta::ops::loss::{cross_entropy, Reduction};
//!
//! let mut tape = Tape::<f64>::new();
//! let z = tape.leaf(&[1, 2], vec![0.0, 0.0], true)?;
//! let l = cross_entropy(&mut tape, z, &[1], Reduction::Mean)?;
//! assert!((tape.value(l)[0] - 2f64.ln()).abs() < 1e-12);
//! # Ok::<(), sparta::Error>(())
//! ```

pub mod cuda;

use crate::autograd::{Nodes, Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::ops::kernel_args::blocks;
use crate::ops::LaunchDims;
use crate::real::Real;

/// How per-sample losses combine into the scalar the tape differentiates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// Mean over the batch (training).
    Mean,
    /// Sum over the batch (per-sample input gradients for attacks).
    Sum,
}

/// Rows (one warp each) per block of `cross_entropy_rows_f32` (`CE_ROWS_PER_BLOCK`).
pub const CE_ROWS_PER_BLOCK: usize = 8;

/// Threads per block of `cross_entropy_reduce_f32` (`CE_REDUCE_THREADS`).
pub const CE_REDUCE_THREADS: u32 = 256;

/// `cross_entropy_rows_f32`: one warp per row of logits.
pub fn cross_entropy_rows_launch(n: usize) -> LaunchDims {
    LaunchDims {
        grid: (blocks(n, CE_ROWS_PER_BLOCK), 1, 1),
        block: (32 * CE_ROWS_PER_BLOCK as u32, 1, 1),
        shared_bytes: 0,
    }
}

/// `cross_entropy_reduce_f32`: one block sums the whole batch.
pub fn cross_entropy_reduce_launch() -> LaunchDims {
    LaunchDims {
        grid: (1, 1, 1),
        block: (CE_REDUCE_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// Softmax probabilities of each row and the per-sample losses `−log p[label]`.
pub fn softmax_losses<T: Real>(logits: &[T], k: usize, labels: &[usize]) -> (Vec<T>, Vec<T>) {
    let mut probs = vec![T::zero(); logits.len()];
    let mut losses = Vec::with_capacity(labels.len());
    for ((row, p), &label) in logits.chunks(k).zip(probs.chunks_mut(k)).zip(labels) {
        let max = row.iter().copied().fold(T::neg_infinity(), T::max);
        let mut z = T::zero();
        for (p, &v) in p.iter_mut().zip(row) {
            *p = (v - max).exp();
            z += *p;
        }
        p.iter_mut().for_each(|p| *p /= z);
        losses.push(z.ln() + max - row[label]);
    }
    (probs, losses)
}

/// Cross-entropy of `logits [N,K]` against `labels` (each `< K`), reduced to a scalar:
/// a tape op on the host (the finite-difference tests' objective). Models take the
/// loss's gradient from [`LossKernels::cross_entropy`] instead, on any backend.
pub fn cross_entropy<T: Real>(
    tape: &mut Tape<'_, T>,
    logits: Var,
    labels: &[usize],
    reduction: Reduction,
) -> Result<Var> {
    let zs = tape.shape(logits).to_vec();
    if zs.len() != 2 || labels.len() != zs[0] {
        return Err(Error::shape(
            "cross_entropy",
            "logits / labels",
            format!("logits [N,K] and N labels ({} labels)", labels.len()),
            format!("{zs:?}"),
        ));
    }
    let k = zs[1];
    check_labels(labels, k)?;
    let labels = labels.to_vec();
    let loss = T::cross_entropy(&(), zs[0], k, &tape.value(logits), &labels, reduction)?;
    tape.push_op(loss.total, &[1], &[logits], || {
        let dlogits = loss.dlogits;
        Box::new(move |_: &Nodes<'_, T>, dy: Vec<T>| {
            Ok(vec![(logits, dlogits.iter().map(|&d| d * dy[0]).collect())])
        })
    })
}

fn check_labels(labels: &[usize], classes: usize) -> Result<()> {
    match labels.iter().find(|&&l| l >= classes) {
        Some(&bad) => Err(Error::Config(format!(
            "cross_entropy: label {bad} with {classes} classes"
        ))),
        None => Ok(()),
    }
}

/// What one cross-entropy evaluation leaves on a backend: read only what is needed.
pub struct CrossEntropy<B: LossKernels> {
    /// Per-sample losses `[N]`.
    pub rows: B::Buf,
    /// The gradient of the reduced loss with respect to the logits `[N, K]`.
    pub dlogits: B::Buf,
    /// The reduced loss `[1]`.
    pub total: B::Buf,
    /// The number of samples whose first largest logit is the label.
    pub correct: B::Count,
}

/// What models need from a backend to take the loss of their logits.
pub trait LossKernels: Backend {
    /// Class labels, on the backend.
    type Labels;
    /// A count, on the backend.
    type Count;
    /// `labels` on the backend (each checked `< classes`).
    fn upload_labels(ctx: &Self::Ctx, labels: &[usize], classes: usize) -> Result<Self::Labels>;
    /// Softmax cross-entropy of `logits [n, classes]`, reduced as `reduction` says.
    fn cross_entropy(
        ctx: &Self::Ctx,
        n: usize,
        classes: usize,
        logits: &Self::View<'_>,
        labels: &Self::Labels,
        reduction: Reduction,
    ) -> Result<CrossEntropy<Self>>;
    /// A count's value, once every queued kernel has finished.
    fn read_count(ctx: &Self::Ctx, count: &Self::Count) -> Result<usize>;
}

impl<T: Real> LossKernels for T {
    type Labels = Vec<usize>;
    type Count = usize;

    fn upload_labels(_: &(), labels: &[usize], classes: usize) -> Result<Vec<usize>> {
        check_labels(labels, classes)?;
        Ok(labels.to_vec())
    }

    fn cross_entropy(
        _: &(),
        n: usize,
        classes: usize,
        logits: &&[T],
        labels: &Vec<usize>,
        reduction: Reduction,
    ) -> Result<CrossEntropy<T>> {
        crate::error::check_len("cross_entropy", "logits", logits.len(), n * classes)?;
        crate::error::check_len("cross_entropy", "labels", labels.len(), n)?;
        let (probs, rows) = softmax_losses(logits, classes, labels);
        let scale = match reduction {
            Reduction::Mean => T::one() / T::of_f64(n.max(1) as f64),
            Reduction::Sum => T::one(),
        };
        let total = rows.iter().copied().sum::<T>() * scale;
        let mut dlogits = probs;
        for (row, &label) in dlogits.chunks_mut(classes).zip(labels) {
            row[label] -= T::one();
            row.iter_mut().for_each(|v| *v *= scale);
        }
        let correct = logits
            .chunks(classes)
            .zip(labels)
            .filter(|(row, &l)| {
                let best = (0..classes).fold(0, |b, j| if row[j] > row[b] { j } else { b });
                best == l
            })
            .count();
        Ok(CrossEntropy {
            rows,
            dlogits,
            total: vec![total],
            correct,
        })
    }

    fn read_count(_: &(), count: &usize) -> Result<usize> {
        Ok(*count)
    }
}
