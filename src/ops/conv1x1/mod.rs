//! 1×1 convolution over pixels: `y[n] = W · x[n] + b`, with `x[n]` the `cin × pixels`
//! matrix of sample n (NCHW, pixels as columns), so each sample is one row-major GEMM.
//!
//! DSCANet's Conv3 is this op; its backward gives the input, weight and bias gradients.
//!
//! ```
//! use sparta::ops::conv1x1::{cpu, Conv1x1Shape};
//! let shape = Conv1x1Shape::new(1, 2, 1, 3).unwrap();
//! let x = [1.0f64, 2.0, 3.0, /* channel 1 */ 10.0, 20.0, 30.0];
//! let (w, b) = ([1.0, 0.5], [0.25]);
//! let mut y = vec![0.0; 3];
//! cpu::conv1x1_forward(&shape, &x, &w, &b, &mut y).unwrap();
//! assert_eq!(y, vec![6.25, 12.25, 18.25]);
//! ```

pub mod cpu;

use crate::error::{Error, Result};

/// Shape of a 1×1 convolution: `n` samples, `cin → cout` channels, `pixels` = H·W.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1x1Shape {
    /// Samples.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Pixels per channel plane.
    pub pixels: usize,
}

impl Conv1x1Shape {
    /// Checks that every size is at least one.
    pub fn new(n: usize, cin: usize, cout: usize, pixels: usize) -> Result<Self> {
        if n == 0 || cin == 0 || cout == 0 || pixels == 0 {
            return Err(Error::Config(format!(
                "conv1x1: n {n}, cin {cin}, cout {cout} and pixels {pixels} must all be ≥ 1"
            )));
        }
        Ok(Conv1x1Shape {
            n,
            cin,
            cout,
            pixels,
        })
    }

    /// Input elements `n·cin·pixels`.
    pub fn x_len(&self) -> usize {
        self.n * self.cin * self.pixels
    }

    /// Output elements `n·cout·pixels`.
    pub fn y_len(&self) -> usize {
        self.n * self.cout * self.pixels
    }

    /// Weight elements `cout·cin` (PyTorch shape `[cout, cin, 1, 1]`).
    pub fn w_len(&self) -> usize {
        self.cout * self.cin
    }

    /// Multiply-adds of one forward pass (each backward GEMM does as many).
    pub fn macs(&self) -> usize {
        self.n * self.cout * self.cin * self.pixels
    }
}
