//! Building a ResNet from its configuration: the tensors in checkpoint order, their
//! initial values (drawn on the host, in the backend's element type, then uploaded), and
//! the wiring that names them.

use std::rc::Rc;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::arch::{Act, Arch, Block, Bn, ResNetBackend, SpartaSlot};
use super::{ResNet, ResNetConfig, TensorInfo};
use crate::error::{Error, Result};
use crate::nn::param::{normal, uniform};
use crate::nn::sparta::{SpartaConfig, SpartaLayer};
use crate::nn::spec::ActivationSpec;
use crate::real::Real;

/// The model's tensors as they are built, on the host.
struct Builder<T> {
    rng: StdRng,
    params: Vec<(TensorInfo, Vec<T>)>,
    buffers: Vec<(TensorInfo, Vec<T>)>,
}

impl<T: Real> Builder<T> {
    fn param(&mut self, name: String, shape: &[usize], data: Vec<T>) -> usize {
        let info = TensorInfo {
            name,
            shape: shape.to_vec(),
        };
        self.params.push((info, data));
        self.params.len() - 1
    }

    fn buffer(&mut self, name: String, c: usize, v: f64) -> usize {
        let info = TensorInfo {
            name,
            shape: vec![c],
        };
        self.buffers.push((info, vec![T::of_f64(v); c]));
        self.buffers.len() - 1
    }

    /// Kaiming-normal (fan-in, ReLU gain), as for ResNets.
    fn conv(&mut self, name: String, co: usize, ci: usize, k: usize) -> usize {
        let data = normal(
            &mut self.rng,
            co * ci * k * k,
            (2.0 / (ci * k * k) as f64).sqrt(),
        );
        self.param(name, &[co, ci, k, k], data)
    }

    fn bn(&mut self, name: &str, c: usize) -> Bn {
        Bn {
            gamma: self.param(format!("{name}.weight"), &[c], vec![T::one(); c]),
            beta: self.param(format!("{name}.bias"), &[c], vec![T::zero(); c]),
            mean: self.buffer(format!("{name}.running_mean"), c, 0.0),
            var: self.buffer(format!("{name}.running_var"), c, 1.0),
        }
    }
}

impl<B: ResNetBackend> ResNet<B> {
    /// Builds the network on the backend of `ctx` with weights drawn from `seed` (the
    /// same values on every backend of one element type).
    pub fn new_on(ctx: B::Ctx, config: ResNetConfig, seed: u64) -> Result<Self> {
        let spec = ActivationSpec::parse(&config.activation)?;
        let on = spec.resolve(&config.depth.blocks())?;
        if config.in_channels == 0 || config.classes == 0 || config.widths.contains(&0) {
            return Err(Error::Config(format!(
                "ResNet needs positive channels, classes and widths, got {config:?}"
            )));
        }
        if config.mean.len() != config.in_channels || config.std.len() != config.in_channels {
            return Err(Error::Config(format!(
                "normalization needs {} means and stds, got {} and {}",
                config.in_channels,
                config.mean.len(),
                config.std.len()
            )));
        }
        let mut b = Builder::<B::Real> {
            rng: StdRng::seed_from_u64(seed),
            params: Vec::new(),
            buffers: Vec::new(),
        };
        let w = config.widths;
        let stem = (
            b.conv("conv1.weight".into(), w[0], config.in_channels, 3),
            b.bn("bn1", w[0]),
        );
        let mut blocks = Vec::new();
        let mut sparta = Vec::new();
        let mut c_in = w[0];
        for (g, group_on) in on.iter().enumerate() {
            for (i, &use_sparta) in group_on.iter().enumerate() {
                let p = format!("layer{}.{i}", g + 1);
                let stride = if g > 0 && i == 0 { 2 } else { 1 };
                let c = w[g];
                let conv1 = b.conv(format!("{p}.conv1.weight"), c, c_in, 3);
                let bn1 = b.bn(&format!("{p}.bn1"), c);
                let conv2 = b.conv(format!("{p}.conv2.weight"), c, c, 3);
                let bn2 = b.bn(&format!("{p}.bn2"), c);
                let shortcut = (stride != 1 || c_in != c).then(|| {
                    let conv = b.conv(format!("{p}.shortcut.conv.weight"), c, c_in, 1);
                    (conv, b.bn(&format!("{p}.shortcut.bn"), c))
                });
                let act = if use_sparta {
                    let cfg = SpartaConfig {
                        dpnet: spec.dpnet,
                        block: spec.block,
                        frozen: spec.frozen,
                        ..SpartaConfig::new(c)
                    };
                    let layer = SpartaLayer::new(cfg, &mut b.rng);
                    let params = layer
                        .params()
                        .into_iter()
                        .map(|(name, v, shape)| {
                            b.param(format!("{p}.sparta.{name}"), &shape, v.to_vec())
                        })
                        .collect();
                    sparta.push(SpartaSlot {
                        layer: Rc::new(layer),
                        params,
                    });
                    Act::Sparta(sparta.len() - 1)
                } else {
                    Act::Base
                };
                blocks.push(Block {
                    name: p,
                    last_in_group: i + 1 == group_on.len(),
                    conv1,
                    bn1,
                    conv2,
                    bn2,
                    shortcut,
                    stride,
                    act,
                });
                c_in = c;
            }
        }
        let bound = 1.0 / (c_in as f64).sqrt();
        let fc_w = uniform(&mut b.rng, config.classes * c_in, bound);
        let fc_b = uniform(&mut b.rng, config.classes, bound);
        let fc = (
            b.param("fc.weight".into(), &[config.classes, c_in], fc_w),
            b.param("fc.bias".into(), &[config.classes], fc_b),
        );
        let mut trainable = vec![true; b.params.len()];
        if spec.frozen {
            for &i in sparta.iter().flat_map(|slot: &SpartaSlot<_>| &slot.params) {
                trainable[i] = false;
            }
        }
        let constants: Vec<Vec<B::Real>> = [&config.mean, &config.std]
            .iter()
            .map(|v| v.iter().map(|&x| B::Real::of_f32(x)).collect())
            .collect();
        let mut params = Vec::with_capacity(b.params.len() + 2);
        let mut velocity = Vec::with_capacity(b.params.len());
        for (info, values) in &b.params {
            params.push(B::upload(&ctx, "param", values)?);
            velocity.push(B::zeros(&ctx, "velocity", info.len())?);
        }
        for c in &constants {
            params.push(B::upload(&ctx, "normalize", c)?);
        }
        let buffers = b
            .buffers
            .iter()
            .map(|(_, v)| B::upload(&ctx, "running", v))
            .collect::<Result<Vec<_>>>()?;
        Ok(ResNet {
            config,
            ctx,
            arch: Arch {
                base: spec.base,
                stem,
                blocks,
                fc,
            },
            params,
            param_info: b.params.into_iter().map(|(info, _)| info).collect(),
            buffers,
            buffer_info: b.buffers.into_iter().map(|(info, _)| info).collect(),
            velocity,
            sparta,
            trainable,
        })
    }
}
