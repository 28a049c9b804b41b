//! The SPARTA layer on the tape: one fused node over [`SpartaLayer`]'s handwritten
//! forward and backward, and the same layer composed from primitive tape ops
//! ([`crate::ops::primitive`] and friends), which the tests hold the fused node to.

use std::rc::Rc;

use super::sparta::{SpartaCache, SpartaConfig, SpartaLayer};
use crate::autograd::{Nodes, Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::ops::primitive::{bias_channels, dynamic_conv, mul, outer, reshape, sigmoid};
use crate::ops::{conv2d::conv2d, fc::linear, pool, relu::relu};
use crate::real::Real;

fn check_params<B: Backend>(
    tape: &Tape<'_, B>,
    config: &SpartaConfig,
    params: &[Var],
) -> Result<()> {
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

/// What the fused SPARTA node needs from a backend: the layer's handwritten forward and
/// backward ([`SpartaLayer::forward`] on the host, [`SpartaLayer::forward_cuda`] on a
/// device).
pub trait SpartaKernels: Backend {
    /// What the forward keeps for the backward.
    type Cache: 'static;

    /// `layer` (its configuration) with the weights `weights` on `x [n, C, h, w]`;
    /// without `param_grads` the cache need not serve parameter gradients.
    #[allow(clippy::too_many_arguments)]
    fn sparta_forward(
        ctx: &Self::Ctx,
        layer: &SpartaLayer<Self::Real>,
        weights: &[Self::View<'_>],
        x: &Self::View<'_>,
        n: usize,
        h: usize,
        w: usize,
        param_grads: bool,
    ) -> Result<(Self::Buf, Self::Cache)>;

    /// `dx`, and the weights' gradients in [`SpartaLayer::params`] order when
    /// `param_grads` (else none).
    #[allow(clippy::too_many_arguments)]
    fn sparta_backward(
        ctx: &Self::Ctx,
        layer: &SpartaLayer<Self::Real>,
        weights: &[Self::View<'_>],
        x: &Self::View<'_>,
        cache: &Self::Cache,
        dy: &Self::View<'_>,
        param_grads: bool,
    ) -> Result<(Self::Buf, Vec<Self::Buf>)>;
}

impl<T: Real> SpartaKernels for T {
    /// The layer with the forward's weights (the backward needs them), and its cache.
    type Cache = (SpartaLayer<T>, SpartaCache<T>);

    fn sparta_forward(
        _: &(),
        layer: &SpartaLayer<T>,
        weights: &[&[T]],
        x: &&[T],
        n: usize,
        h: usize,
        w: usize,
        param_grads: bool,
    ) -> Result<(Vec<T>, Self::Cache)> {
        let mut layer = layer.clone();
        for ((_, dst), src) in layer.params_mut().into_iter().zip(weights) {
            crate::error::check_len("sparta", "weight", src.len(), dst.len())?;
            dst.copy_from_slice(src);
        }
        let frozen = layer.config().frozen || !param_grads;
        layer.set_frozen(frozen);
        let (y, cache) = layer.forward(x, n, h, w)?;
        Ok((y, (layer, cache)))
    }

    fn sparta_backward(
        _: &(),
        _: &SpartaLayer<T>,
        _: &[&[T]],
        x: &&[T],
        (layer, cache): &Self::Cache,
        dy: &&[T],
        _: bool,
    ) -> Result<(Vec<T>, Vec<Vec<T>>)> {
        let grads = layer.backward(x, cache, dy)?;
        Ok((grads.dx, grads.params))
    }
}

/// SPARTA on `x [N,C,H,W]` as one node. `layer` supplies the configuration; the weights
/// are the values of `params`, in [`SpartaLayer::params`] order. When no parameter
/// needs a gradient the backward skips their gradients (frozen path).
///
/// ```
/// use std::rc::Rc;
/// use rand::SeedableRng;
/// use sparta::autograd::Tape;
/// use sparta::nn::sparta::{SpartaConfig, SpartaLayer};
/// use sparta::nn::sparta_node::{param_leaves, sparta};
///
/// let layer = SpartaLayer::<f32>::new(SpartaConfig::new(4), &mut rand::rngs::StdRng::seed_from_u64(0));
/// let mut tape = Tape::new();
/// let params = param_leaves(&mut tape, &layer, true)?;
/// let x = tape.leaf(&[1, 4, 2, 2], vec![0.5; 16], false)?;
/// let y = sparta(&mut tape, x, &Rc::new(layer), &params)?;
/// assert_eq!(tape.shape(y), &[1, 4, 2, 2]);
/// # Ok::<(), sparta::Error>(())
/// ```
pub fn sparta<B: SpartaKernels>(
    tape: &mut Tape<'_, B>,
    x: Var,
    layer: &Rc<SpartaLayer<B::Real>>,
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
    let param_grads = params.iter().any(|&p| tape.requires_grad(p));
    let (y, cache) = {
        let weights: Vec<B::View<'_>> = params.iter().map(|&p| tape.value(p)).collect();
        let xv = tape.value(x);
        B::sparta_forward(tape.ctx(), layer, &weights, &xv, n, h, w, param_grads)?
    };
    let mut inputs = vec![x];
    inputs.extend_from_slice(params);
    let (layer, params) = (Rc::clone(layer), params.to_vec());
    tape.push_op(y, &xs, &inputs, move || {
        Box::new(move |nodes: &Nodes<'_, B>, dy: B::Buf| {
            let ctx = nodes.ctx();
            let weights: Vec<B::View<'_>> = params.iter().map(|&p| nodes.value(p)).collect();
            let param_grads = params.iter().any(|&p| nodes.requires_grad(p));
            let (dx, param_grads) = B::sparta_backward(
                ctx,
                &layer,
                &weights,
                &nodes.value(x),
                &cache,
                &B::view(ctx, &dy),
                param_grads,
            )?;
            let mut out = Vec::new();
            if nodes.requires_grad(x) {
                out.push((x, dx));
            }
            // Empty when no parameter asked for one.
            for (p, g) in params.into_iter().zip(param_grads) {
                if nodes.requires_grad(p) {
                    out.push((p, g));
                }
            }
            Ok(out)
        })
    })
}

/// The same layer composed from primitive tape ops (docs/design.md#dscanet, line by line); slow,
/// for cross-checking [`sparta`]. `params` as for [`sparta`].
pub fn sparta_composed<T: Real>(
    tape: &mut Tape<'_, T>,
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
    tape: &mut Tape<'_, T>,
    layer: &SpartaLayer<T>,
    requires_grad: bool,
) -> Result<Vec<Var>> {
    layer
        .params()
        .into_iter()
        .map(|(_, v, shape)| tape.leaf(&shape, v.to_vec(), requires_grad))
        .collect()
}
