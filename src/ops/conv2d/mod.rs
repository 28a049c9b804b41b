//! 2-D convolution (square kernel, no bias), NCHW: the tape op and its CPU kernel.
//!
//! ```
//! use sparta::autograd::Tape;
//! use sparta::ops::conv2d::conv2d;
//! use sparta::tensor::Tensor;
//!
//! let mut tape = Tape::<f32>::new();
//! let x = tape.leaf(Tensor::new(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0])?, false);
//! let w = tape.leaf(Tensor::new(&[1, 1, 1, 1], vec![2.0])?, true);
//! let y = conv2d(&mut tape, x, w, 1, 0)?;
//! assert_eq!(tape.value(y).data(), &[2.0, 4.0, 6.0, 8.0]);
//! # Ok::<(), sparta::Error>(())
//! ```

pub mod cpu;

pub use cpu::ConvGeom;

use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};
use crate::real::Real;
use crate::tensor::Tensor;

/// `conv2d(x [N,Ci,H,W], weight [Co,Ci,K,K])` with `stride` and zero `pad`.
pub fn conv2d<T: Real>(
    tape: &mut Tape<T>,
    x: Var,
    weight: Var,
    stride: usize,
    pad: usize,
) -> Result<Var> {
    let (xs, ws) = (tape.shape(x), tape.shape(weight));
    if xs.len() != 4 || ws.len() != 4 || ws[1] != xs[1] || ws[2] != ws[3] {
        return Err(Error::shape(
            "conv2d",
            "x / weight",
            "x [N,C,H,W] and weight [Co,C,K,K]",
            format!("{xs:?} / {ws:?}"),
        ));
    }
    if stride == 0 || xs[2] + 2 * pad < ws[2] || xs[3] + 2 * pad < ws[2] {
        return Err(Error::Config(format!(
            "conv2d: kernel {} with stride {stride}, padding {pad} does not fit {xs:?}",
            ws[2]
        )));
    }
    let g = ConvGeom {
        n: xs[0],
        c_in: xs[1],
        h: xs[2],
        w: xs[3],
        c_out: ws[0],
        k: ws[2],
        stride,
        pad,
    };
    let y = cpu::forward(&g, tape.value(x).data(), tape.value(weight).data());
    let y = Tensor::new(&[g.n, g.c_out, g.h_out(), g.w_out()], y)?;
    Ok(tape.push_op(y, &[x, weight], || {
        Box::new(move |nodes, dy| {
            let (dx, dw) = cpu::backward(
                &g,
                nodes.value(x).data(),
                nodes.value(weight).data(),
                dy,
                nodes.requires_grad(x),
                nodes.requires_grad(weight),
            );
            Ok([dx.map(|d| (x, d)), dw.map(|d| (weight, d))]
                .into_iter()
                .flatten()
                .collect())
        })
    }))
}
