//! The argument check every attack starts with.

use crate::classifier::BatchShape;
use crate::error::{check_len, Error, Result};

/// Checks that `x_len` images' values and `labels` fit `shape` (`[N, C, H, W]`) and that
/// every label names one of `classes`; errors name `attack` and what was wrong.
pub(crate) fn check_batch(
    attack: &'static str,
    x_len: usize,
    shape: BatchShape,
    labels: &[usize],
    classes: usize,
) -> Result<()> {
    let [n, c, h, w] = shape;
    check_len(attack, "x", x_len, n * c * h * w)?;
    check_len(attack, "labels", labels.len(), n)?;
    match labels.iter().find(|&&l| l >= classes) {
        Some(&bad) => Err(Error::shape(attack, "labels", format!("< {classes}"), bad)),
        None => Ok(()),
    }
}
