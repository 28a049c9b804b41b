//! The crate's side of `scripts/cpu_peer_bench.py`: times one CPU workload and prints
//! one JSON line per measurement (`{"bench": ..., "ms": ...}`, median over the timed
//! runs after a warm-up). The script runs the PyTorch peer of each workload beside it.
//!
//!     cargo run --release --example cpu_peer_timing -- layer [REPEATS] [C [N SIDE]]
//!     cargo run --release --example cpu_peer_timing -- conv [REPEATS] [C [N SIDE]]
//!     cargo run --release --example cpu_peer_timing -- resnet18 relu|sparta PGD [STEPS]
//!     cargo run --release --example cpu_peer_timing -- epoch relu|sparta DATA_DIR [IMAGES]
//!
//! - `layer`: the SPARTA layer (DPNet, B = 1) forward and backward, gradients of x and
//!   every parameter, at the ResNet-18 shapes with N = 128 (or the one with C
//!   channels), f32, fused SANet; with N and SIDE, the one shape N×C×SIDE×SIDE (the
//!   main job's are 32×16×28, 32×32×14, 32×64×7 and 32×128×4).
//! - `conv`: the 3×3 stride-1 convolution (C → C, padding 1) at the same shapes, its
//!   forward, input gradient and weight gradient apart, f32; with N and SIDE, the one
//!   shape N×C×SIDE×SIDE.
//! - `resnet18`: one training step of ResNet-18 (CIFAR form, batch 128, random data):
//!   PGD-`PGD` targeted examples (none for 0), then forward, backward and SGD. `sparta` is
//!   SPARTA in the last block of each group, as the paper places it.
//! - `epoch`: one epoch of the README's main job: the small model, PGD-10 adversarial
//!   training on the first IMAGES (1,000) Fashion-MNIST training images, batch 32, no
//!   augmentation, no checkpoints.
//!
//! `resnet18` and `epoch` run with the main thread in rayon's pool, as the `sparta`
//! program runs its training loops ([`sparta::threads`]); `layer` and `conv` call the
//! ops from a main thread outside it.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::attack::pgd::PgdConfig;
use sparta::data::{DatasetKind, Split};
use sparta::experiment::model_config;
use sparta::nn::resnet::{ResNet, ResNetConfig};
use sparta::nn::sparta::{SanetPath, SpartaConfig, SpartaGrads, SpartaLayer};
use sparta::ops::conv2d::{cpu, ConvGeom};
use sparta::optim::LrSchedule;
use sparta::threads::join_global_pool;
use sparta::train::{train, train_batch, BatchRecipe, TrainConfig};

/// (C, H, W) after each ResNet-18 group on CIFAR.
const SHAPES: [(usize, usize, usize); 4] = [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)];

fn median_ms(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn time_ms(warmup: usize, repeats: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let runs = (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median_ms(runs)
}

/// The SPARTA layer at each ResNet-18 shape, N = 128, or the one `custom` shape
/// `(C, N, side)`.
fn layer(
    repeats: usize,
    only: Option<usize>,
    custom: Option<(usize, usize, usize)>,
) -> sparta::Result<()> {
    let mut rng = StdRng::seed_from_u64(1);
    let shapes: Vec<_> = match custom {
        Some((c, n, side)) => vec![(n, c, side, side)],
        None => SHAPES.iter().map(|&(c, h, w)| (128, c, h, w)).collect(),
    };
    for (n, c, h, w) in shapes {
        if only.is_some_and(|want| want != c) {
            continue;
        }
        let layer = SpartaLayer::<f32>::new(SpartaConfig::new(c), &mut rng);
        let len = n * c * h * w;
        let x: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0..2.0)).collect();
        let dy: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0..2.0)).collect();
        let (mut y, mut grads) = (vec![0.0f32; len], SpartaGrads::zeros(&layer, len));
        let mut failed = None;
        let ms = time_ms(3, repeats, || {
            let run = layer
                .forward_into(&x, n, h, w, SanetPath::Fused, &mut y)
                .and_then(|cache| layer.backward_into(&x, &cache, &dy, &mut grads));
            failed = failed.take().or(run.err());
        });
        if let Some(e) = failed {
            return Err(e);
        }
        println!(r#"{{"bench": "layer", "shape": "{n}x{c}x{h}x{w}", "ms": {ms:.3}}}"#);
    }
    Ok(())
}

/// The 3×3 stride-1 convolution of each ResNet-18 group (C → C, padding 1), N = 128:
/// forward, input gradient and weight gradient timed apart.
/// `custom`: the one shape `(C, N, side)` instead.
fn conv(
    repeats: usize,
    only: Option<usize>,
    custom: Option<(usize, usize, usize)>,
) -> sparta::Result<()> {
    let mut rng = StdRng::seed_from_u64(1);
    let shapes: Vec<_> = match custom {
        Some((c, n, side)) => vec![(n, c, side, side)],
        None => SHAPES.iter().map(|&(c, h, w)| (128, c, h, w)).collect(),
    };
    for (n, c, h, w) in shapes {
        if only.is_some_and(|want| want != c) {
            continue;
        }
        let g = ConvGeom {
            n,
            c_in: c,
            h,
            w,
            c_out: c,
            k: 3,
            stride: 1,
            pad: 1,
        };
        let x: Vec<f32> = (0..n * c * h * w)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let dy: Vec<f32> = (0..n * c * h * w)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let wt: Vec<f32> = (0..c * c * 9)
            .map(|_| rng.random_range(-0.1..0.1))
            .collect();
        let passes: [(&str, &dyn Fn()); 3] = [
            ("forward", &|| drop(cpu::forward(&g, &x, &wt))),
            ("input_grad", &|| {
                drop(cpu::backward(&g, &x, &wt, &dy, true, false))
            }),
            ("weight_grad", &|| {
                drop(cpu::backward(&g, &x, &wt, &dy, false, true))
            }),
        ];
        for (pass, run) in passes {
            let ms = time_ms(2, repeats, run);
            println!(
                r#"{{"bench": "conv3x3", "shape": "{n}x{c}x{h}x{w}", "pass": "{pass}", "ms": {ms:.3}}}"#
            );
        }
    }
    Ok(())
}

fn activation(act: &str) -> sparta::Result<&'static str> {
    match act {
        "relu" => Ok("relu"),
        "sparta" => Ok("sparta"),
        _ => Err(sparta::Error::Config(format!(
            "activation {act:?}: expected relu or sparta"
        ))),
    }
}

fn resnet18(act: &str, pgd: usize, steps: usize) -> sparta::Result<()> {
    const N: usize = 128;
    sparta::host_memory::keep_freed_host_memory();
    let spec = match activation(act)? {
        "relu" => "relu",
        _ => "G1-4.Blast",
    };
    let mut model = ResNet::<f32>::new(ResNetConfig::resnet18(3, 10).with_activation(spec), 0)?;
    let mut rng = StdRng::seed_from_u64(0);
    let x: Vec<f32> = (0..N * 3 * 32 * 32).map(|_| rng.random()).collect();
    let labels: Vec<usize> = (0..N).map(|_| rng.random_range(0..10)).collect();
    let recipe = BatchRecipe {
        augment: false,
        attack: (pgd > 0).then(|| PgdConfig::paper(pgd)),
    };
    let mut failed = None;
    let ms = time_ms(1, steps, || {
        let run = train_batch(
            &mut model,
            &x,
            [N, 3, 32, 32],
            &labels,
            &recipe,
            &mut rng,
            0.01,
        );
        failed = failed.take().or(run.err());
    });
    if let Some(e) = failed {
        return Err(e);
    }
    println!(r#"{{"bench": "resnet18_step", "act": "{act}", "pgd": {pgd}, "ms": {ms:.1}}}"#);
    Ok(())
}

fn epoch(act: &str, data_dir: &Path, images: usize) -> sparta::Result<()> {
    sparta::host_memory::keep_freed_host_memory();
    let kind = DatasetKind::FashionMnist;
    let data = kind.load(data_dir, Split::Train)?.take(images);
    let mut model = ResNet::<f32>::new(model_config("small", activation(act)?, kind)?, 0)?;
    let config = TrainConfig {
        epochs: 1,
        batch_size: 32,
        schedule: LrSchedule::Linear { base: 0.1 },
        augment: false,
        ..TrainConfig::paper(1, true, 0)
    };
    let start = Instant::now();
    train(
        &mut model,
        &data,
        &config,
        None,
        &AtomicBool::new(false),
        |_| {},
    )?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    println!(
        r#"{{"bench": "main_job_epoch", "act": "{act}", "images": {}, "ms": {ms:.1}}}"#,
        data.len()
    );
    Ok(())
}

fn main() -> sparta::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let number = |i: usize, default: usize| -> sparta::Result<usize> {
        arg(i).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| sparta::Error::Config(format!("argument {v:?}: expected a number")))
        })
    };
    match (arg(0), arg(1)) {
        (Some(which @ ("layer" | "conv")), _) => {
            let only = arg(2).map(|_| number(2, 0)).transpose()?;
            let custom = match (only, arg(3), arg(4)) {
                (Some(c), Some(_), Some(_)) => Some((c, number(3, 0)?, number(4, 0)?)),
                _ => None,
            };
            if which == "layer" {
                layer(number(1, 10)?, only, custom)
            } else {
                conv(number(1, 10)?, only, custom)
            }
        }
        (Some("resnet18"), Some(act)) => {
            join_global_pool();
            resnet18(act, number(2, 0)?, number(3, 3)?)
        }
        (Some("epoch"), Some(act)) => {
            join_global_pool();
            let dir = arg(2).unwrap_or("/usr/share/datasets/fashion-mnist");
            epoch(act, Path::new(dir), number(3, 1000)?)
        }
        _ => Err(sparta::Error::Config(
            "usage: cpu_peer_timing layer [REPEATS] [C [N SIDE]] | conv [REPEATS] [C [N SIDE]] | resnet18 relu|sparta PGD [STEPS] | \
             epoch relu|sparta [DATA_DIR] [IMAGES]"
                .into(),
        )),
    }
}
