//! The host as a backend: the element type itself (`f32`, `f64`), `Vec` buffers, and
//! the CPU kernels.

use std::mem::MaybeUninit;

use super::Backend;
use crate::error::{check_len, Result};
use crate::launch::ViewLen;
use crate::ops::par::{for_each_piece, new_written, Slot};
use crate::real::Real;

impl<T> ViewLen for &[T] {
    fn len(&self) -> usize {
        <[T]>::len(self)
    }
}

impl<T: Real> Backend for T {
    type Real = T;
    type Ctx = ();
    type Buf = Vec<T>;
    type View<'a> = &'a [T];

    fn view<'a>(_: &(), buf: &'a Vec<T>) -> &'a [T] {
        buf
    }

    fn len(_: &(), buf: &Vec<T>) -> usize {
        buf.len()
    }

    fn zeros(_: &(), _: &'static str, len: usize) -> Result<Vec<T>> {
        Ok(vec![T::zero(); len])
    }

    fn upload(_: &(), _: &'static str, values: &[T]) -> Result<Vec<T>> {
        Ok(values.to_vec())
    }

    fn download(_: &(), view: &&[T]) -> Result<Vec<T>> {
        Ok(view.to_vec())
    }

    fn duplicate(_: &(), view: &&[T]) -> Result<Vec<T>> {
        let fill = |out: &mut [MaybeUninit<T>]| {
            for_each_piece(out, |off, out| {
                for (o, &v) in out.iter_mut().zip(&view[off..]) {
                    o.put(v);
                }
            })
        };
        // SAFETY: the pieces tile the copy, and each is as long as its part of the view.
        Ok(unsafe { new_written(view.len(), fill) })
    }

    fn add(_: &(), a: &&[T], b: &&[T]) -> Result<Vec<T>> {
        check_len("add", "b", b.len(), a.len())?;
        let fill = |y: &mut [MaybeUninit<T>]| {
            for_each_piece(y, |off, y| {
                let (a, b) = (&a[off..off + y.len()], &b[off..off + y.len()]);
                for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
                    y.put(a + b);
                }
            })
        };
        // SAFETY: a and b are as long as y, so every piece of y is written in full.
        Ok(unsafe { new_written(a.len(), fill) })
    }

    fn add_assign(_: &(), acc: &mut Vec<T>, g: &&[T]) -> Result<()> {
        check_len("add", "b", g.len(), acc.len())?;
        for_each_piece(acc, |off, acc| {
            for (a, &b) in acc.iter_mut().zip(&g[off..]) {
                *a += b;
            }
        });
        Ok(())
    }

    fn overwrite(_: &(), dst: &mut Vec<T>, src: &[T]) -> Result<()> {
        check_len("overwrite", "values", src.len(), dst.len())?;
        dst.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::par::CHUNK;

    /// Over several rayon pieces: `add_assign` leaves the bits of `add`, `duplicate` the
    /// values it copies; a gradient of another length is an error.
    #[test]
    fn in_place_sum_and_copy_match_the_new_buffers() {
        let len = 3 * CHUNK + 5;
        let a: Vec<f32> = (0..len).map(|i| (i % 97) as f32 * 0.37 - 17.0).collect();
        let b: Vec<f32> = (0..len).map(|i| (i % 89) as f32 * 1e-3 + 0.1).collect();
        let sum = f32::add(&(), &&a[..], &&b[..]).unwrap();
        let mut acc = f32::duplicate(&(), &&a[..]).unwrap();
        assert_eq!(acc, a);
        f32::add_assign(&(), &mut acc, &&b[..]).unwrap();
        assert_eq!(acc, sum);
        assert!(f32::add_assign(&(), &mut acc, &&b[1..]).is_err());
    }
}
