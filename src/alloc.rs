//! A caching allocator: [`CachingDevice`] wraps any [`KernelDevice`] and keeps the
//! buffers its users drop, to hand them out again for the next request of the same
//! element type and length.
//!
//! A training step asks for the same buffers in the same order every time (activations,
//! gradients, the conv wrappers' split-K scratch, the SPARTA layer's caches), so after
//! the first step every request is served from the cache and the device sees no
//! allocation at all; [`CacheStats`] counts both, which is how the tests check it. The
//! wrappers need no change: they allocate through the device they are given.
//!
//! Reuse is safe on a GPU because everything runs on one stream: a buffer dropped while
//! a queued kernel still reads it can only be written by a kernel queued after that one.
//! Buffers keep their kind: one from [`KernelDevice::alloc_zeros`] or
//! [`KernelDevice::upload`] is zeroed (or overwritten) when reused, one from
//! [`KernelDevice::alloc_scratch`] is handed out as scratch again (the CPU kernel
//! harness poisons scratch before each launch that writes it).
//!
//! ```
//! use sparta::alloc::CachingDevice;
//! use sparta::dry_run::DryRunDevice; // or a `Gpu`
//! use sparta::KernelDevice;
//!
//! let dev = CachingDevice::new(DryRunDevice);
//! drop(dev.alloc_zeros::<f32>("a", 1024)?);
//! let _again = dev.alloc_zeros::<f32>("a", 1024)?; // served from the cache
//! let stats = dev.stats();
//! assert_eq!((stats.device_allocations, stats.reuses), (1, 1));
//! assert_eq!(stats.bytes_reserved, 4096);
//! # Ok::<(), sparta::Error>(())
//! ```

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;

use crate::error::Result;
use crate::launch::conv_geom::{ConvGeom, ConvPass};
use crate::launch::LaunchDims;
use crate::launch::{Determinism, DeviceElem, KernelArg, KernelDevice};

/// What [`CachingDevice`] has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Buffers requested from the wrapped device.
    pub device_allocations: usize,
    /// Requests served from the cache.
    pub reuses: usize,
    /// Bytes held from the wrapped device: in use plus cached (never given back).
    pub bytes_reserved: usize,
    /// Bytes in buffers handed out and not yet dropped.
    pub bytes_in_use: usize,
    /// The largest `bytes_in_use` seen.
    pub peak_bytes_in_use: usize,
}

/// Zeroed-on-reuse or scratch (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Initialized,
    Scratch,
}

type Key = (TypeId, usize, Kind);

#[derive(Default)]
struct Cache {
    free: HashMap<Key, Vec<Box<dyn Any>>>,
    stats: CacheStats,
}

impl Cache {
    fn take<B: 'static>(&mut self, key: Key) -> Option<B> {
        let boxed = self.free.get_mut(&key)?.pop()?;
        Some(
            *boxed
                .downcast::<B>()
                .expect("the key names the buffer type"),
        )
    }

    fn hand_out(&mut self, bytes: usize, reused: bool) {
        let s = &mut self.stats;
        if reused {
            s.reuses += 1;
        } else {
            s.device_allocations += 1;
            s.bytes_reserved += bytes;
        }
        s.bytes_in_use += bytes;
        s.peak_bytes_in_use = s.peak_bytes_in_use.max(s.bytes_in_use);
    }
}

/// A buffer of a [`CachingDevice`]: the wrapped device's buffer, returned to the cache
/// when dropped.
pub struct Cached<T: DeviceElem, D: KernelDevice + 'static> {
    buffer: Option<D::Buffer<T>>,
    len: usize,
    kind: Kind,
    home: Rc<RefCell<Cache>>,
}

impl<T: DeviceElem, D: KernelDevice + 'static> Cached<T, D> {
    fn inner(&self) -> &D::Buffer<T> {
        self.buffer.as_ref().expect("present until dropped")
    }

    fn inner_mut(&mut self) -> &mut D::Buffer<T> {
        self.buffer.as_mut().expect("present until dropped")
    }
}

impl<T: DeviceElem, D: KernelDevice + 'static> Drop for Cached<T, D> {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            let mut cache = self.home.borrow_mut();
            cache.stats.bytes_in_use -= self.len * std::mem::size_of::<T>();
            cache
                .free
                .entry((TypeId::of::<T>(), self.len, self.kind))
                .or_default()
                .push(Box::new(b));
        }
    }
}

/// `D` with a caching allocator in front (see the module docs).
pub struct CachingDevice<D: KernelDevice + 'static> {
    inner: D,
    cache: Rc<RefCell<Cache>>,
}

impl<D: KernelDevice + 'static> CachingDevice<D> {
    /// Wraps `inner` with an empty cache.
    pub fn new(inner: D) -> Self {
        Self {
            inner,
            cache: Rc::default(),
        }
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Allocation counts and bytes so far.
    pub fn stats(&self) -> CacheStats {
        self.cache.borrow().stats
    }

    fn get<T: DeviceElem>(
        &self,
        name: &str,
        len: usize,
        kind: Kind,
        fresh: impl FnOnce(&D, &str) -> Result<D::Buffer<T>>,
    ) -> Result<(Cached<T, D>, bool)> {
        let key = (TypeId::of::<T>(), len, kind);
        let cached = self.cache.borrow_mut().take::<D::Buffer<T>>(key);
        let reused = cached.is_some();
        let buffer = match cached {
            Some(b) => b,
            None => fresh(&self.inner, name)?,
        };
        self.cache
            .borrow_mut()
            .hand_out(len * std::mem::size_of::<T>(), reused);
        Ok((
            Cached {
                buffer: Some(buffer),
                len,
                kind,
                home: Rc::clone(&self.cache),
            },
            reused,
        ))
    }
}

impl<D: KernelDevice + 'static> KernelDevice for CachingDevice<D> {
    type View<'a, T: DeviceElem> = D::View<'a, T>;
    type ViewMut<'a, T: DeviceElem> = D::ViewMut<'a, T>;
    type Buffer<T: DeviceElem> = Cached<T, D>;
    type BufferArg<'a>
        = D::BufferArg<'a>
    where
        Self: 'a;

    fn alloc_zeros<T: DeviceElem>(&self, name: &str, len: usize) -> Result<Cached<T, D>> {
        let (mut b, reused) = self.get(name, len, Kind::Initialized, |d, n| {
            d.alloc_zeros::<T>(n, len)
        })?;
        if reused {
            self.inner.zero(&mut self.inner.view_mut(b.inner_mut()))?;
        }
        Ok(b)
    }

    fn alloc_scratch<T: DeviceElem>(&self, name: &str, len: usize) -> Result<Cached<T, D>> {
        Ok(self
            .get(name, len, Kind::Scratch, |d, n| {
                d.alloc_scratch::<T>(n, len)
            })?
            .0)
    }

    fn upload<T: DeviceElem>(&self, name: &str, data: &[T]) -> Result<Cached<T, D>> {
        let (mut b, reused) = self.get(name, data.len(), Kind::Initialized, |d, n| {
            d.upload(n, data)
        })?;
        if reused {
            self.inner
                .write_host(&mut self.inner.view_mut(b.inner_mut()), data)?;
        }
        Ok(b)
    }

    fn download<T: DeviceElem>(&self, view: &D::View<'_, T>) -> Result<Vec<T>> {
        self.inner.download(view)
    }

    fn zero<T: DeviceElem>(&self, view: &mut D::ViewMut<'_, T>) -> Result<()> {
        self.inner.zero(view)
    }

    fn write_host<T: DeviceElem>(&self, view: &mut D::ViewMut<'_, T>, data: &[T]) -> Result<()> {
        self.inner.write_host(view, data)
    }

    fn copy<T: DeviceElem>(&self, src: &D::View<'_, T>, dst: &mut D::ViewMut<'_, T>) -> Result<()> {
        self.inner.copy(src, dst)
    }

    fn view<'a, T: DeviceElem>(&self, buffer: &'a Cached<T, D>) -> D::View<'a, T> {
        self.inner.view(buffer.inner())
    }

    fn view_mut<'a, T: DeviceElem>(&self, buffer: &'a mut Cached<T, D>) -> D::ViewMut<'a, T> {
        self.inner.view_mut(buffer.inner_mut())
    }

    fn view_range<'a, T: DeviceElem>(
        &self,
        buffer: &'a Cached<T, D>,
        range: Range<usize>,
    ) -> Result<D::View<'a, T>> {
        self.inner.view_range(buffer.inner(), range)
    }

    fn view_range_mut<'a, T: DeviceElem>(
        &self,
        buffer: &'a mut Cached<T, D>,
        range: Range<usize>,
    ) -> Result<D::ViewMut<'a, T>> {
        self.inner.view_range_mut(buffer.inner_mut(), range)
    }

    fn slice<'a, T: DeviceElem>(
        &self,
        view: &'a D::View<'_, T>,
        range: Range<usize>,
    ) -> Result<D::View<'a, T>> {
        self.inner.slice(view, range)
    }

    fn slice_mut<'a, T: DeviceElem>(
        &self,
        view: &'a mut D::ViewMut<'_, T>,
        range: Range<usize>,
    ) -> Result<D::ViewMut<'a, T>> {
        self.inner.slice_mut(view, range)
    }

    fn as_view<'a, T: DeviceElem>(&self, view: &'a D::ViewMut<'_, T>) -> D::View<'a, T> {
        self.inner.as_view(view)
    }

    fn read<'a, T: DeviceElem>(&'a self, view: &'a D::View<'_, T>) -> KernelArg<D::BufferArg<'a>> {
        self.inner.read(view)
    }

    fn write<'a, T: DeviceElem>(
        &'a self,
        view: &'a mut D::ViewMut<'_, T>,
    ) -> KernelArg<D::BufferArg<'a>> {
        self.inner.write(view)
    }

    fn library_conv2d(
        &self,
        pass: ConvPass,
        g: &ConvGeom,
        a: &D::View<'_, f32>,
        b: &D::View<'_, f32>,
        out: &mut D::ViewMut<'_, f32>,
    ) -> Result<bool> {
        self.inner.library_conv2d(pass, g, a, b, out)
    }

    unsafe fn launch(
        &self,
        module: &'static str,
        kernel: &str,
        dims: LaunchDims,
        determinism: Determinism,
        args: &[KernelArg<D::BufferArg<'_>>],
    ) -> Result<()> {
        // SAFETY: forwarded; the caller upholds the contract.
        unsafe { self.inner.launch(module, kernel, dims, determinism, args) }
    }
}
