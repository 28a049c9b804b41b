//! The SPARTA layer on a GPU against the f64 CPU layer with the same weights: forward,
//! dX and every parameter gradient, fused and unfused, DPNet on and off, B = 1 and 2,
//! frozen. Skips with a message when no GPU is present. Shapes stay small so that no
//! ReLU input inside DSCANet lands within f32 rounding of 0, where the f32 and f64
//! decisions could differ.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::nn::sparta::{SanetPath, SpartaConfig, SpartaLayer};
use sparta::Gpu;

fn assert_matches(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(err <= 1e-5 * scale, "{what}[{i}]: GPU {g} vs CPU {w}");
    }
}

#[test]
fn cuda_layer_matches_cpu_layer() {
    let Some(gpu) = Gpu::for_tests("cuda_layer_matches_cpu_layer") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(21);
    let cases = [
        (6, true, 1, 3, 5, 7),
        (6, false, 2, 2, 5, 7),
        (300, true, 2, 2, 4, 4),
        (64, true, 1, 2, 8, 8),
    ];
    for (ch, dpnet, block, n, h, w) in cases {
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

            let stream = gpu.stream();
            let weights = layer32.to_cuda(&gpu).unwrap();
            let (x_d, dy_d) = (
                stream.clone_htod(&x32).unwrap(),
                stream.clone_htod(&dy32).unwrap(),
            );
            for path in [SanetPath::Fused, SanetPath::Unfused] {
                let what = format!("C {ch} DPNet {dpnet} B {block} frozen {frozen} {path:?}");
                let (y_d, cache_d) = layer32
                    .forward_cuda(&gpu, &weights, &x_d.as_view(), n, h, w, path)
                    .unwrap();
                assert_matches(
                    &format!("{what} y"),
                    &stream.clone_dtoh(&y_d).unwrap(),
                    &y_ref,
                );
                let g = layer32
                    .backward_cuda(&gpu, &weights, &x_d.as_view(), &cache_d, &dy_d.as_view())
                    .unwrap();
                assert_matches(
                    &format!("{what} dx"),
                    &stream.clone_dtoh(&g.dx).unwrap(),
                    &g_ref.dx,
                );
                assert_eq!(g.params.len(), g_ref.params.len(), "{what}");
                for ((name, _, _), (got, want)) in layer32
                    .params()
                    .iter()
                    .zip(g.params.iter().zip(&g_ref.params))
                {
                    assert_matches(
                        &format!("{what} {name}"),
                        &stream.clone_dtoh(got).unwrap(),
                        want,
                    );
                }
            }
        }
    }
}
