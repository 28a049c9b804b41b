//! ReLU on the CPU, split over rayon's threads.

use rayon::prelude::*;

use crate::real::Real;

const GRAIN: usize = 1 << 14;

/// `max(x, 0)`.
pub fn forward<T: Real>(x: &[T]) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(GRAIN)
        .zip(x.par_chunks(GRAIN))
        .for_each(|(y, x)| {
            y.iter_mut()
                .zip(x)
                .for_each(|(y, &x)| *y = x.max(T::zero()))
        });
    y
}

/// `dy · [x > 0]`.
pub fn backward<T: Real>(x: &[T], dy: &[T]) -> Vec<T> {
    let mut dx = vec![T::zero(); x.len()];
    dx.par_chunks_mut(GRAIN)
        .zip(x.par_chunks(GRAIN).zip(dy.par_chunks(GRAIN)))
        .for_each(|(d, (x, g))| {
            for ((d, &x), &g) in d.iter_mut().zip(x).zip(g) {
                *d = if x > T::zero() { g } else { T::zero() };
            }
        });
    dx
}
