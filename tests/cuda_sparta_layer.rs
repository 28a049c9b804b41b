//! The SPARTA layer's CUDA path (its sequence of wrappers and launches) against the f64
//! CPU layer with the same weights: forward, dX and every parameter gradient, fused and
//! unfused, DPNet on and off, B = 1 and 2, frozen; with X, Y and their gradients stored
//! as f32, f16 and bf16. On the CPU kernel harness always (small channel counts), on a
//! GPU in `gpu_layer_matches_cpu_layer` (all cases; ignored unless run with `--ignored`). Shapes stay small so that no ReLU input inside
//! DSCANet lands within f32 rounding of 0, where the f32 and f64 decisions could differ.
//!
//! With f16 / bf16 activations the reference sees the same rounded X and dY; Y and dX
//! are held to the storage type's 1e-2, and the parameter gradients to f32's 1e-5: they
//! come from exact inputs through f32 arithmetic and f32 maps, never through a rounded
//! tensor.

mod gpu_support;
mod harness_support;

use gpu_support::gpu;
use half::{bf16, f16};
use harness_support::device::HarnessDevice;
use harness_support::{assert_matches, tolerance, widen, Storage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::nn::sparta::{SanetPath, SpartaConfig, SpartaLayer};
use sparta::ops::GateMapFloat;
use sparta::KernelDevice;

/// (C, DPNet, B, N, H, W).
type Case = (usize, bool, usize, usize, usize, usize);

const SMALL_CASES: &[Case] = &[(6, true, 1, 3, 5, 7), (6, false, 2, 2, 5, 7)];

#[test]
fn harness_layer_matches_cpu_layer() {
    let dev = HarnessDevice::new();
    check_layer::<_, f32>(&dev, SMALL_CASES);
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

/// f16 and bf16 activations: the activation-side kernels run in the storage type (B = 1
/// reads X itself in SANet), the rest in f32.
#[test]
fn harness_layer_with_half_activations_matches_cpu_layer() {
    let dev = HarnessDevice::new();
    check_layer::<_, f16>(&dev, SMALL_CASES);
    check_layer::<_, bf16>(&dev, SMALL_CASES);
    let launched = dev.take_launched();
    for kernel in [
        "pool_forward_f16",
        "pool_backward_bf16",
        "sanet_pool_f16",
        "sanet_dh_bf16",
        "sanet_pool_f32",
        "conv1x1_forward_bf16",
        "conv1x1_backward_input_f16",
        "conv1x1_backward_weight_f16",
        "gate_forward_f32map_f16",
        "gate_backward_f32map_bf16",
    ] {
        assert!(
            launched.iter().any(|k| k == kernel),
            "{kernel} never launched"
        );
    }
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_layer_matches_cpu_layer() {
    let gpu = gpu();
    let mut cases = SMALL_CASES.to_vec();
    cases.extend([(300, true, 2, 2, 4, 4), (64, true, 1, 2, 8, 8)]);
    check_layer::<_, f32>(&gpu, &cases);
    check_layer::<_, f16>(&gpu, &cases);
    check_layer::<_, bf16>(&gpu, &cases);
}

/// `|got − want| ≤ tol · max_j |want_j|` (scale-aware as [`assert_matches`]); NaN never
/// passes.
fn assert_within(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}[{i}]: device {g} vs CPU {w}"
        );
    }
}

fn check_layer<D: KernelDevice, T: Storage>(dev: &D, cases: &[Case])
where
    f32: GateMapFloat<T>,
{
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
            let mut random = || -> Vec<T> {
                (0..len)
                    .map(|_| T::of_f64(rng.random_range(-1.0..1.0)))
                    .collect()
            };
            let (x_t, dy_t) = (random(), random());
            let (x64, dy64) = (widen(&x_t), widen(&dy_t));
            let (y_ref, cache) = layer64.forward(&x64, n, h, w).unwrap();
            let g_ref = layer64.backward(&x64, &cache, &dy64).unwrap();

            let weights = layer32.to_cuda(dev).unwrap();
            let (x_d, dy_d) = (
                dev.upload("x", &x_t).unwrap(),
                dev.upload("dy", &dy_t).unwrap(),
            );
            let (x_v, dy_v) = (dev.view(&x_d), dev.view(&dy_d));
            let down = |b: &D::Buffer<f32>| dev.download(&dev.view(b)).unwrap();
            let down_t = |b: &D::Buffer<T>| widen(&dev.download(&dev.view(b)).unwrap());
            let tol = tolerance::<T>();
            for path in [SanetPath::Fused, SanetPath::Unfused] {
                let what = format!(
                    "{} C {ch} DPNet {dpnet} B {block} frozen {frozen} {path:?}",
                    T::SUFFIX
                );
                let (y_d, cache_d) = layer32
                    .forward_cuda(dev, &weights.views(dev), &x_v, n, h, w, path)
                    .unwrap();
                assert_within(&format!("{what} y"), &down_t(&y_d), &y_ref, tol);
                let g = layer32
                    .backward_cuda(dev, &weights.views(dev), &x_v, &cache_d, &dy_v, true)
                    .unwrap();
                assert_within(&format!("{what} dx"), &down_t(&g.dx), &g_ref.dx, tol);
                let input_only = layer32
                    .backward_cuda(dev, &weights.views(dev), &x_v, &cache_d, &dy_v, false)
                    .unwrap();
                assert!(
                    input_only.params.is_empty(),
                    "{what}: no parameter gradients asked"
                );
                assert_eq!(down_t(&input_only.dx), down_t(&g.dx), "{what}: dx alone");
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
