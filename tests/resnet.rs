//! ResNet: parameter counts, whole-network gradients against finite differences,
//! overfitting a tiny batch, and checkpoint round trips.

use sparta::classifier::{Classifier, InspectActivations, Trainable};
use sparta::nn::resnet::{Depth, Mode, ResNet, ResNetConfig};
use sparta::ops::loss::{cross_entropy, Reduction};

/// The paper's parameter counts, from the built models (ReLU and SPARTA on the last
/// block of every group), and from the configurations alone
/// ([`ResNetConfig::value_counts`], which checkpoints are checked with before a model
/// is allocated).
#[test]
fn parameter_counts_match_the_paper() {
    let cases = [
        (ResNetConfig::resnet18(3, 10), "relu", 11_173_962),
        (ResNetConfig::resnet18(3, 10), "G1-4.Blast", 11_980_558),
        (ResNetConfig::resnet34(3, 10), "relu", 21_282_122),
        (ResNetConfig::resnet34(3, 10), "G1-4.Blast", 22_088_718),
    ];
    for (config, act, paper) in cases {
        let config = config.with_activation(act);
        let model = ResNet::<f32>::new(config.clone(), 0).unwrap();
        assert_eq!(model.param_count(), paper, "{:?} {act}", config.depth);
        assert_eq!(config.value_counts().unwrap().parameters, paper);
    }
    let r18 = ResNet::<f32>::new(ResNetConfig::resnet18(3, 10).with_activation("relu"), 0).unwrap();
    assert!(r18
        .params()
        .any(|(p, _)| p.name == "layer2.0.shortcut.conv.weight"));
    let rows = r18.summary();
    assert_eq!(rows.iter().map(|r| r.params).sum::<usize>(), 11_173_962);
    assert!(rows
        .iter()
        .any(|r| r.name == "layer4.1.bn2.running_var" && r.params == 0));
}

/// [`ResNetConfig::value_counts`] counts what [`ResNet::new`] builds for every depth,
/// placement and option that changes a shape; a wrong count would refuse good
/// checkpoints (or admit an allocation the file does not back).
#[test]
fn value_counts_are_what_the_model_holds() {
    let depths = [
        ResNetConfig::resnet18(3, 7),
        ResNetConfig::resnet34(1, 200),
        ResNetConfig::small(2, 10),
    ];
    let specs = [
        "relu",
        "G1-4.Blast",
        "all nodpnet",
        "G4.Blast block=2",
        "G1.B1+G3.Blast frozen",
        "gelu",
        "sparta base=silu",
    ];
    for config in depths {
        for spec in specs {
            let spec = spec.replace("sparta", "G1-4.Blast");
            let config = ResNetConfig {
                widths: [4, 6, 8, 10],
                ..config.clone().with_activation(&spec)
            };
            let model = ResNet::<f32>::new(config.clone(), 0).unwrap();
            let counts = config.value_counts().unwrap();
            let buffers: usize = model.buffers().map(|(_, b)| b.len()).sum();
            assert_eq!(
                (counts.parameters, counts.buffers),
                (model.param_count(), buffers),
                "{:?} {spec}",
                config.depth
            );
        }
    }
    let huge = ResNetConfig {
        widths: [usize::MAX / 2, 1, 1, 1],
        ..ResNetConfig::small(1, 10)
    };
    assert!(huge.value_counts().is_err());
}

fn tiny_config() -> ResNetConfig {
    ResNetConfig {
        widths: [2, 3, 3, 4],
        ..ResNetConfig::small(1, 3).with_activation("relu")
    }
}

fn inputs(n: usize, side: usize, seed: u64) -> Vec<f64> {
    (0..n * side * side)
        .map(|i| ((i as f64 + 1.0) * 0.7371 + seed as f64).sin() * 0.5 + 0.5)
        .collect()
}

/// Sum of the cross-entropy over a batch, in training or evaluation mode.
fn loss(
    model: &mut ResNet<f64>,
    x: &[f64],
    shape: [usize; 4],
    labels: &[usize],
    train: bool,
) -> f64 {
    let mode = Mode {
        train,
        ..Mode::EVAL
    };
    model
        .pass(&x.to_vec(), shape, mode, |tape, f| {
            let l = cross_entropy(tape, f.logits, labels, Reduction::Sum)?;
            Ok(tape.value(l)[0])
        })
        .unwrap()
}

/// Fourth-order central difference: batch norm over tiny batches is curved enough that
/// the plain two-point difference's O(h²) error exceeds the tolerance.
fn richardson(f: &mut impl FnMut(f64) -> f64, h: f64) -> f64 {
    (8.0 * (f(h) - f(-h)) - (f(2.0 * h) - f(-2.0 * h))) / (12.0 * h)
}

#[test]
fn whole_network_gradients_match_finite_differences() {
    for spec in ["relu", "G2,4.B1", "gelu", "G4.B1 base=elu"] {
        whole_network_fd(spec);
    }
}

fn whole_network_fd(spec: &str) {
    let mut model = ResNet::<f64>::new(tiny_config().with_activation(spec), 3).unwrap();
    // 16×16 inputs keep 2×2 planes in the last group, so its batch norm is not
    // degenerate (with 1×1 planes and 3 samples the loss is too curved for FD).
    let shape = [4, 1, 16, 16];
    let x = inputs(4, 16, 0);
    let labels = [0, 2, 1, 1];
    for train in [true, false] {
        let mode = Mode {
            train,
            input_grad: true,
            param_grads: true,
            observe: false,
        };
        let (grads, gx) = model
            .pass(&x, shape, mode, |tape, f| {
                let l = cross_entropy(tape, f.logits, &labels, Reduction::Sum)?;
                tape.backward(l)?;
                let grads: Vec<Vec<f64>> = f
                    .params
                    .iter()
                    .map(|&v| tape.grad(v).unwrap().to_vec())
                    .collect();
                Ok((grads, tape.grad(f.x).unwrap().to_vec()))
            })
            .unwrap();
        let h = 1e-5;
        let close = |g: f64, fd: f64, what: &str| {
            assert!(
                (g - fd).abs() <= 1e-6 * (g.abs() + fd.abs()) + 1e-9,
                "{what}: tape {g} vs fd {fd}"
            );
        };
        // Every parameter element (stride through the big ones to keep the test short).
        for (i, g) in grads.iter().enumerate() {
            for j in (0..g.len()).step_by(1 + g.len() / 7) {
                let set = |model: &mut ResNet<f64>, v: f64| {
                    model.params_mut().nth(i).unwrap().1[j] = v;
                };
                let orig = model.params().nth(i).unwrap().1[j];
                let mut at = |d: f64| {
                    set(&mut model, orig + d);
                    loss(&mut model, &x, shape, &labels, train)
                };
                let fd = richardson(&mut at, h);
                set(&mut model, orig);
                let name = model.params().nth(i).unwrap().0.name.clone();
                close(g[j], fd, &format!("{spec} train={train} {name}[{j}]"));
            }
        }
        for j in (0..x.len()).step_by(9) {
            let mut at = |d: f64| {
                let mut xd = x.clone();
                xd[j] += d;
                loss(&mut model, &xd, shape, &labels, train)
            };
            let fd = richardson(&mut at, h);
            close(gx[j], fd, &format!("{spec} train={train} x[{j}]"));
        }
    }
}

#[test]
fn input_gradient_leaves_parameters_without_gradients() {
    let mut model = ResNet::<f64>::new(tiny_config(), 4).unwrap();
    let x = inputs(2, 8, 1);
    model
        .pass(&x, [2, 1, 8, 8], Mode::ATTACK, |tape, f| {
            let l = cross_entropy(tape, f.logits, &[0, 1], Reduction::Sum)?;
            tape.backward(l)?;
            assert!(tape.grad(f.x).is_some());
            assert!(f.params.iter().all(|&v| tape.grad(v).is_none()));
            Ok(())
        })
        .unwrap();
}

fn f32_batch(n: usize, side: usize) -> (Vec<f32>, Vec<usize>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let x = (0..n * side * side).map(|_| rng.random::<f32>()).collect();
    let labels = (0..n).map(|i| (i * 7 + 1) % 3).collect();
    (x, labels)
}

#[test]
fn tiny_model_overfits_a_tiny_batch() {
    let mut model = ResNet::<f32>::new(
        ResNetConfig {
            widths: [4, 8, 8, 8],
            ..tiny_config()
        },
        5,
    )
    .unwrap();
    let (x, labels) = f32_batch(8, 8);
    let shape = [8, 1, 8, 8];
    let first = model.train_step(&x, shape, &labels, 0.05).unwrap();
    let mut last = first;
    for _ in 0..60 {
        last = model.train_step(&x, shape, &labels, 0.05).unwrap();
    }
    assert!(
        last.loss < 0.05 && last.loss < first.loss,
        "loss {} → {}",
        first.loss,
        last.loss
    );
    assert_eq!(last.correct, 8);
}

/// The `Classifier` view of the f32 model (what PGD uses) against the f64 tape of the
/// same weights, in evaluation mode after a training step moved the running statistics:
/// per-sample losses, and the gradient of their sum with respect to the input, element
/// by element. (The f64 tape itself is held to finite differences above.) Planted
/// faults this fails on: the gradient taken in training mode (batch statistics), or of
/// the mean loss instead of the sum.
#[test]
fn classifier_losses_and_input_gradient_agree_with_the_tape() {
    let mut model = ResNet::<f32>::new(tiny_config().with_activation("G2,4.B1"), 6).unwrap();
    let (x, labels) = f32_batch(4, 8);
    let shape = [4, 1, 8, 8];
    model.train_step(&x, shape, &labels, 0.1).unwrap();
    let logits = model.logits(&x, shape).unwrap();
    let (losses, grad) = model.loss_and_input_grad(&x, shape, &labels).unwrap();
    assert_eq!((logits.len(), losses.len(), grad.len()), (12, 4, x.len()));
    assert!(model.logits(&x[1..], shape).is_err());

    let tmp = tempfile::Builder::new()
        .prefix("sparta-classifier-")
        .tempdir()
        .unwrap();
    let dir = tmp.path().to_path_buf();
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let mut exact = ResNet::<f64>::from_checkpoint(&path).unwrap();
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let (z64, want) = exact
        .pass(&x64, shape, Mode::ATTACK, |tape, f| {
            let z64 = tape.value(f.logits).to_vec();
            let l = cross_entropy(tape, f.logits, &labels, Reduction::Sum)?;
            tape.backward(l)?;
            Ok((z64, tape.take_grad(f.x).unwrap()))
        })
        .unwrap();

    // f32 against f64: relative per element, plus a floor at f32 rounding of the largest.
    let close = |got: &[f32], want: &[f64], what: &str| {
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let bound = 1e-4 * w.abs() + 1e-6 * scale;
            assert!((g as f64 - w).abs() <= bound, "{what}[{i}]: {g} vs {w}");
        }
    };
    close(&logits, &z64, "logits");
    let lse: Vec<f64> = z64
        .chunks(3)
        .zip(&labels)
        .map(|(row, &l)| row.iter().map(|v| v.exp()).sum::<f64>().ln() - row[l])
        .collect();
    close(&losses, &lse, "losses");
    close(&grad, &want, "input gradient");

    // The same gradient through the vector–Jacobian product, with the cross-entropy's
    // logit gradient (softmax − one-hot) computed here; a loss of twice the sum doubles it.
    for scale in [1.0f32, 2.0] {
        let mut ce_grad = |z: &[f32]| -> sparta::Result<Vec<f32>> {
            let mut d = z.to_vec();
            for (row, &l) in d.chunks_mut(3).zip(&labels) {
                let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let s: f32 = row.iter().map(|v| (v - m).exp()).sum();
                row.iter_mut().for_each(|v| *v = scale * (*v - m).exp() / s);
                row[l] -= scale;
            }
            Ok(d)
        };
        let (z, vjp) = model.logits_and_input_vjp(&x, shape, &mut ce_grad).unwrap();
        assert_eq!(z, logits);
        let doubled: Vec<f64> = want.iter().map(|w| w * scale as f64).collect();
        close(&vjp, &doubled, "input vjp");
    }
    let mut short = |_: &[f32]| -> sparta::Result<Vec<f32>> { Ok(vec![0.0; 5]) };
    assert!(model.logits_and_input_vjp(&x, shape, &mut short).is_err());
}

#[test]
fn checkpoint_round_trip_is_bit_exact() {
    let tmp = tempfile::Builder::new()
        .prefix("sparta-ckpt-")
        .tempdir()
        .unwrap();
    let dir = tmp.path().to_path_buf();
    let path = dir.join("model.safetensors");
    let (x, labels) = f32_batch(4, 8);
    let shape = [4, 1, 8, 8];
    let mut a = ResNet::<f32>::new(tiny_config(), 7).unwrap();
    a.train_step(&x, shape, &labels, 0.1).unwrap();
    a.save(&path).unwrap();
    let mut b = ResNet::<f32>::from_checkpoint(&path).unwrap();
    assert_eq!(b.config(), a.config());
    let bits = |m: &ResNet<f32>| -> Vec<u32> {
        m.params()
            .chain(m.buffers())
            .flat_map(|(_, v)| v.iter().map(|v| v.to_bits()))
            .chain(m.velocity().iter().flatten().map(|v| v.to_bits()))
            .collect()
    };
    assert_eq!(bits(&a), bits(&b));
    // Equal velocity shows in the next step.
    let (sa, sb) = (
        a.train_step(&x, shape, &labels, 0.1).unwrap(),
        b.train_step(&x, shape, &labels, 0.1).unwrap(),
    );
    assert_eq!(sa, sb);
    assert_eq!(bits(&a), bits(&b));
    // A model of another shape refuses the file, naming the tensor.
    let mut other = ResNet::<f32>::new(
        ResNetConfig {
            widths: [2, 3, 3, 5],
            ..tiny_config()
        },
        0,
    )
    .unwrap();
    let err = other.load(&path).unwrap_err().to_string();
    assert!(err.contains("layer4.0"), "{err}");
    assert!(!std::fs::read_dir(&dir).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("tmp")));
}

#[test]
fn depth_and_spec_errors() {
    assert_eq!("34".parse::<Depth>().unwrap(), Depth::R34);
    assert!("50".parse::<Depth>().is_err());
    assert!(ResNet::<f32>::new(ResNetConfig::small(1, 10).with_activation("G1-4.B2"), 0).is_err());
    assert!(
        ResNet::<f32>::new(ResNetConfig::small(1, 10).with_activation("G1-4.Blast"), 0).is_ok()
    );
}

/// The paper's transferred SPARTA: weights copied from a trained model, then kept fixed
/// by `frozen` while everything else trains.
#[test]
fn frozen_sparta_loads_from_another_model_and_stays_fixed() {
    let tmp = tempfile::Builder::new()
        .prefix("sparta-frozen-")
        .tempdir()
        .unwrap();
    let dir = tmp.path().to_path_buf();
    let path = dir.join("donor.safetensors");
    let (x, labels) = f32_batch(4, 8);
    let shape = [4, 1, 8, 8];
    let config = |spec: &str| tiny_config().with_activation(spec);
    let mut donor = ResNet::<f32>::new(config("G1-4.Blast"), 1).unwrap();
    donor.train_step(&x, shape, &labels, 0.1).unwrap();
    donor.save(&path).unwrap();

    let mut model = ResNet::<f32>::new(config("G1-4.Blast frozen"), 2).unwrap();
    let sparta_elems: usize = model
        .params()
        .filter(|(p, _)| p.name.contains(".sparta."))
        .map(|(_, v)| v.len())
        .sum();
    assert!(sparta_elems > 0);
    assert_eq!(model.trainable_count() + sparta_elems, model.param_count());
    assert_eq!(model.load_activations_from(&path).unwrap(), 4 * 8);
    let values = |m: &ResNet<f32>, sparta: bool| -> Vec<f32> {
        m.params()
            .filter(|(p, _)| p.name.contains(".sparta.") == sparta)
            .flat_map(|(_, v)| v.to_vec())
            .collect()
    };
    assert_eq!(values(&model, true), values(&donor, true));
    let rest = values(&model, false);
    for _ in 0..3 {
        model.train_step(&x, shape, &labels, 0.1).unwrap();
    }
    assert_eq!(
        values(&model, true),
        values(&donor, true),
        "frozen weights moved"
    );
    assert_ne!(values(&model, false), rest, "the rest did not train");

    // Without `frozen` the loaded weights train like the others.
    let mut free = ResNet::<f32>::new(config("G1-4.Blast"), 2).unwrap();
    free.load_activations_from(&path).unwrap();
    free.train_step(&x, shape, &labels, 0.1).unwrap();
    assert_ne!(values(&free, true), values(&donor, true));

    // Errors name what is wrong.
    let mut relu = ResNet::<f32>::new(config("relu"), 0).unwrap();
    let err = relu.load_activations_from(&path).unwrap_err().to_string();
    assert!(err.contains("no learned activation"), "{err}");
    let plain = dir.join("plain.safetensors");
    relu.save(&plain).unwrap();
    let err = model.load_activations_from(&plain).unwrap_err().to_string();
    assert!(
        err.contains("layer1.0.sparta.") && err.contains("plain.safetensors"),
        "{err}"
    );
}

/// `activation_maps` records each block's post-residual activation, in block order: ReLU
/// maps satisfy Y = max(X, 0); those of the activation the spec places (SPARTA, GELU)
/// differ from that; and the last block's Y is what the head sees (its global mean
/// through the linear layer gives the logits).
#[test]
fn activation_maps_are_the_blocks_activations() {
    for (spec, placed) in [
        ("relu", "relu"),
        ("G1.B1+G1-4.B2", "sparta"),
        ("G1.B1+G1-4.B2 act=gelu", "gelu"),
    ] {
        let config = ResNetConfig {
            depth: Depth::R18,
            widths: [4, 8, 8, 8],
            ..tiny_config().with_activation(spec)
        };
        let mut model = ResNet::<f32>::new(config, 9).unwrap();
        let (x, _) = f32_batch(3, 8);
        let shape = [3, 1, 8, 8];
        let maps = model.activation_maps(&x, shape).unwrap();
        let names: Vec<&str> = maps.iter().map(|m| m.block.as_str()).collect();
        let expected = [
            "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0",
            "layer4.1",
        ];
        assert_eq!(names, expected, "{spec}");
        let last: Vec<bool> = maps.iter().map(|m| m.last_in_group).collect();
        assert_eq!(last, [false, true].repeat(4), "{spec}");
        let sides = [8, 8, 4, 4, 2, 2, 1, 1];
        for (m, side) in maps.iter().zip(sides) {
            assert_eq!(m.shape[2..], [side, side], "{spec} {}", m.block);
            let len = m.shape.iter().product::<usize>();
            assert_eq!((m.input.len(), m.output.len()), (len, len));
            let is_relu = m
                .input
                .iter()
                .zip(&m.output)
                .all(|(&x, &y)| y == x.max(0.0));
            let is_placed = spec != "relu" && (m.block == "layer1.0" || m.last_in_group);
            let name = if is_placed { placed } else { "relu" };
            assert_eq!(m.activation, name, "{spec} {}", m.block);
            assert_eq!(is_relu, !is_placed, "{spec} {}", m.block);
        }

        let last = maps.last().unwrap();
        let [n, c, h, w] = last.shape;
        let pooled: Vec<f32> = last
            .output
            .chunks(h * w)
            .map(|plane| plane.iter().sum::<f32>() / (h * w) as f32)
            .collect();
        let param = |name: &str| {
            let (_, v) = model.params().find(|(p, _)| p.name == name).unwrap();
            v.to_vec()
        };
        let (fc_w, fc_b) = (param("fc.weight"), param("fc.bias"));
        let logits = model.logits(&x, shape).unwrap();
        let classes = fc_b.len();
        for i in 0..n {
            for k in 0..classes {
                let head: f32 = (0..c).map(|j| fc_w[k * c + j] * pooled[i * c + j]).sum();
                let got = logits[i * classes + k];
                assert!(
                    (head + fc_b[k] - got).abs() < 1e-5,
                    "{spec}: {head} vs {got}"
                );
            }
        }
    }
}
