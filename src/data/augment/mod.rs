//! The paper's training augmentation: random crop from a 4-pixel zero-padded image, and a
//! horizontal flip with probability ½.

pub mod cuda;

use rand::Rng;

use super::BatchShape;
use crate::backend::Backend;
use crate::error::{check_len, Result};
use crate::ops::kernel_args::blocks;
use crate::ops::LaunchDims;
use crate::real::Real;

/// Threads per block of `augment_crop_flip_f32`.
pub const AUGMENT_THREADS: u32 = 256;

/// Most blocks of `augment_crop_flip_f32` (it is grid-stride).
pub const AUGMENT_MAX_BLOCKS: u32 = 8192;

/// `augment_crop_flip_f32` over the `len` pixels of a batch: grid-stride.
pub fn crop_flip_launch(len: usize) -> LaunchDims {
    LaunchDims {
        grid: (
            blocks(len, AUGMENT_THREADS as usize).min(AUGMENT_MAX_BLOCKS),
            1,
            1,
        ),
        block: (AUGMENT_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// Zero padding on each side before the random crop.
pub const CROP_PADDING: usize = 4;

/// Where one image is cropped from and whether it is mirrored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropFlip {
    /// Row offset in `-pad..=pad`: output row `r` reads input row `r + dy`.
    pub dy: isize,
    /// Column offset in `-pad..=pad`, applied after the flip.
    pub dx: isize,
    /// Mirror left–right.
    pub flip: bool,
}

impl CropFlip {
    /// Draws offsets uniformly in `-pad..=pad` and a fair coin for the flip.
    pub fn sample(rng: &mut impl Rng, pad: usize) -> Self {
        let pad = pad as i64;
        CropFlip {
            dy: rng.random_range(-pad..=pad) as isize,
            dx: rng.random_range(-pad..=pad) as isize,
            flip: rng.random_bool(0.5),
        }
    }

    /// Applies the crop and flip to one `channels × h × w` image.
    pub fn apply<T: Real>(&self, src: &[T], dst: &mut [T], channels: usize, h: usize, w: usize) {
        for ch in 0..channels {
            let plane = ch * h * w;
            for r in 0..h {
                let sr = r as isize + self.dy;
                for c in 0..w {
                    let cc = if self.flip { w - 1 - c } else { c };
                    let sc = cc as isize + self.dx;
                    let inside = (0..h as isize).contains(&sr) && (0..w as isize).contains(&sc);
                    dst[plane + r * w + c] = if inside {
                        src[plane + sr as usize * w + sc as usize]
                    } else {
                        T::zero()
                    };
                }
            }
        }
    }
}

/// A random crop (offsets in `±CROP_PADDING`) and flip for each of `n` images, drawn
/// image by image from `rng` on the host, so every backend given these draws
/// ([`AugmentKernels::crop_flip`]) augments alike.
pub fn crop_flip_draws(n: usize, rng: &mut impl Rng) -> Vec<CropFlip> {
    (0..n)
        .map(|_| CropFlip::sample(rng, CROP_PADDING))
        .collect()
}

/// The draws as the device kernel takes them: `[dy, dx, flip]` per image, as `i32`.
pub fn crop_flip_params(draws: &[CropFlip]) -> Vec<i32> {
    draws
        .iter()
        .flat_map(|t| [t.dy as i32, t.dx as i32, i32::from(t.flip)])
        .collect()
}

/// What the augmentation needs from a backend.
pub trait AugmentKernels: Backend {
    /// The images of the NCHW batch `x`, each cropped and flipped as its draw says.
    fn crop_flip(
        ctx: &Self::Ctx,
        shape: BatchShape,
        x: &Self::View<'_>,
        draws: &[CropFlip],
    ) -> Result<Self::Buf>;
}

impl<T: Real> AugmentKernels for T {
    fn crop_flip(_: &(), shape: BatchShape, x: &&[T], draws: &[CropFlip]) -> Result<Vec<T>> {
        let [n, c, h, w] = shape;
        check_len("crop_flip", "x", x.len(), n * c * h * w)?;
        check_len("crop_flip", "draws", draws.len(), n)?;
        let mut y = vec![T::zero(); x.len()];
        let len = c * h * w;
        if len > 0 {
            for ((src, dst), t) in x.chunks_exact(len).zip(y.chunks_exact_mut(len)).zip(draws) {
                t.apply(src, dst, c, h, w);
            }
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn shift_and_flip_move_pixels_and_pad_with_zeros() {
        // 1 channel, 2 × 3: [[1 2 3] [4 5 6]]
        let src = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut dst = [f32::NAN; 6];
        let t = CropFlip {
            dy: 1,
            dx: 0,
            flip: false,
        };
        t.apply(&src, &mut dst, 1, 2, 3);
        assert_eq!(dst, [4.0, 5.0, 6.0, 0.0, 0.0, 0.0]);
        let t = CropFlip {
            dy: 0,
            dx: -1,
            flip: true,
        };
        t.apply(&src, &mut dst, 1, 2, 3);
        assert_eq!(dst, [2.0, 1.0, 0.0, 5.0, 4.0, 0.0]);
    }

    #[test]
    fn batch_augmentation_is_seeded_and_covers_all_offsets() {
        let shape = [64, 2, 8, 8];
        let x: Vec<f32> = (0..64 * 128).map(|i| (i % 97) as f32).collect();
        let run = |seed| {
            let draws = crop_flip_draws(shape[0], &mut ChaCha8Rng::seed_from_u64(seed));
            f32::crop_flip(&(), shape, &&x[..], &draws).unwrap()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let draws: Vec<CropFlip> = (0..2000).map(|_| CropFlip::sample(&mut rng, 4)).collect();
        for d in -4..=4 {
            assert!(draws.iter().any(|t| t.dx == d) && draws.iter().any(|t| t.dy == d));
        }
        let flips = draws.iter().filter(|t| t.flip).count();
        assert!((900..1100).contains(&flips), "{flips} flips of 2000");
        let one = crop_flip_draws(1, &mut rng);
        assert!(f32::crop_flip(&(), [1, 1, 2, 2], &&[0.0; 3][..], &one).is_err());
        assert!(f32::crop_flip(&(), [2, 1, 2, 2], &&[0.0; 8][..], &one).is_err());
    }
}
