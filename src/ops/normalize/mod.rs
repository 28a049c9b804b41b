//! Input normalization `y = (x − mean[c]) / std[c]` with constant statistics: the first
//! layer of a model whose inputs live in [0, 1] (attacks work in that space).
//!
//! ```
//! use sparta::autograd::Tape;
//! use sparta::tensor::Tensor;
//!
//! let mut tape = Tape::<f32>::new();
//! let x = tape.leaf(Tensor::new(&[1, 1, 1, 2], vec![0.5, 1.0])?, true);
//! let y = sparta::ops::normalize::normalize(&mut tape, x, &[0.5], &[0.25])?;
//! assert_eq!(tape.value(y).data(), &[0.0, 2.0]);
//! # Ok::<(), sparta::Error>(())
//! ```

pub mod cuda;

use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};
use crate::ops::kernel_args::blocks;
use crate::ops::LaunchDims;
use crate::real::Real;
use crate::tensor::Tensor;

/// Threads per block of the kernels in `kernels/normalize.cu`.
pub const NORMALIZE_THREADS: u32 = 256;

/// Most blocks of the grid-stride normalize kernels.
pub const NORMALIZE_MAX_BLOCKS: u32 = 8192;

/// `normalize_forward_f32`, `normalize_backward_f32` over `len` elements: grid-stride.
pub fn normalize_launch(len: usize) -> LaunchDims {
    LaunchDims {
        grid: (
            blocks(len, NORMALIZE_THREADS as usize).min(NORMALIZE_MAX_BLOCKS),
            1,
            1,
        ),
        block: (NORMALIZE_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// Per-channel `(x − mean) / std` on `x [N,C,H,W]`.
pub fn normalize<T: Real>(tape: &mut Tape<T>, x: Var, mean: &[f32], std: &[f32]) -> Result<Var> {
    let xs = tape.shape(x).to_vec();
    if xs.len() != 4 || mean.len() != xs[1] || std.len() != xs[1] {
        return Err(Error::shape(
            "normalize",
            "x / mean / std",
            format!("x [N,C,H,W] and {} means and stds", mean.len()),
            format!("{xs:?} / {} / {}", mean.len(), std.len()),
        ));
    }
    let (c, hw) = (xs[1], xs[2] * xs[3]);
    let scale: Vec<T> = std.iter().map(|&s| T::one() / T::of_f32(s)).collect();
    let shift: Vec<T> = mean
        .iter()
        .zip(&scale)
        .map(|(&m, &s)| -T::of_f32(m) * s)
        .collect();
    let y = crate::ops::batchnorm::cpu::affine(tape.value(x).data(), c, hw, &scale, &shift);
    let y = Tensor::new(&xs, y)?;
    Ok(tape.push_op(y, &[x], || {
        Box::new(move |_, dy| {
            let zeros = vec![T::zero(); c];
            Ok(vec![(
                x,
                crate::ops::batchnorm::cpu::affine(dy, c, hw, &scale, &zeros),
            )])
        })
    }))
}
