//! The pointwise activations as a tape op, over the CPU functions of [`super::cpu`].

use super::Pointwise;
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::real::Real;
use crate::tensor::Tensor;

/// Elementwise `kind(x)` on the tape; the backward keeps only x.
///
/// ```
/// use sparta::autograd::Tape;
/// use sparta::ops::pointwise::{tape::pointwise, Pointwise};
/// use sparta::tensor::Tensor;
///
/// let mut tape = Tape::<f64>::new();
/// let x = tape.leaf(Tensor::new(&[2], vec![0.0, 1.0])?, true);
/// let y = pointwise(&mut tape, x, Pointwise::Softplus)?;
/// assert!((tape.value(y).data()[0] - 2f64.ln()).abs() < 1e-15);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn pointwise<T: Real>(tape: &mut Tape<T>, x: Var, kind: Pointwise) -> Result<Var> {
    let mut y = vec![T::zero(); tape.value(x).len()];
    super::cpu::forward(kind, tape.value(x).data(), &mut y)?;
    let y = Tensor::new(tape.shape(x), y)?;
    Ok(tape.push_op(y, &[x], || {
        Box::new(move |nodes, dy| {
            let xv = nodes.value(x).data();
            let mut dx = vec![T::zero(); xv.len()];
            super::cpu::backward(kind, xv, dy, &mut dx)?;
            Ok(vec![(x, dx)])
        })
    }))
}
