//! The SPARTA layer on a [`KernelDevice`] (a CUDA GPU, or the CPU kernel harness in
//! tests): the same forward and backward as the CPU path (fused or unfused SANet), a
//! sequence of the ops' CUDA wrappers over device buffers. X, Y and their gradients are
//! stored as f32, f16 or bf16; weights and everything DSCANet computes stay f32.
//!
//! Fused path: `sanet_pool` and `sanet_conv5` recompute h tile by tile, so h is never
//! in device memory; backward recomputes it in `sanet_dw5` and `sanet_dh` and writes
//! only dh. Unfused path: Conv3+ReLU writes h, then pool, Conv4, Conv5 read it.

use super::{SanetPath, SpartaLayer, CONV3_B, CONV3_W};
use crate::alloc::CachingDevice;
use crate::backend::{Buf, OnDevice, View};
use crate::error::{check_len, Result};
use crate::launch::{KernelDevice, ViewLen};
use crate::ops::conv1x1::{cuda as conv, Conv1x1Shape};
use crate::ops::dynconv::{cuda as dynconv, DynConvShape};
use crate::ops::fc::{cuda as fc, FcShape};
use crate::ops::gate::{cuda as gate, GateShape};
use crate::ops::pool::{cuda as pool, PoolShape};
use crate::ops::sanet::{cuda as sanet, SanetShape};
use crate::ops::{GateMapFloat, KernelFloat};
use crate::Gpu;

/// A layer's parameters on a device (a GPU unless named), in [`SpartaLayer::params`]
/// order.
pub struct SpartaCudaWeights<D: KernelDevice = Gpu> {
    /// One buffer per parameter.
    pub tensors: Vec<D::Buffer<f32>>,
}

impl<D: KernelDevice> SpartaCudaWeights<D> {
    /// Views of the parameters, as [`SpartaLayer::forward_cuda`] takes them.
    pub fn views<'a>(&'a self, dev: &D) -> Vec<D::View<'a, f32>> {
        self.tensors.iter().map(|t| dev.view(t)).collect()
    }
}

/// What [`SpartaLayer::backward_cuda`] needs: p, ReLU(Conv1(p)), c, q, DPNet's output
/// rows, s, the block-pooled X (B > 1) and, for the unfused path only, h.
pub struct SpartaCudaCache<D: KernelDevice = Gpu> {
    shape: GateShape,
    p: D::Buffer<f32>,
    a1: D::Buffer<f32>,
    c: D::Buffer<f32>,
    xs: Option<D::Buffer<f32>>,
    q: D::Buffer<f32>,
    head: Option<D::Buffer<f32>>,
    s: D::Buffer<f32>,
    h: Option<D::Buffer<f32>>,
}

impl<D: KernelDevice> SpartaCudaCache<D> {
    /// The spatial map `s` `[N, SH, SW]`.
    pub fn s(&self) -> &D::Buffer<f32> {
        &self.s
    }

    /// The channel vector `c` `[N, C]`.
    pub fn c(&self) -> &D::Buffer<f32> {
        &self.c
    }
}

/// What SANet and DPNet's forward hands on: q, DPNet's rows, s and (unfused) h.
struct SanetForward<D: KernelDevice> {
    q: D::Buffer<f32>,
    head: Option<D::Buffer<f32>>,
    s: D::Buffer<f32>,
    h: Option<D::Buffer<f32>>,
}

/// Gradients from [`SpartaLayer::backward_cuda`].
pub struct SpartaCudaGrads<D: KernelDevice = Gpu, T: KernelFloat = f32> {
    /// Gradient of X, stored like X.
    pub dx: D::Buffer<T>,
    /// Parameter gradients in [`SpartaLayer::params`] order; empty for a frozen layer
    /// and when they were not asked for.
    pub params: Vec<D::Buffer<f32>>,
}

/// All of a view, as a new view (to hold beside views made from buffers).
fn whole<'a, D: KernelDevice>(dev: &D, v: &'a D::View<'_, f32>) -> Result<D::View<'a, f32>> {
    dev.slice(v, 0..v.len())
}

/// Conv5's per-sample weights, biases and row stride.
type Conv5Rows<'a, D> = (
    <D as KernelDevice>::View<'a, f32>,
    <D as KernelDevice>::View<'a, f32>,
    usize,
);

/// Conv5's per-sample weights and biases and their row stride `ld`: DPNet's rows
/// (`ld = Co + 1`, the bias at offset Co of the same buffer) or the learned vector
/// broadcast (`ld = 0`).
fn conv5_rows<'a, D: KernelDevice>(
    dev: &D,
    head: Option<&'a D::Buffer<f32>>,
    weights: &'a [D::View<'_, f32>],
    co: usize,
) -> Result<Conv5Rows<'a, D>> {
    Ok(match head {
        Some(d) => (
            dev.view(d),
            dev.view_range(d, co..buffer_len(dev, d))?,
            co + 1,
        ),
        None => (whole(dev, &weights[6])?, whole(dev, &weights[7])?, 0),
    })
}

/// Elements of a buffer.
fn buffer_len<D: KernelDevice>(dev: &D, b: &D::Buffer<f32>) -> usize {
    dev.view(b).len()
}

/// A weight gradient and its bias gradient.
type GradPair<'a, 'b, D> = Option<(
    &'a mut <D as KernelDevice>::ViewMut<'b, f32>,
    &'a mut <D as KernelDevice>::ViewMut<'b, f32>,
)>;

fn weight_and_bias<'a, 'b, D: KernelDevice>(
    w: &'a mut Option<D::ViewMut<'b, f32>>,
    b: &'a mut Option<D::ViewMut<'b, f32>>,
) -> GradPair<'a, 'b, D> {
    match (w.as_mut(), b.as_mut()) {
        (Some(w), Some(b)) => Some((w, b)),
        _ => None,
    }
}

impl SpartaLayer<f32> {
    /// Copies the parameters to `dev`.
    pub fn to_cuda<D: KernelDevice>(&self, dev: &D) -> Result<SpartaCudaWeights<D>> {
        let names = self.config.param_shapes();
        let tensors = self
            .tensors
            .iter()
            .zip(&names)
            .map(|(t, (name, _))| dev.upload(name, t))
            .collect::<Result<Vec<_>>>()?;
        Ok(SpartaCudaWeights { tensors })
    }

    fn check_weights<D: KernelDevice>(&self, weights: &[D::View<'_, f32>]) -> Result<()> {
        const OP: &str = "sparta_cuda";
        check_len(OP, "weights", weights.len(), self.tensors.len())?;
        for ((name, shape), t) in self.config.param_shapes().iter().zip(weights) {
            check_len(OP, name, t.len(), shape.iter().product())?;
        }
        Ok(())
    }

    /// Forward on a device (a GPU, or the CPU kernel harness in tests): `x`
    /// `[n, C, h, w]` on `dev` stored as f32, f16 or bf16 (`T`; `y` the same), weights
    /// in [`SpartaLayer::params`] order (views of [`Self::to_cuda`]'s buffers,
    /// [`SpartaCudaWeights::views`], or of a model's). Everything DSCANet computes (the
    /// pooled X, q, s, c) is f32 whatever `T`: only the activation-sized tensors take
    /// the storage type, and the gate reads s and c unrounded.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_cuda<D: KernelDevice, T: KernelFloat>(
        &self,
        dev: &D,
        weights: &[D::View<'_, f32>],
        x: &D::View<'_, T>,
        n: usize,
        h: usize,
        w: usize,
        path: SanetPath,
    ) -> Result<(D::Buffer<T>, SpartaCudaCache<D>)>
    where
        f32: GateMapFloat<T>,
    {
        let (shape, sn) = self.shapes(n, h, w)?;
        check_len("sparta_forward_cuda", "x", x.len(), shape.x_len())?;
        self.check_weights::<D>(weights)?;
        let (c, co) = (self.config.channels, self.config.reduced());
        let t = weights;

        // CANet: c = Conv2(ReLU(Conv1(mean_hw X))).
        let mut p = dev.alloc_scratch::<f32>("p", n * c)?;
        pool::pool_forward(
            dev,
            &PoolShape::global(n * c, h, w)?,
            x,
            &mut dev.view_mut(&mut p),
        )?;
        let mut a1 = dev.alloc_scratch::<f32>("a1", n * co)?;
        let conv1 = FcShape::new(n, c, co)?;
        fc::fc_forward(
            dev,
            &conv1,
            &dev.view(&p),
            &t[0],
            &t[1],
            &mut dev.view_mut(&mut a1),
            true,
        )?;
        let mut cvec = dev.alloc_scratch::<f32>("c", n * c)?;
        let conv2 = FcShape::new(n, co, c)?;
        fc::fc_forward(
            dev,
            &conv2,
            &dev.view(&a1),
            &t[2],
            &t[3],
            &mut dev.view_mut(&mut cvec),
            false,
        )?;

        // SANet + DPNet on X pooled by B×B (f32), or on X itself when B = 1.
        let xs = if shape.block > 1 {
            let block = PoolShape::new(n * c, h, w, shape.block)?;
            let mut xs = dev.alloc_scratch::<f32>("xs", block.out_len())?;
            pool::pool_forward(dev, &block, x, &mut dev.view_mut(&mut xs))?;
            Some(xs)
        } else {
            None
        };
        let sanet = match &xs {
            Some(b) => self.sanet_forward(dev, &sn, t, &dev.view(b), path)?,
            None => self.sanet_forward(dev, &sn, t, x, path)?,
        };
        let mut y = dev.alloc_scratch::<T>("y", shape.x_len())?;
        gate::gate_forward(
            dev,
            &shape,
            x,
            &dev.view(&sanet.s),
            &dev.view(&cvec),
            &mut dev.view_mut(&mut y),
        )?;
        let cache = SpartaCudaCache {
            shape,
            p,
            a1,
            c: cvec,
            xs,
            q: sanet.q,
            head: sanet.head,
            s: sanet.s,
            h: sanet.h,
        };
        Ok((y, cache))
    }

    /// SANet and DPNet forward on `xs` (X when B = 1, else its f32 block pool): q, the
    /// DPNet rows, s and, on the unfused path, h.
    fn sanet_forward<D: KernelDevice, XS: KernelFloat>(
        &self,
        dev: &D,
        sn: &SanetShape,
        t: &[D::View<'_, f32>],
        xs: &D::View<'_, XS>,
        path: SanetPath,
    ) -> Result<SanetForward<D>> {
        let (n, c, co, px) = (sn.n, self.config.channels, self.config.reduced(), sn.pixels);
        // The fused pool zeroes q and adds into it (on the harness a scratch buffer would
        // be poisoned at that launch), so q starts as zeros.
        let mut q = dev.alloc_zeros::<f32>("q", n * co)?;
        let mut s = dev.alloc_scratch::<f32>("s", n * px)?;
        let (w3, b3) = (whole(dev, &t[CONV3_W])?, whole(dev, &t[CONV3_B])?);
        let h = match path {
            SanetPath::Fused => {
                sanet::sanet_pool(dev, sn, xs, &w3, &b3, &mut dev.view_mut(&mut q))?;
                None
            }
            SanetPath::Unfused => {
                let mut hb = dev.alloc_scratch::<f32>("h", sn.h_len())?;
                let conv3 = Conv1x1Shape::new(n, c, co, px)?;
                conv::conv1x1_forward(dev, &conv3, xs, &w3, &b3, &mut dev.view_mut(&mut hb), true)?;
                let mean = PoolShape::global(n * co, 1, px)?;
                pool::pool_forward(dev, &mean, &dev.view(&hb), &mut dev.view_mut(&mut q))?;
                Some(hb)
            }
        };
        let head = if self.config.dpnet {
            let mut d = dev.alloc_scratch::<f32>("head", n * (co + 1))?;
            let conv4 = FcShape::new(n, co, co + 1)?;
            fc::fc_forward(
                dev,
                &conv4,
                &dev.view(&q),
                &t[6],
                &t[7],
                &mut dev.view_mut(&mut d),
                false,
            )?;
            Some(d)
        } else {
            None
        };
        {
            let (w5, b5, ld) = conv5_rows(dev, head.as_ref(), t, co)?;
            let mut s_out = dev.view_mut(&mut s);
            match &h {
                None => sanet::sanet_conv5(dev, sn, xs, &w3, &b3, &w5, ld, &b5, ld, &mut s_out)?,
                Some(hb) => dynconv::dynconv_forward(
                    dev,
                    &DynConvShape::new(n, co, px)?,
                    &dev.view(hb),
                    &w5,
                    ld,
                    &b5,
                    ld,
                    &mut s_out,
                )?,
            }
        }
        Ok(SanetForward { q, head, s, h })
    }

    /// Backward on a device: dX (stored as `T`, like `x` and `dy`) and, with
    /// `param_grads` and unless the layer is frozen, every parameter's gradient (an
    /// attack asks for dX alone, which skips Conv3's weight-gradient product over every
    /// pixel and the other weight gradients). dX gets the gate's term, then DSCANet's
    /// two paths are added to it, each summed in f32 and rounded once to `T`.
    pub fn backward_cuda<D: KernelDevice, T: KernelFloat>(
        &self,
        dev: &D,
        weights: &[D::View<'_, f32>],
        x: &D::View<'_, T>,
        cache: &SpartaCudaCache<D>,
        dy: &D::View<'_, T>,
        param_grads: bool,
    ) -> Result<SpartaCudaGrads<D, T>>
    where
        f32: GateMapFloat<T>,
    {
        const OP: &str = "sparta_backward_cuda";
        let shape = cache.shape;
        let (_, sn) = self.shapes(shape.n, shape.h, shape.w)?;
        check_len(OP, "cache channels", shape.c, self.config.channels)?;
        check_len(OP, "cache block", shape.block, self.config.block)?;
        check_len(OP, "x", x.len(), shape.x_len())?;
        check_len(OP, "dy", dy.len(), shape.x_len())?;
        self.check_weights::<D>(weights)?;
        let (n, c, co) = (shape.n, shape.c, self.config.reduced());
        let t = weights;

        // dx is overwritten by the gate, then the pools add into it: zeros, not scratch.
        let mut dx = dev.alloc_zeros::<T>("dx", shape.x_len())?;
        let mut ds = dev.alloc_scratch::<f32>("ds", shape.s_len())?;
        let mut dc = dev.alloc_scratch::<f32>("dc", shape.c_len())?;
        gate::gate_backward(
            dev,
            &shape,
            x,
            &dev.view(&cache.s),
            &dev.view(&cache.c),
            dy,
            &mut dev.view_mut(&mut dx),
            &mut dev.view_mut(&mut ds),
            &mut dev.view_mut(&mut dc),
        )?;

        let mut params = Vec::new();
        if param_grads && !self.config.frozen {
            for (p, (name, _)) in t.iter().zip(self.config.param_shapes()) {
                params.push(dev.alloc_zeros::<f32>(&format!("d{name}"), p.len())?);
            }
        }
        let mut views = params.iter_mut().map(|g| dev.view_mut(g));
        let mut g: [Option<D::ViewMut<'_, f32>>; 8] = std::array::from_fn(|_| views.next());
        let [g1w, g1b, g2w, g2b, sanet_grads @ ..] = &mut g;

        // CANet backward; dp flows into dX through the mean pool.
        let mut da1 = dev.alloc_zeros::<f32>("da1", n * co)?;
        fc::fc_backward(
            dev,
            &FcShape::new(n, co, c)?,
            &dev.view(&cache.a1),
            &t[2],
            &dev.view(&dc),
            Some(&mut dev.view_mut(&mut da1)),
            weight_and_bias::<D>(g2w, g2b),
        )?;
        conv::relu_mask(dev, &dev.view(&cache.a1), &mut dev.view_mut(&mut da1))?;
        let mut dp = dev.alloc_zeros::<f32>("dp", n * c)?;
        fc::fc_backward(
            dev,
            &FcShape::new(n, c, co)?,
            &dev.view(&cache.p),
            &t[0],
            &dev.view(&da1),
            Some(&mut dev.view_mut(&mut dp)),
            weight_and_bias::<D>(g1w, g1b),
        )?;
        let mean = PoolShape::global(n * c, shape.h, shape.w)?;
        pool::pool_backward(dev, &mean, &dev.view(&dp), &mut dev.view_mut(&mut dx))?;

        // SANet and DPNet: on B = 1 their dX term goes straight into dx; for B > 1 into
        // the gradient of the f32 block pool, which then flows into dx.
        let ds_view = dev.view(&ds);
        match &cache.xs {
            None => self.sanet_backward(
                dev,
                &sn,
                t,
                cache,
                x,
                &ds_view,
                &mut dev.view_mut(&mut dx),
                sanet_grads,
            )?,
            Some(xs) => {
                let mut dxs = dev.alloc_zeros::<f32>("dxs", buffer_len(dev, xs))?;
                self.sanet_backward(
                    dev,
                    &sn,
                    t,
                    cache,
                    &dev.view(xs),
                    &ds_view,
                    &mut dev.view_mut(&mut dxs),
                    sanet_grads,
                )?;
                let block = PoolShape::new(n * c, shape.h, shape.w, shape.block)?;
                pool::pool_backward(dev, &block, &dev.view(&dxs), &mut dev.view_mut(&mut dx))?;
            }
        }
        drop(g);
        Ok(SpartaCudaGrads { dx, params })
    }

    /// SANet and DPNet backward given ds: Conv5's (or DPNet's) weight gradients, dq,
    /// dh, then Conv3's backward, whose input gradient is added to `dxs` (the gradient
    /// of `xs`, stored like it). `grads` are the gradients of Conv3's and Conv4's (or
    /// Conv5's) weights and biases, `None` where not asked for.
    #[allow(clippy::too_many_arguments)]
    fn sanet_backward<'b, D: KernelDevice, XS: KernelFloat>(
        &self,
        dev: &D,
        sn: &SanetShape,
        t: &[D::View<'_, f32>],
        cache: &SpartaCudaCache<D>,
        xs: &D::View<'_, XS>,
        ds: &D::View<'_, f32>,
        dxs: &mut D::ViewMut<'_, XS>,
        grads: &mut [Option<D::ViewMut<'b, f32>>; 4],
    ) -> Result<()> {
        let (n, c, co, px) = (sn.n, self.config.channels, self.config.reduced(), sn.pixels);
        let [g3w, g3b, ghw, ghb] = grads;
        let (w3, b3) = (whole(dev, &t[CONV3_W])?, whole(dev, &t[CONV3_B])?);
        let dyn_shape = DynConvShape::new(n, co, px)?;
        let conv5_weight_grads = |dw: &mut D::ViewMut<'_, f32>, ld: usize| -> Result<()> {
            match &cache.h {
                None => sanet::sanet_dw5(dev, sn, xs, &w3, &b3, ds, dw, ld),
                Some(hb) => {
                    dynconv::dynconv_backward_weight(dev, &dyn_shape, &dev.view(hb), ds, dw, ld)
                }
            }
        };
        let mut dq = dev.alloc_zeros::<f32>("dq", n * co)?;
        if cache.head.is_some() {
            let mut dd = dev.alloc_zeros::<f32>("dd", n * (co + 1))?;
            {
                conv5_weight_grads(&mut dev.view_mut(&mut dd), co + 1)?;
                let mut db5 = dev.view_range_mut(&mut dd, co..n * (co + 1))?;
                dynconv::dynconv_backward_bias(dev, &dyn_shape, ds, &mut db5, co + 1)?;
            }
            fc::fc_backward(
                dev,
                &FcShape::new(n, co, co + 1)?,
                &dev.view(&cache.q),
                &t[6],
                &dev.view(&dd),
                Some(&mut dev.view_mut(&mut dq)),
                weight_and_bias::<D>(ghw, ghb),
            )?;
        } else if let (Some(dw5), Some(db5)) = (ghw.as_mut(), ghb.as_mut()) {
            conv5_weight_grads(dw5, 0)?;
            dynconv::dynconv_backward_bias(dev, &dyn_shape, ds, db5, 0)?;
        }

        // dh, then Conv3's backward.
        let (w5, _, ld) = conv5_rows(dev, cache.head.as_ref(), t, co)?;
        // sanet_dh overwrites dh (scratch, no memset); the unfused path adds into it.
        let mut dh = match cache.h {
            None => dev.alloc_scratch::<f32>("dh", sn.h_len())?,
            Some(_) => dev.alloc_zeros::<f32>("dh", sn.h_len())?,
        };
        {
            let mut dh_view = dev.view_mut(&mut dh);
            match &cache.h {
                None => sanet::sanet_dh(
                    dev,
                    sn,
                    xs,
                    &w3,
                    &b3,
                    &w5,
                    ld,
                    ds,
                    &dev.view(&dq),
                    &mut dh_view,
                )?,
                Some(hb) => {
                    dynconv::dynconv_backward_input(dev, &dyn_shape, &w5, ld, ds, &mut dh_view)?;
                    let mean = PoolShape::global(n * co, 1, px)?;
                    pool::pool_backward(dev, &mean, &dev.view(&dq), &mut dh_view)?;
                    conv::relu_mask(dev, &dev.view(hb), &mut dh_view)?;
                }
            }
        }
        conv::conv1x1_backward(
            dev,
            &Conv1x1Shape::new(n, c, co, px)?,
            xs,
            &w3,
            &dev.view(&dh),
            Some(dxs),
            g3w.as_mut(),
            g3b.as_mut(),
        )?;
        Ok(())
    }
}

impl<D: KernelDevice + 'static> crate::nn::sparta_node::SpartaKernels for OnDevice<D> {
    type Cache = SpartaCudaCache<CachingDevice<D>>;

    fn sparta_forward(
        dev: &CachingDevice<D>,
        layer: &SpartaLayer<f32>,
        weights: &[View<'_, Self>],
        x: &View<'_, Self>,
        n: usize,
        h: usize,
        w: usize,
        _: bool,
    ) -> Result<(Buf<Self>, Self::Cache)> {
        layer.forward_cuda(dev, weights, x, n, h, w, SanetPath::Fused)
    }

    fn sparta_backward(
        dev: &CachingDevice<D>,
        layer: &SpartaLayer<f32>,
        weights: &[View<'_, Self>],
        x: &View<'_, Self>,
        cache: &Self::Cache,
        dy: &View<'_, Self>,
        param_grads: bool,
    ) -> Result<(Buf<Self>, Vec<Buf<Self>>)> {
        let g = layer.backward_cuda(dev, weights, x, cache, dy, param_grads)?;
        Ok((g.dx, g.params))
    }
}
