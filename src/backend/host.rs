//! The host as a backend: the element type itself (`f32`, `f64`), `Vec` buffers, and
//! the CPU kernels.

use rayon::prelude::*;

use super::Backend;
use crate::error::{check_len, Result};
use crate::launch::ViewLen;
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
        Ok(view.to_vec())
    }

    fn add(_: &(), a: &&[T], b: &&[T]) -> Result<Vec<T>> {
        check_len("add", "b", b.len(), a.len())?;
        let mut y = a.to_vec();
        y.par_chunks_mut(1 << 14)
            .zip(b.par_chunks(1 << 14))
            .for_each(|(y, b)| y.iter_mut().zip(b).for_each(|(y, &b)| *y += b));
        Ok(y)
    }

    fn overwrite(_: &(), dst: &mut Vec<T>, src: &[T]) -> Result<()> {
        check_len("overwrite", "values", src.len(), dst.len())?;
        dst.copy_from_slice(src);
        Ok(())
    }
}
