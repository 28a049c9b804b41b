//! Fused SPARTA gate against ReLU and against the unfused three-pass peer, forward and
//! backward, at the ResNet-18 activation shapes (N = 128), f32, on the CPU. Throughput
//! is the minimal bytes each op must move (every input read once, every output written
//! once), so GB/s compares with copy bandwidth. The GPU kernels are timed by
//! `examples/gpu_kernel_timing.rs` (CUDA events over back-to-back launches, beside a
//! device-to-device copy of the same bytes).
//!
//!     cargo bench --bench gate
//!     SPARTA_CPU_VECTORS=avx2 cargo bench --bench gate -- cpu/   # a narrower CPU tier

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sparta::ops::gate::{cpu, GateShape};

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
    targets = cpu_benches
}
criterion_main!(benches);
