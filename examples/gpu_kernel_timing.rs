//! Kernel timing on a GPU (phase c of scripts/gpu-check.sh): the fused gate forward and
//! backward, the unfused forward and ReLU forward and backward (f32, ResNet-18's
//! activation shapes), each as `REPEATS` runs of `LAUNCHES` back-to-back launches
//! between two CUDA events on the crate's stream, with no host synchronisation in
//! between. The baseline of each is a device-to-device copy moving the same bytes
//! (read plus written), timed the same way. Bytes are each op's minimum: every input
//! read once, every output written once.
//!
//! Three batch sizes: 8 (each op's working set well inside the L2 cache), 128 (the
//! training batch) and 1024 (far beyond it). Each row says where its working set sits
//! against the L2 size the driver reports, so cache-resident and memory-bound numbers
//! are never mixed. Also the SPARTA layer's fused forward+backward next to ReLU's at
//! batch 128, per iteration. The wrappers run on a `CachingDevice`, so their scratch
//! buffers come from the cache after the warm-up; the JSON says how many device
//! allocations the timed runs made (0 expected).
//!
//!     cargo run --release --example gpu_kernel_timing > timing.jsonl
//!
//! One JSON object per line on stdout. Exit status 2 without a GPU.

use std::sync::Arc;

use cudarc::driver::sys::{CUdevice_attribute, CUevent_flags};
use cudarc::driver::{CudaSlice, CudaView};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sparta::alloc::CachingDevice;
use sparta::nn::sparta::{SanetPath, SpartaConfig, SpartaLayer};
use sparta::ops::gate::{cuda as gate_cuda, GateShape};
use sparta::ops::relu::cuda as relu_cuda;
use sparta::{Gpu, Result};

/// Launches between the two events of one timed run.
const LAUNCHES: usize = 100;
/// Timed runs per case; the median is reported, with the fastest and slowest.
const REPEATS: usize = 5;
/// Untimed launches first.
const WARMUP: usize = 3;
/// (C, H, W) after each ResNet-18 group on CIFAR.
const SHAPES: [(usize, usize, usize); 4] = [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)];
const BATCHES: [usize; 3] = [8, 128, 1024];

type Dev = CachingDevice<Arc<Gpu>>;

/// Milliseconds per launch of `REPEATS` timed runs (sorted), and the device
/// allocations `dev` made during them.
fn time(gpu: &Gpu, dev: &Dev, mut launch: impl FnMut() -> Result<()>) -> Result<Timing> {
    for _ in 0..WARMUP {
        launch()?;
    }
    let allocations = dev.stats().device_allocations;
    let ctx = gpu.context();
    let mut per_launch = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        let start = ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
        let end = ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
        start.record(gpu.stream())?;
        for _ in 0..LAUNCHES {
            launch()?;
        }
        end.record(gpu.stream())?;
        per_launch.push(f64::from(start.elapsed_ms(&end)?) / LAUNCHES as f64);
    }
    per_launch.sort_by(f64::total_cmp);
    Ok(Timing {
        ms: per_launch,
        allocations: dev.stats().device_allocations - allocations,
    })
}

struct Timing {
    /// Per launch, one per timed run, sorted.
    ms: Vec<f64>,
    /// Device allocations during the timed runs.
    allocations: usize,
}

impl Timing {
    fn median(&self) -> f64 {
        self.ms[self.ms.len() / 2]
    }
}

fn random(gpu: &Gpu, rng: &mut StdRng, len: usize) -> Result<CudaSlice<f32>> {
    let host: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0f32..2.0)).collect();
    Ok(gpu.stream().clone_htod(&host)?)
}

/// Where a working set of `bytes` sits against an L2 of `l2` bytes.
fn placement(bytes: usize, l2: usize) -> &'static str {
    if bytes * 2 <= l2 {
        "L2-resident"
    } else if bytes >= 2 * l2 {
        "beyond L2"
    } else {
        "near L2 size"
    }
}

struct Copier {
    src: CudaSlice<u8>,
    dst: CudaSlice<u8>,
}

impl Copier {
    /// Per-launch times of a copy of `bytes / 2` bytes (so `bytes` move: read + write).
    fn time(&mut self, gpu: &Gpu, dev: &Dev, bytes: usize) -> Result<Timing> {
        let half = bytes / 2;
        let stream = gpu.stream().clone();
        let (src, dst) = (&self.src, &mut self.dst);
        time(gpu, dev, || {
            let from: CudaView<'_, u8> = src.slice(..half);
            let mut to = dst.slice_mut(..half);
            Ok(stream.memcpy_dtod(&from, &mut to)?)
        })
    }
}

fn main() -> std::process::ExitCode {
    let gpu = match Gpu::new(0) {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!("gpu_kernel_timing: no GPU ({e})");
            return std::process::ExitCode::from(2);
        }
    };
    match run(gpu) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gpu_kernel_timing: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(gpu: Arc<Gpu>) -> Result<()> {
    let l2 = gpu
        .context()
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)? as usize;
    let dev: Dev = CachingDevice::new(gpu.clone());
    let stream = gpu.stream().clone();
    let largest = BATCHES.iter().max().copied().unwrap_or(1) * 64 * 32 * 32 * 4;
    let mut copier = Copier {
        src: stream.alloc_zeros::<u8>(2 * largest)?,
        dst: stream.alloc_zeros::<u8>(2 * largest)?,
    };
    let mut rng = StdRng::seed_from_u64(1);
    for n in BATCHES {
        for (c, h, w) in SHAPES {
            let shape = GateShape::new(n, c, h, w, 1)?;
            let len = shape.x_len();
            let x = random(&gpu, &mut rng, len)?;
            let dy = random(&gpu, &mut rng, len)?;
            let s = random(&gpu, &mut rng, shape.s_len())?;
            let cv = random(&gpu, &mut rng, shape.c_len())?;
            let mut y = stream.alloc_zeros::<f32>(len)?;
            let mut r = stream.alloc_zeros::<f32>(len)?;
            let mut g = stream.alloc_zeros::<f32>(len)?;
            let mut dx = stream.alloc_zeros::<f32>(len)?;
            let mut ds = stream.alloc_zeros::<f32>(shape.s_len())?;
            let mut dc = stream.alloc_zeros::<f32>(shape.c_len())?;
            let f = 4; // bytes per f32
            let (xs, ss, cs) = (len * f, shape.s_len() * f, shape.c_len() * f);
            let (xv, sv, cvv, dyv) = (x.as_view(), s.as_view(), cv.as_view(), dy.as_view());
            let mut cases: Vec<(&str, usize, Timing)> = Vec::new();
            cases.push((
                "gate_fwd",
                2 * xs + ss + cs,
                time(&gpu, &dev, || {
                    gate_cuda::gate_forward::<_, f32, f32>(
                        &dev,
                        &shape,
                        &xv,
                        &sv,
                        &cvv,
                        &mut y.as_view_mut(),
                    )
                })?,
            ));
            cases.push((
                "gate_unfused_fwd",
                2 * xs + ss + cs,
                time(&gpu, &dev, || {
                    gate_cuda::gate_forward_unfused::<_, f32>(
                        &dev,
                        &shape,
                        &xv,
                        &sv,
                        &cvv,
                        &mut r.as_view_mut(),
                        &mut g.as_view_mut(),
                        &mut y.as_view_mut(),
                    )
                })?,
            ));
            cases.push((
                "relu_fwd",
                2 * xs,
                time(&gpu, &dev, || {
                    relu_cuda::relu_forward::<_, f32>(&dev, &xv, &mut y.as_view_mut())
                })?,
            ));
            cases.push((
                "gate_bwd",
                3 * xs + 2 * ss + 2 * cs,
                time(&gpu, &dev, || {
                    gate_cuda::gate_backward::<_, f32, f32>(
                        &dev,
                        &shape,
                        &xv,
                        &sv,
                        &cvv,
                        &dyv,
                        &mut dx.as_view_mut(),
                        &mut ds.as_view_mut(),
                        &mut dc.as_view_mut(),
                    )
                })?,
            ));
            cases.push((
                "relu_bwd",
                3 * xs,
                time(&gpu, &dev, || {
                    relu_cuda::relu_backward::<_, f32>(&dev, &xv, &dyv, &mut dx.as_view_mut())
                })?,
            ));
            for (op, bytes, t) in cases {
                let copy = copier.time(&gpu, &dev, bytes)?;
                let (median, copy_median) = (t.median(), copy.median());
                println!(
                    "{}",
                    json!({
                        "bench": "kernel",
                        "op": op,
                        "dtype": "f32",
                        "shape": format!("{n}x{c}x{h}x{w}"),
                        "bytes": bytes,
                        "l2_bytes": l2,
                        "placement": placement(bytes, l2),
                        "launches_per_run": LAUNCHES,
                        "runs": REPEATS,
                        "ms_per_launch": median,
                        "ms_fastest": t.ms[0],
                        "ms_slowest": t.ms[REPEATS - 1],
                        "gb_per_s": bytes as f64 / (median * 1e6),
                        "copy_ms": copy_median,
                        "copy_gb_per_s": bytes as f64 / (copy_median * 1e6),
                        "percent_of_copy": 100.0 * copy_median / median,
                        "device_allocations_timed": t.allocations,
                    })
                );
            }
        }
    }
    layer_vs_relu(&gpu, &dev)
}

/// The SPARTA layer's fused forward+backward and ReLU's, batch 128, per iteration.
fn layer_vs_relu(gpu: &Arc<Gpu>, dev: &Dev) -> Result<()> {
    let n = 128;
    let stream = gpu.stream().clone();
    let mut rng = StdRng::seed_from_u64(3);
    for (c, h, w) in SHAPES {
        let len = n * c * h * w;
        let layer = SpartaLayer::<f32>::new(SpartaConfig::new(c), &mut rng);
        let weights = layer.to_cuda(dev)?;
        let x = random(gpu, &mut rng, len)?;
        let dy = random(gpu, &mut rng, len)?;
        let mut y = stream.alloc_zeros::<f32>(len)?;
        let mut dx = stream.alloc_zeros::<f32>(len)?;
        let relu = time(gpu, dev, || {
            relu_cuda::relu_forward::<_, f32>(dev, &x.as_view(), &mut y.as_view_mut())?;
            relu_cuda::relu_backward::<_, f32>(
                dev,
                &x.as_view(),
                &dy.as_view(),
                &mut dx.as_view_mut(),
            )
        })?;
        let sparta = time(gpu, dev, || {
            let views = weights.views(dev);
            let (_, cache) =
                layer.forward_cuda(dev, &views, &x.as_view(), n, h, w, SanetPath::Fused)?;
            layer
                .backward_cuda(dev, &views, &x.as_view(), &cache, &dy.as_view(), true)
                .map(drop)
        })?;
        println!(
            "{}",
            json!({
                "bench": "sparta_layer_fwd_bwd",
                "shape": format!("{n}x{c}x{h}x{w}"),
                "iterations_per_run": LAUNCHES,
                "runs": REPEATS,
                "sparta_ms": sparta.median(),
                "relu_ms": relu.median(),
                "sparta_over_relu": sparta.median() / relu.median(),
                "device_allocations_timed": sparta.allocations,
            })
        );
    }
    Ok(())
}
