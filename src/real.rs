//! The float types the CPU reference is generic over: f32 (what the kernels compute) and
//! f64 (what the finite-difference checks use).

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// A CPU float: f32 or f64.
pub trait Real:
    num_traits::Float
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + bytemuck::Pod
    + 'static
{
    /// The safetensors dtype name.
    const DTYPE: &'static str;

    /// Converts from f64 (rounding for f32). Named apart from num-traits' `from_f64`.
    fn of_f64(v: f64) -> Self;
    /// Converts to f64 exactly.
    fn as_f64(self) -> f64;
    /// Converts from f32.
    fn of_f32(v: f32) -> Self {
        Self::of_f64(v as f64)
    }

    /// `C = alpha·A·B + beta·C` with explicit row/column strides (matrixmultiply's
    /// convention); see [`crate::gemm::gemm`] for the safe, checked wrapper.
    ///
    /// # Safety
    /// Pointers and strides must describe in-bounds matrices of the given sizes, and
    /// `c` must not alias `a` or `b`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl Real for f32 {
    const DTYPE: &'static str = "F32";
    fn of_f64(v: f64) -> Self {
        v as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

impl Real for f64 {
    const DTYPE: &'static str = "F64";
    fn of_f64(v: f64) -> Self {
        v
    }
    fn as_f64(self) -> f64 {
        self
    }
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

/// Whether `T` is f32: the CPU ops then take their vectorizable f32 paths.
pub(crate) fn is_f32<T: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
}

/// Views a `[T]` as `[f32]`; only called when `T` is f32 (same size and alignment).
pub(crate) fn f32s<T: Real>(v: &[T]) -> &[f32] {
    bytemuck::cast_slice(v)
}

/// Views a `[T]` as `[f32]`, mutably; only called when `T` is f32.
pub(crate) fn f32s_mut<T: Real>(v: &mut [T]) -> &mut [f32] {
    bytemuck::cast_slice_mut(v)
}
