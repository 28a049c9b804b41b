//! Average pooling as tape ops, over the CPU functions of [`super::cpu`].

use super::{cpu, PoolShape};
use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};
use crate::real::Real;
use crate::tensor::Tensor;

fn pool_op<T: Real>(tape: &mut Tape<T>, x: Var, shape: PoolShape, out: &[usize]) -> Result<Var> {
    let mut y = vec![T::zero(); shape.out_len()];
    cpu::pool_forward(&shape, tape.value(x).data(), &mut y)?;
    let y = Tensor::new(out, y)?;
    Ok(tape.push_op(y, &[x], || {
        Box::new(move |_, dy| {
            let mut dx = vec![T::zero(); shape.in_len()];
            cpu::pool_backward(&shape, dy, &mut dx)?;
            Ok(vec![(x, dx)])
        })
    }))
}

fn dims<T: Real>(tape: &Tape<T>, x: Var, op: &'static str) -> Result<[usize; 4]> {
    match *tape.shape(x) {
        [n, c, h, w] => Ok([n, c, h, w]),
        ref s => Err(Error::shape(op, "x", "[N,C,H,W]", format!("{s:?}"))),
    }
}

/// Mean over H·W of each `(n, c)` plane: `[N,C,H,W] → [N,C]`.
///
/// ```
/// use sparta::autograd::Tape;
/// use sparta::tensor::Tensor;
///
/// let mut tape = Tape::<f32>::new();
/// let x = tape.leaf(Tensor::new(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 6.0])?, false);
/// let p = sparta::ops::pool::global_avg_pool(&mut tape, x)?;
/// assert_eq!(tape.value(p).data(), &[3.0]);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn global_avg_pool<T: Real>(tape: &mut Tape<T>, x: Var) -> Result<Var> {
    let [n, c, h, w] = dims(tape, x, "global_avg_pool")?;
    pool_op(tape, x, PoolShape::global(n * c, h, w)?, &[n, c])
}

/// Mean over `b×b` blocks: `[N,C,H,W] → [N,C,⌈H/b⌉,⌈W/b⌉]` (edge blocks average their
/// valid pixels).
pub fn avg_pool<T: Real>(tape: &mut Tape<T>, x: Var, b: usize) -> Result<Var> {
    let [n, c, h, w] = dims(tape, x, "avg_pool")?;
    let shape = PoolShape::new(n * c, h, w, b)?;
    pool_op(tape, x, shape, &[n, c, shape.oh(), shape.ow()])
}
