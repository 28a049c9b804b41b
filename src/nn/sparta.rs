//! The SPARTA layer: `Y = max(X, 0) · σ(s ⊗ c)` with DSCANet predicting the spatial map
//! `s` and the channel vector `c` from X (docs/design.md#dscanet; docs/sparta-layer.md).
//!
//! ```text
//! p = mean_hw(X)                         CANet: c = Conv2(ReLU(Conv1(p)))
//! xs = X pooled by B×B (xs = X for B = 1)
//! h = ReLU(Conv3(xs)), q = mean(h)       SANet + DPNet: s = Conv5_{Conv4(q)}(h)
//! Y = gate(X, s, c)
//! ```
//!
//! Parameters, in the order of [`SpartaLayer::params`] (PyTorch's 1×1 conv shapes):
//! `conv1.weight [Co, C, 1, 1]`, `conv1.bias [Co]`, `conv2.weight [C, Co, 1, 1]`,
//! `conv2.bias [C]`, `conv3.weight [Co, C, 1, 1]`, `conv3.bias [Co]`, then with DPNet
//! `conv4.weight [Co+1, Co, 1, 1]`, `conv4.bias [Co+1]`, without it `conv5.weight
//! [1, Co, 1, 1]`, `conv5.bias [1]`.
//!
//! ```
//! use rand::SeedableRng;
//! use sparta::nn::sparta::{SpartaConfig, SpartaLayer};
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let layer = SpartaLayer::<f64>::new(SpartaConfig::new(8), &mut rng);
//! let (n, h, w) = (2, 4, 4);
//! let x: Vec<f64> = (0..n * 8 * h * w).map(|i| (i as f64).sin()).collect();
//! let (y, cache) = layer.forward(&x, n, h, w)?;
//! let grads = layer.backward(&x, &cache, &vec![1.0; y.len()])?;
//! assert_eq!(grads.dx.len(), x.len());
//! assert_eq!(grads.params.len(), layer.params().len());
//! # Ok::<(), sparta::Error>(())
//! ```

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::path::Path;

use rand::Rng;

use crate::error::{check_len, Error, Result};
use crate::ops::fc::cpu::{fc_backward, fc_forward};
use crate::ops::fc::FcShape;
use crate::ops::gate::{cpu as gate, GateShape};
use crate::ops::par::{new_written, Slot};
use crate::ops::pool::cpu::{pool_backward, pool_forward};
use crate::ops::pool::PoolShape;
use crate::ops::sanet::cpu::{
    sanet_backward_fused, sanet_backward_unfused, sanet_forward_fused, sanet_forward_unfused,
};
use crate::ops::sanet::{Conv5Source, SanetGrads, SanetOutputs, SanetParamGrads, SanetShape};
use crate::real::Real;

mod cuda;
pub use cuda::{SpartaCudaCache, SpartaCudaGrads, SpartaCudaWeights};

/// Largest reduced width: `Co = min(256, C)`.
pub const MAX_REDUCED: usize = 256;

/// What a SPARTA layer is: its width and variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpartaConfig {
    /// Channels C of X.
    pub channels: usize,
    /// DPNet on: Conv4 predicts Conv5's weights per sample. Off: SPARTA-w/o-DPNet, with
    /// Conv5's `w5`, `b5` learned directly.
    pub dpnet: bool,
    /// Block size B ≥ 1 (paper Eq. 6): SANet runs on X average-pooled by B×B.
    pub block: usize,
    /// Frozen (transferred) DSCANet: backward returns dX but no parameter gradients.
    pub frozen: bool,
}

impl SpartaConfig {
    /// The plain layer: DPNet on, B = 1, trainable.
    pub fn new(channels: usize) -> Self {
        SpartaConfig {
            channels,
            dpnet: true,
            block: 1,
            frozen: false,
        }
    }

    /// The reduced width `Co = min(256, C)`.
    pub fn reduced(&self) -> usize {
        self.channels.min(MAX_REDUCED)
    }

    /// Parameters of the layer (docs/design.md#parameter-count): `C·Co+Co + Co·C+C + C·Co+Co`, plus
    /// `Co·(Co+1)+(Co+1)` with DPNet or `Co+1` without.
    ///
    /// ```
    /// use sparta::nn::sparta::SpartaConfig;
    /// assert_eq!(SpartaConfig::new(64).param_count(), 16_705);
    /// ```
    pub fn param_count(&self) -> usize {
        self.param_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Checks `channels ≥ 1` and `block ≥ 1`.
    pub fn validate(&self) -> Result<()> {
        if self.channels == 0 || self.block == 0 {
            return Err(Error::Config(format!(
                "SPARTA layer: channels {} and block {} must be ≥ 1",
                self.channels, self.block
            )));
        }
        Ok(())
    }

    /// Names and PyTorch shapes of the parameters, in [`SpartaLayer::params`] order.
    pub fn param_shapes(&self) -> Vec<(&'static str, Vec<usize>)> {
        let (c, co) = (self.channels, self.reduced());
        let mut shapes = vec![
            ("conv1.weight", vec![co, c, 1, 1]),
            ("conv1.bias", vec![co]),
            ("conv2.weight", vec![c, co, 1, 1]),
            ("conv2.bias", vec![c]),
            ("conv3.weight", vec![co, c, 1, 1]),
            ("conv3.bias", vec![co]),
        ];
        if self.dpnet {
            shapes.push(("conv4.weight", vec![co + 1, co, 1, 1]));
            shapes.push(("conv4.bias", vec![co + 1]));
        } else {
            shapes.push(("conv5.weight", vec![1, co, 1, 1]));
            shapes.push(("conv5.bias", vec![1]));
        }
        shapes
    }
}

/// Which SANet path a forward takes (both give the same numbers; see
/// [`crate::ops::sanet`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SanetPath {
    /// h per group of samples in a cache-sized scratch; kept for the backward from 128
    /// channels on, recomputed there below (the default).
    Fused,
    /// h stored for the batch; ops run one after another over it.
    Unfused,
}

/// What [`SpartaLayer::backward`] needs from the forward: the small DSCANet values (p,
/// Conv1's pre-ReLU output, c, q, Conv5's per-sample weights, s) and, for B > 1, the
/// block-pooled X. The fused path keeps h after its ReLU, group by group, from 128
/// channels on (none below); the unfused path keeps h `[N, Co, SH·SW]`.
/// X itself is not kept: backward takes it again.
#[derive(Clone, Debug)]
pub struct SpartaCache<T> {
    shape: GateShape,
    p: Vec<T>,
    z1: Vec<T>,
    c: Vec<T>,
    xs: Option<Vec<T>>,
    sanet: SanetOutputs<T>,
    h: Option<Vec<T>>,
}

impl<T> SpartaCache<T> {
    /// The gate's shape `(N, C, H, W, B)`.
    pub fn shape(&self) -> &GateShape {
        &self.shape
    }

    /// The spatial map `s`, `[N, ceil(H/B), ceil(W/B)]`.
    pub fn s(&self) -> &[T] {
        &self.sanet.s
    }

    /// The channel vector `c`, `[N, C]`.
    pub fn c(&self) -> &[T] {
        &self.c
    }

    /// The path the forward took.
    pub fn path(&self) -> SanetPath {
        if self.h.is_some() {
            SanetPath::Unfused
        } else {
            SanetPath::Fused
        }
    }
}

/// The gradients from [`SpartaLayer::backward`].
#[derive(Clone, Debug)]
pub struct SpartaGrads<T> {
    /// Gradient of X (through the gate and through DSCANet).
    pub dx: Vec<T>,
    /// Parameter gradients in [`SpartaLayer::params`] order; empty for a frozen layer.
    pub params: Vec<Vec<T>>,
}

impl<T: Real> SpartaGrads<T> {
    /// Zeroed gradients of `layer` for an input of `x_len` elements, for
    /// [`SpartaLayer::backward_into`] to fill again and again.
    pub fn zeros(layer: &SpartaLayer<T>, x_len: usize) -> Self {
        Self {
            dx: vec![T::zero(); x_len],
            params: Self::param_zeros(layer),
        }
    }

    /// Zeroed parameter gradients of `layer`; none for a frozen layer.
    fn param_zeros(layer: &SpartaLayer<T>) -> Vec<Vec<T>> {
        if layer.config.frozen {
            return Vec::new();
        }
        layer
            .tensors
            .iter()
            .map(|t| vec![T::zero(); t.len()])
            .collect()
    }
}

/// A SPARTA activation layer: DSCANet's weights and its [`SpartaConfig`].
#[derive(Clone, Debug)]
pub struct SpartaLayer<T: Real = f32> {
    config: SpartaConfig,
    /// In [`SpartaConfig::param_shapes`] order.
    tensors: Vec<Vec<T>>,
}

const CONV1_W: usize = 0;
const CONV1_B: usize = 1;
const CONV2_W: usize = 2;
const CONV2_B: usize = 3;
pub(crate) const CONV3_W: usize = 4;
pub(crate) const CONV3_B: usize = 5;
const HEAD_W: usize = 6;
const HEAD_B: usize = 7;

impl<T: Real> SpartaLayer<T> {
    /// A layer initialised like PyTorch's default for `Conv2d`: weights and biases
    /// uniform in `[−1/√fan_in, 1/√fan_in)`, `fan_in` = input channels (kernel 1×1).
    pub fn new(config: SpartaConfig, rng: &mut impl Rng) -> Self {
        let tensors = config
            .param_shapes()
            .iter()
            .map(|(name, shape)| {
                // Weights are [out, in, 1, 1]; a bias shares its weight's fan-in.
                let fan_in = match shape.len() {
                    4 => shape[1],
                    _ if name.starts_with("conv2") => config.reduced(),
                    _ if name.starts_with("conv4") || name.starts_with("conv5") => config.reduced(),
                    _ => config.channels,
                };
                let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
                let len = shape.iter().product();
                (0..len)
                    .map(|_| T::of_f64(rng.random_range(-bound..bound)))
                    .collect()
            })
            .collect();
        SpartaLayer { config, tensors }
    }

    /// The layer's configuration.
    pub fn config(&self) -> &SpartaConfig {
        &self.config
    }

    /// Sets whether the layer is frozen (backward then skips parameter gradients).
    pub fn set_frozen(&mut self, frozen: bool) {
        self.config.frozen = frozen;
    }

    /// `(name, data, PyTorch shape)` of every parameter.
    pub fn params(&self) -> Vec<(&'static str, &[T], Vec<usize>)> {
        self.config
            .param_shapes()
            .into_iter()
            .zip(&self.tensors)
            .map(|((name, shape), t)| (name, t.as_slice(), shape))
            .collect()
    }

    /// `(name, data)` of every parameter, mutable, same order as [`Self::params`].
    pub fn params_mut(&mut self) -> Vec<(&'static str, &mut [T])> {
        self.config
            .param_shapes()
            .into_iter()
            .zip(&mut self.tensors)
            .map(|((name, _), t)| (name, t.as_mut_slice()))
            .collect()
    }

    fn conv5_source(&self) -> Conv5Source<'_, T> {
        let (w, b) = (&self.tensors[HEAD_W], &self.tensors[HEAD_B]);
        if self.config.dpnet {
            Conv5Source::Predicted { w4: w, b4: b }
        } else {
            Conv5Source::Learned { w5: w, b5: b }
        }
    }

    fn shapes(&self, n: usize, h: usize, w: usize) -> Result<(GateShape, SanetShape)> {
        self.config.validate()?;
        let gate = GateShape::new(n, self.config.channels, h, w, self.config.block)?;
        let sanet = SanetShape::new(
            n,
            self.config.channels,
            self.config.reduced(),
            gate.sh() * gate.sw(),
        )?;
        Ok((gate, sanet))
    }

    /// Forward on `x` `[n, C, h, w]` with the fused SANet path: returns Y and the cache
    /// [`Self::backward`] needs.
    pub fn forward(
        &self,
        x: &[T],
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<(Vec<T>, SpartaCache<T>)> {
        self.forward_with(x, n, h, w, SanetPath::Fused)
    }

    /// Forward with the chosen SANet path.
    pub fn forward_with(
        &self,
        x: &[T],
        n: usize,
        h: usize,
        w: usize,
        path: SanetPath,
    ) -> Result<(Vec<T>, SpartaCache<T>)> {
        let cache = self.dscanet_forward(x, n, h, w, path)?;
        let y = gate::gate_forward_new(&cache.shape, x, &cache.sanet.s, &cache.c)?;
        Ok((y, cache))
    }

    /// [`Self::forward_with`] into a caller's `y` (overwritten), so that repeated calls
    /// reuse one output buffer instead of faulting in a fresh one each time.
    pub fn forward_into(
        &self,
        x: &[T],
        n: usize,
        h: usize,
        w: usize,
        path: SanetPath,
        y: &mut [T],
    ) -> Result<SpartaCache<T>> {
        let (shape, _) = self.shapes(n, h, w)?;
        check_len("sparta_forward", "x", x.len(), shape.x_len())?;
        check_len("sparta_forward", "y", y.len(), shape.x_len())?;
        let cache = self.dscanet_forward(x, n, h, w, path)?;
        gate::gate_forward(&cache.shape, x, &cache.sanet.s, &cache.c, y)?;
        Ok(cache)
    }

    /// Everything of the forward but the gate: s and c, and what the backward keeps.
    fn dscanet_forward(
        &self,
        x: &[T],
        n: usize,
        h: usize,
        w: usize,
        path: SanetPath,
    ) -> Result<SpartaCache<T>> {
        let (shape, sanet_shape) = self.shapes(n, h, w)?;
        check_len("sparta_forward", "x", x.len(), shape.x_len())?;
        let (c, co) = (self.config.channels, self.config.reduced());
        let t = &self.tensors;

        // CANet on the spatial mean.
        let mut p = vec![T::zero(); n * c];
        pool_forward(&PoolShape::global(n * c, h, w)?, x, &mut p)?;
        let mut z1 = vec![T::zero(); n * co];
        fc_forward(
            &FcShape::new(n, c, co)?,
            &p,
            &t[CONV1_W],
            &t[CONV1_B],
            &mut z1,
        )?;
        let a1 = relu(&z1);
        let mut cvec = vec![T::zero(); n * c];
        fc_forward(
            &FcShape::new(n, co, c)?,
            &a1,
            &t[CONV2_W],
            &t[CONV2_B],
            &mut cvec,
        )?;

        // SANet + DPNet on X pooled by B×B.
        let xs = self.block_pool(x, &shape)?;
        let xs_ref = xs.as_deref().unwrap_or(x);
        let (w3, b3, src) = (&t[CONV3_W], &t[CONV3_B], self.conv5_source());
        let (sanet, hbuf) = match path {
            SanetPath::Fused => (
                sanet_forward_fused(&sanet_shape, xs_ref, w3, b3, &src)?,
                None,
            ),
            SanetPath::Unfused => {
                let (out, h) = sanet_forward_unfused(&sanet_shape, xs_ref, w3, b3, &src)?;
                (out, Some(h))
            }
        };

        Ok(SpartaCache {
            shape,
            p,
            z1,
            c: cvec,
            xs,
            sanet,
            h: hbuf,
        })
    }

    fn block_pool(&self, x: &[T], shape: &GateShape) -> Result<Option<Vec<T>>> {
        if shape.block == 1 {
            return Ok(None);
        }
        let pool = PoolShape::new(shape.n * shape.c, shape.h, shape.w, shape.block)?;
        let mut xs = vec![T::zero(); pool.out_len()];
        pool_forward(&pool, x, &mut xs)?;
        Ok(Some(xs))
    }

    /// Backward: from `dy` to dX (the gate's direct term plus what flows back through
    /// CANet, SANet and DPNet) and, unless the layer is frozen, every parameter's
    /// gradient. `x` is the forward's input; `cache` its cache.
    pub fn backward(&self, x: &[T], cache: &SpartaCache<T>, dy: &[T]) -> Result<SpartaGrads<T>> {
        let mut params = SpartaGrads::param_zeros(self);
        let mut result = Ok(());
        // dx is not zeroed as a whole: the gate zeroes and writes it sample by sample.
        // SAFETY: every slot of dx is written, by the backward or, where it fails, by
        // the zeroing after it.
        let dx = unsafe {
            new_written(x.len(), |dx| {
                result = self.backward_slots(x, cache, dy, dx, &mut params);
                if result.is_err() {
                    <MaybeUninit<T> as Slot<T>>::values(dx);
                }
            })
        };
        result?;
        Ok(SpartaGrads { dx, params })
    }

    /// [`Self::backward`] into gradients from [`SpartaGrads::zeros`] (overwritten), so
    /// that repeated calls reuse the buffers.
    pub fn backward_into(
        &self,
        x: &[T],
        cache: &SpartaCache<T>,
        dy: &[T],
        grads: &mut SpartaGrads<T>,
    ) -> Result<()> {
        let SpartaGrads { dx, params } = grads;
        self.backward_slots(x, cache, dy, &mut dx[..], params)
    }

    /// The backward into `dx`'s slots (the gate writes each before anything reads it)
    /// and the parameter gradients (overwritten).
    fn backward_slots<O: Slot<T>>(
        &self,
        x: &[T],
        cache: &SpartaCache<T>,
        dy: &[T],
        dx: &mut [O],
        params: &mut [Vec<T>],
    ) -> Result<()> {
        const OP: &str = "sparta_backward";
        let shape = cache.shape;
        let (_, sanet_shape) = self.shapes(shape.n, shape.h, shape.w)?;
        if shape.c != self.config.channels || shape.block != self.config.block {
            return Err(Error::shape(
                OP,
                "cache",
                format!("C = {}, B = {}", self.config.channels, self.config.block),
                format!("C = {}, B = {}", shape.c, shape.block),
            ));
        }
        check_len(OP, "x", x.len(), shape.x_len())?;
        check_len(OP, "dy", dy.len(), shape.x_len())?;
        let (n, c, co) = (shape.n, shape.c, self.config.reduced());
        let t = &self.tensors;
        check_len(OP, "dx", dx.len(), shape.x_len())?;
        let want_params = if self.config.frozen { 0 } else { t.len() };
        check_len(OP, "parameter gradients", params.len(), want_params)?;
        for ((name, _), (g, p)) in self
            .config
            .param_shapes()
            .iter()
            .zip(params.iter_mut().zip(t))
        {
            check_len(OP, name, g.len(), p.len())?;
            // The backward adds into the parameter gradients; dx is overwritten first.
            g.fill(T::zero());
        }

        let mut ds = vec![T::zero(); shape.s_len()];
        let mut dc = vec![T::zero(); shape.c_len()];
        let dx = gate::gate_backward_slots(
            &shape,
            x,
            &cache.sanet.s,
            &cache.c,
            dy,
            dx,
            &mut ds,
            &mut dc,
        )?;

        let mut pg: Vec<Option<&mut [T]>> = params.iter_mut().map(|g| Some(&mut g[..])).collect();
        pg.resize_with(self.tensors.len(), || None);

        // CANet backward; dp flows into dX through the mean pool.
        let a1 = relu(&cache.z1);
        let mut da1 = vec![T::zero(); n * co];
        fc_backward(
            &FcShape::new(n, co, c)?,
            &a1,
            &t[CONV2_W],
            &dc,
            Some(&mut da1),
            pg[CONV2_W].take(),
            pg[CONV2_B].take(),
        )?;
        for (g, &z) in da1.iter_mut().zip(&cache.z1) {
            if z <= T::zero() {
                *g = T::zero();
            }
        }
        let mut dp = vec![T::zero(); n * c];
        fc_backward(
            &FcShape::new(n, c, co)?,
            &cache.p,
            &t[CONV1_W],
            &da1,
            Some(&mut dp),
            pg[CONV1_W].take(),
            pg[CONV1_B].take(),
        )?;
        pool_backward(&PoolShape::global(n * c, shape.h, shape.w)?, &dp, dx)?;

        // SANet + DPNet backward; for B > 1 dxs flows into dX through the block pool.
        let sanet_params = match (
            pg[CONV3_W].take(),
            pg[CONV3_B].take(),
            pg[HEAD_W].take(),
            pg[HEAD_B].take(),
        ) {
            (Some(dw3), Some(db3), Some(dw_head), Some(db_head)) => Some(SanetParamGrads {
                dw3,
                db3,
                dw_head,
                db_head,
            }),
            _ => None,
        };
        let mut dxs_buf = cache.xs.as_ref().map(|xs| vec![T::zero(); xs.len()]);
        let xs = cache.xs.as_deref().unwrap_or(x);
        let grads = SanetGrads {
            dxs: dxs_buf.as_deref_mut().unwrap_or(dx),
            params: sanet_params,
        };
        let (w3, b3, src) = (&t[CONV3_W], &t[CONV3_B], self.conv5_source());
        match &cache.h {
            None => sanet_backward_fused(&sanet_shape, xs, w3, b3, &src, &cache.sanet, &ds, grads)?,
            Some(h) => {
                sanet_backward_unfused(&sanet_shape, xs, w3, &src, &cache.sanet, h, &ds, grads)?
            }
        }
        if let Some(dxs) = dxs_buf {
            let pool = PoolShape::new(n * c, shape.h, shape.w, shape.block)?;
            pool_backward(&pool, &dxs, dx)?;
        }
        Ok(())
    }

    /// Writes the parameters to a safetensors file under their names (see the module
    /// docs), atomically: a temporary file next to `path`, then a rename. The config is
    /// stored in the file's metadata for readers; [`Self::load`] checks names and shapes.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors: Vec<(String, Vec<usize>, &[T])> = self
            .params()
            .into_iter()
            .map(|(name, data, shape)| (name.to_string(), shape, data))
            .collect();
        let meta = HashMap::from([
            ("channels".to_string(), self.config.channels.to_string()),
            ("dpnet".to_string(), self.config.dpnet.to_string()),
            ("block".to_string(), self.config.block.to_string()),
        ]);
        crate::checkpoint::save(path, &tensors, meta)
    }

    /// Reads parameters saved by [`Self::save`] (F32 or F64 tensors, converted to `T`).
    /// A file whose tensors are missing, extra or wrongly shaped for this layer's config
    /// is an [`Error::Format`] naming each of them; the layer is unchanged then.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let (mut file, _) = crate::checkpoint::load::<T>(path)?;
        let expected = self.config.param_shapes();
        let mut loaded = Vec::with_capacity(expected.len());
        let (mut missing, mut misshaped) = (Vec::new(), Vec::new());
        for (name, shape) in &expected {
            match file.remove(*name) {
                None => missing.push(*name),
                Some((got, _)) if got != *shape => {
                    misshaped.push(format!("{name} has shape {got:?}, expected {shape:?}"))
                }
                Some((_, data)) => loaded.push(data),
            }
        }
        let mut extra: Vec<String> = file.into_keys().collect();
        extra.sort();
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!("missing tensors: {}", missing.join(", ")));
        }
        if !extra.is_empty() {
            problems.push(format!("unexpected tensors: {}", extra.join(", ")));
        }
        problems.extend(misshaped);
        if !problems.is_empty() {
            return Err(Error::format(
                path,
                format!(
                    "not the weights of a SPARTA layer with C = {}, DPNet {}: {}",
                    self.config.channels,
                    if self.config.dpnet { "on" } else { "off" },
                    problems.join("; ")
                ),
            ));
        }
        self.tensors = loaded;
        Ok(())
    }
}

fn relu<T: Real>(v: &[T]) -> Vec<T> {
    v.iter().map(|x| x.max(T::zero())).collect()
}
