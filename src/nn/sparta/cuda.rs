//! The SPARTA layer on a CUDA GPU, f32: the same forward and backward as the CPU path
//! (fused or unfused SANet), launched on `gpu.stream()` over device buffers.
//!
//! Fused path: `sanet_pool` and `sanet_conv5` recompute h tile by tile, so h is never
//! in device memory; backward recomputes it in `sanet_dw5` and `sanet_dh` and writes
//! only dh. Unfused path: Conv3+ReLU writes h, then pool, Conv4, Conv5 read it.

use cudarc::driver::{CudaSlice, CudaView, CudaViewMut};

use super::{SanetPath, SpartaLayer, CONV3_B, CONV3_W};
use crate::error::{check_len, Result};
use crate::ops::conv1x1::{cuda as conv, Conv1x1Shape};
use crate::ops::dynconv::{cuda as dynconv, DynConvShape};
use crate::ops::fc::{cuda as fc, FcShape};
use crate::ops::gate::{cuda as gate, GateShape};
use crate::ops::pool::{cuda as pool, PoolShape};
use crate::ops::sanet::cuda as sanet;
use crate::Gpu;

/// A layer's parameters on a GPU, in [`SpartaLayer::params`] order.
pub struct SpartaCudaWeights {
    /// One buffer per parameter.
    pub tensors: Vec<CudaSlice<f32>>,
}

/// What [`SpartaLayer::backward_cuda`] needs: p, ReLU(Conv1(p)), c, q, DPNet's output
/// rows, s, the block-pooled X (B > 1) and, for the unfused path only, h.
pub struct SpartaCudaCache {
    shape: GateShape,
    p: CudaSlice<f32>,
    a1: CudaSlice<f32>,
    c: CudaSlice<f32>,
    xs: Option<CudaSlice<f32>>,
    q: CudaSlice<f32>,
    head: Option<CudaSlice<f32>>,
    s: CudaSlice<f32>,
    h: Option<CudaSlice<f32>>,
}

impl SpartaCudaCache {
    /// The spatial map `s` `[N, SH, SW]`.
    pub fn s(&self) -> &CudaSlice<f32> {
        &self.s
    }

    /// The channel vector `c` `[N, C]`.
    pub fn c(&self) -> &CudaSlice<f32> {
        &self.c
    }
}

/// Gradients from [`SpartaLayer::backward_cuda`].
pub struct SpartaCudaGrads {
    /// Gradient of X.
    pub dx: CudaSlice<f32>,
    /// Parameter gradients in [`SpartaLayer::params`] order; empty for a frozen layer.
    pub params: Vec<CudaSlice<f32>>,
}

/// Conv5's per-sample weights: DPNet's rows (`ld = Co + 1`, bias at offset Co) or the
/// learned vector broadcast (`ld = 0`).
fn conv5_rows<'a>(
    head: Option<&'a CudaSlice<f32>>,
    weights: &'a SpartaCudaWeights,
    co: usize,
) -> (CudaView<'a, f32>, CudaView<'a, f32>, usize) {
    match head {
        Some(d) => (d.as_view(), d.slice(co..), co + 1),
        None => (
            weights.tensors[6].as_view(),
            weights.tensors[7].as_view(),
            0,
        ),
    }
}

/// A weight gradient and its bias gradient.
type GradPair<'a, 'b> = Option<(&'a mut CudaViewMut<'b, f32>, &'a mut CudaViewMut<'b, f32>)>;

fn weight_and_bias<'a, 'b>(
    w: &'a mut Option<CudaViewMut<'b, f32>>,
    b: &'a mut Option<CudaViewMut<'b, f32>>,
) -> GradPair<'a, 'b> {
    match (w.as_mut(), b.as_mut()) {
        (Some(w), Some(b)) => Some((w, b)),
        _ => None,
    }
}

impl SpartaLayer<f32> {
    /// Copies the parameters to `gpu`.
    pub fn to_cuda(&self, gpu: &Gpu) -> Result<SpartaCudaWeights> {
        let tensors = self
            .tensors
            .iter()
            .map(|t| Ok(gpu.stream().clone_htod(t)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(SpartaCudaWeights { tensors })
    }

    fn check_weights(&self, weights: &SpartaCudaWeights) -> Result<()> {
        const OP: &str = "sparta_cuda";
        check_len(OP, "weights", weights.tensors.len(), self.tensors.len())?;
        for ((name, shape), t) in self.config.param_shapes().iter().zip(&weights.tensors) {
            check_len(OP, name, t.len(), shape.iter().product())?;
        }
        Ok(())
    }

    /// Forward on the GPU: `x` `[n, C, h, w]` on `gpu`, weights from [`Self::to_cuda`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward_cuda(
        &self,
        gpu: &Gpu,
        weights: &SpartaCudaWeights,
        x: &CudaView<'_, f32>,
        n: usize,
        h: usize,
        w: usize,
        path: SanetPath,
    ) -> Result<(CudaSlice<f32>, SpartaCudaCache)> {
        let (shape, sn) = self.shapes(n, h, w)?;
        check_len("sparta_forward_cuda", "x", x.len(), shape.x_len())?;
        self.check_weights(weights)?;
        let (c, co, px) = (self.config.channels, self.config.reduced(), sn.pixels);
        let t = &weights.tensors;
        let stream = gpu.stream();

        // CANet: c = Conv2(ReLU(Conv1(mean_hw X))).
        let mut p = stream.alloc_zeros::<f32>(n * c)?;
        pool::pool_forward(
            gpu,
            &PoolShape::global(n * c, h, w)?,
            x,
            &mut p.as_view_mut(),
        )?;
        let mut a1 = stream.alloc_zeros::<f32>(n * co)?;
        let (w1, b1) = (t[0].as_view(), t[1].as_view());
        let conv1 = FcShape::new(n, c, co)?;
        fc::fc_forward(
            gpu,
            &conv1,
            &p.as_view(),
            &w1,
            &b1,
            &mut a1.as_view_mut(),
            true,
        )?;
        let mut cvec = stream.alloc_zeros::<f32>(n * c)?;
        let (w2, b2) = (t[2].as_view(), t[3].as_view());
        let conv2 = FcShape::new(n, co, c)?;
        fc::fc_forward(
            gpu,
            &conv2,
            &a1.as_view(),
            &w2,
            &b2,
            &mut cvec.as_view_mut(),
            false,
        )?;

        // SANet + DPNet on X pooled by B×B.
        let xs = if shape.block > 1 {
            let block = PoolShape::new(n * c, h, w, shape.block)?;
            let mut xs = stream.alloc_zeros::<f32>(block.out_len())?;
            pool::pool_forward(gpu, &block, x, &mut xs.as_view_mut())?;
            Some(xs)
        } else {
            None
        };
        let xs_view = xs.as_ref().map_or_else(|| x.slice(..), |b| b.as_view());
        let (w3, b3) = (t[CONV3_W].as_view(), t[CONV3_B].as_view());
        let mut q = stream.alloc_zeros::<f32>(n * co)?;
        let hbuf = match path {
            SanetPath::Fused => {
                sanet::sanet_pool(gpu, &sn, &xs_view, &w3, &b3, &mut q.as_view_mut())?;
                None
            }
            SanetPath::Unfused => {
                let mut hb = stream.alloc_zeros::<f32>(sn.h_len())?;
                let conv3 = Conv1x1Shape::new(n, c, co, px)?;
                conv::conv1x1_forward(
                    gpu,
                    &conv3,
                    &xs_view,
                    &w3,
                    &b3,
                    &mut hb.as_view_mut(),
                    true,
                )?;
                let mean = PoolShape::global(n * co, 1, px)?;
                pool::pool_forward(gpu, &mean, &hb.as_view(), &mut q.as_view_mut())?;
                Some(hb)
            }
        };
        let head = if self.config.dpnet {
            let mut d = stream.alloc_zeros::<f32>(n * (co + 1))?;
            let (w4, b4) = (t[6].as_view(), t[7].as_view());
            let conv4 = FcShape::new(n, co, co + 1)?;
            fc::fc_forward(
                gpu,
                &conv4,
                &q.as_view(),
                &w4,
                &b4,
                &mut d.as_view_mut(),
                false,
            )?;
            Some(d)
        } else {
            None
        };
        let (w5, b5, ld) = conv5_rows(head.as_ref(), weights, co);
        let mut s = stream.alloc_zeros::<f32>(n * px)?;
        match &hbuf {
            None => {
                let mut s_view = s.as_view_mut();
                sanet::sanet_conv5(gpu, &sn, &xs_view, &w3, &b3, &w5, ld, &b5, ld, &mut s_view)?
            }
            Some(hb) => dynconv::dynconv_forward(
                gpu,
                &DynConvShape::new(n, co, px)?,
                &hb.as_view(),
                &w5,
                ld,
                &b5,
                ld,
                &mut s.as_view_mut(),
            )?,
        }

        let mut y = stream.alloc_zeros::<f32>(shape.x_len())?;
        let (s_view, c_view) = (s.as_view(), cvec.as_view());
        gate::gate_forward(gpu, &shape, x, &s_view, &c_view, &mut y.as_view_mut())?;
        let cache = SpartaCudaCache {
            shape,
            p,
            a1,
            c: cvec,
            xs,
            q,
            head,
            s,
            h: hbuf,
        };
        Ok((y, cache))
    }

    /// Backward on the GPU: dX and (unless frozen) every parameter's gradient.
    pub fn backward_cuda(
        &self,
        gpu: &Gpu,
        weights: &SpartaCudaWeights,
        x: &CudaView<'_, f32>,
        cache: &SpartaCudaCache,
        dy: &CudaView<'_, f32>,
    ) -> Result<SpartaCudaGrads> {
        const OP: &str = "sparta_backward_cuda";
        let shape = cache.shape;
        let (_, sn) = self.shapes(shape.n, shape.h, shape.w)?;
        check_len(OP, "cache channels", shape.c, self.config.channels)?;
        check_len(OP, "cache block", shape.block, self.config.block)?;
        check_len(OP, "x", x.len(), shape.x_len())?;
        check_len(OP, "dy", dy.len(), shape.x_len())?;
        self.check_weights(weights)?;
        let (n, c, co, px) = (shape.n, shape.c, self.config.reduced(), sn.pixels);
        let t = &weights.tensors;
        let stream = gpu.stream();

        let mut dx = stream.alloc_zeros::<f32>(shape.x_len())?;
        let mut ds = stream.alloc_zeros::<f32>(shape.s_len())?;
        let mut dc = stream.alloc_zeros::<f32>(shape.c_len())?;
        gate::gate_backward(
            gpu,
            &shape,
            x,
            &cache.s.as_view(),
            &cache.c.as_view(),
            dy,
            &mut dx.as_view_mut(),
            &mut ds.as_view_mut(),
            &mut dc.as_view_mut(),
        )?;

        let mut params = Vec::new();
        if !self.config.frozen {
            for p in t {
                params.push(stream.alloc_zeros::<f32>(p.len())?);
            }
        }
        let mut views = params.iter_mut().map(|g| g.as_view_mut());
        let mut g: [Option<CudaViewMut<'_, f32>>; 8] = std::array::from_fn(|_| views.next());
        let [g1w, g1b, g2w, g2b, g3w, g3b, ghw, ghb] = &mut g;

        // CANet backward; dp flows into dX through the mean pool.
        let mut da1 = stream.alloc_zeros::<f32>(n * co)?;
        fc::fc_backward(
            gpu,
            &FcShape::new(n, co, c)?,
            &cache.a1.as_view(),
            &t[2].as_view(),
            &dc.as_view(),
            Some(&mut da1.as_view_mut()),
            weight_and_bias(g2w, g2b),
        )?;
        conv::relu_mask(gpu, &cache.a1.as_view(), &mut da1.as_view_mut())?;
        let mut dp = stream.alloc_zeros::<f32>(n * c)?;
        fc::fc_backward(
            gpu,
            &FcShape::new(n, c, co)?,
            &cache.p.as_view(),
            &t[0].as_view(),
            &da1.as_view(),
            Some(&mut dp.as_view_mut()),
            weight_and_bias(g1w, g1b),
        )?;
        let mean = PoolShape::global(n * c, shape.h, shape.w)?;
        pool::pool_backward(gpu, &mean, &dp.as_view(), &mut dx.as_view_mut())?;

        // Conv5's weight gradients, then back through DPNet to dq.
        let xs_view = cache
            .xs
            .as_ref()
            .map_or_else(|| x.slice(..), |b| b.as_view());
        let (w3, b3) = (t[CONV3_W].as_view(), t[CONV3_B].as_view());
        let dyn_shape = DynConvShape::new(n, co, px)?;
        let ds_view = ds.as_view();
        let conv5_weight_grads = |dw: &mut CudaViewMut<'_, f32>, ld: usize| -> Result<()> {
            match &cache.h {
                None => sanet::sanet_dw5(gpu, &sn, &xs_view, &w3, &b3, &ds_view, dw, ld),
                Some(hb) => dynconv::dynconv_backward_weight(
                    gpu,
                    &dyn_shape,
                    &hb.as_view(),
                    &ds_view,
                    dw,
                    ld,
                ),
            }
        };
        let mut dq = stream.alloc_zeros::<f32>(n * co)?;
        if cache.head.is_some() {
            let mut dd = stream.alloc_zeros::<f32>(n * (co + 1))?;
            conv5_weight_grads(&mut dd.as_view_mut(), co + 1)?;
            let mut db5 = dd.slice_mut(co..);
            dynconv::dynconv_backward_bias(gpu, &dyn_shape, &ds_view, &mut db5, co + 1)?;
            fc::fc_backward(
                gpu,
                &FcShape::new(n, co, co + 1)?,
                &cache.q.as_view(),
                &t[6].as_view(),
                &dd.as_view(),
                Some(&mut dq.as_view_mut()),
                weight_and_bias(ghw, ghb),
            )?;
        } else if let (Some(dw5), Some(db5)) = (ghw.as_mut(), ghb.as_mut()) {
            conv5_weight_grads(dw5, 0)?;
            dynconv::dynconv_backward_bias(gpu, &dyn_shape, &ds_view, db5, 0)?;
        }

        // dh, then Conv3's backward; for B > 1 dxs flows into dX through the block pool.
        let (w5, _, ld) = conv5_rows(cache.head.as_ref(), weights, co);
        let mut dh = stream.alloc_zeros::<f32>(sn.h_len())?;
        match &cache.h {
            None => {
                let dq_view = dq.as_view();
                let mut dh_view = dh.as_view_mut();
                sanet::sanet_dh(
                    gpu,
                    &sn,
                    &xs_view,
                    &w3,
                    &b3,
                    &w5,
                    ld,
                    &ds_view,
                    &dq_view,
                    &mut dh_view,
                )?
            }
            Some(hb) => {
                let mut dh_view = dh.as_view_mut();
                dynconv::dynconv_backward_input(gpu, &dyn_shape, &w5, ld, &ds_view, &mut dh_view)?;
                let mean = PoolShape::global(n * co, 1, px)?;
                pool::pool_backward(gpu, &mean, &dq.as_view(), &mut dh_view)?;
                conv::relu_mask(gpu, &hb.as_view(), &mut dh_view)?;
            }
        }
        let conv3 = Conv1x1Shape::new(n, c, co, px)?;
        let mut dxs_buf = match &cache.xs {
            Some(xs) => Some(stream.alloc_zeros::<f32>(xs.len())?),
            None => None,
        };
        {
            let mut dxs = match dxs_buf.as_mut() {
                Some(b) => b.as_view_mut(),
                None => dx.as_view_mut(),
            };
            conv::conv1x1_backward(
                gpu,
                &conv3,
                &xs_view,
                &w3,
                &dh.as_view(),
                Some(&mut dxs),
                g3w.as_mut(),
                g3b.as_mut(),
            )?;
        }
        if let Some(dxs) = &dxs_buf {
            let block = PoolShape::new(n * c, shape.h, shape.w, shape.block)?;
            pool::pool_backward(gpu, &block, &dxs.as_view(), &mut dx.as_view_mut())?;
        }
        Ok(SpartaCudaGrads { dx, params })
    }
}
