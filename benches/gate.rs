//! Fused SPARTA gate against ReLU and against the unfused three-pass peer, forward and
//! backward, at the ResNet-18 activation shapes (N = 128), f32. CPU always; CUDA too
//! when a GPU is present. Throughput is the minimal bytes each op must move (every
//! input read once, every output written once), so GB/s compares with copy bandwidth.
//!
//!     cargo bench --bench gate
//!     SPARTA_CPU_VECTORS=avx2 cargo bench --bench gate -- cpu/   # a narrower CPU tier

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sparta::ops::gate::{self, cpu, GateShape};
use sparta::ops::relu;
use sparta::Gpu;

mod gate_data;
use gate_data::{Data, SHAPES};

const BATCH: usize = 128;

/// Minimal bytes: f32 elements read plus written.
fn bytes(elements: usize) -> Throughput {
    Throughput::Bytes((elements * std::mem::size_of::<f32>()) as u64)
}

fn gate_bytes(shape: &GateShape) -> (Throughput, Throughput) {
    let (x, s, c) = (shape.x_len(), shape.s_len(), shape.c_len());
    (bytes(2 * x + s + c), bytes(3 * x + 2 * s + 2 * c))
}

fn cpu_benches(crit: &mut Criterion) {
    println!(
        "gate CPU loops: {} (SPARTA_CPU_VECTORS picks another)",
        cpu::vector_tier()
    );
    for dims in SHAPES {
        let d = Data::new(BATCH, dims);
        let len = d.shape.x_len();
        let (fwd_bytes, bwd_bytes) = gate_bytes(&d.shape);
        let mut group = crit.benchmark_group("cpu");
        let mut y = vec![0.0f32; len];
        let (mut r, mut g) = (vec![0.0f32; len], vec![0.0f32; len]);
        let (mut dx, mut ds, mut dc) = (
            vec![0.0f32; len],
            vec![0.0f32; d.s.len()],
            vec![0.0f32; d.c.len()],
        );

        group.throughput(fwd_bytes.clone());
        group.bench_function(BenchmarkId::new("gate_fwd", d.label()), |b| {
            b.iter(|| cpu::gate_forward(&d.shape, &d.x, &d.s, &d.c, &mut y).unwrap())
        });
        group.bench_function(BenchmarkId::new("unfused_fwd", d.label()), |b| {
            b.iter(|| {
                cpu::gate_forward_unfused(&d.shape, &d.x, &d.s, &d.c, &mut r, &mut g, &mut y)
                    .unwrap()
            })
        });
        group.throughput(bytes(2 * len));
        group.bench_function(BenchmarkId::new("relu_fwd", d.label()), |b| {
            b.iter(|| cpu::relu_forward(&d.x, &mut y).unwrap())
        });
        group.throughput(bwd_bytes);
        group.bench_function(BenchmarkId::new("gate_bwd", d.label()), |b| {
            b.iter(|| {
                cpu::gate_backward(&d.shape, &d.x, &d.s, &d.c, &d.dy, &mut dx, &mut ds, &mut dc)
                    .unwrap()
            })
        });
        group.throughput(bytes(3 * len));
        group.bench_function(BenchmarkId::new("relu_bwd", d.label()), |b| {
            b.iter(|| cpu::relu_backward(&d.x, &d.dy, &mut dx).unwrap())
        });
        group.finish();
    }
}

fn cuda_benches(crit: &mut Criterion) {
    let gpu = match Gpu::new(0) {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!("cuda gate benches: skipped, no GPU ({e})");
            return;
        }
    };
    let stream = gpu.stream().clone();
    for dims in SHAPES {
        let d = Data::new(BATCH, dims);
        let shape = d.shape;
        let len = shape.x_len();
        let (fwd_bytes, bwd_bytes) = gate_bytes(&shape);
        let x = stream.clone_htod(&d.x).unwrap();
        let s = stream.clone_htod(&d.s).unwrap();
        let cv = stream.clone_htod(&d.c).unwrap();
        let dy = stream.clone_htod(&d.dy).unwrap();
        let alloc = |n: usize| stream.alloc_zeros::<f32>(n).unwrap();
        let (mut y, mut r, mut g) = (alloc(len), alloc(len), alloc(len));
        let (mut dx, mut ds, mut dc) = (alloc(len), alloc(shape.s_len()), alloc(shape.c_len()));
        let (x, s, cv, dy) = (x.as_view(), s.as_view(), cv.as_view(), dy.as_view());
        let sync = || stream.synchronize().unwrap();
        let mut group = crit.benchmark_group("cuda");

        group.throughput(fwd_bytes.clone());
        group.bench_function(BenchmarkId::new("gate_fwd", d.label()), |b| {
            b.iter(|| {
                gate::cuda::gate_forward(&gpu, &shape, &x, &s, &cv, &mut y.as_view_mut()).unwrap();
                sync()
            })
        });
        group.bench_function(BenchmarkId::new("unfused_fwd", d.label()), |b| {
            b.iter(|| {
                gate::cuda::gate_forward_unfused(
                    &gpu,
                    &shape,
                    &x,
                    &s,
                    &cv,
                    &mut r.as_view_mut(),
                    &mut g.as_view_mut(),
                    &mut y.as_view_mut(),
                )
                .unwrap();
                sync()
            })
        });
        group.throughput(bytes(2 * len));
        group.bench_function(BenchmarkId::new("relu_fwd", d.label()), |b| {
            b.iter(|| {
                relu::cuda::relu_forward(&gpu, &x, &mut y.as_view_mut()).unwrap();
                sync()
            })
        });
        group.throughput(bwd_bytes);
        group.bench_function(BenchmarkId::new("gate_bwd", d.label()), |b| {
            b.iter(|| {
                gate::cuda::gate_backward(
                    &gpu,
                    &shape,
                    &x,
                    &s,
                    &cv,
                    &dy,
                    &mut dx.as_view_mut(),
                    &mut ds.as_view_mut(),
                    &mut dc.as_view_mut(),
                )
                .unwrap();
                sync()
            })
        });
        group.throughput(bytes(3 * len));
        group.bench_function(BenchmarkId::new("relu_bwd", d.label()), |b| {
            b.iter(|| {
                relu::cuda::relu_backward(&gpu, &x, &dy, &mut dx.as_view_mut()).unwrap();
                sync()
            })
        });
        group.finish();
    }
}

/// Short runs: the lead runs every bench once at the end.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = cpu_benches, cuda_benches
}
criterion_main!(benches);
