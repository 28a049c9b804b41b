//! Ops: each in its own folder with its CPU kernel, CUDA wrapper and backward side by side.

mod columns;
pub mod conv1x1;
pub mod dtype;
pub mod dynconv;
pub mod fc;
pub mod gate;
pub(crate) mod par;
pub mod pointwise;
pub mod pool;
pub(crate) mod reduce;
pub mod relu;
pub mod sanet;

pub use dtype::{GateMapFloat, KernelFloat};

pub use crate::launch::LaunchDims;

pub mod add;
pub mod batchnorm;
pub mod conv2d;
pub mod loss;
pub mod normalize;
pub mod pgd;
pub mod primitive;

#[cfg(test)]
mod gradcheck_tests;
