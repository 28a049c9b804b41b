//! CPU block average pool, generic over [`Real`]; rayon over groups of whole planes.

use rayon::prelude::*;

use super::PoolShape;
use crate::error::{check_len, Result};
use crate::ops::par::planes_per_task;
use crate::real::Real;

/// `y[plane, oi, oj]` = mean of `x[plane]` over block `(oi, oj)`. `y` is overwritten.
pub fn pool_forward<T: Real>(shape: &PoolShape, x: &[T], y: &mut [T]) -> Result<()> {
    check_len("pool_forward", "x", x.len(), shape.in_len())?;
    check_len("pool_forward", "y", y.len(), shape.out_len())?;
    let (h, w, b) = (shape.h, shape.w, shape.block);
    let (oh, ow) = (shape.oh(), shape.ow());
    let planes = planes_per_task(h * w);
    if oh * ow == 1 && w < LANES {
        let count = T::of_f64((h * w) as f64);
        y.par_chunks_mut(planes)
            .zip(x.par_chunks(planes * h * w))
            .for_each(|(y_task, x_task)| plane_means(x_task, h, w, count, y_task));
        return Ok(());
    }
    let counts = block_counts::<T>(shape);
    y.par_chunks_mut(planes * oh * ow)
        .zip(x.par_chunks(planes * h * w))
        .for_each(|(y_task, x_task)| {
            for (yp, xp) in y_task.chunks_mut(oh * ow).zip(x_task.chunks(h * w)) {
                yp.fill(T::zero());
                // Band by band of B rows, each block's run of up to B pixels in a row is
                // a contiguous sum.
                for (out, band) in yp.chunks_mut(ow).zip(xp.chunks(b * w)) {
                    for row in band.chunks(w) {
                        for (o, run) in out.iter_mut().zip(row.chunks(b)) {
                            *o += run.iter().copied().sum::<T>();
                        }
                    }
                }
                for (o, &count) in yp.iter_mut().zip(&counts) {
                    *o /= count;
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
    let planes = planes_per_task(h * w);
    if oh * ow == 1 {
        let count = T::of_f64((h * w) as f64);
        dx.par_chunks_mut(planes * h * w)
            .zip(dy.par_chunks(planes))
            .for_each(|(dx_task, dy_task)| {
                for (dxp, &d) in dx_task.chunks_mut(h * w).zip(dy_task) {
                    let g = d / count;
                    dxp.iter_mut().for_each(|v| *v += g);
                }
            });
        return Ok(());
    }
    let counts = block_counts::<T>(shape);
    dx.par_chunks_mut(planes * h * w)
        .zip(dy.par_chunks(planes * oh * ow))
        .for_each_init(
            || vec![T::zero(); ow],
            |band_grads, (dx_task, dy_task)| {
                let plane_grads = dy_task.chunks(oh * ow);
                for (dxp, dyp) in dx_task.chunks_mut(h * w).zip(plane_grads) {
                    let bands = dxp.chunks_mut(b * w);
                    for ((band, dyb), cb) in bands.zip(dyp.chunks(ow)).zip(counts.chunks(ow)) {
                        for ((g, &d), &count) in band_grads.iter_mut().zip(dyb).zip(cb) {
                            *g = d / count;
                        }
                        for row in band.chunks_mut(w) {
                            for (run, &g) in row.chunks_mut(b).zip(band_grads.iter()) {
                                run.iter_mut().for_each(|v| *v += g);
                            }
                        }
                    }
                }
            },
        );
    Ok(())
}

/// The mean of each whole `h×w` plane of `x` into `y`, in the same order of additions as
/// the blocked loop of [`pool_forward`] (each row summed left to right, the row sums
/// added top to bottom), but [`LANES`] planes in lockstep. For rows shorter than
/// [`LANES`]: there one plane's additions are a short dependency chain that the blocked
/// loop waits on, while from 16-pixel rows on the blocked loop, reading each plane in
/// order, measured faster (BENCHMARKS.md, "Pool").
fn plane_means<T: Real>(x: &[T], h: usize, w: usize, count: T, y: &mut [T]) {
    let hw = h * w;
    for (ys, xs) in y.chunks_mut(LANES).zip(x.chunks(LANES * hw)) {
        let (mut total, mut row) = ([T::zero(); LANES], [T::zero(); LANES]);
        let planes = ys.len();
        for i in 0..h {
            for (l, r) in row[..planes].iter_mut().enumerate() {
                *r = xs[l * hw + i * w];
            }
            for j in 1..w {
                for (l, r) in row[..planes].iter_mut().enumerate() {
                    *r += xs[l * hw + i * w + j];
                }
            }
            for (t, &r) in total.iter_mut().zip(&row) {
                *t += r;
            }
        }
        for (o, &t) in ys.iter_mut().zip(&total) {
            *o = t / count;
        }
    }
}

/// Planes [`plane_means`] sums side by side, and the row length from which the blocked
/// loop takes global means instead.
const LANES: usize = 16;

/// Each block's pixel count as a `T`, `[oh, ow]`.
fn block_counts<T: Real>(shape: &PoolShape) -> Vec<T> {
    (0..shape.oh())
        .flat_map(|oi| (0..shape.ow()).map(move |oj| T::of_f64(shape.count(oi, oj) as f64)))
        .collect()
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
    use crate::ops::par::CHUNK;

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

    /// The global path (planes in lockstep) against a plain loop over each plane in the
    /// same order, bit for bit: non-square planes, a batch of planes that is not a
    /// multiple of [`LANES`], and two rayon tasks, each ending in a partial group of
    /// lanes. Values spread over seven decades, so that another order of the
    /// additions would change the bits.
    #[test]
    fn global_pool_keeps_the_order_of_additions() {
        let (planes, h, w) = (3000, 3, 5);
        let per_task = planes_per_task(h * w);
        assert!(planes * h * w > CHUNK && planes < 2 * per_task);
        assert!(!per_task.is_multiple_of(LANES) && !(planes - per_task).is_multiple_of(LANES));
        let shape = PoolShape::global(planes, h, w).unwrap();
        let x: Vec<f32> = (0..shape.in_len())
            .map(|i| (i as f32 * 0.37).sin() * 10f32.powi(i as i32 % 7 - 3))
            .collect();
        let mut y = vec![f32::NAN; planes];
        pool_forward(&shape, &x, &mut y).unwrap();
        for (plane, (&got, xp)) in y.iter().zip(x.chunks(h * w)).enumerate() {
            let mut total = 0.0f32;
            for row in xp.chunks(w) {
                total += row.iter().copied().sum::<f32>();
            }
            let want = total / (h * w) as f32;
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "plane {plane}: {got} vs {want}"
            );
        }
        let dy: Vec<f32> = (0..planes).map(|i| (i as f32 * 0.71).cos()).collect();
        let mut dx = x.clone();
        pool_backward(&shape, &dy, &mut dx).unwrap();
        for (i, (&got, &before)) in dx.iter().zip(&x).enumerate() {
            let want = before + dy[i / (h * w)] / (h * w) as f32;
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "element {i}: {got} vs {want}"
            );
        }
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
