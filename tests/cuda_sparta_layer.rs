//! The SPARTA layer's CUDA path (its sequence of wrappers and launches) against the f64
//! CPU layer with the same weights: forward, dX and every parameter gradient, fused and
//! unfused, DPNet on and off, B = 1 and 2, frozen. On the CPU kernel harness always
//! (small channel counts), on a GPU when there is one (all cases). Shapes stay small so
//! that no ReLU input inside DSCANet lands within f32 rounding of 0, where the f32 and
//! f64 decisions could differ.

mod harness_support;

use harness_support::assert_matches;
use harness_support::device::HarnessDevice;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::nn::sparta::{SanetPath, SpartaConfig, SpartaLayer};
use sparta::{Gpu, KernelDevice};

/// (C, DPNet, B, N, H, W).
type Case = (usize, bool, usize, usize, usize, usize);

const SMALL_CASES: &[Case] = &[(6, true, 1, 3, 5, 7), (6, false, 2, 2, 5, 7)];

#[test]
fn harness_layer_matches_cpu_layer() {
    let dev = HarnessDevice::new();
    check_layer(&dev, SMALL_CASES);
    let launched = dev.take_launched();
    // The fused and unfused SANet paths and the DPNet head all ran.
    for kernel in [
        "sanet_pool_f32",
        "sanet_conv5_f32",
        "sanet_dw5_f32",
        "sanet_dh_f32",
        "conv1x1_forward_f32",
        "dynconv_forward_f32",
        "dynconv_backward_input_f32",
        "relu_mask_f32",
        "gate_backward_ds_f32",
    ] {
        assert!(
            launched.iter().any(|k| k == kernel),
            "{kernel} never launched"
        );
    }
}

#[test]
fn cuda_layer_matches_cpu_layer() {
    let Some(gpu) = Gpu::for_tests("cuda_layer_matches_cpu_layer") else {
        return;
    };
    let mut cases = SMALL_CASES.to_vec();
    cases.extend([(300, true, 2, 2, 4, 4), (64, true, 1, 2, 8, 8)]);
    check_layer(&gpu, &cases);
}

fn check_layer<D: KernelDevice>(dev: &D, cases: &[Case]) {
    let mut rng = StdRng::seed_from_u64(21);
    for &(ch, dpnet, block, n, h, w) in cases {
        for frozen in [false, true] {
            let config = SpartaConfig {
                dpnet,
                block,
                frozen,
                ..SpartaConfig::new(ch)
            };
            let layer32 = SpartaLayer::<f32>::new(config, &mut rng);
            let mut layer64 = SpartaLayer::<f64>::new(config, &mut rng);
            for ((_, dst), (_, src, _)) in layer64.params_mut().into_iter().zip(layer32.params()) {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = s as f64;
                }
            }
            let len = n * ch * h * w;
            let x32: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let dy32: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let x64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
            let dy64: Vec<f64> = dy32.iter().map(|&v| v as f64).collect();
            let (y_ref, cache) = layer64.forward(&x64, n, h, w).unwrap();
            let g_ref = layer64.backward(&x64, &cache, &dy64).unwrap();

            let weights = layer32.to_cuda(dev).unwrap();
            let (x_d, dy_d) = (
                dev.upload("x", &x32).unwrap(),
                dev.upload("dy", &dy32).unwrap(),
            );
            let (x_v, dy_v) = (dev.view(&x_d), dev.view(&dy_d));
            let down = |b: &D::Buffer<f32>| dev.download(&dev.view(b)).unwrap();
            for path in [SanetPath::Fused, SanetPath::Unfused] {
                let what = format!("C {ch} DPNet {dpnet} B {block} frozen {frozen} {path:?}");
                let (y_d, cache_d) = layer32
                    .forward_cuda(dev, &weights.views(dev), &x_v, n, h, w, path)
                    .unwrap();
                assert_matches(&format!("{what} y"), &down(&y_d), &y_ref);
                let g = layer32
                    .backward_cuda(dev, &weights.views(dev), &x_v, &cache_d, &dy_v, true)
                    .unwrap();
                assert_matches(&format!("{what} dx"), &down(&g.dx), &g_ref.dx);
                let input_only = layer32
                    .backward_cuda(dev, &weights.views(dev), &x_v, &cache_d, &dy_v, false)
                    .unwrap();
                assert!(
                    input_only.params.is_empty(),
                    "{what}: no parameter gradients asked"
                );
                assert_eq!(down(&input_only.dx), down(&g.dx), "{what}: dx alone");
                assert_eq!(g.params.len(), g_ref.params.len(), "{what}");
                for ((name, _, _), (got, want)) in layer32
                    .params()
                    .iter()
                    .zip(g.params.iter().zip(&g_ref.params))
                {
                    assert_matches(&format!("{what} {name}"), &down(got), want);
                }
            }
        }
    }
}
