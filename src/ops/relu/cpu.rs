//! ReLU on the CPU, element-wise over rayon pieces; the loops vectorize (a select each).

use crate::error::{check_len, Result};
use crate::ops::par::{for_each_piece, Slot};
use crate::Real;

/// `y = max(x, 0)`, with NaN propagated (a NaN input gives a NaN output).
///
/// ```
/// let x = [-1.0f32, 0.0, 2.5];
/// let mut y = [9.0f32; 3];
/// sparta::ops::relu::cpu::relu_forward(&x, &mut y)?;
/// assert_eq!(y, [0.0, 0.0, 2.5]);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn relu_forward<T: Real>(x: &[T], y: &mut [T]) -> Result<()> {
    check_len("relu_forward", "y", y.len(), x.len())?;
    relu_forward_into(x, y);
    Ok(())
}

/// [`relu_forward`] into any [`Slot`]s, one per element of `x`.
///
/// # Panics
/// If `y` and `x` differ in length (the public functions check first).
pub(crate) fn relu_forward_into<T: Real, O: Slot<T>>(x: &[T], y: &mut [O]) {
    assert_eq!(y.len(), x.len(), "relu_forward: y");
    let zero = T::zero();
    for_each_piece(y, |off, y| {
        let x = &x[off..off + y.len()];
        for (y, &x) in y.iter_mut().zip(x) {
            y.put(if x < zero { zero } else { x });
        }
    });
}

/// `dx = dy · [x > 0]`: the gradient at exactly `x = 0` is taken as 0, the usual ReLU
/// convention (the SPARTA gate uses `[x ≥ 0]` instead, as the paper does).
///
/// ```
/// let x = [-1.0f64, 0.0, 2.5];
/// let dy = [1.0f64, 1.0, 3.0];
/// let mut dx = [9.0f64; 3];
/// sparta::ops::relu::cpu::relu_backward(&x, &dy, &mut dx)?;
/// assert_eq!(dx, [0.0, 0.0, 3.0]);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn relu_backward<T: Real>(x: &[T], dy: &[T], dx: &mut [T]) -> Result<()> {
    check_len("relu_backward", "dy", dy.len(), x.len())?;
    check_len("relu_backward", "dx", dx.len(), x.len())?;
    relu_backward_into(x, dy, dx);
    Ok(())
}

/// [`relu_backward`] into any [`Slot`]s, one per element of `x`.
///
/// # Panics
/// If `dy` or `dx` differ from `x` in length (the public functions check first).
pub(crate) fn relu_backward_into<T: Real, O: Slot<T>>(x: &[T], dy: &[T], dx: &mut [O]) {
    assert_eq!(
        (dy.len(), dx.len()),
        (x.len(), x.len()),
        "relu_backward: dy, dx"
    );
    let zero = T::zero();
    for_each_piece(dx, |off, dx| {
        let x = &x[off..off + dx.len()];
        let dy = &dy[off..off + dx.len()];
        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
            dx.put(if x > zero { dy } else { zero });
        }
    });
}
