//! Average pooling: over the whole plane (`[N,C,H,W] → [N,C]`, the classifier head and
//! SPARTA's spatial pool) and over non-overlapping B×B blocks (SPARTA's block size).
//!
//! ```
//! use sparta::autograd::Tape;
//! use sparta::tensor::Tensor;
//!
//! let mut tape = Tape::<f32>::new();
//! let x = tape.leaf(Tensor::new(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 6.0])?, false);
//! let p = sparta::ops::pool::global_avg_pool(&mut tape, x)?;
//! assert_eq!(tape.value(p).data(), &[3.0]);
//! # Ok::<(), sparta::Error>(())
//! ```

use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};
use crate::real::Real;
use crate::tensor::Tensor;

/// Mean over H·W of each `(n, c)` plane.
pub fn global_avg_pool<T: Real>(tape: &mut Tape<T>, x: Var) -> Result<Var> {
    let xs = tape.shape(x).to_vec();
    if xs.len() != 4 {
        return Err(Error::shape(
            "global_avg_pool",
            "x",
            "[N,C,H,W]",
            format!("{xs:?}"),
        ));
    }
    let hw = xs[2] * xs[3];
    let inv = T::one() / T::of_f64(hw as f64);
    let y: Vec<T> = tape
        .value(x)
        .data()
        .chunks(hw)
        .map(|p| p.iter().copied().sum::<T>() * inv)
        .collect();
    let y = Tensor::new(&xs[..2], y)?;
    Ok(tape.push_op(y, &[x], || {
        Box::new(move |_, dy| {
            Ok(vec![(
                x,
                dy.iter()
                    .flat_map(|&g| std::iter::repeat_n(g * inv, hw))
                    .collect(),
            )])
        })
    }))
}

/// Mean over non-overlapping `b×b` blocks: `[N,C,H,W] → [N,C,H/b,W/b]` (H, W divisible by b).
pub fn avg_pool<T: Real>(tape: &mut Tape<T>, x: Var, b: usize) -> Result<Var> {
    let xs = tape.shape(x).to_vec();
    if xs.len() != 4 || b == 0 || xs[2] % b != 0 || xs[3] % b != 0 {
        return Err(Error::shape(
            "avg_pool",
            "x",
            format!("[N,C,H,W] with H and W divisible by {b}"),
            format!("{xs:?}"),
        ));
    }
    let (h, w) = (xs[2], xs[3]);
    let (ho, wo) = (h / b, w / b);
    let planes = xs[0] * xs[1];
    let inv = T::one() / T::of_f64((b * b) as f64);
    let xv = tape.value(x).data();
    let mut y = vec![T::zero(); planes * ho * wo];
    for p in 0..planes {
        for iy in 0..h {
            for ix in 0..w {
                y[(p * ho + iy / b) * wo + ix / b] += xv[(p * h + iy) * w + ix] * inv;
            }
        }
    }
    let y = Tensor::new(&[xs[0], xs[1], ho, wo], y)?;
    Ok(tape.push_op(y, &[x], || {
        Box::new(move |_, dy| {
            let mut dx = vec![T::zero(); planes * h * w];
            for p in 0..planes {
                for iy in 0..h {
                    for ix in 0..w {
                        dx[(p * h + iy) * w + ix] = dy[(p * ho + iy / b) * wo + ix / b] * inv;
                    }
                }
            }
            Ok(vec![(x, dx)])
        })
    }))
}
