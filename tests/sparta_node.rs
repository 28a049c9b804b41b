//! The fused SPARTA tape node against the same layer composed from primitive tape ops:
//! outputs and every gradient, for each variant.

use std::rc::Rc;

use rand::SeedableRng;
use sparta::autograd::{Tape, Var};
use sparta::nn::sparta::{SpartaConfig, SpartaLayer};
use sparta::nn::sparta_node::{param_leaves, sparta, sparta_composed};

fn input(shape: &[usize], seed: u64) -> Vec<f64> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|i| ((i as f64 + 0.5) * 1.37 + seed as f64).sin())
        .collect()
}

/// Output and gradients (x first, then every parameter) of one build of the layer.
fn run(config: SpartaConfig, fused: bool, shape: &[usize]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let layer = SpartaLayer::<f64>::new(config, &mut rand::rngs::StdRng::seed_from_u64(11));
    let mut tape = Tape::new();
    let x = tape.leaf(shape, input(shape, 2), true).unwrap();
    let params = param_leaves(&mut tape, &layer, true).unwrap();
    let y = if fused {
        sparta(&mut tape, x, &Rc::new(layer), &params).unwrap()
    } else {
        sparta_composed(&mut tape, x, &config, &params).unwrap()
    };
    let out = tape.value(y).to_vec();
    let dy: Vec<f64> = input(shape, 5);
    tape.backward_with(y, dy).unwrap();
    let vars: Vec<Var> = std::iter::once(x).chain(params).collect();
    let grads = vars
        .iter()
        .map(|&v| tape.grad(v).expect("gradient").to_vec())
        .collect();
    (out, grads)
}

fn assert_close(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-10 * (x.abs() + y.abs()) + 1e-12,
            "{what}[{i}]: fused {x} vs composed {y}"
        );
    }
}

#[test]
fn fused_node_equals_composition_for_every_variant() {
    for (dpnet, block, shape) in [
        (true, 1, [2, 5, 4, 3]),
        (false, 1, [2, 5, 4, 3]),
        (true, 2, [2, 3, 4, 4]),
        (false, 2, [3, 4, 5, 3]),
    ] {
        let config = SpartaConfig {
            dpnet,
            block,
            ..SpartaConfig::new(shape[1])
        };
        let (yf, gf) = run(config, true, &shape);
        let (yc, gc) = run(config, false, &shape);
        let tag = format!("dpnet={dpnet} B={block}");
        assert_close(&yf, &yc, &format!("{tag} y"));
        assert_eq!(gf.len(), gc.len());
        for (i, (a, b)) in gf.iter().zip(&gc).enumerate() {
            assert_close(a, b, &format!("{tag} grad {i}"));
        }
    }
}

#[test]
fn input_gradient_only_skips_parameter_gradients() {
    let layer = SpartaLayer::<f64>::new(
        SpartaConfig::new(4),
        &mut rand::rngs::StdRng::seed_from_u64(1),
    );
    let mut tape = Tape::new();
    let x = tape
        .leaf(&[1, 4, 3, 3], input(&[1, 4, 3, 3], 0), true)
        .unwrap();
    let params = param_leaves(&mut tape, &layer, false).unwrap();
    let y = sparta(&mut tape, x, &Rc::new(layer), &params).unwrap();
    tape.backward_with(y, vec![1.0; 36]).unwrap();
    assert!(tape.grad(x).is_some());
    assert!(params.iter().all(|&p| tape.grad(p).is_none()));
}
