//! Checked conversions from Rust sizes to the kernels' `int` / `long long` arguments and
//! grid sizes, so an oversized shape is an error, not a wrapped-around launch.

use crate::error::{Error, Result};

/// `v` as a kernel `int`, or a shape error naming `what`.
pub(crate) fn kernel_int(op: &'static str, what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::shape(op, what, "a value below 2^31", v))
}

/// `v` as a kernel `long long`.
pub(crate) fn kernel_long(op: &'static str, what: &str, v: usize) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::shape(op, what, "a value below 2^63", v))
}

/// The product of `dims` (an element count), or a shape error naming `what` if it
/// overflows `usize`: shapes have public fields, and a wrapped product could match a
/// short view's length.
pub(crate) fn element_count(op: &'static str, what: &str, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            Error::shape(
                op,
                what,
                "a product that fits in usize",
                format!("{dims:?}"),
            )
        })
}

/// Blocks of `per` threads (or items) covering `len`, at least one.
pub(crate) fn blocks(len: usize, per: usize) -> u32 {
    len.div_ceil(per).clamp(1, u32::MAX as usize) as u32
}

/// Checks that a grid's z (or y) extent fits CUDA's limit of 65,535.
pub(crate) fn check_grid_z(op: &'static str, what: &str, v: usize) -> Result<()> {
    if v <= 65_535 {
        Ok(())
    } else {
        Err(Error::shape(op, what, "at most 65535 (grid z)", v))
    }
}

/// Elements a row-strided argument needs: `n` rows of `width` starting `ld` apart
/// (`ld = 0`: one row shared by every sample).
pub(crate) fn strided_len(n: usize, ld: usize, width: usize) -> usize {
    if ld == 0 || n == 0 {
        width
    } else {
        (n - 1) * ld + width
    }
}

/// Checks that a view holds at least `needed` elements.
pub(crate) fn check_at_least(
    op: &'static str,
    what: &str,
    got: usize,
    needed: usize,
) -> Result<()> {
    if got >= needed {
        Ok(())
    } else {
        Err(Error::shape(
            op,
            what,
            format!("at least {needed} elements"),
            format!("{got} elements"),
        ))
    }
}
