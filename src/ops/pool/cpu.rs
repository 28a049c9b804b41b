//! CPU block average pool, generic over [`Real`]; rayon over planes.

use rayon::prelude::*;

use super::PoolShape;
use crate::error::{check_len, Result};
use crate::real::Real;

/// `y[plane, oi, oj]` = mean of `x[plane]` over block `(oi, oj)`. `y` is overwritten.
pub fn pool_forward<T: Real>(shape: &PoolShape, x: &[T], y: &mut [T]) -> Result<()> {
    check_len("pool_forward", "x", x.len(), shape.in_len())?;
    check_len("pool_forward", "y", y.len(), shape.out_len())?;
    let (h, w, b) = (shape.h, shape.w, shape.block);
    let (oh, ow) = (shape.oh(), shape.ow());
    y.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .for_each(|(yp, xp)| {
            yp.fill(T::zero());
            // Row by row, each block's run of up to B pixels is a contiguous sum.
            for (i, row) in xp.chunks(w).enumerate() {
                let out = &mut yp[(i / b) * ow..(i / b + 1) * ow];
                for (o, run) in out.iter_mut().zip(row.chunks(b)) {
                    *o += run.iter().copied().sum::<T>();
                }
            }
            for oi in 0..oh {
                for oj in 0..ow {
                    yp[oi * ow + oj] /= T::of_f64(shape.count(oi, oj) as f64);
                }
            }
        });
    Ok(())
}

/// Adds the pool's input gradient to `dx`: each pixel gets `dy` of its block divided by
/// the block's pixel count.
pub fn pool_backward<T: Real>(shape: &PoolShape, dy: &[T], dx: &mut [T]) -> Result<()> {
    check_len("pool_backward", "dy", dy.len(), shape.out_len())?;
    check_len("pool_backward", "dx", dx.len(), shape.in_len())?;
    let (h, w, b) = (shape.h, shape.w, shape.block);
    let (oh, ow) = (shape.oh(), shape.ow());
    dx.par_chunks_mut(h * w)
        .zip(dy.par_chunks(oh * ow))
        .for_each(|(dxp, dyp)| {
            for (i, row) in dxp.chunks_mut(w).enumerate() {
                let oi = i / b;
                for (oj, run) in row.chunks_mut(b).enumerate() {
                    let g = dyp[oi * ow + oj] / T::of_f64(shape.count(oi, oj) as f64);
                    run.iter_mut().for_each(|v| *v += g);
                }
            }
        });
    Ok(())
}

impl<T: Real> super::tape::PoolKernels for T {
    fn pool_forward(_: &(), shape: &PoolShape, x: &&[T]) -> Result<Vec<T>> {
        let mut y = vec![T::zero(); shape.out_len()];
        pool_forward(shape, x, &mut y)?;
        Ok(y)
    }

    fn pool_backward(_: &(), shape: &PoolShape, dy: &&[T]) -> Result<Vec<T>> {
        let mut dx = vec![T::zero(); shape.in_len()];
        pool_backward(shape, dy, &mut dx)?;
        Ok(dx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_blocks_average_their_valid_pixels() {
        // 3×3 plane, B = 2: blocks of 4, 2, 2 and 1 pixels.
        let shape = PoolShape::new(1, 3, 3, 2).unwrap();
        let x: Vec<f64> = (1..=9).map(f64::from).collect();
        let mut y = vec![f64::NAN; 4];
        pool_forward(&shape, &x, &mut y).unwrap();
        assert_eq!(y, vec![3.0, 4.5, 7.5, 9.0]);
    }

    #[test]
    fn global_pool_is_the_plane_mean() {
        let shape = PoolShape::global(2, 2, 3).unwrap();
        let x: Vec<f64> = (0..12).map(f64::from).collect();
        let mut y = vec![0.0; 2];
        pool_forward(&shape, &x, &mut y).unwrap();
        assert_eq!(y, vec![2.5, 8.5]);
    }

    #[test]
    fn backward_is_the_transpose_of_forward() {
        // <pool(x), r> = <x, pool_backward(r)> for every x, r.
        let shape = PoolShape::new(2, 5, 3, 2).unwrap();
        let x: Vec<f64> = (0..shape.in_len())
            .map(|i| (i as f64 * 0.7).sin())
            .collect();
        let r: Vec<f64> = (0..shape.out_len())
            .map(|i| (i as f64 * 1.3).cos())
            .collect();
        let mut y = vec![0.0; shape.out_len()];
        pool_forward(&shape, &x, &mut y).unwrap();
        let mut dx = vec![0.0; shape.in_len()];
        pool_backward(&shape, &r, &mut dx).unwrap();
        let lhs: f64 = y.iter().zip(&r).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
        assert!(
            (lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let shape = PoolShape::new(1, 2, 2, 1).unwrap();
        let mut y = vec![0.0f32; 4];
        assert!(pool_forward(&shape, &[0.0; 3], &mut y).is_err());
        assert!(PoolShape::new(1, 0, 2, 1).is_err());
    }
}
