//! The pointwise activations (ReLU among them) on the tape, over [`PointwiseKernels`]:
//! the CPU functions of [`super::cpu`] on the host, the kernels of [`super::cuda`] on a
//! device.

use super::Pointwise;
use crate::autograd::{Nodes, Tape, Var};
use crate::backend::Backend;
use crate::error::Result;

/// What the pointwise rule needs from a backend.
pub trait PointwiseKernels: Backend {
    /// `kind(x)`.
    fn pointwise_forward(ctx: &Self::Ctx, kind: Pointwise, x: &Self::View<'_>)
        -> Result<Self::Buf>;
    /// `dy · kind'(x)`.
    fn pointwise_backward(
        ctx: &Self::Ctx,
        kind: Pointwise,
        x: &Self::View<'_>,
        dy: &Self::View<'_>,
    ) -> Result<Self::Buf>;
}

/// Elementwise `kind(x)` on the tape; the backward keeps only x.
///
/// ```
/// use sparta::autograd::Tape;
/// use sparta::ops::pointwise::{tape::pointwise, Pointwise};
///
/// let mut tape = Tape::<f64>::new();
/// let x = tape.leaf(&[2], vec![0.0, 1.0], true)?;
/// let y = pointwise(&mut tape, x, Pointwise::Softplus)?;
/// assert!((tape.value(y)[0] - 2f64.ln()).abs() < 1e-15);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn pointwise<B: PointwiseKernels>(
    tape: &mut Tape<'_, B>,
    x: Var,
    kind: Pointwise,
) -> Result<Var> {
    let y = B::pointwise_forward(tape.ctx(), kind, &tape.value(x))?;
    let shape = tape.shape(x).to_vec();
    tape.push_op(y, &shape, &[x], || {
        Box::new(move |nodes: &Nodes<'_, B>, dy: B::Buf| {
            let ctx = nodes.ctx();
            let dx = B::pointwise_backward(ctx, kind, &nodes.value(x), &B::view(ctx, &dy))?;
            Ok(vec![(x, dx)])
        })
    })
}
