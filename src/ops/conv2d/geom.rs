//! The shape of a convolution and which of its products is meant: plain data that the
//! CPU kernels, the CUDA wrappers, cuDNN and the devices ([`crate::launch`]) share.

/// Shapes of a square-kernel, bias-free 2-D convolution, NCHW.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
}

impl ConvGeom {
    /// Output height.
    pub fn h_out(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Output width.
    pub fn w_out(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Rows of the im2col matrix: `c_in · k · k`.
    pub fn patch(&self) -> usize {
        self.c_in * self.k * self.k
    }
    /// Elements of x, weight and y.
    pub fn lens(&self) -> (usize, usize, usize) {
        let hwo = self.h_out() * self.w_out();
        (
            self.n * self.c_in * self.h * self.w,
            self.c_out * self.patch(),
            self.n * self.c_out * hwo,
        )
    }
}

/// Which convolution product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvPass {
    /// `y = conv(x, w)`: operands `(x, w)`, output y.
    Forward,
    /// The input gradient: operands `(dy, w)`, output dx.
    BackwardData,
    /// The weight gradient: operands `(x, dy)`, output dw.
    BackwardFilter,
}
