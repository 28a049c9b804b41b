//! Softmax cross-entropy of logits `[N,K]` against class labels, summed or averaged
//! over the batch.
//!
//! ```
//! use sparta::autograd::Tape;
//! use sparta::ops::loss::{cross_entropy, Reduction};
//! use sparta::tensor::Tensor;
//!
//! let mut tape = Tape::<f64>::new();
//! let z = tape.leaf(Tensor::new(&[1, 2], vec![0.0, 0.0])?, true);
//! let l = cross_entropy(&mut tape, z, &[1], Reduction::Mean)?;
//! assert!((tape.value(l).data()[0] - 2f64.ln()).abs() < 1e-12);
//! # Ok::<(), sparta::Error>(())
//! ```

pub mod cuda;

use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};
use crate::ops::kernel_args::blocks;
use crate::ops::LaunchDims;
use crate::real::Real;
use crate::tensor::Tensor;

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

/// Cross-entropy of `logits [N,K]` against `labels` (each `< K`), reduced to a scalar.
pub fn cross_entropy<T: Real>(
    tape: &mut Tape<T>,
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
    let (n, k) = (zs[0], zs[1]);
    if let Some(&bad) = labels.iter().find(|&&l| l >= k) {
        return Err(Error::Config(format!(
            "cross_entropy: label {bad} with {k} classes"
        )));
    }
    let (probs, losses) = softmax_losses(tape.value(logits).data(), k, labels);
    let scale = match reduction {
        Reduction::Mean => T::one() / T::of_f64(n.max(1) as f64),
        Reduction::Sum => T::one(),
    };
    let total = losses.iter().copied().sum::<T>() * scale;
    let labels = labels.to_vec();
    Ok(
        tape.push_op(Tensor::new(&[1], vec![total])?, &[logits], || {
            Box::new(move |_, dy| {
                let mut d = probs;
                for (row, &label) in d.chunks_mut(k).zip(&labels) {
                    row[label] -= T::one();
                    row.iter_mut().for_each(|v| *v *= dy[0] * scale);
                }
                Ok(vec![(logits, d)])
            })
        }),
    )
}
