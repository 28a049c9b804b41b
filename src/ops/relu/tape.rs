//! ReLU as a tape op, over the CPU functions of [`super::cpu`].

use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::real::Real;
use crate::tensor::Tensor;

/// Elementwise `max(x, 0)` on the tape.
///
/// ```
/// use sparta::autograd::Tape;
/// use sparta::tensor::Tensor;
///
/// let mut tape = Tape::<f32>::new();
/// let x = tape.leaf(Tensor::new(&[2], vec![-1.0, 2.0])?, false);
/// let y = sparta::ops::relu::relu(&mut tape, x)?;
/// assert_eq!(tape.value(y).data(), &[0.0, 2.0]);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn relu<T: Real>(tape: &mut Tape<T>, x: Var) -> Result<Var> {
    let mut y = vec![T::zero(); tape.value(x).len()];
    super::cpu::relu_forward(tape.value(x).data(), &mut y)?;
    let y = Tensor::new(tape.shape(x), y)?;
    Ok(tape.push_op(y, &[x], || {
        Box::new(move |nodes, dy| {
            let xv = nodes.value(x).data();
            let mut dx = vec![T::zero(); xv.len()];
            super::cpu::relu_backward(xv, dy, &mut dx)?;
            Ok(vec![(x, dx)])
        })
    }))
}
