//! Shared by the `harness_*` tests: running sparta's kernels on the CPU with
//! sparta-harness and comparing them with the CPU reference.
// Each harness test crate compiles its own copy and uses a subset of it.
#![allow(dead_code)]

pub mod device;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::launch::DeviceElem;
use sparta::ops::{KernelFloat, LaunchDims};
use sparta::KernelDevice;
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

// ---- any device (the harness, or a GPU) ----

/// `v` rounded to f32, in a new device buffer.
pub fn upload_f32<D: KernelDevice>(dev: &D, name: &str, v: &[f64]) -> D::Buffer<f32> {
    let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    dev.upload(name, &f).unwrap()
}

/// An f32 buffer a wrapper overwrites (on the harness: poisoned, and must be fully
/// written).
pub fn scratch<D: KernelDevice>(dev: &D, name: &str, len: usize) -> D::Buffer<f32> {
    dev.alloc_scratch(name, len).unwrap()
}

/// The contents of a device buffer.
pub fn download<D: KernelDevice, T: DeviceElem>(dev: &D, buffer: &D::Buffer<T>) -> Vec<T> {
    dev.download(&dev.view(buffer)).unwrap()
}

/// An elementwise f32 result (no sum behind any entry) within `1e-5 · |want|` of the
/// f64 CPU result per element, plus `atol` for entries that f32 arithmetic cannot carry
/// to that relative precision (values near zero). Small entries, such as an
/// activation's tails, are held to their own size, not to the tensor's largest. NaN
/// never passes.
pub fn assert_matches_each(what: &str, got: &[f32], want: &[f64], atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - w).abs();
        let tol = 1e-5 * w.abs() + atol;
        assert!(
            err <= tol,
            "{what}[{i}]: device {g:e} vs CPU {w:e} (tol {tol:e})"
        );
    }
}

/// A device's f32 result within 1e-5 of the f64 CPU result, relative to the latter's
/// largest magnitude (scale-aware: sums that cancel carry their terms' rounding). NaN
/// never passes.
pub fn assert_matches(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - w).abs();
        assert!(err <= 1e-5 * scale, "{what}[{i}]: device {g} vs CPU {w}");
    }
}
