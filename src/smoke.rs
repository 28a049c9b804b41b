//! One small launch of every kernel module through its public wrapper, for a first look
//! at a device: each module loads and a kernel of it runs to completion. The values are
//! not checked here (the CUDA-vs-CPU tests do that); an error names the module.
//!
//! The GPU probe (`examples/gpu_probe.rs`) runs these on a `Gpu`; `tests/smoke.rs` runs
//! them on the CPU kernel harness, which checks every argument list and bound, and that
//! each entry launches only kernels of the module it names and all modules are covered.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::augment::{self, crop_flip_draws, crop_flip_params};
use crate::error::Result;
use crate::launch::{DeviceElem, KernelDevice};
use crate::ops::add::cuda as add_cuda;
use crate::ops::batchnorm::{cuda as bn_cuda, BnShape};
use crate::ops::conv1x1::cuda as conv1x1_cuda;
use crate::ops::conv2d::{cuda as conv2d_cuda, ConvGeom};
use crate::ops::dynconv::{cuda as dynconv_cuda, DynConvShape};
use crate::ops::fc::{cuda as fc_cuda, FcShape};
use crate::ops::gate::{cuda as gate_cuda, GateShape};
use crate::ops::loss::cuda::{self as loss_cuda, CrossEntropyOut};
use crate::ops::loss::Reduction;
use crate::ops::normalize::cuda as normalize_cuda;
use crate::ops::pgd::cuda as pgd_cuda;
use crate::ops::pointwise::{cuda as pointwise_cuda, Pointwise};
use crate::ops::pool::{cuda as pool_cuda, PoolShape};
use crate::ops::relu::cuda as relu_cuda;
use crate::ops::sanet::{cuda as sanet_cuda, SanetShape};
use crate::optim::cuda as optim_cuda;

/// One module's launch.
pub struct ModuleLaunch<D: KernelDevice> {
    /// The module (`kernels/<module>.cu`).
    pub module: &'static str,
    /// What it launches, in words.
    pub what: &'static str,
    run: fn(&D) -> Result<()>,
}

impl<D: KernelDevice> ModuleLaunch<D> {
    /// Runs the launch and waits for it (a download of its output).
    pub fn run(&self, dev: &D) -> Result<()> {
        (self.run)(dev)
    }
}

/// `len` values in [-1, 1), a fixed pattern, in a new device buffer.
fn values<D: KernelDevice>(dev: &D, name: &str, len: usize) -> Result<D::Buffer<f32>> {
    let v: Vec<f32> = (0..len)
        .map(|i| ((i * 37 % 101) as f32 / 50.5) - 1.0)
        .collect();
    dev.upload(name, &v)
}

fn ones<D: KernelDevice>(dev: &D, name: &str, len: usize) -> Result<D::Buffer<f32>> {
    dev.upload(name, &vec![1.0f32; len])
}

/// Waits for the queued work by downloading `buffer`.
fn wait<D: KernelDevice, T: DeviceElem>(dev: &D, buffer: &D::Buffer<T>) -> Result<()> {
    dev.download(&dev.view(buffer)).map(drop)
}

/// One launch per embedded kernel module, sorted by module.
pub fn module_launches<D: KernelDevice>() -> Vec<ModuleLaunch<D>> {
    vec![
        ModuleLaunch {
            module: "add",
            what: "add_forward, 64 elements",
            run: |dev| {
                let (a, b) = (values(dev, "a", 64)?, values(dev, "b", 64)?);
                let mut y = dev.alloc_scratch::<f32>("y", 64)?;
                add_cuda::add_forward(
                    dev,
                    &dev.view(&a),
                    &dev.view(&b),
                    &mut dev.view_mut(&mut y),
                )?;
                wait(dev, &y)
            },
        },
        ModuleLaunch {
            module: "augment",
            what: "crop_flip_batch, 2×3×8×8",
            run: |dev| {
                let shape = [2, 3, 8, 8];
                let mut rng = ChaCha8Rng::seed_from_u64(0);
                let params = crop_flip_params(&crop_flip_draws(2, &mut rng));
                let params = dev.upload("params", &params)?;
                let src = values(dev, "src", 2 * 3 * 8 * 8)?;
                let mut dst = dev.alloc_scratch::<f32>("dst", 2 * 3 * 8 * 8)?;
                augment::cuda::crop_flip_batch(
                    dev,
                    shape,
                    &dev.view(&src),
                    &mut dev.view_mut(&mut dst),
                    &dev.view(&params),
                )?;
                wait(dev, &dst)
            },
        },
        ModuleLaunch {
            module: "batchnorm",
            what: "batchnorm_forward, 2×3×4",
            run: |dev| {
                let shape = BnShape::new(2, 3, 4)?;
                let x = values(dev, "x", 24)?;
                let (mean, var) = (values(dev, "mean", 3)?, ones(dev, "var", 3)?);
                let (gamma, beta) = (ones(dev, "gamma", 3)?, values(dev, "beta", 3)?);
                let mut y = dev.alloc_scratch::<f32>("y", 24)?;
                bn_cuda::batchnorm_forward(
                    dev,
                    &shape,
                    &dev.view(&x),
                    &dev.view(&mean),
                    &dev.view(&var),
                    &dev.view(&gamma),
                    &dev.view(&beta),
                    &mut dev.view_mut(&mut y),
                    1e-5,
                )?;
                wait(dev, &y)
            },
        },
        ModuleLaunch {
            module: "conv1x1",
            what: "relu_mask, 64 elements",
            run: |dev| {
                let h = values(dev, "h", 64)?;
                let mut dh = values(dev, "dh", 64)?;
                conv1x1_cuda::relu_mask(dev, &dev.view(&h), &mut dev.view_mut(&mut dh))?;
                wait(dev, &dh)
            },
        },
        ModuleLaunch {
            module: "conv2d",
            what: "conv2d_forward (implicit GEMM), 2×3×6×6 → 4, 3×3",
            run: |dev| {
                let g = ConvGeom {
                    n: 2,
                    c_in: 3,
                    h: 6,
                    w: 6,
                    c_out: 4,
                    k: 3,
                    stride: 1,
                    pad: 1,
                };
                let (x_len, w_len, y_len) = g.lens();
                let (x, w) = (values(dev, "x", x_len)?, values(dev, "w", w_len)?);
                let mut y = dev.alloc_scratch::<f32>("y", y_len)?;
                conv2d_cuda::conv2d_forward(
                    dev,
                    &g,
                    &dev.view(&x),
                    &dev.view(&w),
                    &mut dev.view_mut(&mut y),
                )?;
                wait(dev, &y)
            },
        },
        ModuleLaunch {
            module: "cross_entropy",
            what: "cross_entropy, 2 rows of 3 classes",
            run: |dev| {
                let logits = values(dev, "logits", 6)?;
                let labels = dev.upload("labels", &[0i32, 2])?;
                let mut loss = dev.alloc_scratch::<f32>("loss", 2)?;
                let mut dlogits = dev.alloc_scratch::<f32>("dlogits", 6)?;
                let mut correct = dev.alloc_scratch::<i32>("correct", 2)?;
                let mut loss_total = dev.alloc_scratch::<f32>("loss_total", 1)?;
                let mut correct_total = dev.alloc_scratch::<i32>("correct_total", 1)?;
                loss_cuda::cross_entropy(
                    dev,
                    2,
                    3,
                    &dev.view(&logits),
                    &dev.view(&labels),
                    Reduction::Mean,
                    CrossEntropyOut {
                        loss: &mut dev.view_mut(&mut loss),
                        dlogits: &mut dev.view_mut(&mut dlogits),
                        correct: &mut dev.view_mut(&mut correct),
                        loss_total: &mut dev.view_mut(&mut loss_total),
                        correct_total: &mut dev.view_mut(&mut correct_total),
                    },
                )?;
                wait(dev, &loss_total)
            },
        },
        ModuleLaunch {
            module: "dynconv",
            what: "dynconv_forward, 2 samples, k 3, 5 pixels",
            run: |dev| {
                let shape = DynConvShape::new(2, 3, 5)?;
                let h = values(dev, "h", shape.h_len())?;
                let (w, b) = (values(dev, "w", 2 * 3)?, values(dev, "b", 2)?);
                let mut s = dev.alloc_scratch::<f32>("s", shape.s_len())?;
                dynconv_cuda::dynconv_forward(
                    dev,
                    &shape,
                    &dev.view(&h),
                    &dev.view(&w),
                    3,
                    &dev.view(&b),
                    1,
                    &mut dev.view_mut(&mut s),
                )?;
                wait(dev, &s)
            },
        },
        ModuleLaunch {
            module: "fc",
            what: "fc_forward, 2×3 → 4",
            run: |dev| {
                let shape = FcShape::new(2, 3, 4)?;
                let (x, w, b) = (
                    values(dev, "x", 6)?,
                    values(dev, "w", 12)?,
                    values(dev, "b", 4)?,
                );
                let mut y = dev.alloc_scratch::<f32>("y", 8)?;
                fc_cuda::fc_forward(
                    dev,
                    &shape,
                    &dev.view(&x),
                    &dev.view(&w),
                    &dev.view(&b),
                    &mut dev.view_mut(&mut y),
                    false,
                )?;
                wait(dev, &y)
            },
        },
        ModuleLaunch {
            module: "gate",
            what: "gate_forward f32, 1×2×3×3, B = 1",
            run: |dev| {
                let shape = GateShape::new(1, 2, 3, 3, 1)?;
                let x = values(dev, "x", shape.x_len())?;
                let (s, c) = (
                    values(dev, "s", shape.s_len())?,
                    values(dev, "c", shape.c_len())?,
                );
                let mut y = dev.alloc_scratch::<f32>("y", shape.x_len())?;
                gate_cuda::gate_forward::<D, f32, f32>(
                    dev,
                    &shape,
                    &dev.view(&x),
                    &dev.view(&s),
                    &dev.view(&c),
                    &mut dev.view_mut(&mut y),
                )?;
                wait(dev, &y)
            },
        },
        ModuleLaunch {
            module: "normalize",
            what: "normalize_forward, 2×3×4",
            run: |dev| {
                let x = values(dev, "x", 24)?;
                let (mean, stdev) = (values(dev, "mean", 3)?, ones(dev, "stdev", 3)?);
                let mut y = dev.alloc_scratch::<f32>("y", 24)?;
                normalize_cuda::normalize_forward(
                    dev,
                    3,
                    4,
                    &dev.view(&x),
                    &dev.view(&mean),
                    &dev.view(&stdev),
                    &mut dev.view_mut(&mut y),
                )?;
                wait(dev, &y)
            },
        },
        ModuleLaunch {
            module: "pgd",
            what: "pgd_step, 64 pixels",
            run: |dev| {
                let mut x = ones(dev, "x", 64)?;
                let (grad, x0) = (values(dev, "grad", 64)?, ones(dev, "x0", 64)?);
                pgd_cuda::pgd_step(
                    dev,
                    -1.0,
                    16.0 / 255.0,
                    &mut dev.view_mut(&mut x),
                    &dev.view(&grad),
                    &dev.view(&x0),
                )?;
                wait(dev, &x)
            },
        },
        ModuleLaunch {
            module: "pointwise",
            what: "pointwise_forward GELU, 64 elements",
            run: |dev| {
                let x = values(dev, "x", 64)?;
                let mut y = dev.alloc_scratch::<f32>("y", 64)?;
                pointwise_cuda::pointwise_forward(
                    dev,
                    Pointwise::Gelu,
                    &dev.view(&x),
                    &mut dev.view_mut(&mut y),
                )?;
                wait(dev, &y)
            },
        },
        ModuleLaunch {
            module: "pool",
            what: "pool_forward f32, 2 planes of 4×4, B = 2",
            run: |dev| {
                let shape = PoolShape::new(2, 4, 4, 2)?;
                let x = values(dev, "x", shape.in_len())?;
                let mut y = dev.alloc_scratch::<f32>("y", shape.out_len())?;
                pool_cuda::pool_forward::<D, f32>(
                    dev,
                    &shape,
                    &dev.view(&x),
                    &mut dev.view_mut(&mut y),
                )?;
                wait(dev, &y)
            },
        },
        ModuleLaunch {
            module: "relu",
            what: "relu_forward f32, 64 elements",
            run: |dev| {
                let x = values(dev, "x", 64)?;
                let mut y = dev.alloc_scratch::<f32>("y", 64)?;
                relu_cuda::relu_forward::<D, f32>(dev, &dev.view(&x), &mut dev.view_mut(&mut y))?;
                wait(dev, &y)
            },
        },
        ModuleLaunch {
            module: "sanet",
            what: "sanet_pool f32, 1 sample, 2 → 3 channels, 4 pixels",
            run: |dev| {
                let shape = SanetShape::new(1, 2, 3, 4)?;
                let xs = values(dev, "xs", shape.xs_len())?;
                let (w3, b3) = (values(dev, "w3", 6)?, values(dev, "b3", 3)?);
                let mut q = dev.alloc_zeros::<f32>("q", 3)?;
                sanet_cuda::sanet_pool::<D, f32>(
                    dev,
                    &shape,
                    &dev.view(&xs),
                    &dev.view(&w3),
                    &dev.view(&b3),
                    &mut dev.view_mut(&mut q),
                )?;
                wait(dev, &q)
            },
        },
        ModuleLaunch {
            module: "sgd",
            what: "sgd_update, 64 parameters",
            run: |dev| {
                let mut p = values(dev, "p", 64)?;
                let g = values(dev, "g", 64)?;
                let mut v = dev.alloc_zeros::<f32>("v", 64)?;
                optim_cuda::sgd_update(
                    dev,
                    &mut dev.view_mut(&mut p),
                    &dev.view(&g),
                    &mut dev.view_mut(&mut v),
                    0.1,
                    0.9,
                    1e-4,
                )?;
                wait(dev, &p)
            },
        },
    ]
}
