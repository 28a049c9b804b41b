//! [`Gpu`] as a [`KernelDevice`]: views are cudarc's `CudaView` / `CudaViewMut`, buffers
//! `CudaSlice`, and `launch` pushes the arguments to cudarc's launch builder.

use std::ops::Range;

use cudarc::driver::{
    CudaSlice, CudaView, CudaViewMut, DevicePtr, DevicePtrMut, PushKernelArg, SyncOnDrop,
};

use super::Gpu;
use crate::error::{check_len, Error, Result};
use crate::launch::conv_geom::{ConvGeom, ConvPass};
use crate::launch::{Determinism, DeviceElem, KernelArg, KernelDevice, LaunchDims};

fn out_of_view(range: &Range<usize>, len: usize) -> Error {
    Error::shape(
        "slice",
        "view",
        format!("a range within {len} elements"),
        format!("{range:?}"),
    )
}

/// A cudarc buffer argument: its device pointer, and the guard that records the
/// stream-ordering event once the launch that uses it is queued.
pub struct GpuBufferArg<'a> {
    ptr: u64,
    _sync: SyncOnDrop<'a>,
}

impl KernelDevice for Gpu {
    type View<'a, T: DeviceElem> = CudaView<'a, T>;
    type ViewMut<'a, T: DeviceElem> = CudaViewMut<'a, T>;
    type Buffer<T: DeviceElem> = CudaSlice<T>;
    type BufferArg<'a> = GpuBufferArg<'a>;

    fn alloc_zeros<T: DeviceElem>(&self, _name: &str, len: usize) -> Result<CudaSlice<T>> {
        Ok(self.stream().alloc_zeros::<T>(len)?)
    }

    fn alloc_scratch<T: DeviceElem>(&self, _name: &str, len: usize) -> Result<CudaSlice<T>> {
        // Zeroed rather than uninitialised: a memset is cheap next to the kernels, and a
        // wrapper bug then reads zeros, not another tensor's stale values.
        Ok(self.stream().alloc_zeros::<T>(len)?)
    }

    fn upload<T: DeviceElem>(&self, _name: &str, data: &[T]) -> Result<CudaSlice<T>> {
        Ok(self.stream().clone_htod(data)?)
    }

    fn download<T: DeviceElem>(&self, view: &CudaView<'_, T>) -> Result<Vec<T>> {
        let mut host = vec![T::default(); view.len()];
        self.stream().memcpy_dtoh(view, &mut host)?;
        self.stream().synchronize()?;
        Ok(host)
    }

    fn zero<T: DeviceElem>(&self, view: &mut CudaViewMut<'_, T>) -> Result<()> {
        Ok(self.stream().memset_zeros(view)?)
    }

    fn write_host<T: DeviceElem>(&self, view: &mut CudaViewMut<'_, T>, data: &[T]) -> Result<()> {
        check_len("write_host", "data", data.len(), view.len())?;
        Ok(self.stream().memcpy_htod(data, view)?)
    }

    fn copy<T: DeviceElem>(
        &self,
        src: &CudaView<'_, T>,
        dst: &mut CudaViewMut<'_, T>,
    ) -> Result<()> {
        check_len("copy", "destination", dst.len(), src.len())?;
        Ok(self.stream().memcpy_dtod(src, dst)?)
    }

    fn view<'a, T: DeviceElem>(&self, buffer: &'a CudaSlice<T>) -> CudaView<'a, T> {
        buffer.as_view()
    }

    fn view_mut<'a, T: DeviceElem>(&self, buffer: &'a mut CudaSlice<T>) -> CudaViewMut<'a, T> {
        buffer.as_view_mut()
    }

    fn view_range<'a, T: DeviceElem>(
        &self,
        buffer: &'a CudaSlice<T>,
        range: Range<usize>,
    ) -> Result<CudaView<'a, T>> {
        buffer
            .try_slice(range.clone())
            .ok_or_else(|| out_of_view(&range, buffer.len()))
    }

    fn view_range_mut<'a, T: DeviceElem>(
        &self,
        buffer: &'a mut CudaSlice<T>,
        range: Range<usize>,
    ) -> Result<CudaViewMut<'a, T>> {
        let len = buffer.len();
        buffer
            .try_slice_mut(range.clone())
            .ok_or_else(|| out_of_view(&range, len))
    }

    fn slice<'a, T: DeviceElem>(
        &self,
        view: &'a CudaView<'_, T>,
        range: Range<usize>,
    ) -> Result<CudaView<'a, T>> {
        view.try_slice(range.clone())
            .ok_or_else(|| out_of_view(&range, view.len()))
    }

    fn slice_mut<'a, T: DeviceElem>(
        &self,
        view: &'a mut CudaViewMut<'_, T>,
        range: Range<usize>,
    ) -> Result<CudaViewMut<'a, T>> {
        let len = view.len();
        view.try_slice_mut(range.clone())
            .ok_or_else(|| out_of_view(&range, len))
    }

    fn as_view<'a, T: DeviceElem>(&self, view: &'a CudaViewMut<'_, T>) -> CudaView<'a, T> {
        view.as_view()
    }

    fn read<'a, T: DeviceElem>(&'a self, view: &'a CudaView<'_, T>) -> KernelArg<GpuBufferArg<'a>> {
        let (ptr, sync) = view.device_ptr(self.stream());
        KernelArg::Buffer(GpuBufferArg { ptr, _sync: sync })
    }

    fn write<'a, T: DeviceElem>(
        &'a self,
        view: &'a mut CudaViewMut<'_, T>,
    ) -> KernelArg<GpuBufferArg<'a>> {
        let (ptr, sync) = view.device_ptr_mut(self.stream());
        KernelArg::Buffer(GpuBufferArg { ptr, _sync: sync })
    }

    fn library_conv2d(
        &self,
        pass: ConvPass,
        g: &ConvGeom,
        a: &CudaView<'_, f32>,
        b: &CudaView<'_, f32>,
        out: &mut CudaViewMut<'_, f32>,
    ) -> Result<bool> {
        self.cudnn().run(self.stream(), pass, g, a, b, out)
    }

    unsafe fn launch(
        &self,
        module: &'static str,
        kernel: &str,
        dims: LaunchDims,
        _determinism: Determinism,
        args: &[KernelArg<GpuBufferArg<'_>>],
    ) -> Result<()> {
        let function = self.function(module, kernel)?;
        let mut launch = self.stream().launch_builder(&function);
        for arg in args {
            match arg {
                KernelArg::Buffer(b) => launch.arg(&b.ptr),
                KernelArg::I32(v) => launch.arg(v),
                KernelArg::I64(v) => launch.arg(v),
                KernelArg::F32(v) => launch.arg(v),
            };
        }
        // SAFETY: the caller guarantees the arguments match the kernel and stay inside
        // their views; the pointers' sync guards live in `args`, past this call.
        unsafe { launch.launch(dims.into()) }?;
        Ok(())
    }
}
