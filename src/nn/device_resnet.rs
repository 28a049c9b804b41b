//! A [`ResNet`] whose parameters, buffers, optimizer state, activations and gradients
//! live on a [`KernelDevice`]: the training and attack path on a GPU.
//!
//! [`DeviceResNet`] runs the same wiring as the CPU model on a
//! [`DeviceTape`], with every op one of the crate's CUDA wrappers: implicit-GEMM conv2d,
//! batch norm, ReLU, the residual add, the fused SPARTA layer, pooling, the linear
//! layer, cross-entropy, SGD, the PGD step and random start, crop + flip. Inside a
//! step nothing returns to the host but the loss and accuracy (and, in an evaluation
//! attack, the logits and per-sample losses its snapshots report): images and labels go
//! up once, the random draws (crops, flips, targets, the random start) are
//! made on the host from the trainer's stream, so a run follows the CPU model's RNG
//! stream exactly.
//!
//! All allocations go through a [`CachingDevice`]: from the second step on, a step
//! allocates nothing on the device ([`DeviceResNet::alloc_stats`]).
//!
//! The host [`ResNet`] it was made from is kept for its configuration and wiring;
//! [`DeviceResNet::to_host`] gives the device state back as a host model (checkpoints
//! are written from it, so they are the CPU model's files).
//!
//! ```
//! use sparta::nn::device_resnet::DeviceResNet;
//! use sparta::nn::{ResNet, ResNetConfig};
//! use sparta::KernelDevice;
//! # fn demo<D: KernelDevice + 'static>(gpu: D) -> sparta::Result<()> {
//! let host = ResNet::<f32>::new(ResNetConfig::small(1, 10), 0)?;
//! let mut model = DeviceResNet::new(gpu, host)?;
//! # Ok(()) }
//! ```

use std::rc::Rc;

use rand::RngCore;

use super::resnet::{Bn, Layers, Observed, ResNet, BN_EPS, BN_MOMENTUM};
use super::sparta::{SanetPath, SpartaLayer};
use crate::alloc::{CacheStats, CachingDevice};
use crate::attack::cuda::{pgd_random_start, pgd_step};
use crate::attack::pgd::{self, draw_targets, random_start_noise, PgdConfig, Snapshot};
use crate::autograd::device::{DeviceNodes, DeviceTape};
use crate::autograd::Var;
use crate::classifier::{
    ActivationMaps, BatchRecipe, BatchShape, Classifier, InspectActivations, StepStats, Trainable,
};
use crate::data::augment::{crop_flip_draws, crop_flip_params, cuda as augment_cuda};
use crate::error::{check_len, Error, Result};
use crate::launch::{KernelDevice, ViewLen};
use crate::ops::add::cuda::add_forward;
use crate::ops::batchnorm::{cuda as bn, BnShape};
use crate::ops::conv2d::{cuda as conv, ConvGeom, ConvPass};
use crate::ops::fc::{cuda as fc, FcShape};
use crate::ops::loss::cuda::{cross_entropy as device_cross_entropy, CrossEntropyOut};
use crate::ops::loss::Reduction;
use crate::ops::normalize::cuda::{normalize_backward, normalize_forward};
use crate::ops::pointwise::Pointwise;
use crate::ops::pool::{cuda as pool, PoolShape};
use crate::optim::cuda::sgd_update;

type Dev<D> = CachingDevice<D>;
type Buf<D> = <CachingDevice<D> as KernelDevice>::Buffer<f32>;
type View<'a, D> = <CachingDevice<D> as KernelDevice>::View<'a, f32>;

/// A ResNet on a device (see the module docs).
pub struct DeviceResNet<D: KernelDevice + 'static> {
    dev: Dev<D>,
    host: ResNet<f32>,
    /// The learned parameters in the host model's order, then the normalization
    /// layer's mean and standard deviation (constants the tape reads like parameters).
    params: Vec<Buf<D>>,
    velocity: Vec<Buf<D>>,
    /// Batch-norm running statistics, in the host model's buffer order.
    running: Vec<Buf<D>>,
    sparta: Vec<(Rc<SpartaLayer<f32>>, Vec<usize>)>,
}

/// What a forward pass on the tape produced.
struct Forward {
    x: Var,
    logits: Var,
    params: Vec<Var>,
    /// The blocks' activations ([`Mode::Inspect`] only).
    observed: Option<Observed>,
}

impl<D: KernelDevice + 'static> DeviceResNet<D> {
    /// Copies `host`'s parameters, running statistics and SGD velocity onto `dev`.
    pub fn new(dev: D, host: ResNet<f32>) -> Result<Self> {
        let dev = CachingDevice::new(dev);
        let mut params = host
            .params()
            .iter()
            .map(|p| dev.upload(&p.name, p.value.data()))
            .collect::<Result<Vec<_>>>()?;
        params.push(dev.upload("normalize.mean", &host.config().mean)?);
        params.push(dev.upload("normalize.std", &host.config().std)?);
        let velocity = host
            .params()
            .iter()
            .zip(&host.sgd.velocity)
            .map(|(p, v)| dev.upload(&format!("optim.velocity.{}", p.name), v))
            .collect::<Result<Vec<_>>>()?;
        let running = host
            .buffers()
            .iter()
            .map(|b| dev.upload(&b.name, b.value.data()))
            .collect::<Result<Vec<_>>>()?;
        let sparta = host
            .sparta
            .iter()
            .map(|s| (Rc::new(s.layer.clone()), s.params.clone()))
            .collect();
        Ok(Self {
            dev,
            host,
            params,
            velocity,
            running,
            sparta,
        })
    }

    /// The device (with its allocation cache).
    pub fn device(&self) -> &CachingDevice<D> {
        &self.dev
    }

    /// Device allocations and bytes so far: after the first step of a run, further
    /// steps of the same batch shape add no allocation.
    pub fn alloc_stats(&self) -> CacheStats {
        self.dev.stats()
    }

    /// The model as it is on the device, on the host: parameters, running statistics
    /// and SGD velocity copied back (for checkpoints, or to compare with the CPU path).
    pub fn to_host(&self) -> Result<ResNet<f32>> {
        let dev = &self.dev;
        let mut host = self.host.clone();
        let n = host.params().len();
        for (p, b) in host.params_mut().iter_mut().zip(&self.params[..n]) {
            p.value
                .data_mut()
                .copy_from_slice(&dev.download(&dev.view(b))?);
        }
        for (p, b) in host.buffers_mut().iter_mut().zip(&self.running) {
            p.value
                .data_mut()
                .copy_from_slice(&dev.download(&dev.view(b))?);
        }
        for (v, b) in host.sgd.velocity.iter_mut().zip(&self.velocity) {
            *v = dev.download(&dev.view(b))?;
        }
        Ok(host)
    }

    /// Overwrites the device state with `host`'s, which must have this model's
    /// configuration.
    fn write_state(&mut self, host: &ResNet<f32>) -> Result<()> {
        let dev = &self.dev;
        for (b, p) in self.params.iter_mut().zip(host.params()) {
            dev.write_host(&mut dev.view_mut(b), p.value.data())?;
        }
        for (b, p) in self.running.iter_mut().zip(host.buffers()) {
            dev.write_host(&mut dev.view_mut(b), p.value.data())?;
        }
        for (b, v) in self.velocity.iter_mut().zip(&host.sgd.velocity) {
            dev.write_host(&mut dev.view_mut(b), v)?;
        }
        Ok(())
    }

    fn check_batch(&self, x: &[f32], shape: BatchShape, labels: Option<&[usize]>) -> Result<()> {
        self.host.check_batch(x, shape, labels)
    }

    fn upload_labels(&self, labels: &[usize]) -> Result<<Dev<D> as KernelDevice>::Buffer<i32>> {
        let ints: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
        self.dev.upload("labels", &ints)
    }
}

/// What a forward pass is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Evaluation mode, no gradient (logits).
    Eval,
    /// As `Eval`, noting every block's activation (feature maps).
    Inspect,
    /// Evaluation mode, the images' gradient only (an attack step).
    Attack,
    /// Training mode (batch statistics, running ones updated), the trainable
    /// parameters' gradients.
    Train,
}

impl<D: KernelDevice + 'static> DeviceResNet<D> {
    /// Pushes the forward pass of `x` (`shape`, on the device) onto a new tape over the
    /// model's parameters; the tape's `dev()` is the model's device.
    fn forward(
        &mut self,
        x: Buf<D>,
        shape: BatchShape,
        mode: Mode,
    ) -> Result<(DeviceTape<'_, Dev<D>>, Forward)> {
        let mut tape = DeviceTape::new(&self.dev, &self.params);
        let xv = tape.leaf(x, &shape, mode == Mode::Attack)?;
        let host = &self.host;
        let n = host.params().len();
        let pv: Vec<Var> = host
            .params()
            .iter()
            .zip(&host.trainable)
            .enumerate()
            .map(|(i, (p, &t))| tape.param(i, p.value.shape(), mode == Mode::Train && t))
            .collect();
        let c = host.config().in_channels;
        let consts = (tape.param(n, &[c], false), tape.param(n + 1, &[c], false));
        let mut pass = DevicePass {
            tape: &mut tape,
            pv: &pv,
            consts,
            train: mode == Mode::Train,
            running: &mut self.running,
            sparta: &self.sparta,
        };
        let mut observed = (mode == Mode::Inspect).then(Vec::new);
        let logits = host.arch.forward(&mut pass, xv, observed.as_mut())?;
        Ok((
            tape,
            Forward {
                x: xv,
                logits,
                params: pv,
                observed,
            },
        ))
    }
}

/// Per-sample losses, logits gradient and the batch totals of one cross-entropy.
struct Loss<D: KernelDevice + 'static> {
    rows: Buf<D>,
    dlogits: Buf<D>,
    total: Buf<D>,
    correct: <Dev<D> as KernelDevice>::Buffer<i32>,
}

fn loss<D: KernelDevice + 'static>(
    dev: &Dev<D>,
    logits: &View<'_, D>,
    labels: &<Dev<D> as KernelDevice>::Buffer<i32>,
    n: usize,
    classes: usize,
    reduction: Reduction,
) -> Result<Loss<D>> {
    let mut rows = dev.alloc_scratch::<f32>("loss", n)?;
    let mut dlogits = dev.alloc_scratch::<f32>("dlogits", n * classes)?;
    let mut correct_rows = dev.alloc_scratch::<i32>("correct", n)?;
    let mut total = dev.alloc_scratch::<f32>("loss_total", 1)?;
    let mut correct = dev.alloc_scratch::<i32>("correct_total", 1)?;
    device_cross_entropy(
        dev,
        n,
        classes,
        logits,
        &dev.view(labels),
        reduction,
        CrossEntropyOut {
            loss: &mut dev.view_mut(&mut rows),
            dlogits: &mut dev.view_mut(&mut dlogits),
            correct: &mut dev.view_mut(&mut correct_rows),
            loss_total: &mut dev.view_mut(&mut total),
            correct_total: &mut dev.view_mut(&mut correct),
        },
    )?;
    Ok(Loss {
        rows,
        dlogits,
        total,
        correct,
    })
}

impl<D: KernelDevice + 'static> DeviceResNet<D> {
    /// Logits of the images in `x` (on the device), evaluation mode.
    /// Gives `x` back after the pass.
    fn device_logits(&mut self, x: Buf<D>, shape: BatchShape) -> Result<(Vec<f32>, Buf<D>)> {
        let (tape, f) = self.forward(x, shape, Mode::Eval)?;
        let logits = tape.dev().download(&tape.value(f.logits))?;
        let x = tape
            .into_leaf(f.x)
            .expect("the images are a leaf the tape owns");
        Ok((logits, x))
    }

    /// Per-sample losses toward `labels` and the gradient of their sum with respect to
    /// the images `x` (evaluation mode, no parameter gradient); gives `x` back.
    fn device_input_grad(
        &mut self,
        x: Buf<D>,
        shape: BatchShape,
        labels: &<Dev<D> as KernelDevice>::Buffer<i32>,
    ) -> Result<(Buf<D>, Buf<D>, Buf<D>)> {
        let classes = self.host.config().classes;
        let (mut tape, f) = self.forward(x, shape, Mode::Attack)?;
        let dev = tape.dev();
        let l = loss(
            dev,
            &tape.value(f.logits),
            labels,
            shape[0],
            classes,
            Reduction::Sum,
        )?;
        tape.backward_with(f.logits, l.dlogits)?;
        let grad = match tape.take_grad(f.x) {
            Some(g) => g,
            None => dev.alloc_zeros("dx", shape.iter().product())?,
        };
        let x = tape
            .into_leaf(f.x)
            .expect("the images are a leaf the tape owns");
        Ok((l.rows, grad, x))
    }

    /// One SGD step on the images `x` (on the device), training mode.
    fn device_train_step(
        &mut self,
        x: Buf<D>,
        shape: BatchShape,
        labels: &<Dev<D> as KernelDevice>::Buffer<i32>,
        lr: f32,
    ) -> Result<StepStats> {
        let classes = self.host.config().classes;
        let (mut tape, f) = self.forward(x, shape, Mode::Train)?;
        let l = loss(
            tape.dev(),
            &tape.value(f.logits),
            labels,
            shape[0],
            classes,
            Reduction::Mean,
        )?;
        tape.backward_with(f.logits, l.dlogits)?;
        let grads: Vec<Option<Buf<D>>> = f.params.iter().map(|&v| tape.take_grad(v)).collect();
        drop(tape);
        let dev = &self.dev;
        let cfg = self.host.config();
        for (i, g) in grads.into_iter().enumerate() {
            if !self.host.trainable[i] {
                continue;
            }
            let g = match g {
                Some(g) => g,
                None => dev.alloc_zeros("grad", dev.view(&self.params[i]).len())?,
            };
            sgd_update(
                dev,
                &mut dev.view_mut(&mut self.params[i]),
                &dev.view(&g),
                &mut dev.view_mut(&mut self.velocity[i]),
                lr,
                cfg.momentum,
                cfg.weight_decay,
            )?;
        }
        let loss = dev.download(&dev.view(&l.total))?[0];
        let correct = dev.download(&dev.view(&l.correct))?[0];
        Ok(StepStats {
            loss,
            correct: correct as usize,
        })
    }

    /// The PGD iterations on the device from `x0` (on the device): the random start
    /// from `noise`, then `config.iterations` steps, with a snapshot after each count
    /// in `at` (see [`pgd::run_on_host`]). Returns the adversarial images, on the
    /// device.
    fn device_pgd(
        &mut self,
        x0: &Buf<D>,
        noise: Option<&[f32]>,
        shape: BatchShape,
        targets: &[usize],
        config: &PgdConfig,
        at: &[usize],
    ) -> Result<(Buf<D>, Vec<Snapshot>)> {
        let len: usize = shape.iter().product();
        let classes = self.host.config().classes;
        let target_buf = self.upload_labels(targets)?;
        // The steps update x in place: zeros (an initialized buffer), not scratch.
        let mut x = self.dev.alloc_zeros::<f32>("pgd.x", len)?;
        {
            let dev = &self.dev;
            match noise {
                Some(u) => {
                    check_len("pgd", "noise", u.len(), len)?;
                    let noise = dev.upload("pgd.noise", u)?;
                    pgd_random_start(
                        dev,
                        config.epsilon,
                        &mut dev.view_mut(&mut x),
                        &dev.view(x0),
                        &dev.view(&noise),
                    )?;
                }
                None => dev.copy(&dev.view(x0), &mut dev.view_mut(&mut x))?,
            }
        }
        // Per-iteration losses stay on the device until a snapshot reads them: a run
        // with no snapshot (adversarial training) never waits for the device.
        let mut pending: Vec<Buf<D>> = Vec::new();
        let mut losses = Vec::with_capacity(config.iterations + 1);
        let mut snapshots = Vec::new();
        for it in 0..=config.iterations {
            if at.contains(&it) {
                for rows in pending.drain(..) {
                    losses.push(self.dev.download(&self.dev.view(&rows))?);
                }
                let (logits, back) = self.device_logits(x, shape)?;
                x = back;
                snapshots.push(pgd::snapshot(&logits, classes, targets, &losses, it)?);
            }
            if it == config.iterations {
                break;
            }
            let (rows, grad, back) = self.device_input_grad(x, shape, &target_buf)?;
            x = back;
            pending.push(rows);
            let dev = &self.dev;
            pgd_step(
                dev,
                config,
                &mut dev.view_mut(&mut x),
                &dev.view(&grad),
                &dev.view(x0),
            )?;
        }
        Ok((x, snapshots))
    }
}

impl<D: KernelDevice + 'static> InspectActivations for DeviceResNet<D> {
    fn activation_maps(
        &mut self,
        x: &[f32],
        shape: BatchShape,
    ) -> Result<Vec<ActivationMaps<f32>>> {
        self.check_batch(x, shape, None)?;
        let xb = self.dev.upload("x", x)?;
        // The tape keeps the model borrowed, so the wiring that names the maps is copied.
        let arch = self.host.arch.clone();
        let (tape, f) = self.forward(xb, shape, Mode::Inspect)?;
        let read = |v| Ok((tape.shape(v).to_vec(), tape.dev().download(&tape.value(v))?));
        arch.observed_maps(f.observed.unwrap_or_default(), read)
    }
}

impl<D: KernelDevice + 'static> Classifier for DeviceResNet<D> {
    fn num_classes(&self) -> usize {
        self.host.config().classes
    }

    fn logits(&mut self, x: &[f32], shape: BatchShape) -> Result<Vec<f32>> {
        self.check_batch(x, shape, None)?;
        let xb = self.dev.upload("x", x)?;
        Ok(self.device_logits(xb, shape)?.0)
    }

    fn loss_and_input_grad(
        &mut self,
        x: &[f32],
        shape: BatchShape,
        labels: &[usize],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.check_batch(x, shape, Some(labels))?;
        let xb = self.dev.upload("x", x)?;
        let lb = self.upload_labels(labels)?;
        let (rows, grad, _) = self.device_input_grad(xb, shape, &lb)?;
        let dev = &self.dev;
        let losses = dev.download(&dev.view(&rows))?;
        let grad = dev.download(&dev.view(&grad))?;
        Ok((losses, grad))
    }

    fn logits_and_input_vjp(
        &mut self,
        x: &[f32],
        shape: BatchShape,
        loss_grad: &mut dyn FnMut(&[f32]) -> Result<Vec<f32>>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.check_batch(x, shape, None)?;
        let xb = self.dev.upload("x", x)?;
        let (mut tape, f) = self.forward(xb, shape, Mode::Attack)?;
        let dev = tape.dev();
        let logits = dev.download(&tape.value(f.logits))?;
        let dlogits = loss_grad(&logits)?;
        check_len(
            "logits_and_input_vjp",
            "dlogits",
            dlogits.len(),
            logits.len(),
        )?;
        tape.backward_with(f.logits, dev.upload("dlogits", &dlogits)?)?;
        let grad = match tape.take_grad(f.x) {
            Some(g) => dev.download(&dev.view(&g))?,
            None => vec![0.0; x.len()],
        };
        Ok((logits, grad))
    }

    fn pgd_run(
        &mut self,
        x0: &[f32],
        noise: Option<&[f32]>,
        shape: BatchShape,
        targets: &[usize],
        config: &PgdConfig,
        at: &[usize],
    ) -> Result<(Vec<f32>, Vec<Snapshot>)> {
        self.check_batch(x0, shape, Some(targets))?;
        let x0b = self.dev.upload("pgd.x0", x0)?;
        let (x, snapshots) = self.device_pgd(&x0b, noise, shape, targets, config, at)?;
        let x = self.dev.download(&self.dev.view(&x))?;
        Ok((x, snapshots))
    }
}

impl<D: KernelDevice + 'static> Trainable for DeviceResNet<D> {
    fn train_step(
        &mut self,
        x: &[f32],
        shape: BatchShape,
        labels: &[usize],
        lr: f32,
    ) -> Result<StepStats> {
        self.check_batch(x, shape, Some(labels))?;
        let xb = self.dev.upload("x", x)?;
        let lb = self.upload_labels(labels)?;
        self.device_train_step(xb, shape, &lb, lr)
    }

    fn train_batch(
        &mut self,
        x: &[f32],
        shape: BatchShape,
        labels: &[usize],
        recipe: &BatchRecipe,
        rng: &mut dyn RngCore,
        lr: f32,
    ) -> Result<StepStats> {
        self.check_batch(x, shape, Some(labels))?;
        let mut rng = rng;
        let mut xb = self.dev.upload("x", x)?;
        if recipe.augment {
            let draws = crop_flip_params(&crop_flip_draws(shape[0], &mut rng));
            let dev = &self.dev;
            let params = dev.upload("augment.params", &draws)?;
            let mut out = dev.alloc_scratch::<f32>("augment.x", x.len())?;
            augment_cuda::crop_flip_batch(
                dev,
                shape,
                &dev.view(&xb),
                &mut dev.view_mut(&mut out),
                &dev.view(&params),
            )?;
            xb = out;
        }
        if let Some(attack) = &recipe.attack {
            if attack.restarts != 1 {
                return Err(Error::Config(format!(
                    "adversarial training on the device runs one restart, got {}",
                    attack.restarts
                )));
            }
            let classes = self.host.config().classes;
            let targets = draw_targets(classes, x.len(), shape, labels, attack, &mut rng)?;
            let eps = attack.epsilon;
            let noise = (attack.random_start && eps > 0.0)
                .then(|| random_start_noise(&mut rng, x.len(), eps));
            let (adv, _) = self.device_pgd(&xb, noise.as_deref(), shape, &targets, attack, &[])?;
            xb = adv;
        }
        let lb = self.upload_labels(labels)?;
        self.device_train_step(xb, shape, &lb, lr)
    }

    fn save(&self, path: &std::path::Path) -> Result<()> {
        self.to_host()?.save_checkpoint(path)
    }

    fn load(&mut self, path: &std::path::Path) -> Result<()> {
        let mut host = self.host.clone();
        host.load_checkpoint(path)?;
        self.write_state(&host)
    }
}

/// The [`Layers`] of a forward pass on a [`DeviceTape`].
struct DevicePass<'a, 't, D: KernelDevice + 'static> {
    tape: &'a mut DeviceTape<'t, Dev<D>>,
    pv: &'a [Var],
    /// The normalization layer's mean and standard deviation.
    consts: (Var, Var),
    train: bool,
    running: &'a mut [Buf<D>],
    sparta: &'a [(Rc<SpartaLayer<f32>>, Vec<usize>)],
}

/// `[n, c, h, w]` of a 4-D node.
fn nchw(op: &'static str, shape: &[usize]) -> Result<[usize; 4]> {
    shape
        .try_into()
        .map_err(|_| Error::shape(op, "x", "[N, C, H, W]", format!("{shape:?}")))
}

/// Mutable views of two distinct elements of `v`.
fn two_mut<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert_ne!(i, j, "two different buffers");
    if i < j {
        let (a, b) = v.split_at_mut(j);
        (&mut a[i], &mut b[0])
    } else {
        let (a, b) = v.split_at_mut(i);
        (&mut b[0], &mut a[j])
    }
}

impl<D: KernelDevice + 'static> Layers for DevicePass<'_, '_, D> {
    fn normalize(&mut self, x: Var) -> Result<Var> {
        let dev = self.tape.dev();
        let shape = self.tape.shape(x).to_vec();
        let [_, c, h, w] = nchw("normalize", &shape)?;
        let len: usize = shape.iter().product();
        let (mean, std) = self.consts;
        let mut y = dev.alloc_scratch::<f32>("normalize.y", len)?;
        normalize_forward(
            dev,
            c,
            h * w,
            &self.tape.value(x),
            &self.tape.value(mean),
            &self.tape.value(std),
            &mut dev.view_mut(&mut y),
        )?;
        self.tape.push_op(y, &shape, &[x], || {
            Box::new(move |nodes: &DeviceNodes<'_, Dev<D>>, dy: Buf<D>| {
                let dev = nodes.dev();
                let dy = &dev.view(&dy);
                let mut dx = dev.alloc_scratch::<f32>("normalize.dx", len)?;
                normalize_backward(
                    dev,
                    c,
                    h * w,
                    dy,
                    &nodes.value(std),
                    &mut dev.view_mut(&mut dx),
                )?;
                Ok(vec![(x, dx)])
            })
        })
    }

    fn conv2d(&mut self, x: Var, weight: usize, stride: usize, pad: usize) -> Result<Var> {
        let dev = self.tape.dev();
        let wv = self.pv[weight];
        let [n, c_in, h, w] = nchw("conv2d", self.tape.shape(x))?;
        let ws = self.tape.shape(wv).to_vec();
        if ws.len() != 4 || ws[1] != c_in || ws[2] != ws[3] {
            return Err(Error::shape(
                "conv2d",
                "weight",
                format!("[Co, {c_in}, K, K]"),
                format!("{ws:?}"),
            ));
        }
        let g = ConvGeom {
            n,
            c_in,
            h,
            w,
            c_out: ws[0],
            k: ws[2],
            stride,
            pad,
        };
        let (x_len, w_len, y_len) = g.lens();
        let mut y = dev.alloc_scratch::<f32>("conv2d.y", y_len)?;
        conv::conv2d(
            dev,
            ConvPass::Forward,
            &g,
            &self.tape.value(x),
            &self.tape.value(wv),
            &mut dev.view_mut(&mut y),
        )?;
        let shape = [n, g.c_out, g.h_out(), g.w_out()];
        self.tape.push_op(y, &shape, &[x, wv], || {
            Box::new(move |nodes: &DeviceNodes<'_, Dev<D>>, dy: Buf<D>| {
                let dev = nodes.dev();
                let dy = &dev.view(&dy);
                let mut grads = Vec::new();
                if nodes.requires_grad(x) {
                    let mut dx = dev.alloc_scratch::<f32>("conv2d.dx", x_len)?;
                    conv::conv2d_backward_input(
                        dev,
                        &g,
                        dy,
                        &nodes.value(wv),
                        &mut dev.view_mut(&mut dx),
                    )?;
                    grads.push((x, dx));
                }
                if nodes.requires_grad(wv) {
                    let mut dw = dev.alloc_scratch::<f32>("conv2d.dw", w_len)?;
                    conv::conv2d_backward_weight(
                        dev,
                        &g,
                        &nodes.value(x),
                        dy,
                        &mut dev.view_mut(&mut dw),
                    )?;
                    grads.push((wv, dw));
                }
                Ok(grads)
            })
        })
    }

    fn bn(&mut self, x: Var, slot: Bn) -> Result<Var> {
        let dev = self.tape.dev();
        let shape = self.tape.shape(x).to_vec();
        let [n, c, h, w] = nchw("batch_norm", &shape)?;
        let bs = BnShape::new(n, c, h * w)?;
        let len = bs.len();
        let (gamma, beta) = (self.pv[slot.gamma], self.pv[slot.beta]);
        let eps = BN_EPS as f32;
        let needs_grad = [x, gamma, beta].iter().any(|&v| self.tape.requires_grad(v));
        let mut y = dev.alloc_scratch::<f32>("bn.y", len)?;
        let forward = |mean: &View<'_, D>, var: &View<'_, D>, y: &mut Buf<D>| {
            bn::batchnorm_forward(
                dev,
                &bs,
                &self.tape.value(x),
                mean,
                var,
                &self.tape.value(gamma),
                &self.tape.value(beta),
                &mut dev.view_mut(y),
                eps,
            )
        };
        // The statistics the backward reads: the batch's in training; in evaluation
        // copies of the running ones (the backward runs after later layers), made only
        // when there will be a backward.
        let saved = {
            let (rm, rv) = two_mut(self.running, slot.mean, slot.var);
            if self.train {
                let mut mean = dev.alloc_scratch::<f32>("bn.mean", c)?;
                let mut var = dev.alloc_scratch::<f32>("bn.var", c)?;
                bn::batchnorm_stats(
                    dev,
                    &bs,
                    &self.tape.value(x),
                    &mut dev.view_mut(&mut mean),
                    &mut dev.view_mut(&mut var),
                    &mut dev.view_mut(rm),
                    &mut dev.view_mut(rv),
                    BN_MOMENTUM as f32,
                )?;
                forward(&dev.view(&mean), &dev.view(&var), &mut y)?;
                Some((mean, var))
            } else {
                forward(&dev.view(rm), &dev.view(rv), &mut y)?;
                if needs_grad {
                    let mut mean = dev.alloc_scratch::<f32>("bn.mean", c)?;
                    let mut var = dev.alloc_scratch::<f32>("bn.var", c)?;
                    dev.copy(&dev.view(rm), &mut dev.view_mut(&mut mean))?;
                    dev.copy(&dev.view(rv), &mut dev.view_mut(&mut var))?;
                    Some((mean, var))
                } else {
                    None
                }
            }
        };
        let train = self.train;
        self.tape.push_op(y, &shape, &[x, gamma, beta], || {
            Box::new(move |nodes: &DeviceNodes<'_, Dev<D>>, dy: Buf<D>| {
                let dev = nodes.dev();
                let dy = &dev.view(&dy);
                let xv = nodes.value(x);
                let (mean, var) = saved
                    .as_ref()
                    .expect("statistics are saved whenever there is a backward");
                let (mean, var) = (dev.view(mean), dev.view(var));
                let mut grads = Vec::new();
                let need_sums = train || nodes.requires_grad(gamma) || nodes.requires_grad(beta);
                let sums = if need_sums {
                    let mut sum_dy = dev.alloc_scratch::<f32>("bn.dbeta", c)?;
                    let mut sum_dy_xhat = dev.alloc_scratch::<f32>("bn.dgamma", c)?;
                    bn::batchnorm_grad_sums(
                        dev,
                        &bs,
                        &xv,
                        dy,
                        &mean,
                        &var,
                        &mut dev.view_mut(&mut sum_dy),
                        &mut dev.view_mut(&mut sum_dy_xhat),
                        eps,
                    )?;
                    Some((sum_dy, sum_dy_xhat))
                } else {
                    None
                };
                if nodes.requires_grad(x) {
                    let mut dx = dev.alloc_scratch::<f32>("bn.dx", len)?;
                    match (&sums, train) {
                        (Some((sum_dy, sum_dy_xhat)), true) => bn::batchnorm_backward_input_train(
                            dev,
                            &bs,
                            &xv,
                            dy,
                            &mean,
                            &var,
                            &nodes.value(gamma),
                            &dev.view(sum_dy),
                            &dev.view(sum_dy_xhat),
                            &mut dev.view_mut(&mut dx),
                            eps,
                        )?,
                        _ => bn::batchnorm_backward_input_eval(
                            dev,
                            &bs,
                            dy,
                            &var,
                            &nodes.value(gamma),
                            &mut dev.view_mut(&mut dx),
                            eps,
                        )?,
                    }
                    grads.push((x, dx));
                }
                if let Some((sum_dy, sum_dy_xhat)) = sums {
                    if nodes.requires_grad(gamma) {
                        grads.push((gamma, sum_dy_xhat));
                    }
                    if nodes.requires_grad(beta) {
                        grads.push((beta, sum_dy));
                    }
                }
                Ok(grads)
            })
        })
    }

    fn pointwise(&mut self, x: Var, kind: Pointwise) -> Result<Var> {
        self.tape.pointwise(x, kind)
    }

    fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        let dev = self.tape.dev();
        let shape = self.tape.shape(a).to_vec();
        if self.tape.shape(b) != shape.as_slice() {
            return Err(Error::shape(
                "add",
                "b",
                format!("{shape:?}"),
                format!("{:?}", self.tape.shape(b)),
            ));
        }
        let len: usize = shape.iter().product();
        let mut y = dev.alloc_scratch::<f32>("add.y", len)?;
        add_forward(
            dev,
            &self.tape.value(a),
            &self.tape.value(b),
            &mut dev.view_mut(&mut y),
        )?;
        self.tape.push_op(y, &shape, &[a, b], || {
            Box::new(move |nodes: &DeviceNodes<'_, Dev<D>>, dy: Buf<D>| {
                let dev = nodes.dev();
                // dy itself goes to one input; only a second one needs a copy.
                let mut grads = Vec::new();
                if nodes.requires_grad(b) && nodes.requires_grad(a) {
                    let mut d = dev.alloc_scratch::<f32>("add.d", len)?;
                    dev.copy(&dev.view(&dy), &mut dev.view_mut(&mut d))?;
                    grads.push((b, d));
                    grads.push((a, dy));
                } else if let Some(v) = [a, b].into_iter().find(|&v| nodes.requires_grad(v)) {
                    grads.push((v, dy));
                }
                Ok(grads)
            })
        })
    }

    fn sparta(&mut self, x: Var, slot: usize) -> Result<Var> {
        let (layer, indices) = &self.sparta[slot];
        let layer = Rc::clone(layer);
        let vars: Vec<Var> = indices.iter().map(|&i| self.pv[i]).collect();
        let shape = self.tape.shape(x).to_vec();
        let [n, _, h, w] = nchw("sparta", &shape)?;
        let (y, cache) = {
            let weights: Vec<View<'_, D>> = vars.iter().map(|&v| self.tape.value(v)).collect();
            layer.forward_cuda(
                self.tape.dev(),
                &weights,
                &self.tape.value(x),
                n,
                h,
                w,
                SanetPath::Fused,
            )?
        };
        let mut inputs = vec![x];
        inputs.extend(&vars);
        self.tape.push_op(y, &shape, &inputs, || {
            Box::new(move |nodes: &DeviceNodes<'_, Dev<D>>, dy: Buf<D>| {
                let dev = nodes.dev();
                let dy = &dev.view(&dy);
                let weights: Vec<View<'_, D>> = vars.iter().map(|&v| nodes.value(v)).collect();
                let param_grads = vars.iter().any(|&v| nodes.requires_grad(v));
                let g =
                    layer.backward_cuda(dev, &weights, &nodes.value(x), &cache, dy, param_grads)?;
                let mut grads = Vec::new();
                if nodes.requires_grad(x) {
                    grads.push((x, g.dx));
                }
                // Empty when no parameter asked for one.
                for (v, p) in vars.iter().zip(g.params) {
                    if nodes.requires_grad(*v) {
                        grads.push((*v, p));
                    }
                }
                Ok(grads)
            })
        })
    }

    fn global_avg_pool(&mut self, x: Var) -> Result<Var> {
        let dev = self.tape.dev();
        let [n, c, h, w] = nchw("global_avg_pool", self.tape.shape(x))?;
        let ps = PoolShape::global(n * c, h, w)?;
        let mut y = dev.alloc_scratch::<f32>("pool.y", n * c)?;
        pool::pool_forward(dev, &ps, &self.tape.value(x), &mut dev.view_mut(&mut y))?;
        self.tape.push_op(y, &[n, c], &[x], || {
            Box::new(move |nodes: &DeviceNodes<'_, Dev<D>>, dy: Buf<D>| {
                let dev = nodes.dev();
                let dy = &dev.view(&dy);
                // The pool's backward adds into dx.
                let mut dx = dev.alloc_zeros::<f32>("pool.dx", n * c * h * w)?;
                pool::pool_backward(dev, &ps, dy, &mut dev.view_mut(&mut dx))?;
                Ok(vec![(x, dx)])
            })
        })
    }

    fn linear(&mut self, x: Var, weight: usize, bias: usize) -> Result<Var> {
        let dev = self.tape.dev();
        let (wv, bv) = (self.pv[weight], self.pv[bias]);
        let xs = self.tape.shape(x).to_vec();
        let ws = self.tape.shape(wv).to_vec();
        if xs.len() != 2 || ws.len() != 2 || ws[1] != xs[1] {
            return Err(Error::shape(
                "linear",
                "x / weight",
                "x [N,I], weight [O,I]",
                format!("{xs:?} / {ws:?}"),
            ));
        }
        let fs = FcShape::new(xs[0], xs[1], ws[0])?;
        let mut y = dev.alloc_scratch::<f32>("linear.y", fs.n * fs.out)?;
        fc::fc_forward(
            dev,
            &fs,
            &self.tape.value(x),
            &self.tape.value(wv),
            &self.tape.value(bv),
            &mut dev.view_mut(&mut y),
            false,
        )?;
        self.tape.push_op(y, &[fs.n, fs.out], &[x, wv, bv], || {
            Box::new(move |nodes: &DeviceNodes<'_, Dev<D>>, dy: Buf<D>| {
                let dev = nodes.dev();
                let dy = &dev.view(&dy);
                // fc_backward adds into its outputs.
                let mut dx = match nodes.requires_grad(x) {
                    true => Some(dev.alloc_zeros::<f32>("linear.dx", fs.n * fs.inp)?),
                    false => None,
                };
                let params = nodes.requires_grad(wv) || nodes.requires_grad(bv);
                let mut dw = dev.alloc_zeros::<f32>("linear.dw", fs.out * fs.inp)?;
                let mut db = dev.alloc_zeros::<f32>("linear.db", fs.out)?;
                {
                    let mut dx_view = dx.as_mut().map(|b| dev.view_mut(b));
                    let (mut dw_view, mut db_view) = (dev.view_mut(&mut dw), dev.view_mut(&mut db));
                    fc::fc_backward(
                        dev,
                        &fs,
                        &nodes.value(x),
                        &nodes.value(wv),
                        dy,
                        dx_view.as_mut(),
                        params.then_some((&mut dw_view, &mut db_view)),
                    )?;
                }
                let mut grads = Vec::new();
                if let Some(dx) = dx {
                    grads.push((x, dx));
                }
                if nodes.requires_grad(wv) {
                    grads.push((wv, dw));
                }
                if nodes.requires_grad(bv) {
                    grads.push((bv, db));
                }
                Ok(grads)
            })
        })
    }
}
