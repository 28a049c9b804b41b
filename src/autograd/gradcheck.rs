//! Finite-difference check of tape gradients in f64, for tests.
//!
//! The checked function may return any tensor `y`; the objective is `Σ r·y` with fixed
//! pseudo-random weights `r`, so every output element's gradient path is exercised.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Tape, Var};
use crate::error::Result;

/// Relative tolerance of the comparison (central differences with `H`).
pub const TOL: f64 = 1e-6;
const H: f64 = 1e-5;

/// A tensor for a check: shape and values.
pub type Input = (Vec<usize>, Vec<f64>);

/// Uniform values in `[-1, 1)` with magnitude at least 0.05 (away from ReLU's kink).
pub fn random(shape: &[usize], seed: u64) -> Input {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    let v = (0..n)
        .map(|_| {
            let m: f64 = rng.random_range(0.05..1.0);
            if rng.random::<bool>() {
                m
            } else {
                -m
            }
        })
        .collect();
    (shape.to_vec(), v)
}

/// Compares the tape's gradient of `Σ r·f(inputs)` with central differences for every
/// input marked `true`; panics naming the input and element that disagree.
pub fn check<F>(inputs: &[(Input, bool)], f: F)
where
    F: Fn(&mut Tape<'_, f64>, &[Var]) -> Result<Var>,
{
    let build = |vals: &[Vec<f64>]| -> (Tape<'static, f64>, Vec<Var>, Var) {
        let mut tape = Tape::new();
        let vars: Vec<Var> = vals
            .iter()
            .zip(inputs)
            .map(|(v, ((shape, _), g))| tape.leaf(shape, v.clone(), *g).expect("leaf"))
            .collect();
        let y = f(&mut tape, &vars).expect("forward");
        (tape, vars, y)
    };
    let vals: Vec<Vec<f64>> = inputs.iter().map(|((_, v), _)| v.clone()).collect();
    let (mut tape, vars, y) = build(&vals);
    let mut rng = StdRng::seed_from_u64(99);
    let r: Vec<f64> = (0..tape.value(y).len())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let objective = |vals: &[Vec<f64>]| -> f64 {
        let (t, _, y) = build(vals);
        t.value(y).iter().zip(&r).map(|(a, b)| a * b).sum()
    };
    tape.backward_with(y, r.clone()).expect("backward");
    for (i, ((_, input), wanted)) in inputs.iter().enumerate() {
        if !*wanted {
            assert!(
                tape.grad(vars[i]).is_none(),
                "input {i} got a gradient it did not ask for"
            );
            continue;
        }
        let g = tape
            .grad(vars[i])
            .unwrap_or_else(|| panic!("input {i} has no gradient"));
        for (j, &gj) in g.iter().enumerate().take(input.len()) {
            let mut plus = vals.clone();
            plus[i][j] += H;
            let mut minus = vals.clone();
            minus[i][j] -= H;
            let fd = (objective(&plus) - objective(&minus)) / (2.0 * H);
            let err = (gj - fd).abs();
            assert!(
                err <= TOL * (gj.abs() + fd.abs()) + 1e-9,
                "input {i} element {j}: tape {gj} vs finite difference {fd}"
            );
        }
    }
}
