//! ReLU, `y = max(x, 0)`, with `dy · [x > 0]` as its gradient.
//!
//! ```
//! use sparta::autograd::Tape;
//! use sparta::tensor::Tensor;
//!
//! let mut tape = Tape::<f32>::new();
//! let x = tape.leaf(Tensor::new(&[2], vec![-1.0, 2.0])?, false);
//! let y = sparta::ops::relu::relu(&mut tape, x)?;
//! assert_eq!(tape.value(y).data(), &[0.0, 2.0]);
//! # Ok::<(), sparta::Error>(())
//! ```

pub mod cpu;

use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::real::Real;
use crate::tensor::Tensor;

/// Elementwise ReLU.
pub fn relu<T: Real>(tape: &mut Tape<T>, x: Var) -> Result<Var> {
    let y = Tensor::new(tape.shape(x), cpu::forward(tape.value(x).data()))?;
    Ok(tape.push_op(y, &[x], || {
        Box::new(move |nodes, dy| Ok(vec![(x, cpu::backward(nodes.value(x).data(), dy))]))
    }))
}
