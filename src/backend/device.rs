//! A device as a backend: [`OnDevice<D>`] over any [`KernelDevice`], its buffers from a
//! [`CachingDevice`], its kernels the CUDA wrappers.

use std::marker::PhantomData;

use super::Backend;
use crate::alloc::CachingDevice;
use crate::error::{check_len, Result};
use crate::launch::{KernelDevice, ViewLen};
use crate::ops::add::cuda::add_forward;

/// The backend of device `D` (f32). A type only: its context is the device behind a
/// [`CachingDevice`], so every buffer a pass takes comes back to the cache.
pub struct OnDevice<D>(PhantomData<D>);

impl<D: KernelDevice + 'static> Backend for OnDevice<D> {
    type Real = f32;
    type Ctx = CachingDevice<D>;
    type Buf = <CachingDevice<D> as KernelDevice>::Buffer<f32>;
    type View<'a> = <CachingDevice<D> as KernelDevice>::View<'a, f32>;

    fn view<'a>(dev: &CachingDevice<D>, buf: &'a Self::Buf) -> Self::View<'a> {
        dev.view(buf)
    }

    fn len(dev: &CachingDevice<D>, buf: &Self::Buf) -> usize {
        dev.view(buf).len()
    }

    fn zeros(dev: &CachingDevice<D>, what: &'static str, len: usize) -> Result<Self::Buf> {
        dev.alloc_zeros(what, len)
    }

    fn upload(dev: &CachingDevice<D>, what: &'static str, values: &[f32]) -> Result<Self::Buf> {
        dev.upload(what, values)
    }

    fn download(dev: &CachingDevice<D>, view: &Self::View<'_>) -> Result<Vec<f32>> {
        dev.download(view)
    }

    fn duplicate(dev: &CachingDevice<D>, view: &Self::View<'_>) -> Result<Self::Buf> {
        // Not scratch: a copy may be updated in place afterwards (a PGD start without
        // noise), and the harness poisons scratch before every launch that writes it.
        let mut copy = dev.alloc_zeros::<f32>("copy", view.len())?;
        dev.copy(view, &mut dev.view_mut(&mut copy))?;
        Ok(copy)
    }

    fn add(dev: &CachingDevice<D>, a: &Self::View<'_>, b: &Self::View<'_>) -> Result<Self::Buf> {
        check_len("add", "b", b.len(), a.len())?;
        // Out of place: the same traffic as adding in place, and every output stays a
        // fresh buffer that one kernel writes whole.
        let mut sum = dev.alloc_scratch::<f32>("add", a.len())?;
        add_forward(dev, a, b, &mut dev.view_mut(&mut sum))?;
        Ok(sum)
    }

    fn overwrite(dev: &CachingDevice<D>, dst: &mut Self::Buf, src: &[f32]) -> Result<()> {
        dev.write_host(&mut dev.view_mut(dst), src)
    }
}
