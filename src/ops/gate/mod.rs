//! The fused SPARTA gate `Y = max(X, 0) · σ(s ⊗ c)` and its backward (docs/design.md#activation,
//! paper Eq. 4 and Eq. 6); see `docs/gate.md`.
//!
//! - [`cpu`]: the reference, generic over [`crate::Real`] (f32 and f64), plus the ReLU it
//!   is compared with and the unfused three-pass peer.
//! - [`cuda`]: the same over caller-owned device buffers, f32 / f16 / bf16.
//! - [`forward`] and [`backward`]: host slices on any [`Device`].
//!
//! Shapes: `x, y, dy, dx: [N, C, H, W]`, `c, dc: [N, C]`, `s, ds: [N, SH, SW]` with
//! `SH = ceil(H/B)`, `SW = ceil(W/B)` for block size `B` ([`GateShape`]).

#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod cpu;
pub mod cuda;
mod lanes;
mod product;
mod reference;
pub(crate) mod sigmoid;
mod tiers;

use crate::error::{Error, Result};
use crate::ops::LaunchDims;
use crate::Device;

/// The dimensions of one gate: batch `n`, channels `c`, height `h`, width `w`, and the
/// block size `block` (paper Eq. 6: the gate of pixel (h, w) reads `s[n, h/B, w/B]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateShape {
    /// Batch size N.
    pub n: usize,
    /// Channels C.
    pub c: usize,
    /// Height H.
    pub h: usize,
    /// Width W.
    pub w: usize,
    /// Block size B ≥ 1; 1 is the plain SPARTA layer.
    pub block: usize,
}

impl GateShape {
    /// A shape with every dimension > 0 and `block ≥ 1`, else [`Error::Shape`].
    ///
    /// ```
    /// use sparta::ops::gate::GateShape;
    /// let shape = GateShape::new(2, 3, 5, 7, 2)?;
    /// assert_eq!((shape.sh(), shape.sw()), (3, 4));
    /// assert_eq!((shape.x_len(), shape.s_len(), shape.c_len()), (210, 24, 6));
    /// assert!(GateShape::new(2, 3, 5, 7, 0).is_err());
    /// # Ok::<(), sparta::Error>(())
    /// ```
    pub fn new(n: usize, c: usize, h: usize, w: usize, block: usize) -> Result<Self> {
        let shape = GateShape { n, c, h, w, block };
        shape.validate("GateShape::new")?;
        Ok(shape)
    }

    /// Height of `s`: `ceil(h / block)`.
    pub fn sh(&self) -> usize {
        self.h.div_ceil(self.block)
    }

    /// Width of `s`: `ceil(w / block)`.
    pub fn sw(&self) -> usize {
        self.w.div_ceil(self.block)
    }

    /// Elements of `x`, `y`, `dy`, `dx`: `n·c·h·w`.
    pub fn x_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }

    /// Elements of `s` and `ds`: `n·sh·sw`.
    pub fn s_len(&self) -> usize {
        self.n * self.sh() * self.sw()
    }

    /// Elements of `c` and `dc`: `n·c`.
    pub fn c_len(&self) -> usize {
        self.n * self.c
    }

    /// Pixels per channel plane: `h·w`.
    fn hw(&self) -> usize {
        self.h * self.w
    }

    /// The fields are public, so every op re-checks what [`GateShape::new`] checks.
    fn validate(&self, op: &'static str) -> Result<()> {
        let GateShape { n, c, h, w, block } = *self;
        if n == 0 || c == 0 || h == 0 || w == 0 || block == 0 {
            return Err(Error::shape(
                op,
                "gate shape",
                "N, C, H, W > 0 and block >= 1",
                format!("N={n}, C={c}, H={h}, W={w}, block={block}"),
            ));
        }
        if n.checked_mul(c)
            .and_then(|v| v.checked_mul(h))
            .and_then(|v| v.checked_mul(w))
            .is_none()
        {
            return Err(Error::shape(
                op,
                "gate shape",
                "N·C·H·W that fits in usize",
                format!("N={n}, C={c}, H={h}, W={w}"),
            ));
        }
        Ok(())
    }

    /// Checks one buffer's length against the shape, naming its layout on failure.
    fn check(&self, op: &'static str, what: &str, got: usize) -> Result<()> {
        let expected = match what {
            "s" | "ds" => self.s_len(),
            "c" | "dc" => self.c_len(),
            _ => self.x_len(),
        };
        if got == expected {
            return Ok(());
        }
        // Formatted only here: a call that passes pays for no strings.
        let layout = match what {
            "s" | "ds" => format!("[{}, {}, {}]", self.n, self.sh(), self.sw()),
            "c" | "dc" => format!("[{}, {}]", self.n, self.c),
            _ => format!("[{}, {}, {}, {}]", self.n, self.c, self.h, self.w),
        };
        Err(Error::shape(
            op,
            what,
            format!("{layout} ({expected} elements)"),
            format!("{got} elements"),
        ))
    }

    /// Validates the shape and every `(name, len)` pair.
    fn check_all(&self, op: &'static str, buffers: &[(&str, usize)]) -> Result<()> {
        self.validate(op)?;
        buffers
            .iter()
            .try_for_each(|&(what, len)| self.check(op, what, len))
    }
}

/// Channels each thread handles in the gate kernels (`GATE_CPT` in `kernels/gate.cu`).
pub const GATE_CPT: usize = 8;
/// Threads per block of every gate kernel.
pub const GATE_THREADS: u32 = 256;
/// Upper bound on blocks of the 1-D gate kernels (grid-stride past it).
pub const GATE_MAX_BLOCKS: usize = 8192;
/// Elements each thread of `gate_unfused_mul_*` loads before storing.
pub const GATE_MUL_ILP: usize = 4;

/// Launch shape of `gate_forward_*`, `gate_backward_*` and `gate_unfused_sigmoid_*`:
/// block `(PX, CY)` with `PX = min(256, next_pow2(max(H·W, 32)))`, `CY = 256 / PX`;
/// grid `(N · groups, 1, 1)` with `groups = ceil(C / (CY · GATE_CPT))` (see
/// [`gate_channel_groups`]). A block owns one sample and one group of channels.
pub fn gate_launch(shape: &GateShape) -> LaunchDims {
    let (px, cy) = gate_block(shape);
    LaunchDims {
        grid: ((shape.n * gate_channel_groups(shape)) as u32, 1, 1),
        block: (px, cy, 1),
        shared_bytes: 0,
    }
}

fn gate_block(shape: &GateShape) -> (u32, u32) {
    let px = shape
        .hw()
        .max(32)
        .next_power_of_two()
        .min(GATE_THREADS as usize) as u32;
    (px, GATE_THREADS / px)
}

/// Channel groups per sample in the gate kernels: `ceil(C / (CY · GATE_CPT))`. The
/// backward's f32 scratch `ds_partial` is `[N, groups, H, W]`.
pub fn gate_channel_groups(shape: &GateShape) -> usize {
    let (_, cy) = gate_block(shape);
    shape.c.div_ceil(cy as usize * GATE_CPT)
}

/// Elements of the backward's f32 scratch `ds_partial`: `N · groups · H · W`.
pub fn gate_backward_scratch_len(shape: &GateShape) -> usize {
    shape.n * gate_channel_groups(shape) * shape.hw()
}

/// Launch shape of `gate_backward_ds_*`: 1-D over the `N·SH·SW` elements of `ds`,
/// 256 threads, at most [`GATE_MAX_BLOCKS`] blocks.
pub fn gate_ds_launch(shape: &GateShape) -> LaunchDims {
    one_dim(shape.s_len().div_ceil(GATE_THREADS as usize))
}

/// Launch shape of `gate_unfused_mul_*` for `len` elements: 1-D, 256 threads,
/// `min(ceil(len / (256·GATE_MUL_ILP)), GATE_MAX_BLOCKS)` blocks.
pub fn gate_mul_launch(len: usize) -> LaunchDims {
    one_dim(len.div_ceil(GATE_THREADS as usize * GATE_MUL_ILP))
}

fn one_dim(blocks: usize) -> LaunchDims {
    LaunchDims {
        grid: (blocks.clamp(1, GATE_MAX_BLOCKS) as u32, 1, 1),
        block: (GATE_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// Gate forward on `device` with host slices (f32). The CUDA path uploads, runs
/// `gate_forward_f32` and downloads `y`.
///
/// ```
/// use sparta::{ops::gate::{self, GateShape}, Device};
/// let shape = GateShape::new(1, 1, 1, 2, 1)?;
/// let mut y = [0.0f32; 2];
/// gate::forward(&Device::Cpu, &shape, &[3.0, -1.0], &[0.0, 1.0], &[1.0], &mut y)?;
/// assert_eq!(y, [1.5, 0.0]); // max(3,0)·σ(0) and max(−1,0)·σ(1)
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn forward(
    device: &Device,
    shape: &GateShape,
    x: &[f32],
    s: &[f32],
    c: &[f32],
    y: &mut [f32],
) -> Result<()> {
    match device {
        Device::Cpu => cpu::gate_forward(shape, x, s, c, y),
        Device::Cuda(gpu) => cuda::gate_forward_host(gpu, shape, x, s, c, y),
    }
}

/// Gate backward on `device` with host slices (f32): `dx` gets the direct term
/// `dy·g·[x ≥ 0]`, `ds` and `dc` are overwritten.
///
/// ```
/// use sparta::{ops::gate::{self, GateShape}, Device};
/// let shape = GateShape::new(1, 1, 1, 1, 1)?;
/// let (mut dx, mut ds, mut dc) = ([0.0f32], [0.0f32], [0.0f32]);
/// gate::backward(&Device::Cpu, &shape, &[2.0], &[0.0], &[3.0], &[1.0], &mut dx, &mut ds, &mut dc)?;
/// // g = σ(0) = 1/2; dA = 1·2·g·(1−g) = 1/2; ds = dA·c, dc = dA·s
/// assert_eq!((dx[0], ds[0], dc[0]), (0.5, 1.5, 0.0));
/// # Ok::<(), sparta::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn backward(
    device: &Device,
    shape: &GateShape,
    x: &[f32],
    s: &[f32],
    c: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    ds: &mut [f32],
    dc: &mut [f32],
) -> Result<()> {
    match device {
        Device::Cpu => cpu::gate_backward(shape, x, s, c, dy, dx, ds, dc),
        Device::Cuda(gpu) => cuda::gate_backward_host(gpu, shape, x, s, c, dy, dx, ds, dc),
    }
}
