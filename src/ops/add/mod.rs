//! Elementwise addition of two same-shaped tensors (residual connections), and the sum
//! of all elements (a scalar root for tests).
//!
//! ```
//! use sparta::autograd::Tape;
//! use sparta::ops::add::{add, sum};
//! use sparta::tensor::Tensor;
//!
//! let mut tape = Tape::<f32>::new();
//! let a = tape.leaf(Tensor::new(&[2], vec![1.0, 2.0])?, true);
//! let b = tape.leaf(Tensor::new(&[2], vec![3.0, 4.0])?, false);
//! let c = add(&mut tape, a, b)?;
//! let s = sum(&mut tape, c)?;
//! assert_eq!(tape.value(s).data(), &[10.0]);
//! # Ok::<(), sparta::Error>(())
//! ```

use rayon::prelude::*;

pub mod cuda;

use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};
use crate::ops::kernel_args::blocks;
use crate::ops::LaunchDims;
use crate::real::Real;
use crate::tensor::Tensor;

/// Threads per block of `add_forward_f32`.
pub const ADD_THREADS: u32 = 256;

/// Most blocks of `add_forward_f32` (it is grid-stride).
pub const ADD_MAX_BLOCKS: u32 = 8192;

/// `add_forward_f32` over `len` elements: grid-stride.
pub fn add_launch(len: usize) -> LaunchDims {
    LaunchDims {
        grid: (blocks(len, ADD_THREADS as usize).min(ADD_MAX_BLOCKS), 1, 1),
        block: (ADD_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// `a + b`.
pub fn add<T: Real>(tape: &mut Tape<T>, a: Var, b: Var) -> Result<Var> {
    if tape.shape(a) != tape.shape(b) {
        return Err(Error::shape(
            "add",
            "b",
            format!("{:?}", tape.shape(a)),
            format!("{:?}", tape.shape(b)),
        ));
    }
    let mut y = tape.value(a).data().to_vec();
    y.par_chunks_mut(1 << 14)
        .zip(tape.value(b).data().par_chunks(1 << 14))
        .for_each(|(y, b)| y.iter_mut().zip(b).for_each(|(y, &b)| *y += b));
    let y = Tensor::new(tape.shape(a), y)?;
    Ok(tape.push_op(y, &[a, b], || {
        Box::new(move |nodes, dy| {
            Ok([a, b]
                .into_iter()
                .filter(|&v| nodes.requires_grad(v))
                .map(|v| (v, dy.to_vec()))
                .collect())
        })
    }))
}

/// The sum of all elements, as a one-element tensor.
pub fn sum<T: Real>(tape: &mut Tape<T>, x: Var) -> Result<Var> {
    let len = tape.value(x).len();
    let s = tape.value(x).data().iter().copied().sum::<T>();
    Ok(tape.push_op(Tensor::new(&[1], vec![s])?, &[x], || {
        Box::new(move |_, dy| Ok(vec![(x, vec![dy[0]; len])]))
    }))
}
