//! The whole SPARTA layer (DSCANet + gate) forward+backward, fused and unfused SANet,
//! next to ReLU forward+backward, at the ResNet-18 activation shapes (N = 128), f32, on
//! the CPU; and the layer's CPU GEMM work against a plain GEMM of the same size. The
//! GPU's numbers come from `examples/gpu_kernel_timing.rs` (CUDA events over
//! back-to-back launches; criterion would time each launch with its synchronisation).
//!
//!     cargo bench --bench sparta_layer
//!
//! `sparta_gemm` reports "elements" that are floating-point operations, so criterion's
//! Gelem/s reads as GFLOP/s: `sanet_fused_fwd_bwd` is SANet+DPNet forward and backward
//! (its four C×Co GEMMs over every pixel, 8·N·C·Co·H·W flops, plus the small work
//! around them); `plain_gemm` is one `[Co×C]·[C×(N·H·W)]` product (2·N·C·Co·H·W flops).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::gemm::{gemm, Op};
use sparta::nn::sparta::{SanetPath, SpartaConfig, SpartaGrads, SpartaLayer};
use sparta::ops::relu::cpu as relu;
use sparta::ops::sanet::{cpu as sanet, Conv5Source, SanetGrads, SanetParamGrads, SanetShape};

const BATCH: usize = 128;
/// (C, H, W) after each ResNet-18 group on CIFAR.
const SHAPES: [(usize, usize, usize); 4] = [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)];

fn random(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

fn layer_vs_relu(c: &mut Criterion) {
    let mut group = c.benchmark_group("sparta_layer_cpu");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    let mut rng = StdRng::seed_from_u64(1);
    for (ch, h, w) in SHAPES {
        let id = format!("{BATCH}x{ch}x{h}x{w}");
        let layer = SpartaLayer::<f32>::new(SpartaConfig::new(ch), &mut rng);
        let len = BATCH * ch * h * w;
        let (x, dy) = (random(&mut rng, len), random(&mut rng, len));
        group.throughput(Throughput::Elements(len as u64));
        group.bench_function(BenchmarkId::new("relu_fwd_bwd", &id), |b| {
            let (mut y, mut dx) = (vec![0.0f32; len], vec![0.0f32; len]);
            b.iter(|| {
                relu::relu_forward(&x, &mut y).unwrap();
                relu::relu_backward(&x, &dy, &mut dx).unwrap();
            })
        });
        for (name, path) in [
            ("sparta_fused_fwd_bwd", SanetPath::Fused),
            ("sparta_unfused_fwd_bwd", SanetPath::Unfused),
        ] {
            group.bench_function(BenchmarkId::new(name, &id), |b| {
                b.iter(|| {
                    let (_, cache) = layer.forward_with(&x, BATCH, h, w, path).unwrap();
                    layer.backward(&x, &cache, &dy).unwrap()
                })
            });
        }
        // Y and the gradients in buffers kept across calls, as the ReLU bench keeps its
        // y and dx: the allocating calls above also pay for faulting in two fresh
        // x-sized buffers per call.
        group.bench_function(BenchmarkId::new("sparta_fused_fwd_bwd_reused", &id), |b| {
            let mut y = vec![0.0f32; len];
            let mut grads = SpartaGrads::zeros(&layer, len);
            b.iter(|| {
                let cache = layer
                    .forward_into(&x, BATCH, h, w, SanetPath::Fused, &mut y)
                    .unwrap();
                layer.backward_into(&x, &cache, &dy, &mut grads).unwrap();
            })
        });
    }
    group.finish();
}

fn gemm_share(c: &mut Criterion) {
    let mut group = c.benchmark_group("sparta_gemm");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    let mut rng = StdRng::seed_from_u64(2);
    let (ch, h, w) = SHAPES[0];
    let co = ch.min(256);
    let pixels = h * w;
    let id = format!("{BATCH}x{ch}x{h}x{w}");
    let shape = SanetShape::new(BATCH, ch, co, pixels).unwrap();
    let x = random(&mut rng, shape.xs_len());
    let (w3, b3) = (random(&mut rng, co * ch), random(&mut rng, co));
    let (w4, b4) = (random(&mut rng, (co + 1) * co), random(&mut rng, co + 1));
    let ds = random(&mut rng, BATCH * pixels);
    let src = Conv5Source::Predicted { w4: &w4, b4: &b4 };
    let gemm_flops = 2 * BATCH * ch * co * pixels;

    group.throughput(Throughput::Elements(4 * gemm_flops as u64));
    group.bench_function(BenchmarkId::new("sanet_fused_fwd_bwd", &id), |b| {
        let mut dxs = vec![0.0f32; shape.xs_len()];
        let (mut dw3, mut db3) = (vec![0.0f32; co * ch], vec![0.0f32; co]);
        let (mut dw4, mut db4) = (vec![0.0f32; (co + 1) * co], vec![0.0f32; co + 1]);
        b.iter(|| {
            let out = sanet::sanet_forward_fused(&shape, &x, &w3, &b3, &src).unwrap();
            let grads = SanetGrads {
                dxs: &mut dxs,
                params: Some(SanetParamGrads {
                    dw3: &mut dw3,
                    db3: &mut db3,
                    dw_head: &mut dw4,
                    db_head: &mut db4,
                }),
            };
            sanet::sanet_backward_fused(&shape, &x, &w3, &b3, &src, &out, &ds, grads).unwrap();
        })
    });

    group.throughput(Throughput::Elements(gemm_flops as u64));
    group.bench_function(BenchmarkId::new("plain_gemm", &id), |b| {
        let mut out = vec![0.0f32; co * BATCH * pixels];
        b.iter(|| {
            gemm(
                co,
                BATCH * pixels,
                ch,
                1.0,
                &w3,
                Op::N,
                &x,
                Op::N,
                0.0,
                &mut out,
            );
        })
    });
    group.finish();
}

criterion_group!(benches, layer_vs_relu, gemm_share);
criterion_main!(benches);
