//! Layers: each holds its parameters and computes forward and backward.

pub mod sparta;

pub use sparta::{SpartaCache, SpartaConfig, SpartaGrads, SpartaLayer};
