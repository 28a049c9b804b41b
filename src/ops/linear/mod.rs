//! Fully connected layer `y = x·Wᵀ + b`, `x [N,I]`, `W [O,I]`, `b [O]`.
//!
//! ```
//! use sparta::autograd::Tape;
//! use sparta::tensor::Tensor;
//!
//! let mut tape = Tape::<f32>::new();
//! let x = tape.leaf(Tensor::new(&[1, 2], vec![1.0, 2.0])?, false);
//! let w = tape.leaf(Tensor::new(&[1, 2], vec![3.0, 4.0])?, true);
//! let b = tape.leaf(Tensor::new(&[1], vec![0.5])?, true);
//! let y = sparta::ops::linear::linear(&mut tape, x, w, b)?;
//! assert_eq!(tape.value(y).data(), &[11.5]);
//! # Ok::<(), sparta::Error>(())
//! ```

use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};
use crate::gemm::{gemm, Op};
use crate::real::Real;
use crate::tensor::Tensor;

/// `x·Wᵀ + b`.
pub fn linear<T: Real>(tape: &mut Tape<T>, x: Var, weight: Var, bias: Var) -> Result<Var> {
    let (xs, ws, bs) = (tape.shape(x), tape.shape(weight), tape.shape(bias));
    if xs.len() != 2 || ws.len() != 2 || ws[1] != xs[1] || bs != [ws[0]] {
        return Err(Error::shape(
            "linear",
            "x / weight / bias",
            "x [N,I], weight [O,I], bias [O]",
            format!("{xs:?} / {ws:?} / {bs:?}"),
        ));
    }
    let (n, i, o) = (xs[0], xs[1], ws[0]);
    let mut y: Vec<T> = tape
        .value(bias)
        .data()
        .iter()
        .copied()
        .cycle()
        .take(n * o)
        .collect();
    gemm(
        n,
        o,
        i,
        T::one(),
        tape.value(x).data(),
        Op::N,
        tape.value(weight).data(),
        Op::T,
        T::one(),
        &mut y,
    );
    let y = Tensor::new(&[n, o], y)?;
    Ok(tape.push_op(y, &[x, weight, bias], || {
        Box::new(move |nodes, dy| {
            let mut grads = Vec::new();
            if nodes.requires_grad(x) {
                let mut dx = vec![T::zero(); n * i];
                gemm(
                    n,
                    i,
                    o,
                    T::one(),
                    dy,
                    Op::N,
                    nodes.value(weight).data(),
                    Op::N,
                    T::zero(),
                    &mut dx,
                );
                grads.push((x, dx));
            }
            if nodes.requires_grad(weight) {
                let mut dw = vec![T::zero(); o * i];
                gemm(
                    o,
                    i,
                    n,
                    T::one(),
                    dy,
                    Op::T,
                    nodes.value(x).data(),
                    Op::N,
                    T::zero(),
                    &mut dw,
                );
                grads.push((weight, dw));
            }
            if nodes.requires_grad(bias) {
                let mut db = vec![T::zero(); o];
                dy.chunks(o)
                    .for_each(|r| db.iter_mut().zip(r).for_each(|(d, &g)| *d += g));
                grads.push((bias, db));
            }
            Ok(grads)
        })
    }))
}
