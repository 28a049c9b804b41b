//! What defines a ResNet: depth, widths, activation spec, input and optimizer
//! constants, and the data set it is for; and how many values such a model holds.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::data::DatasetInfo;
use crate::error::{Error, Result};
use crate::nn::sparta::SpartaConfig;
use crate::nn::spec::ActivationSpec;

/// Depth preset: blocks per group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Depth {
    /// ResNet-18: 2, 2, 2, 2 blocks.
    R18,
    /// ResNet-34: 3, 4, 6, 3 blocks.
    R34,
    /// CPU demo: 1 block per group.
    Small,
}

impl Depth {
    /// Blocks in each of the 4 groups.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            Depth::R18 => [2, 2, 2, 2],
            Depth::R34 => [3, 4, 6, 3],
            Depth::Small => [1, 1, 1, 1],
        }
    }
}

impl std::fmt::Display for Depth {
    /// The name [`FromStr`] reads: `18`, `34`, `small`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Depth::R18 => "18",
            Depth::R34 => "34",
            Depth::Small => "small",
        })
    }
}

impl FromStr for Depth {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "18" | "resnet18" => Ok(Depth::R18),
            "34" | "resnet34" => Ok(Depth::R34),
            "small" => Ok(Depth::Small),
            _ => Err(Error::Config(format!(
                "depth {s:?}: expected 18, 34 or small"
            ))),
        }
    }
}

/// Everything that defines a ResNet's architecture and optimizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Blocks per group.
    pub depth: Depth,
    /// Image channels.
    pub in_channels: usize,
    /// Number of classes.
    pub classes: usize,
    /// Channels of the 4 groups (the stem has the first group's width).
    pub widths: [usize; 4],
    /// Which activations are SPARTA ([`ActivationSpec`] syntax, e.g. `G1-4.B2`).
    pub activation: String,
    /// Per-channel mean of the input normalization layer (inputs are in [0, 1]).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of the input normalization layer.
    pub std: Vec<f32>,
    /// SGD momentum.
    pub momentum: f32,
    /// SGD weight decay.
    pub weight_decay: f32,
    /// The data set the model is trained on, recorded in its checkpoints so that
    /// evaluating or resuming it on other data is refused unless asked for; `None` for a
    /// model made without one (and in checkpoints written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetInfo>,
}

impl ResNetConfig {
    fn preset(depth: Depth, widths: [usize; 4], in_channels: usize, classes: usize) -> Self {
        ResNetConfig {
            depth,
            in_channels,
            classes,
            widths,
            activation: "G1-4.Blast".into(),
            mean: vec![0.5; in_channels],
            std: vec![0.25; in_channels],
            momentum: 0.9,
            weight_decay: 1e-4,
            dataset: None,
        }
    }

    /// ResNet-18 (64/128/256/512) with SPARTA on the last block of each group.
    pub fn resnet18(in_channels: usize, classes: usize) -> Self {
        Self::preset(Depth::R18, [64, 128, 256, 512], in_channels, classes)
    }

    /// ResNet-34 (64/128/256/512) with SPARTA on the last block of each group.
    pub fn resnet34(in_channels: usize, classes: usize) -> Self {
        Self::preset(Depth::R34, [64, 128, 256, 512], in_channels, classes)
    }

    /// CPU demo preset: one block per group, widths 16/32/64/128.
    pub fn small(in_channels: usize, classes: usize) -> Self {
        Self::preset(Depth::Small, [16, 32, 64, 128], in_channels, classes)
    }

    /// The same configuration with another activation spec.
    pub fn with_activation(mut self, spec: &str) -> Self {
        self.activation = spec.into();
        self
    }

    /// How many values the model this configuration describes holds: learned
    /// parameters and buffers (running statistics), counted from the configuration
    /// alone with checked arithmetic, so that a configuration read from a file can be
    /// checked against the file before the model is allocated. Errors on an invalid
    /// spec or a count that overflows.
    pub fn value_counts(&self) -> Result<ValueCounts> {
        let spec = ActivationSpec::parse(&self.activation)?;
        let on = spec.resolve(&self.depth.blocks())?;
        let mut n = ValueCounter {
            counts: ValueCounts::default(),
            config: self,
        };
        let w = self.widths;
        n.learned(&[w[0], self.in_channels, 3, 3])?;
        n.batch_norm(w[0])?;
        let mut c_in = w[0];
        for (g, group_on) in on.iter().enumerate() {
            for (i, &use_sparta) in group_on.iter().enumerate() {
                let c = w[g];
                n.learned(&[c, c_in, 3, 3])?;
                n.batch_norm(c)?;
                n.learned(&[c, c, 3, 3])?;
                n.batch_norm(c)?;
                if (g > 0 && i == 0) || c_in != c {
                    n.learned(&[c, c_in])?;
                    n.batch_norm(c)?;
                }
                if use_sparta {
                    let sparta = SpartaConfig {
                        dpnet: spec.dpnet,
                        ..SpartaConfig::new(c)
                    };
                    for (_, shape) in sparta.param_shapes() {
                        n.learned(&shape)?;
                    }
                }
                c_in = c;
            }
        }
        n.learned(&[self.classes, c_in])?;
        n.learned(&[self.classes])?;
        Ok(n.counts)
    }
}

/// Sums tensor sizes for [`ResNetConfig::value_counts`], failing on overflow.
struct ValueCounter<'a> {
    counts: ValueCounts,
    config: &'a ResNetConfig,
}

impl ValueCounter<'_> {
    fn size(&self, shape: &[usize]) -> Result<usize> {
        shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| self.overflow())
    }

    fn overflow(&self) -> Error {
        Error::Config(format!(
            "the model of {:?} has more values than can be counted",
            self.config
        ))
    }

    fn learned(&mut self, shape: &[usize]) -> Result<()> {
        let size = self.size(shape)?;
        self.counts.parameters =
            (self.counts.parameters.checked_add(size)).ok_or_else(|| self.overflow())?;
        Ok(())
    }

    /// Weight and bias learned, running mean and variance kept.
    fn batch_norm(&mut self, c: usize) -> Result<()> {
        self.learned(&[2, c])?;
        let size = self.size(&[2, c])?;
        self.counts.buffers =
            (self.counts.buffers.checked_add(size)).ok_or_else(|| self.overflow())?;
        Ok(())
    }
}

/// What [`ResNetConfig::value_counts`] counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValueCounts {
    /// Learned scalars ([`ResNet::param_count`]).
    pub parameters: usize,
    /// Running statistics.
    pub buffers: usize,
}
