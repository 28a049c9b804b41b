//! The SPARTA layer against finite differences (f64), its parameter count, and its
//! safetensors file format.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::nn::sparta::{SanetPath, SpartaConfig, SpartaGrads, SpartaLayer};

fn random(rng: &mut StdRng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// `L = Σ Y·R` for a fixed random R, so `dY = R`.
fn loss(layer: &SpartaLayer<f64>, x: &[f64], n: usize, h: usize, w: usize, r: &[f64]) -> f64 {
    let (y, _) = layer.forward(x, n, h, w).unwrap();
    y.iter().zip(r).map(|(a, b)| a * b).sum()
}

/// Indices to check: all of them for small tensors, else `limit` random ones.
fn indices(rng: &mut StdRng, len: usize, limit: usize) -> Vec<usize> {
    if len <= limit {
        (0..len).collect()
    } else {
        (0..limit).map(|_| rng.random_range(0..len)).collect()
    }
}

fn assert_close(what: &str, numeric: f64, analytic: f64) {
    let err = (numeric - analytic).abs();
    // Fails on NaN: the comparison is false.
    assert!(
        err <= 1e-6 * numeric.abs().max(analytic.abs()) + 1e-9,
        "{what}: finite difference {numeric:e} vs backward {analytic:e}"
    );
}

/// Checks dX and every parameter gradient of a layer with `config` on an `n × C × h × w`
/// input against central differences.
fn gradcheck(config: SpartaConfig, n: usize, h: usize, w: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut layer = SpartaLayer::<f64>::new(config, &mut rng);
    // Larger-than-default weights so every path (gate slope, DPNet) carries signal.
    for (_, p) in layer.params_mut() {
        p.iter_mut().for_each(|v| *v *= 3.0);
    }
    let len = n * config.channels * h * w;
    let x = random(&mut rng, len);
    let r = random(&mut rng, len);
    let (_, cache) = layer.forward(&x, n, h, w).unwrap();
    let grads = layer.backward(&x, &cache, &r).unwrap();
    let eps = 1e-5;
    for i in indices(&mut rng, len, 400) {
        let mut xp = x.clone();
        xp[i] += eps;
        let up = loss(&layer, &xp, n, h, w, &r);
        xp[i] -= 2.0 * eps;
        let down = loss(&layer, &xp, n, h, w, &r);
        assert_close(
            &format!("{config:?} dx[{i}]"),
            (up - down) / (2.0 * eps),
            grads.dx[i],
        );
    }
    assert_eq!(grads.params.len(), layer.params().len());
    for (k, grad) in grads.params.iter().enumerate() {
        let name = layer.params()[k].0;
        for i in indices(&mut rng, grad.len(), 60) {
            let at = |e: f64| {
                let mut moved = layer.clone();
                moved.params_mut()[k].1[i] += e;
                loss(&moved, &x, n, h, w, &r)
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            assert_close(&format!("{config:?} {name}[{i}]"), numeric, grad[i]);
        }
    }
}

fn config(channels: usize, dpnet: bool, block: usize) -> SpartaConfig {
    SpartaConfig {
        dpnet,
        block,
        ..SpartaConfig::new(channels)
    }
}

#[test]
fn gradients_with_and_without_dpnet_for_block_1_2_4() {
    for dpnet in [true, false] {
        for block in [1, 2, 4] {
            // 5×7 leaves partial edge blocks for B = 2 and B = 4.
            gradcheck(config(3, dpnet, block), 2, 5, 7, 10 + block as u64);
        }
    }
}

#[test]
fn gradients_when_co_is_less_than_c() {
    let c = config(300, true, 1);
    assert_eq!(c.reduced(), 256);
    gradcheck(c, 1, 2, 3, 1);
    gradcheck(config(300, false, 2), 2, 3, 3, 2);
}

#[test]
fn gradients_for_one_pixel_and_one_sample() {
    for dpnet in [true, false] {
        gradcheck(config(4, dpnet, 1), 3, 1, 1, 3);
        gradcheck(config(4, dpnet, 2), 2, 1, 1, 4);
        gradcheck(config(5, dpnet, 2), 1, 3, 2, 5);
    }
}

#[test]
fn fused_and_unfused_paths_agree() {
    let mut rng = StdRng::seed_from_u64(7);
    for dpnet in [true, false] {
        let layer = SpartaLayer::<f64>::new(config(6, dpnet, 2), &mut rng);
        let (n, h, w) = (2, 5, 4);
        let x = random(&mut rng, n * 6 * h * w);
        let dy = random(&mut rng, x.len());
        let (yf, cf) = layer.forward_with(&x, n, h, w, SanetPath::Fused).unwrap();
        let (yu, cu) = layer.forward_with(&x, n, h, w, SanetPath::Unfused).unwrap();
        assert_eq!(
            (cf.path(), cu.path()),
            (SanetPath::Fused, SanetPath::Unfused)
        );
        let gf = layer.backward(&x, &cf, &dy).unwrap();
        let gu = layer.backward(&x, &cu, &dy).unwrap();
        let all_f = yf.iter().chain(&gf.dx).chain(gf.params.iter().flatten());
        let all_u = yu.iter().chain(&gu.dx).chain(gu.params.iter().flatten());
        for (a, b) in all_f.zip(all_u) {
            assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "{a} vs {b}");
        }
    }
}

/// Reused output buffers (holding the previous call's values, or garbage) give exactly
/// what fresh ones give; wrong-sized ones are shape errors.
#[test]
fn forward_and_backward_into_reused_buffers_match_the_allocating_calls() {
    let mut rng = StdRng::seed_from_u64(9);
    for (dpnet, block) in [(true, 1), (false, 2)] {
        let layer = SpartaLayer::<f64>::new(config(6, dpnet, block), &mut rng);
        let (n, h, w) = (2, 5, 4);
        let x = random(&mut rng, n * 6 * h * w);
        let dy = random(&mut rng, x.len());
        let (y, cache) = layer.forward(&x, n, h, w).unwrap();
        let want = layer.backward(&x, &cache, &dy).unwrap();
        let mut y2 = vec![f64::NAN; x.len()];
        let mut g2 = SpartaGrads::zeros(&layer, x.len());
        g2.dx.fill(7.0);
        g2.params.iter_mut().for_each(|p| p.fill(-3.0));
        for _ in 0..2 {
            let c2 = layer
                .forward_into(&x, n, h, w, SanetPath::Fused, &mut y2)
                .unwrap();
            layer.backward_into(&x, &c2, &dy, &mut g2).unwrap();
            assert_eq!(y2, y);
            assert_eq!(g2.dx, want.dx);
            assert_eq!(g2.params, want.params);
        }
        let mut short = vec![0.0; x.len() - 1];
        assert!(layer
            .forward_into(&x, n, h, w, SanetPath::Fused, &mut short)
            .is_err());
        g2.params.pop();
        assert!(layer.backward_into(&x, &cache, &dy, &mut g2).is_err());
    }
}

/// The allocating calls write each sample's output in its own task (a tensor above one
/// task's worth, as in training): same bits as the calls into caller buffers.
#[test]
fn allocating_calls_match_the_calls_into_buffers_on_parallel_f32_tensors() {
    let mut rng = StdRng::seed_from_u64(10);
    for (dpnet, block) in [(true, 1), (false, 2)] {
        let layer = SpartaLayer::<f32>::new(config(16, dpnet, block), &mut rng);
        let (n, h, w) = (4, 28, 28);
        let len = n * 16 * h * w;
        let x: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0..1.0)).collect();
        let dy: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0..1.0)).collect();
        let (y, cache) = layer.forward(&x, n, h, w).unwrap();
        let grads = layer.backward(&x, &cache, &dy).unwrap();
        let mut y2 = vec![f32::NAN; len];
        let c2 = layer
            .forward_into(&x, n, h, w, SanetPath::Fused, &mut y2)
            .unwrap();
        let mut g2 = SpartaGrads::zeros(&layer, len);
        g2.dx.fill(f32::NAN);
        layer.backward_into(&x, &c2, &dy, &mut g2).unwrap();
        assert!(y.iter().chain(&grads.dx).all(|v| v.is_finite()));
        assert_eq!(y, y2);
        assert_eq!(grads.dx, g2.dx);
        assert_eq!(grads.params, g2.params);
    }
}

#[test]
fn frozen_layer_returns_the_same_dx_and_no_parameter_gradients() {
    let mut rng = StdRng::seed_from_u64(8);
    let mut layer = SpartaLayer::<f64>::new(SpartaConfig::new(5), &mut rng);
    let (n, h, w) = (2, 3, 3);
    let x = random(&mut rng, n * 5 * h * w);
    let dy = random(&mut rng, x.len());
    let (_, cache) = layer.forward(&x, n, h, w).unwrap();
    let trainable = layer.backward(&x, &cache, &dy).unwrap();
    layer.set_frozen(true);
    let frozen = layer.backward(&x, &cache, &dy).unwrap();
    assert!(frozen.params.is_empty());
    assert_eq!(frozen.dx, trainable.dx);
}

#[test]
fn parameter_count_matches_design_formula_for_resnet_widths() {
    // docs/design.md#parameter-count: C·Co+Co + Co·C+C + C·Co+Co + Co·(Co+1)+(Co+1), Co = min(256, C).
    let expected = [(64, 16_705), (128, 66_177), (256, 263_425), (512, 460_289)];
    let mut rng = StdRng::seed_from_u64(0);
    for (c, count) in expected {
        let cfg = SpartaConfig::new(c);
        let co = c.min(256);
        let formula = c * co + co + co * c + c + c * co + co + co * (co + 1) + (co + 1);
        assert_eq!(formula, count);
        assert_eq!(cfg.param_count(), count, "C = {c}");
        let layer = SpartaLayer::<f32>::new(cfg, &mut rng);
        let stored: usize = layer.params().iter().map(|(_, d, _)| d.len()).sum();
        assert_eq!(stored, count);
    }
    // Four layers at the widths of ResNet-18/34's groups add 806,596 parameters; the
    // built networks' totals are pinned in tests/resnet.rs.
    let added: usize = expected.iter().map(|(_, n)| n).sum();
    assert_eq!(added, 806_596);
    // Without DPNet Conv4 is replaced by Co + 1 learned numbers.
    let no_dp = config(64, false, 1);
    assert_eq!(no_dp.param_count(), 3 * (64 * 64 + 64) + 65);
}

#[test]
fn initialisation_is_uniform_within_pytorch_bounds() {
    let mut rng = StdRng::seed_from_u64(9);
    let layer = SpartaLayer::<f64>::new(SpartaConfig::new(300), &mut rng);
    for (name, data, shape) in layer.params() {
        let fan_in = match name {
            "conv1.weight" | "conv1.bias" | "conv3.weight" | "conv3.bias" => 300,
            _ => 256,
        };
        assert_eq!(data.len(), shape.iter().product::<usize>());
        let bound = 1.0 / (fan_in as f64).sqrt();
        let max = data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(max < bound, "{name}: {max} ≥ {bound}");
        assert!(max > 0.9 * bound, "{name}: {max} does not fill ±{bound}");
    }
}

#[test]
fn save_then_load_round_trips_and_bad_files_name_the_tensors() {
    let tmp = tempfile::Builder::new()
        .prefix("sparta-layer-test-")
        .tempdir()
        .unwrap();
    let dir = tmp.path().to_path_buf();
    let mut rng = StdRng::seed_from_u64(11);
    let layer = SpartaLayer::<f32>::new(SpartaConfig::new(12), &mut rng);
    let path = dir.join("layer.safetensors");
    layer.save(&path).unwrap();

    let mut other = SpartaLayer::<f32>::new(SpartaConfig::new(12), &mut rng);
    assert_ne!(other.params()[0].1, layer.params()[0].1);
    other.load(&path).unwrap();
    for (a, b) in other.params().iter().zip(layer.params()) {
        assert_eq!(a.1, b.1, "{}", a.0);
    }
    // An f64 layer reads the f32 file too.
    let mut wide = SpartaLayer::<f64>::new(SpartaConfig::new(12), &mut rng);
    wide.load(&path).unwrap();
    assert_eq!(wide.params()[2].1[5], layer.params()[2].1[5] as f64);

    // DPNet off expects conv5.*: conv4.* are extra, conv5.* missing.
    let mut no_dp = SpartaLayer::<f32>::new(config(12, false, 1), &mut rng);
    let msg = no_dp.load(&path).unwrap_err().to_string();
    for name in ["conv4.weight", "conv4.bias", "conv5.weight", "conv5.bias"] {
        assert!(msg.contains(name), "{msg}");
    }
    // Other width: every shape is wrong.
    let mut wider = SpartaLayer::<f32>::new(SpartaConfig::new(13), &mut rng);
    let before = wider.params()[0].1.to_vec();
    let msg = wider.load(&path).unwrap_err().to_string();
    assert!(
        msg.contains("conv1.weight has shape [12, 12, 1, 1], expected [13, 13, 1, 1]"),
        "{msg}"
    );
    assert_eq!(
        wider.params()[0].1,
        before.as_slice(),
        "a failed load changed the layer"
    );
    // Not a safetensors file; no file.
    std::fs::write(dir.join("junk"), b"junk").unwrap();
    assert!(wider.load(&dir.join("junk")).is_err());
    assert!(wider.load(&dir.join("absent")).is_err());
}

#[test]
fn wrong_input_lengths_are_errors() {
    let mut rng = StdRng::seed_from_u64(12);
    let layer = SpartaLayer::<f32>::new(SpartaConfig::new(4), &mut rng);
    assert!(layer.forward(&[0.0; 10], 1, 2, 2).is_err());
    let (_, cache) = layer.forward(&[0.5; 16], 1, 2, 2).unwrap();
    assert!(layer.backward(&[0.5; 16], &cache, &[1.0; 15]).is_err());
    let bad = SpartaLayer::<f32>::new(config(4, true, 0), &mut rng);
    assert!(bad.forward(&[0.5; 16], 1, 2, 2).is_err());
}
