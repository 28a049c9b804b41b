//! Each attack of `sparta eval`'s suites on the CPU, on one batch of 32 Fashion-MNIST
//! sized images (1×28×28 of noise, 10 classes) against the small ResNet preset with
//! ReLU, untrained, labelled with its own predictions: targeted PGD-10, APGD-CE-10,
//! APGD-T-10 (up to 9 target runs) and Square with 100 queries. Images leave APGD and
//! Square once broken, as in an evaluation. Criterion's elements/s read as attacked
//! images/s.
//!
//!     cargo bench --bench attacks
//!
//! The whole-data-set figure of the issue (APGD-CE-100 on 1,000 test images) is a CLI
//! run: `sparta attack --attack apgd-ce --iterations 100 --test-limit 1000` (BENCHMARKS.md).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sparta::attack::apgd::{apgd, ApgdConfig};
use sparta::attack::pgd::{argmax_rows, pgd, PgdConfig};
use sparta::attack::square::{square, SquareConfig};
use sparta::classifier::Classifier;
use sparta::nn::resnet::{ResNet, ResNetConfig};

const BATCH: usize = 32;
const SHAPE: [usize; 4] = [BATCH, 1, 28, 28];

fn attacks(c: &mut Criterion) {
    sparta::host_memory::keep_freed_host_memory();
    let mut group = c.benchmark_group("attack_cpu");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x: Vec<f32> = (0..BATCH * 784).map(|_| rng.random()).collect();
    let config = ResNetConfig::small(1, 10).with_activation("relu");
    let mut model = ResNet::<f32>::new(config, 0).expect("the small ResNet");
    // Labels the untrained model gets right, so every image is attacked.
    let labels = argmax_rows(&model.logits(&x, SHAPE).expect("logits"), 10);
    let eps = 16.0 / 255.0;
    group.bench_function(BenchmarkId::new("pgd", "targeted-10"), |b| {
        b.iter(|| {
            pgd(
                &mut model,
                &x,
                SHAPE,
                &labels,
                &PgdConfig::paper(10),
                &mut rng,
            )
        })
    });
    for (name, config) in [
        ("ce-10", ApgdConfig::ce(eps, 10)),
        ("t-10", ApgdConfig::targeted_dlr(eps, 10)),
    ] {
        group.bench_function(BenchmarkId::new("apgd", name), |b| {
            b.iter(|| apgd(&mut model, &x, SHAPE, &labels, &config, &mut rng))
        });
    }
    let config = SquareConfig {
        epsilon: eps,
        queries: 100,
    };
    group.bench_function(BenchmarkId::new("square", "100"), |b| {
        b.iter(|| square(&mut model, &x, SHAPE, &labels, &config, &mut rng))
    });
    group.finish();
}

criterion_group!(benches, attacks);
criterion_main!(benches);
