#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod alloc;
pub mod attack;
pub mod autograd;
pub mod backend;
pub mod checkpoint;
pub mod classifier;
pub mod data;
pub mod device;
pub mod dry_run;
pub mod error;
pub mod experiment;
pub mod gemm;
pub mod host_memory;
pub mod kernels;
pub mod launch;
pub mod loaded_libraries;
pub mod nn;
pub mod nvrtc;
pub mod ops;
pub mod optim;
pub mod plot;
pub mod real;
mod scratch;
pub mod smoke;
pub mod storage;
#[cfg(test)]
mod temp_folder;
#[cfg(test)]
mod testing;
pub mod threads;
pub mod train;

pub use device::{Device, Gpu};
pub use error::{Error, Result};
pub use launch::KernelDevice;
pub use real::Real;
