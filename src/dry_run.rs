//! [`DryRunDevice`]: a [`KernelDevice`] that allocates nothing and runs nothing.
//!
//! Its buffers are lengths, its launches are no-ops and its downloads are zeros, so any
//! code written against `KernelDevice` runs through all of its allocations, in order,
//! at no cost. Wrapped in a [`crate::alloc::CachingDevice`], that measures what a
//! workload will hold on a real device (the buffers a GPU run would take from the
//! driver, without the CUDA context and the loaded modules) before a GPU is at hand:
//! `examples/gpu_train_step --dry-run` does that for ResNet-18 PGD training.
//!
//! ```
//! use sparta::alloc::CachingDevice;
//! use sparta::dry_run::DryRunDevice;
//! use sparta::KernelDevice;
//!
//! let dev = CachingDevice::new(DryRunDevice);
//! let a = dev.alloc_zeros::<f32>("a", 256)?;
//! assert_eq!(dev.stats().bytes_reserved, 1024);
//! assert_eq!(dev.download::<f32>(&dev.view::<f32>(&a))?, vec![0.0; 256]);
//! # Ok::<(), sparta::Error>(())
//! ```

use std::ops::Range;

use crate::error::{check_len, Error, Result};
use crate::launch::LaunchDims;
use crate::launch::{Determinism, DeviceElem, KernelArg, KernelDevice, ViewLen};

/// See the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct DryRunDevice;

/// A buffer or view of a [`DryRunDevice`]: only its length.
#[derive(Clone, Copy, Debug)]
pub struct DryRunBuffer {
    len: usize,
}

impl ViewLen for DryRunBuffer {
    fn len(&self) -> usize {
        self.len
    }
}

fn sub(len: usize, range: Range<usize>) -> Result<DryRunBuffer> {
    if range.start <= range.end && range.end <= len {
        Ok(DryRunBuffer {
            len: range.end - range.start,
        })
    } else {
        Err(Error::shape(
            "slice",
            "view",
            format!("a range within {len} elements"),
            format!("{range:?}"),
        ))
    }
}

impl KernelDevice for DryRunDevice {
    type View<'a, T: DeviceElem> = DryRunBuffer;
    type ViewMut<'a, T: DeviceElem> = DryRunBuffer;
    type Buffer<T: DeviceElem> = DryRunBuffer;
    type BufferArg<'a> = ();

    fn alloc_zeros<T: DeviceElem>(&self, _name: &str, len: usize) -> Result<DryRunBuffer> {
        Ok(DryRunBuffer { len })
    }
    fn alloc_scratch<T: DeviceElem>(&self, _name: &str, len: usize) -> Result<DryRunBuffer> {
        Ok(DryRunBuffer { len })
    }
    fn upload<T: DeviceElem>(&self, _name: &str, data: &[T]) -> Result<DryRunBuffer> {
        Ok(DryRunBuffer { len: data.len() })
    }
    fn download<T: DeviceElem>(&self, view: &DryRunBuffer) -> Result<Vec<T>> {
        Ok(vec![T::default(); view.len])
    }
    fn zero<T: DeviceElem>(&self, _view: &mut DryRunBuffer) -> Result<()> {
        Ok(())
    }
    fn write_host<T: DeviceElem>(&self, view: &mut DryRunBuffer, data: &[T]) -> Result<()> {
        check_len("write_host", "data", data.len(), view.len)
    }
    fn copy<T: DeviceElem>(&self, src: &DryRunBuffer, dst: &mut DryRunBuffer) -> Result<()> {
        check_len("copy", "destination", dst.len, src.len)
    }
    fn view<T: DeviceElem>(&self, buffer: &DryRunBuffer) -> DryRunBuffer {
        *buffer
    }
    fn view_mut<T: DeviceElem>(&self, buffer: &mut DryRunBuffer) -> DryRunBuffer {
        *buffer
    }
    fn view_range<T: DeviceElem>(
        &self,
        buffer: &DryRunBuffer,
        range: Range<usize>,
    ) -> Result<DryRunBuffer> {
        sub(buffer.len, range)
    }
    fn view_range_mut<T: DeviceElem>(
        &self,
        buffer: &mut DryRunBuffer,
        range: Range<usize>,
    ) -> Result<DryRunBuffer> {
        sub(buffer.len, range)
    }
    fn slice<T: DeviceElem>(
        &self,
        view: &DryRunBuffer,
        range: Range<usize>,
    ) -> Result<DryRunBuffer> {
        sub(view.len, range)
    }
    fn slice_mut<T: DeviceElem>(
        &self,
        view: &mut DryRunBuffer,
        range: Range<usize>,
    ) -> Result<DryRunBuffer> {
        sub(view.len, range)
    }
    fn as_view<T: DeviceElem>(&self, view: &DryRunBuffer) -> DryRunBuffer {
        *view
    }
    fn read<T: DeviceElem>(&self, _view: &DryRunBuffer) -> KernelArg<()> {
        KernelArg::Buffer(())
    }
    fn write<T: DeviceElem>(&self, _view: &mut DryRunBuffer) -> KernelArg<()> {
        KernelArg::Buffer(())
    }
    unsafe fn launch(
        &self,
        _module: &'static str,
        _kernel: &str,
        _dims: LaunchDims,
        _determinism: Determinism,
        _args: &[KernelArg<()>],
    ) -> Result<()> {
        Ok(())
    }
}
