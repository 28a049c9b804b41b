#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod classifier;
pub mod data;
pub mod device;
pub mod error;
pub mod gemm;
pub mod nn;
pub mod ops;
pub mod real;

pub use device::{Device, Gpu};
pub use error::{Error, Result};
pub use real::Real;
