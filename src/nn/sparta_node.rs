//! The SPARTA layer on the tape: one fused node over [`SpartaLayer`]'s handwritten
//! forward and backward, and the same layer composed from primitive tape ops
//! ([`crate::ops::primitive`] and friends), which the tests hold the fused node to.

use super::sparta::{SpartaConfig, SpartaLayer};
use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};
use crate::ops::primitive::{bias_channels, dynamic_conv, mul, outer, reshape, sigmoid};
use crate::ops::{conv2d::conv2d, linear::linear, pool, relu::relu};
use crate::real::Real;
use crate::tensor::Tensor;

fn check_params<T: Real>(tape: &Tape<T>, config: &SpartaConfig, params: &[Var]) -> Result<()> {
    let shapes = config.param_shapes();
    if shapes.len() != params.len() {
        return Err(Error::shape(
            "sparta",
            "params",
            format!("{} tensors", shapes.len()),
            format!("{} tensors", params.len()),
        ));
    }
    for ((name, shape), &p) in shapes.iter().zip(params) {
        if tape.shape(p) != shape.as_slice() {
            return Err(Error::shape(
                "sparta",
                *name,
                format!("{shape:?}"),
                format!("{:?}", tape.shape(p)),
            ));
        }
    }
    Ok(())
}

/// SPARTA on `x [N,C,H,W]` as one node. `layer` supplies the configuration (its weights
/// are replaced by the values of `params`, in [`SpartaLayer::params`] order). When no
/// parameter needs a gradient the backward skips their gradients (frozen path).
///
/// ```
/// use rand::SeedableRng;
/// use sparta::autograd::Tape;
/// use sparta::nn::sparta::{SpartaConfig, SpartaLayer};
/// use sparta::nn::sparta_node::sparta;
/// use sparta::tensor::Tensor;
///
/// let layer = SpartaLayer::<f32>::new(SpartaConfig::new(4), &mut rand::rngs::StdRng::seed_from_u64(0));
/// let mut tape = Tape::new();
/// let params: Vec<_> = layer
///     .params()
///     .into_iter()
///     .map(|(_, v, shape)| tape.leaf(Tensor::new(&shape, v.to_vec()).unwrap(), true))
///     .collect();
/// let x = tape.leaf(Tensor::new(&[1, 4, 2, 2], vec![0.5; 16])?, false);
/// let y = sparta(&mut tape, x, layer, &params)?;
/// assert_eq!(tape.shape(y), &[1, 4, 2, 2]);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn sparta<T: Real>(
    tape: &mut Tape<T>,
    x: Var,
    mut layer: SpartaLayer<T>,
    params: &[Var],
) -> Result<Var> {
    let config = *layer.config();
    check_params(tape, &config, params)?;
    let xs = tape.shape(x).to_vec();
    let [n, c, h, w] = xs[..] else {
        return Err(Error::shape("sparta", "x", "[N,C,H,W]", format!("{xs:?}")));
    };
    if c != config.channels {
        return Err(Error::shape(
            "sparta",
            "x",
            format!("{} channels", config.channels),
            format!("{xs:?}"),
        ));
    }
    for ((_, dst), &p) in layer.params_mut().into_iter().zip(params) {
        dst.copy_from_slice(tape.value(p).data());
    }
    let train_params = params.iter().any(|&p| tape.requires_grad(p));
    layer.set_frozen(config.frozen || !train_params);
    let (y, cache) = layer.forward(tape.value(x).data(), n, h, w)?;
    let y = Tensor::new(&xs, y)?;
    let mut inputs = vec![x];
    inputs.extend_from_slice(params);
    let params = params.to_vec();
    Ok(tape.push_op(y, &inputs, move || {
        Box::new(move |nodes, dy| {
            let grads = layer.backward(nodes.value(x).data(), &cache, dy)?;
            let mut out = Vec::new();
            if nodes.requires_grad(x) {
                out.push((x, grads.dx));
            }
            for (p, g) in params.into_iter().zip(grads.params) {
                if nodes.requires_grad(p) {
                    out.push((p, g));
                }
            }
            Ok(out)
        })
    }))
}

/// The same layer composed from primitive tape ops (docs/design.md#dscanet, line by line); slow,
/// for cross-checking [`sparta`]. `params` as for [`sparta`].
pub fn sparta_composed<T: Real>(
    tape: &mut Tape<T>,
    x: Var,
    config: &SpartaConfig,
    params: &[Var],
) -> Result<Var> {
    check_params(tape, config, params)?;
    let xs = tape.shape(x).to_vec();
    let [_, c, h, w] = xs[..] else {
        return Err(Error::shape("sparta", "x", "[N,C,H,W]", format!("{xs:?}")));
    };
    let co = config.reduced();
    let [w1, b1, w2, b2, w3, b3, wh, bh] = params[..] else {
        unreachable!("check_params fixed the count");
    };
    // CANet: c = Conv2(ReLU(Conv1(mean_hw(X)))).
    let p = pool::global_avg_pool(tape, x)?;
    let w1 = reshape(tape, w1, &[co, c])?;
    let z1 = linear(tape, p, w1, b1)?;
    let a1 = relu(tape, z1)?;
    let w2 = reshape(tape, w2, &[c, co])?;
    let ch = linear(tape, a1, w2, b2)?;
    // SANet on X pooled by B×B: h = ReLU(Conv3(xs)).
    let xpool = if config.block > 1 {
        pool::avg_pool(tape, x, config.block)?
    } else {
        x
    };
    let z3 = conv2d(tape, xpool, w3, 1, 0)?;
    let z3 = bias_channels(tape, z3, b3)?;
    let hh = relu(tape, z3)?;
    let s = if config.dpnet {
        // DPNet: (w5, b5)[n] = Conv4(mean_hw(h)); s[n] = w5[n]·h[n] + b5[n].
        let q = pool::global_avg_pool(tape, hh)?;
        let w4 = reshape(tape, wh, &[co + 1, co])?;
        let head = linear(tape, q, w4, bh)?;
        dynamic_conv(tape, hh, head)?
    } else {
        let s = conv2d(tape, hh, wh, 1, 0)?;
        bias_channels(tape, s, bh)?
    };
    // Gate: Y = max(X, 0) · σ(s ⊗ c).
    let a = outer(tape, s, ch, config.block, h, w)?;
    let g = sigmoid(tape, a)?;
    let r = relu(tape, x)?;
    mul(tape, r, g)
}

/// Pushes `layer`'s current weights as leaves (for tests and demos).
pub fn param_leaves<T: Real>(
    tape: &mut Tape<T>,
    layer: &SpartaLayer<T>,
    requires_grad: bool,
) -> Result<Vec<Var>> {
    layer
        .params()
        .into_iter()
        .map(|(_, v, shape)| Ok(tape.leaf(Tensor::new(&shape, v.to_vec())?, requires_grad)))
        .collect()
}
