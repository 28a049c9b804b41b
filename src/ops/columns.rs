//! A group of samples between the batch layout `[n, c, p]` and the column layout
//! `[c, n·p]` (sample `s`'s channel `ch` at columns `s·p..(s+1)·p` of row `ch`), in
//! which one matrix product covers the whole group: the CPU convolution runs its GEMMs
//! on it.

use crate::real::Real;

/// `cols[ch, s·p + j] = samples[s, ch, j]`; `cols` holds `c` rows.
pub(crate) fn to_columns<T: Real>(samples: &[T], c: usize, p: usize, cols: &mut [T]) {
    let width = cols.len() / c;
    for (s, sample) in samples.chunks(c * p).enumerate() {
        for (ch, plane) in sample.chunks(p).enumerate() {
            cols[ch * width + s * p..][..p].copy_from_slice(plane);
        }
    }
}

/// `samples[s, ch, j] = cols[ch, s·p + j]`, the inverse of [`to_columns`].
pub(crate) fn from_columns<T: Real>(cols: &[T], c: usize, p: usize, samples: &mut [T]) {
    let width = cols.len() / c;
    for (s, sample) in samples.chunks_mut(c * p).enumerate() {
        for (ch, plane) in sample.chunks_mut(p).enumerate() {
            plane.copy_from_slice(&cols[ch * width + s * p..][..p]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_round_trip() {
        let (n, c, p) = (3, 2, 4);
        let samples: Vec<f64> = (0..n * c * p).map(|i| i as f64).collect();
        let mut cols = vec![f64::NAN; c * n * p];
        to_columns(&samples, c, p, &mut cols);
        // Row 1 (channel 1): sample 0's plane, then sample 1's, then sample 2's.
        assert_eq!(
            &cols[n * p..n * p + 2 * p],
            &[4.0, 5.0, 6.0, 7.0, 12.0, 13.0, 14.0, 15.0]
        );
        let mut back = vec![f64::NAN; samples.len()];
        from_columns(&cols, c, p, &mut back);
        assert_eq!(back, samples);
    }
}
