//! The linear layer `y = x·Wᵀ + b` (`x [N,I]`, `W [O,I]`, `b [O]`) on the tape, over
//! [`FcKernels`]: the CPU functions of [`super::cpu`] on the host, the kernels of
//! [`super::cuda`] on a device.

use super::FcShape;
use crate::autograd::{Nodes, Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};

/// What the linear rule needs from a backend.
pub trait FcKernels: Backend {
    /// `x·Wᵀ + b`.
    fn fc_forward(
        ctx: &Self::Ctx,
        shape: &FcShape,
        x: &Self::View<'_>,
        w: &Self::View<'_>,
        b: &Self::View<'_>,
    ) -> Result<Self::Buf>;

    /// `dx = dy·W` when `input`; `(dw, db) = (dyᵀ·x, Σ_n dy)` when `params`.
    #[allow(clippy::type_complexity)]
    fn fc_backward(
        ctx: &Self::Ctx,
        shape: &FcShape,
        x: &Self::View<'_>,
        w: &Self::View<'_>,
        dy: &Self::View<'_>,
        input: bool,
        params: bool,
    ) -> Result<(Option<Self::Buf>, Option<(Self::Buf, Self::Buf)>)>;
}

/// `x·Wᵀ + b`.
///
/// ```
/// use sparta::autograd::Tape;
///
/// let mut tape = Tape::<f32>::new();
/// let x = tape.leaf(&[1, 2], vec![1.0, 2.0], false)?;
/// let w = tape.leaf(&[1, 2], vec![3.0, 4.0], true)?;
/// let b = tape.leaf(&[1], vec![0.5], true)?;
/// let y = sparta::ops::fc::linear(&mut tape, x, w, b)?;
/// assert_eq!(tape.value(y), &[11.5]);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn linear<B: FcKernels>(tape: &mut Tape<'_, B>, x: Var, weight: Var, bias: Var) -> Result<Var> {
    let (xs, ws, bs) = (tape.shape(x), tape.shape(weight), tape.shape(bias));
    if xs.len() != 2 || ws.len() != 2 || ws[1] != xs[1] || bs != [ws[0]] {
        return Err(Error::shape(
            "linear",
            "x / weight / bias",
            "x [N,I], weight [O,I], bias [O]",
            format!("{xs:?} / {ws:?} / {bs:?}"),
        ));
    }
    let fs = FcShape::new(xs[0], xs[1], ws[0])?;
    let ctx = tape.ctx();
    let y = B::fc_forward(
        ctx,
        &fs,
        &tape.value(x),
        &tape.value(weight),
        &tape.value(bias),
    )?;
    tape.push_op(y, &[fs.n, fs.out], &[x, weight, bias], || {
        Box::new(move |nodes: &Nodes<'_, B>, dy: B::Buf| {
            let ctx = nodes.ctx();
            let params = nodes.requires_grad(weight) || nodes.requires_grad(bias);
            let (dx, dp) = B::fc_backward(
                ctx,
                &fs,
                &nodes.value(x),
                &nodes.value(weight),
                &B::view(ctx, &dy),
                nodes.requires_grad(x),
                params,
            )?;
            let mut grads = Vec::new();
            if let Some(dx) = dx {
                grads.push((x, dx));
            }
            if let Some((dw, db)) = dp {
                if nodes.requires_grad(weight) {
                    grads.push((weight, dw));
                }
                if nodes.requires_grad(bias) {
                    grads.push((bias, db));
                }
            }
            Ok(grads)
        })
    })
}
