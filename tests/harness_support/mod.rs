//! Shared by the `harness_*` tests: running sparta's kernels on the CPU with
//! sparta-harness and comparing them with the CPU reference.
// Each harness test crate compiles its own copy and uses a subset of it.
#![allow(dead_code)]

pub mod device;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::ops::{KernelFloat, LaunchDims};
use sparta_harness::{Dims, Element};

/// The harness's launch shape for the wrapper's [`LaunchDims`].
pub fn dims(d: LaunchDims) -> Dims {
    Dims {
        grid: d.grid,
        block: d.block,
        shared_bytes: d.shared_bytes,
    }
}

/// A storage type the kernels are instantiated for, that the harness can hold.
pub trait Storage: KernelFloat + Element {}
impl<T: KernelFloat + Element> Storage for T {}

/// Relative tolerance against the f64 reference: 1e-5 for f32, 1e-2 for f16 / bf16.
pub fn tolerance<T: Storage>() -> f64 {
    if T::SUFFIX == "f32" {
        1e-5
    } else {
        1e-2
    }
}

pub fn uniform(len: usize, lo: f64, hi: f64, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// `v` rounded to the storage type, and that rounded value back in f64 (the input the
/// reference must see).
pub fn rounded<T: Storage>(v: &[f64]) -> (Vec<T>, Vec<f64>) {
    let t: Vec<T> = v.iter().map(|&x| T::of_f64(x)).collect();
    let back = t.iter().map(|&x| x.as_f64()).collect();
    (t, back)
}

pub fn widen<T: Storage>(v: &[T]) -> Vec<f64> {
    v.iter().map(|&x| x.as_f64()).collect()
}

/// Element-wise `|got − want| ≤ tol · max(|want|, 1)`; NaN never passes.
pub fn check_close(what: &str, got: &[f64], want: &[f64], tol: f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} values, want {}", got.len(), want.len()));
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let within = (g - w).abs() <= tol * w.abs().max(1.0); // false for NaN
        if !within {
            return Err(format!(
                "{what}[{i}]: {g} vs reference {w} (tolerance {tol})"
            ));
        }
    }
    Ok(())
}

pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    if let Err(e) = check_close(what, got, want, tol) {
        panic!("{e}");
    }
}
