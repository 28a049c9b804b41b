//! What the f32 CPU convolution tests share: random operands in f32 with the same
//! values in f64, and the crate's f32 bound against the f64 reference.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{cpu, ConvGeom};

/// `len` values uniform in [−1, 1) in f32, and the same values in f64.
pub(super) fn random(len: usize, rng: &mut StdRng) -> (Vec<f32>, Vec<f64>) {
    let v: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0..1.0)).collect();
    let w = v.iter().map(|&x| x as f64).collect();
    (v, w)
}

/// `|got − want| ≤ 1e-5 · max |want|` everywhere (NaN fails), as the CUDA kernels'
/// f32 bound against the f64 reference.
pub(super) fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(f64::MIN_POSITIVE, |m, w| m.max(w.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= 1e-5 * scale,
            "{what}[{i}]: {g} vs {w} (error {err:e}, scale {scale:e})"
        );
    }
}

/// The operands of one convolution in f32 and the same values in f64: `x`, the weights,
/// `dy`.
pub(super) struct Operands {
    pub(super) f32s: [Vec<f32>; 3],
    pub(super) f64s: [Vec<f64>; 3],
}

/// Calls `check(g, name, operands)` for the stride-1, padding-1 3×3 convolution of each
/// `(n, c_in, h, w, c_out)` in `shapes`, with operands uniform in [−1, 1) drawn from
/// `seed`; `name` says the shape, for assertion messages.
pub(super) fn for_each_3x3(
    shapes: &[(usize, usize, usize, usize, usize)],
    seed: u64,
    mut check: impl FnMut(&ConvGeom, &str, &Operands),
) {
    let mut rng = StdRng::seed_from_u64(seed);
    for &(n, c_in, h, w, c_out) in shapes {
        let g = ConvGeom {
            n,
            c_in,
            h,
            w,
            c_out,
            k: 3,
            stride: 1,
            pad: 1,
        };
        let lens = [n * c_in * h * w, c_out * c_in * 9, n * c_out * h * w];
        let [(x, x64), (wt, wt64), (dy, dy64)] = lens.map(|len| random(len, &mut rng));
        let operands = Operands {
            f32s: [x, wt, dy],
            f64s: [x64, wt64, dy64],
        };
        check(&g, &format!("{n}×{c_in}×{h}×{w} → {c_out}"), &operands);
    }
}

/// The shape of a loop's forward `(g, x, weight, y)` or input gradient
/// `(g, weight, dy, dx)`: it writes every element of its output.
type Pass = fn(&ConvGeom, &[f32], &[f32], &mut [f32]);

/// Asserts a loop's `forward` and `input_grad` for `g` within [`assert_close`]'s bound of
/// the f64 im2col reference; their outputs start as NaN, so a missed element fails.
pub(super) fn assert_forward_and_input_grad(
    g: &ConvGeom,
    what: &str,
    operands: &Operands,
    forward: Pass,
    input_grad: Pass,
) {
    let [x, wt, dy] = &operands.f32s;
    let [x64, wt64, dy64] = &operands.f64s;
    let mut y = vec![f32::NAN; dy.len()];
    forward(g, x, wt, &mut y);
    assert_close(&format!("y {what}"), &y, &cpu::forward(g, x64, wt64));
    let mut dx = vec![f32::NAN; x.len()];
    input_grad(g, wt, dy, &mut dx);
    let (want, _) = cpu::backward(g, x64, wt64, dy64, true, false);
    assert_close(&format!("dx {what}"), &dx, &want.unwrap());
}
