//! Layers and models built on the tape; each layer holds its parameters.

pub mod param;
pub mod resnet;
pub mod sparta;
pub mod sparta_node;
pub mod spec;

pub use resnet::{Depth, ResNet, ResNetConfig};
pub use sparta::{SpartaCache, SpartaConfig, SpartaGrads, SpartaLayer};
pub use spec::ActivationSpec;
