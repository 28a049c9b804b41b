//! ReLU as a tape op: the pointwise rule with [`Pointwise::Relu`].

use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::ops::pointwise::tape::{pointwise, PointwiseKernels};
use crate::ops::pointwise::Pointwise;

/// Elementwise `max(x, 0)` on the tape.
///
/// ```
/// use sparta::autograd::Tape;
///
/// let mut tape = Tape::<f32>::new();
/// let x = tape.leaf(&[2], vec![-1.0, 2.0], false)?;
/// let y = sparta::ops::relu::relu(&mut tape, x)?;
/// assert_eq!(tape.value(y), &[0.0, 2.0]);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn relu<B: PointwiseKernels>(tape: &mut Tape<'_, B>, x: Var) -> Result<Var> {
    pointwise(tape, x, Pointwise::Relu)
}
