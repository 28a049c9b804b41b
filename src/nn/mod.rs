//! Layers and models built on the tape.

pub mod param;
pub mod resnet;
pub mod spec;

pub use resnet::{Depth, ResNet, ResNetConfig};
pub use spec::ActivationSpec;
