//! SANet with DPNet: from (block-pooled) X to the spatial map s.
//!
//! ```text
//! h  = ReLU(Conv3(xs))            [N, Co, P]   Conv3 is a 1×1 conv C → Co
//! q  = mean_p(h)                  [N, Co]      DPNet's pool
//! (w5[n], b5[n]) = Conv4(q[n])    Co + 1 numbers per sample (or learned, no DPNet)
//! s[n] = w5[n]·h[n] + b5[n]       [N, P]       Conv5, a per-sample 1×1 conv Co → 1
//! ```
//!
//! Two CPU paths compute the same numbers:
//! - **fused**: group by group, h of one group (`Co × G·P`) lives in a scratch buffer
//!   that stays in cache; ReLU, pool, Conv4 and Conv5 read it there. With 128 or more
//!   input channels a copy of it after the ReLU is kept for the backward (h is at most
//!   as large as X; Conv3 again would be a quarter of the layer's products); with fewer
//!   the backward runs Conv3 again, which measured faster there. A group is one sample
//!   where P is large (≥ 256 pixels); at smaller grids it is as many samples, side by
//!   side, as make about 1,024 columns, so that Conv3's weight gradient is one wide
//!   product. Conv3 and its input gradient run as a product per sample.
//! - **unfused**: the batch's h is written out by Conv3, then ReLU, pool, Conv4 and Conv5
//!   run as separate ops over it; backward reads the stored h.
//!
//! ```
//! use sparta::ops::sanet::{cpu, Conv5Source, SanetShape};
//! let shape = SanetShape::new(1, 1, 1, 2).unwrap();
//! // h = ReLU(2·x − 1) = [1, 3]; q = 2; w5 = 0.5·q = 1, b5 = 0.25
//! let src = Conv5Source::Predicted { w4: &[0.5, 0.0], b4: &[0.0, 0.25] };
//! let out = cpu::sanet_forward_fused(&shape, &[1.0f64, 2.0], &[2.0], &[-1.0], &src).unwrap();
//! assert_eq!(out.s, vec![1.25, 3.25]);
//! ```

pub mod cpu;
pub mod cuda;

use crate::error::{Error, Result};
use crate::launch::kernel_args::blocks;
use crate::ops::LaunchDims;

/// Shape of SANet: `n` samples, `c → co` channels in Conv3, `pixels` of the (pooled) grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SanetShape {
    /// Samples.
    pub n: usize,
    /// Input channels C.
    pub c: usize,
    /// Reduced channels Co.
    pub co: usize,
    /// Pixels of the grid SANet runs on (ceil(H/B)·ceil(W/B)).
    pub pixels: usize,
}

impl SanetShape {
    /// Checks that every size is at least one.
    pub fn new(n: usize, c: usize, co: usize, pixels: usize) -> Result<Self> {
        if n == 0 || c == 0 || co == 0 || pixels == 0 {
            return Err(Error::Config(format!(
                "sanet: n {n}, c {c}, co {co} and pixels {pixels} must all be ≥ 1"
            )));
        }
        Ok(SanetShape { n, c, co, pixels })
    }

    /// Input elements `n·c·pixels`.
    pub fn xs_len(&self) -> usize {
        self.n * self.c * self.pixels
    }

    /// Elements of h, `n·co·pixels`.
    pub fn h_len(&self) -> usize {
        self.n * self.co * self.pixels
    }
}

/// Where Conv5's weights come from.
#[derive(Clone, Copy, Debug)]
pub enum Conv5Source<'a, T> {
    /// DPNet: Conv4 (`w4` `[co+1, co]`, `b4` `[co+1]`) predicts them from q; output row
    /// `k < co` is `w5[k]`, row `co` is `b5`.
    Predicted {
        /// Conv4 weight.
        w4: &'a [T],
        /// Conv4 bias.
        b4: &'a [T],
    },
    /// SPARTA-w/o-DPNet: one learned `w5` `[co]` and `b5` `[1]` for every sample.
    Learned {
        /// Conv5 weight.
        w5: &'a [T],
        /// Conv5 bias.
        b5: &'a [T],
    },
}

/// What SANet's forward computes and its backward reads.
#[derive(Clone, Debug, PartialEq)]
pub struct SanetOutputs<T> {
    /// DPNet's pooled h, `[n, co]`.
    pub q: Vec<T>,
    /// Conv5 weights per sample, `[n, co]`.
    pub w5: Vec<T>,
    /// Conv5 bias per sample, `[n]`.
    pub b5: Vec<T>,
    /// The spatial map, `[n, pixels]`.
    pub s: Vec<T>,
    /// The fused forward's h after its ReLU, group after group (each `[co, cols]`, the
    /// layout of [`cpu::sanet_forward_fused`]'s groups), which the fused backward reads
    /// instead of running Conv3 again; empty where not kept (fewer than 128 input
    /// channels) and from the unfused forward.
    pub(crate) h_groups: Vec<T>,
}

/// Gradients SANet's backward adds to.
#[derive(Debug)]
pub struct SanetGrads<'a, T> {
    /// Gradient of the input xs (added to).
    pub dxs: &'a mut [T],
    /// Parameter gradients (added to); `None` skips them (frozen layer).
    pub params: Option<SanetParamGrads<'a, T>>,
}

/// Parameter gradients of SANet, shaped like the parameters.
#[derive(Debug)]
pub struct SanetParamGrads<'a, T> {
    /// Conv3 weight `[co, c]`.
    pub dw3: &'a mut [T],
    /// Conv3 bias `[co]`.
    pub db3: &'a mut [T],
    /// Conv4 weight `[co+1, co]` (DPNet) or Conv5 weight `[co]` (no DPNet).
    pub dw_head: &'a mut [T],
    /// Conv4 bias `[co+1]` (DPNet) or Conv5 bias `[1]` (no DPNet).
    pub db_head: &'a mut [T],
}

/// `sanet_pool_f32`, `sanet_dw5_f32`, `sanet_dh_f32`: one 16×16 tile of h per block.
pub fn sanet_tile_launch(shape: &SanetShape) -> LaunchDims {
    crate::ops::conv1x1::conv1x1_tile_launch(shape.co, shape.pixels, shape.n)
}

/// `sanet_conv5_f32`: one block per 16 pixels of a sample, walking every Co tile.
pub fn sanet_conv5_launch(shape: &SanetShape) -> LaunchDims {
    let t = crate::ops::conv1x1::CONV_TILE;
    LaunchDims {
        grid: (blocks(shape.pixels, t as usize), 1, shape.n.max(1) as u32),
        block: (t, t, 1),
        shared_bytes: 0,
    }
}
