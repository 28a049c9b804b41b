//! Initial values of a model's parameters.

use rand::Rng;

use crate::real::Real;

/// Standard normal samples by Box–Muller (rand 0.9 alone has no normal distribution).
pub fn normal<T: Real>(rng: &mut impl Rng, n: usize, std: f64) -> Vec<T> {
    (0..n)
        .map(|_| {
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random();
            T::of_f64(std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos())
        })
        .collect()
}

/// Uniform samples in `[-bound, bound)`.
pub fn uniform<T: Real>(rng: &mut impl Rng, n: usize, bound: f64) -> Vec<T> {
    (0..n)
        .map(|_| T::of_f64(rng.random_range(-bound..bound)))
        .collect()
}
