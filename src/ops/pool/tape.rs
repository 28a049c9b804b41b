//! Average pooling as tape ops, over [`PoolKernels`]: the CPU functions of [`super::cpu`]
//! on the host, the kernels of [`super::cuda`] on a device.

use super::PoolShape;
use crate::autograd::{Nodes, Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};

/// What the pooling rules need from a backend.
pub trait PoolKernels: Backend {
    /// The block means of `x`.
    fn pool_forward(ctx: &Self::Ctx, shape: &PoolShape, x: &Self::View<'_>) -> Result<Self::Buf>;
    /// The input gradient of the block means.
    fn pool_backward(ctx: &Self::Ctx, shape: &PoolShape, dy: &Self::View<'_>) -> Result<Self::Buf>;
}

fn pool_op<B: PoolKernels>(
    tape: &mut Tape<'_, B>,
    x: Var,
    shape: PoolShape,
    out: &[usize],
) -> Result<Var> {
    let y = B::pool_forward(tape.ctx(), &shape, &tape.value(x))?;
    tape.push_op(y, out, &[x], || {
        Box::new(move |nodes: &Nodes<'_, B>, dy: B::Buf| {
            let ctx = nodes.ctx();
            Ok(vec![(
                x,
                B::pool_backward(ctx, &shape, &B::view(ctx, &dy))?,
            )])
        })
    })
}

fn dims(shape: &[usize], op: &'static str) -> Result<[usize; 4]> {
    match *shape {
        [n, c, h, w] => Ok([n, c, h, w]),
        ref s => Err(Error::shape(op, "x", "[N,C,H,W]", format!("{s:?}"))),
    }
}

/// Mean over H·W of each `(n, c)` plane: `[N,C,H,W] → [N,C]`.
///
/// ```
/// use sparta::autograd::Tape;
///
/// let mut tape = Tape::<f32>::new();
/// let x = tape.leaf(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 6.0], false)?;
/// let p = sparta::ops::pool::global_avg_pool(&mut tape, x)?;
/// assert_eq!(tape.value(p), &[3.0]);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn global_avg_pool<B: PoolKernels>(tape: &mut Tape<'_, B>, x: Var) -> Result<Var> {
    let [n, c, h, w] = dims(tape.shape(x), "global_avg_pool")?;
    pool_op(tape, x, PoolShape::global(n * c, h, w)?, &[n, c])
}

/// Mean over `b×b` blocks: `[N,C,H,W] → [N,C,⌈H/b⌉,⌈W/b⌉]` (edge blocks average their
/// valid pixels).
pub fn avg_pool<B: PoolKernels>(tape: &mut Tape<'_, B>, x: Var, b: usize) -> Result<Var> {
    let [n, c, h, w] = dims(tape.shape(x), "avg_pool")?;
    let shape = PoolShape::new(n * c, h, w, b)?;
    pool_op(tape, x, shape, &[n, c, shape.oh(), shape.ow()])
}
