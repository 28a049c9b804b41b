//! Input normalization `y = (x − mean[c]) / std[c]` with constant statistics: the first
//! layer of a model whose inputs live in [0, 1] (attacks work in that space).
//!
//! ```
//! use sparta::autograd::Tape;
//!
//! let mut tape = Tape::<f32>::new();
//! let x = tape.leaf(&[1, 1, 1, 2], vec![0.5, 1.0], true)?;
//! let mean = tape.leaf(&[1], vec![0.5], false)?;
//! let std = tape.leaf(&[1], vec![0.25], false)?;
//! let y = sparta::ops::normalize::normalize(&mut tape, x, mean, std)?;
//! assert_eq!(tape.value(y), &[0.0, 2.0]);
//! # Ok::<(), sparta::Error>(())
//! ```

pub mod cuda;

use crate::autograd::{Nodes, Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::ops::batchnorm::cpu::affine;
use crate::ops::kernel_args::blocks;
use crate::ops::LaunchDims;
use crate::real::Real;

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

/// What the normalization rule needs from a backend.
pub trait NormalizeKernels: Backend {
    /// `(x − mean[c]) / std[c]` over `x [N, c, hw]`.
    fn normalize_forward(
        ctx: &Self::Ctx,
        c: usize,
        hw: usize,
        x: &Self::View<'_>,
        mean: &Self::View<'_>,
        std: &Self::View<'_>,
    ) -> Result<Self::Buf>;
    /// `dy / std[c]`.
    fn normalize_backward(
        ctx: &Self::Ctx,
        c: usize,
        hw: usize,
        dy: &Self::View<'_>,
        std: &Self::View<'_>,
    ) -> Result<Self::Buf>;
}

/// Per-channel `(x − mean) / std` on `x [N,C,H,W]`, with `mean` and `std` `[C]` nodes
/// (a model's constants, no gradient).
pub fn normalize<B: NormalizeKernels>(
    tape: &mut Tape<'_, B>,
    x: Var,
    mean: Var,
    std: Var,
) -> Result<Var> {
    let xs = tape.shape(x).to_vec();
    if xs.len() != 4 || tape.shape(mean) != [xs[1]] || tape.shape(std) != [xs[1]] {
        return Err(Error::shape(
            "normalize",
            "x / mean / std",
            "x [N,C,H,W] with mean, std [C]",
            format!("{xs:?} / {:?} / {:?}", tape.shape(mean), tape.shape(std)),
        ));
    }
    let (c, hw) = (xs[1], xs[2] * xs[3]);
    let ctx = tape.ctx();
    let y = B::normalize_forward(
        ctx,
        c,
        hw,
        &tape.value(x),
        &tape.value(mean),
        &tape.value(std),
    )?;
    tape.push_op(y, &xs, &[x], || {
        Box::new(move |nodes: &Nodes<'_, B>, dy: B::Buf| {
            let ctx = nodes.ctx();
            let dx = B::normalize_backward(ctx, c, hw, &B::view(ctx, &dy), &nodes.value(std))?;
            Ok(vec![(x, dx)])
        })
    })
}

impl<T: Real> NormalizeKernels for T {
    fn normalize_forward(
        _: &(),
        c: usize,
        hw: usize,
        x: &&[T],
        mean: &&[T],
        std: &&[T],
    ) -> Result<Vec<T>> {
        let scale: Vec<T> = std.iter().map(|&s| T::one() / s).collect();
        let shift: Vec<T> = mean.iter().zip(&scale).map(|(&m, &s)| -m * s).collect();
        Ok(affine(x, c, hw, &scale, &shift))
    }

    fn normalize_backward(_: &(), c: usize, hw: usize, dy: &&[T], std: &&[T]) -> Result<Vec<T>> {
        let scale: Vec<T> = std.iter().map(|&s| T::one() / s).collect();
        Ok(affine(dy, c, hw, &scale, &vec![T::zero(); c]))
    }
}
