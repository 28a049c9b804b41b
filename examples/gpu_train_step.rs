//! sparta's side of `scripts/torch_peer.py train`: ResNet-18 (CIFAR form, 3×32×32,
//! 10 classes) with ReLU or SPARTA on the last block of each group, one step of the
//! paper's adversarial training per iteration (targeted PGD-K examples of the batch,
//! then SGD with lr 0.1, momentum 0.9, weight decay 1e-4), entirely on the GPU
//! (`ResNet<OnDevice<D>>`). Random CIFAR-shaped data. Prints one JSON line with the same
//! fields as the peer: images/s over the timed steps, parameters, and the peak device
//! memory of the caching allocator (bytes it holds from the driver: everything a step
//! needs, kept for the next one), plus the device allocations made after warm-up (0
//! means no allocation churn).
//!
//!     cargo run --release --example gpu_train_step -- --act sparta --steps 5
//!
//! With cuDNN, the algorithm chosen for each convolution geometry and pass goes to
//! stderr. Without a GPU it says so and exits with status 2. With `--dry-run` it runs the same
//! steps on [`sparta::dry_run::DryRunDevice`] (no GPU, no kernel executed): the memory
//! fields are then exactly what the caching allocator would hold on a GPU, and the
//! timing fields mean nothing.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sparta::alloc::CachingDevice;
use sparta::attack::pgd::PgdConfig;
use sparta::backend::OnDevice;
use sparta::dry_run::DryRunDevice;
use sparta::nn::{ResNet, ResNetConfig};
use sparta::train::{train_batch, BatchRecipe};
use sparta::{Gpu, KernelDevice, Result};

struct Args {
    act: String,
    batch: usize,
    pgd: usize,
    steps: usize,
    warmup: usize,
    dry_run: bool,
}

fn parse() -> std::result::Result<Args, String> {
    let mut a = Args {
        act: "sparta".into(),
        batch: 128,
        pgd: 10,
        steps: 5,
        warmup: 1,
        dry_run: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--dry-run" {
            a.dry_run = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--act" if value == "relu" || value == "sparta" => a.act = value.clone(),
            "--batch" => a.batch = number()?,
            "--pgd" => a.pgd = number()?,
            "--steps" => a.steps = number()?,
            "--warmup" => a.warmup = number()?,
            _ => return Err(format!("unknown flag or value: {flag} {value}")),
        }
    }
    Ok(a)
}

/// `used` reads the device memory in use from the driver (after the timed steps, with
/// the model alive): the allocator's bytes plus the CUDA context, the modules and
/// cuDNN's workspace.
fn run<D: KernelDevice + 'static>(
    dev: D,
    device_name: &str,
    conv: &str,
    used: &dyn Fn() -> Option<usize>,
    a: &Args,
) -> Result<String> {
    let spec = if a.act == "sparta" { "G1-4.B2" } else { "relu" };
    let host = ResNet::<f32>::new(ResNetConfig::resnet18(3, 10).with_activation(spec), 0)?;
    let parameters = host.param_count();
    let mut model = host.to_backend::<OnDevice<D>>(CachingDevice::new(dev))?;
    let mut rng = StdRng::seed_from_u64(0);
    let shape = [a.batch, 3, 32, 32];
    let x: Vec<f32> = (0..shape.iter().product()).map(|_| rng.random()).collect();
    let labels: Vec<usize> = (0..a.batch).map(|_| rng.random_range(0..10)).collect();
    let recipe = BatchRecipe {
        augment: true,
        attack: Some(PgdConfig::paper(a.pgd)),
    };
    let step = |model: &mut ResNet<OnDevice<D>>, i: usize| {
        let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
        train_batch(model, &x, shape, &labels, &recipe, &mut rng, 0.1)
    };
    for i in 0..a.warmup {
        step(&mut model, i)?;
    }
    let warm = model.backend().stats();
    let start = Instant::now();
    let mut last = None;
    for i in 0..a.steps {
        last = Some(step(&mut model, a.warmup + i)?);
    }
    // The loss read back at the end of each step synchronises the stream.
    let seconds = start.elapsed().as_secs_f64();
    let stats = model.backend().stats();
    let json = serde_json::json!({
        "bench": "resnet18_pgd_train_step",
        "framework": "sparta ResNet on the device",
        "conv2d": conv,
        "device": device_name,
        "act": a.act,
        "parameters": parameters,
        "batch": a.batch,
        "pgd_iterations": a.pgd,
        "steps": a.steps,
        "seconds_per_step": seconds / a.steps.max(1) as f64,
        "images_per_s": (a.batch * a.steps) as f64 / seconds,
        "last_loss": last.map(|s| s.loss),
        "peak_memory_bytes": stats.bytes_reserved,
        "peak_in_use_bytes": stats.peak_bytes_in_use,
        "device_allocations_after_warmup": stats.device_allocations - warm.device_allocations,
        "driver_memory_used_bytes": used(),
    });
    Ok(json.to_string())
}

fn main() -> std::process::ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gpu_train_step: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = if args.dry_run {
        run(
            DryRunDevice,
            "dry run (no kernel executed)",
            "none",
            &|| None,
            &args,
        )
    } else {
        match Gpu::new(0) {
            Ok(gpu) => {
                let name = gpu.name().to_string();
                // SAFETY: only probes whether the shared library can be opened.
                let cudnn = unsafe { cudarc::cudnn::sys::is_culib_present() };
                let conv = match std::env::var("SPARTA_CONV") {
                    Ok(v) if v == "implicit-gemm" => "implicit-gemm",
                    _ if cudnn => "cudnn",
                    _ => "implicit-gemm",
                };
                let ctx = gpu.context().clone();
                let used = move || ctx.mem_get_info().ok().map(|(free, total)| total - free);
                let result = run(gpu.clone(), &name, conv, &used, &args);
                for line in gpu.cudnn_report() {
                    eprintln!("gpu_train_step: cuDNN {line}");
                }
                result
            }
            Err(e) => {
                eprintln!("gpu_train_step: no GPU ({e})");
                return std::process::ExitCode::from(2);
            }
        }
    };
    match result {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gpu_train_step: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
