//! The smooth activations the paper compares SPARTA with (its baselines), in the places
//! a ResNet otherwise uses ReLU: ELU, GELU, SiLU (Swish) and Softplus.
//!
//! | [`Pointwise`] | `y`                                        | `dy/dx`                                   |
//! |---------------|--------------------------------------------|-------------------------------------------|
//! | `Elu`         | `x > 0 ? x : eˣ − 1` (α = 1)               | `x > 0 ? 1 : eˣ`                          |
//! | `Gelu`        | `x/2 · (1 + tanh(u))`, `u = √(2/π)(x + 0.044715x³)` | `(1 + t)/2 + x(1 − t²)/2 · √(2/π)(1 + 3·0.044715x²)` |
//! | `Silu`        | `x · σ(x)` (Swish with β = 1)              | `σ(x)(1 + x(1 − σ(x)))`                   |
//! | `Softplus`    | `ln(1 + eˣ)` (a smooth ReLU)               | `σ(x)`                                    |
//!
//! GELU is the tanh form (PyTorch's `approximate="tanh"`), so that its derivative is
//! the exact derivative of what the forward computes (no `erf` in Rust's std); it is
//! evaluated as `x·σ(2u)`, the same function, so the tails keep their digits. ReLU is
//! [`crate::ops::relu`]; [`Pointwise::Relu`] dispatches to it, so a plain ResNet runs
//! exactly as before.
//!
//! CPU functions in [`cpu`] (generic over [`crate::Real`]), CUDA wrappers in [`cuda`]
//! (`kernels/pointwise.cu`, f32), tape ops in [`tape`].

pub mod cpu;
pub mod cuda;
pub mod tape;

use crate::ops::LaunchDims;

/// A pointwise activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pointwise {
    /// `max(x, 0)`.
    Relu,
    /// Exponential linear unit, α = 1.
    Elu,
    /// Gaussian error linear unit, tanh form.
    Gelu,
    /// Sigmoid linear unit `x·σ(x)` (Swish, β = 1).
    Silu,
    /// `ln(1 + eˣ)`.
    Softplus,
}

impl Pointwise {
    /// Every activation, in the order of the table above.
    pub const ALL: [Pointwise; 5] = [
        Pointwise::Relu,
        Pointwise::Elu,
        Pointwise::Gelu,
        Pointwise::Silu,
        Pointwise::Softplus,
    ];

    /// The name used in activation specs and printed in results (`swish` also reads
    /// as `silu`).
    pub fn name(self) -> &'static str {
        match self {
            Pointwise::Relu => "relu",
            Pointwise::Elu => "elu",
            Pointwise::Gelu => "gelu",
            Pointwise::Silu => "silu",
            Pointwise::Softplus => "softplus",
        }
    }

    /// The activation called `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "swish" => Some(Pointwise::Silu),
            _ => Self::ALL.into_iter().find(|p| p.name() == name),
        }
    }

    /// The `kind` argument of `kernels/pointwise.cu` (ReLU has its own kernels).
    pub(crate) fn kernel_kind(self) -> Option<i32> {
        match self {
            Pointwise::Relu => None,
            Pointwise::Elu => Some(1),
            Pointwise::Gelu => Some(2),
            Pointwise::Silu => Some(3),
            Pointwise::Softplus => Some(4),
        }
    }
}

/// Threads per block of the pointwise kernels.
pub const POINTWISE_THREADS: u32 = 256;
/// Upper bound on blocks: past it the grid-stride loop gives each thread more work.
pub const POINTWISE_MAX_BLOCKS: usize = 8192;

/// Launch shape of `pointwise_forward_f32` and `pointwise_backward_f32` for `len`
/// elements: 1-D, [`POINTWISE_THREADS`] threads, `min(ceil(len / 256), 8192)` blocks.
pub fn pointwise_launch(len: usize) -> LaunchDims {
    let blocks = len
        .div_ceil(POINTWISE_THREADS as usize)
        .clamp(1, POINTWISE_MAX_BLOCKS);
    LaunchDims {
        grid: (blocks as u32, 1, 1),
        block: (POINTWISE_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Pointwise::ALL {
            assert_eq!(Pointwise::from_name(p.name()), Some(p));
        }
        assert_eq!(Pointwise::from_name("swish"), Some(Pointwise::Silu));
        assert_eq!(Pointwise::from_name("tanh"), None);
    }
}
