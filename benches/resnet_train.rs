//! ResNet-18 (CIFAR shape: 3×32×32, 10 classes) training throughput on the CPU: one
//! `train_step` (forward, backward, SGD) on a batch of 128, with ReLU everywhere and
//! with SPARTA on the last block of each group (`G1-4.B2`). Criterion's elements/s
//! read as training images/s.
//!
//!     cargo bench --bench resnet_train
//!
//! A step takes seconds on a small CPU, so the sample count is criterion's minimum.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::classifier::Trainable;
use sparta::nn::resnet::{ResNet, ResNetConfig};

const BATCH: usize = 128;

fn resnet18_train_step(c: &mut Criterion) {
    // As the CLI runs it (src/bin/sparta.rs).
    sparta::host_memory::keep_freed_host_memory();
    let mut group = c.benchmark_group("resnet18_train_cpu");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut rng = StdRng::seed_from_u64(0);
    let x: Vec<f32> = (0..BATCH * 3 * 32 * 32).map(|_| rng.random()).collect();
    let labels: Vec<usize> = (0..BATCH).map(|_| rng.random_range(0..10)).collect();
    for spec in ["relu", "G1-4.B2"] {
        let config = ResNetConfig::resnet18(3, 10).with_activation(spec);
        let mut model = ResNet::<f32>::new(config, 0).expect("ResNet-18");
        group.bench_with_input(BenchmarkId::new("batch128", spec), &spec, |b, _| {
            b.iter(|| {
                model
                    .train_step(&x, [BATCH, 3, 32, 32], &labels, 0.01)
                    .expect("train step")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, resnet18_train_step);
criterion_main!(benches);
