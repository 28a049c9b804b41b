//! Elementwise addition of two same-shaped tensors (residual connections), and the sum
//! of all elements (a scalar root for tests).
//!
//! ```
//! use sparta::autograd::Tape;
//! use sparta::ops::add::{add, sum};
//!
//! let mut tape = Tape::<f32>::new();
//! let a = tape.leaf(&[2], vec![1.0, 2.0], true)?;
//! let b = tape.leaf(&[2], vec![3.0, 4.0], false)?;
//! let c = add(&mut tape, a, b)?;
//! let s = sum(&mut tape, c)?;
//! assert_eq!(tape.value(s), &[10.0]);
//! # Ok::<(), sparta::Error>(())
//! ```

pub mod cuda;

use crate::autograd::{Nodes, Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::ops::kernel_args::blocks;
use crate::ops::LaunchDims;
use crate::real::Real;

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

/// `a + b` ([`Backend::add`]); the backward hands `dy` itself to one input and a copy
/// to the other only when both need it.
pub fn add<B: Backend>(tape: &mut Tape<'_, B>, a: Var, b: Var) -> Result<Var> {
    if tape.shape(a) != tape.shape(b) {
        return Err(Error::shape(
            "add",
            "b",
            format!("{:?}", tape.shape(a)),
            format!("{:?}", tape.shape(b)),
        ));
    }
    let y = B::add(tape.ctx(), &tape.value(a), &tape.value(b))?;
    let shape = tape.shape(a).to_vec();
    tape.push_op(y, &shape, &[a, b], || {
        Box::new(move |nodes: &Nodes<'_, B>, dy: B::Buf| {
            let ctx = nodes.ctx();
            let mut grads = Vec::new();
            if nodes.requires_grad(a) && nodes.requires_grad(b) {
                grads.push((b, B::duplicate(ctx, &B::view(ctx, &dy))?));
                grads.push((a, dy));
            } else if let Some(v) = [a, b].into_iter().find(|&v| nodes.requires_grad(v)) {
                grads.push((v, dy));
            }
            Ok(grads)
        })
    })
}

/// The sum of all elements, as a one-element tensor (a scalar root for tests, on the
/// host).
pub fn sum<T: Real>(tape: &mut Tape<'_, T>, x: Var) -> Result<Var> {
    let len = tape.value(x).len();
    let s = tape.value(x).iter().copied().sum::<T>();
    tape.push_op(vec![s], &[1], &[x], || {
        Box::new(move |_: &Nodes<'_, T>, dy: Vec<T>| Ok(vec![(x, vec![dy[0]; len])]))
    })
}
