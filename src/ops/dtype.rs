//! The storage types the CUDA kernels are instantiated for, and the suffix that names
//! each instantiation (`gate_forward_f32`, `gate_forward_f16`, `gate_forward_bf16`).

use crate::launch::DeviceElem;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// A kernel storage type: `f32`, `half::f16` or `half::bf16` (sealed). Kernels compute
/// in f32 whatever the storage.
pub trait KernelFloat: sealed::Sealed + DeviceElem {
    /// The kernel name suffix: `f32`, `f16` or `bf16`.
    const SUFFIX: &'static str;
    /// Rounds an f64 to this type (nearest).
    fn of_f64(v: f64) -> Self;
    /// Widens to f64 exactly.
    fn as_f64(self) -> f64;
}

impl KernelFloat for f32 {
    const SUFFIX: &'static str = "f32";
    fn of_f64(v: f64) -> Self {
        v as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl KernelFloat for half::f16 {
    const SUFFIX: &'static str = "f16";
    fn of_f64(v: f64) -> Self {
        half::f16::from_f64(v)
    }
    fn as_f64(self) -> f64 {
        self.to_f64()
    }
}

impl KernelFloat for half::bf16 {
    const SUFFIX: &'static str = "bf16";
    fn of_f64(v: f64) -> Self {
        half::bf16::from_f64(v)
    }
    fn as_f64(self) -> f64 {
        self.to_f64()
    }
}

mod sealed_map {
    pub trait Sealed<T> {}
    impl<T: super::KernelFloat> Sealed<T> for T {}
    impl Sealed<half::f16> for f32 {}
    impl Sealed<half::bf16> for f32 {}
}

/// The storage of the gate's small maps (`s`, `c`, `ds`, `dc`) beside activations
/// stored as `T` (sealed): `T` itself (kernels `gate_*_<T>`), or f32 beside f16 / bf16
/// activations (kernels `gate_*_f32map_<T>`: the SPARTA layer keeps its maps in f32, so
/// they are never rounded to the activations' type).
pub trait GateMapFloat<T: KernelFloat>: KernelFloat + sealed_map::Sealed<T> {
    /// The kernel name for `base` with activations `T` and maps `Self`.
    fn gate_kernel(base: &str) -> String {
        if Self::SUFFIX == T::SUFFIX {
            kernel_name::<T>(base)
        } else {
            format!("{base}_f32map_{}", T::SUFFIX)
        }
    }
}

impl<T: KernelFloat> GateMapFloat<T> for T {}
impl GateMapFloat<half::f16> for f32 {}
impl GateMapFloat<half::bf16> for f32 {}

/// The kernel name `{base}_{suffix}` for storage type `T`.
pub(crate) fn kernel_name<T: KernelFloat>(base: &str) -> String {
    format!("{base}_{}", T::SUFFIX)
}

/// Kernels index with 32-bit ints: refuses tensors of 2^31 elements or more.
pub(crate) fn check_kernel_len(op: &'static str, what: &str, len: usize) -> crate::Result<()> {
    if len <= i32::MAX as usize {
        Ok(())
    } else {
        Err(crate::Error::shape(
            op,
            what,
            format!("at most {} elements on CUDA", i32::MAX),
            format!("{len} elements"),
        ))
    }
}
