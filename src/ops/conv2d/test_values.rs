//! What the f32 CPU convolution tests share: random operands in f32 with the same
//! values in f64, and the crate's f32 bound against the f64 reference.

use rand::rngs::StdRng;
use rand::Rng;

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
