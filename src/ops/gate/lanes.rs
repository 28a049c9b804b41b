//! The lane count the gate's CPU loops accumulate in, and the sum that folds the lanes:
//! shared by the reference loops and every vector tier.

use crate::real::Real;

/// Lanes of the per-channel `dc` accumulator: independent sums let the loop vectorize.
pub(crate) const LANES: usize = 16;

/// The sum of the 16 lanes by halves (k + 8, then k + 4, then pairs): `iter().sum()`
/// must add them one after another, 15 dependent scalar adds per plane, which at 4×4
/// planes (one vector each) took a fifth of the backward at 512×4×4. Keeping the
/// accumulator in a register instead (a separate scalar for the tail) measured slower
/// again (BENCHMARKS.md, "Moved from code comments").
#[inline(always)]
pub(crate) fn tree_sum<T: Real>(lanes: [T; LANES]) -> T {
    let mut h8 = [T::zero(); 8];
    for k in 0..8 {
        h8[k] = lanes[k] + lanes[k + 8];
    }
    let mut h4 = [T::zero(); 4];
    for k in 0..4 {
        h4[k] = h8[k] + h8[k + 4];
    }
    (h4[0] + h4[2]) + (h4[1] + h4[3])
}
