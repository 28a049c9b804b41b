//! Reusable host scratch for the CPU kernels' intermediates that are written in full
//! before anything reads them: the im2col matrices and GEMM outputs of the 2-D
//! convolution, and the group buffers of the fused SANet (`ops/sanet/cpu.rs`). Once freed memory is kept for reuse ([`crate::host_memory`]), a fresh
//! `vec![0; n]` is a memset, and these are the largest buffers a training step asks
//! for (an im2col matrix holds k² times its input): zeroing them took about a tenth of
//! a CPU training step (BENCHMARKS.md, "CPU training without zeroed scratch").
//!
//! Each thread keeps the last [`KEEP`] buffers it gave back, so the pool holds at most
//! `KEEP` times the largest request per thread that ran a convolution or a SANet: the
//! rayon workers with one group's buffers (a few MiB), and the calling thread, which for
//! Winograd F(4×4) keeps a group's inputs and products (up to 16 MiB together) and the
//! transformed weights where they are too large to be kept between calls
//! (`ops/conv2d/kept.rs`; 36 floats per weight pair: 37.7 MB at 512 channels).

use std::cell::RefCell;

thread_local! {
    /// Buffers earlier calls on this thread gave back, in 8-byte words (so that f64
    /// fits as well as f32).
    static POOL: RefCell<Vec<Vec<u64>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers kept per thread: Winograd F(4×4, 3×3) holds three at once (weights, inputs,
/// products).
const KEEP: usize = 3;

/// Calls `f` with `len` elements of scratch whose contents are unspecified (what an
/// earlier user on this thread left; new memory is zeros, NaN in debug builds): `f`
/// must write every element before reading it. A nested call (rayon may run another
/// task on this thread while `f` waits) gets a buffer of its own; an empty request
/// takes none.
pub(crate) fn with_scratch<T: bytemuck::Pod, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    if len == 0 {
        return f(&mut []);
    }
    let words = (len * std::mem::size_of::<T>()).div_ceil(8);
    let mut buf = POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        // The smallest that fits, so that a large buffer stays for a large request
        // whatever the order of the calls; else the largest, to be grown.
        let fits = (0..pool.len())
            .filter(|&i| pool[i].len() >= words)
            .min_by_key(|&i| pool[i].len());
        let largest = || (0..pool.len()).max_by_key(|&i| pool[i].len());
        fits.or_else(largest)
            .map(|i| pool.swap_remove(i))
            .unwrap_or_default()
    });
    if buf.len() < words {
        // All ones is NaN in f32 and f64: in debug builds (the tests) an element read
        // before it is written shows, as it would with stale contents.
        let fill = if cfg!(debug_assertions) { u64::MAX } else { 0 };
        buf = vec![fill; words];
    }
    let result = f(&mut bytemuck::cast_slice_mut::<u64, T>(&mut buf[..words])[..len]);
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < KEEP {
            pool.push(buf);
        }
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_nested_calls_get_their_own() {
        let first = with_scratch::<f32, _>(1000, |s| {
            s.fill(7.0);
            s.as_ptr() as usize
        });
        // Reused: same memory, contents left as they were.
        let again = with_scratch::<f32, _>(999, |s| {
            assert!(s.iter().all(|&v| v == 7.0));
            s.as_ptr() as usize
        });
        assert_eq!(first, again);
        with_scratch::<f64, _>(10, |outer| {
            outer.fill(1.0);
            with_scratch::<f64, _>(10, |inner| {
                assert_ne!(inner.as_ptr(), outer.as_ptr());
                inner.fill(2.0);
            });
            assert!(outer.iter().all(|&v| v == 1.0));
        });
        // Best fit: with a small and a large buffer kept, a small request takes the
        // small one, and an empty one takes neither.
        with_scratch::<f32, _>(4000, |big| {
            big.fill(1.0);
            with_scratch::<f32, _>(10, |small| small.fill(2.0));
        });
        with_scratch::<f32, _>(0, |none| assert!(none.is_empty()));
        with_scratch::<f32, _>(10, |small| assert!(small.iter().all(|&v| v == 2.0)));
        with_scratch::<f32, _>(4000, |big| assert!(big.iter().all(|&v| v == 1.0)));
        // f32 of odd length in 8-byte words; a larger request than any kept buffer,
        // new memory (NaN in the debug builds tests run in).
        with_scratch::<f32, _>(3, |s| assert_eq!(s.len(), 3));
        with_scratch::<f32, _>(5000, |s| {
            assert_eq!(s.len(), 5000);
            assert!(!cfg!(debug_assertions) || s[4999].is_nan());
        });
        POOL.with(|pool| assert!(pool.borrow().len() <= KEEP));
    }
}
