//! The one place where a kernel launch meets a device: [`KernelDevice`].
//!
//! Every CUDA wrapper (`src/ops/*/cuda.rs`, `src/optim/cuda.rs`, `src/attack/cuda.rs`,
//! `src/data/augment/cuda.rs`, the SPARTA layer's CUDA path) is generic over a
//! `D: KernelDevice`. It checks its shapes, picks the launch shape from the op's
//! `*_launch` function and hands the kernel name and an ordered argument list to
//! [`KernelDevice::launch`]; it never touches cudarc directly. Two devices implement the
//! trait:
//!
//! - [`Gpu`] (this file): views are cudarc's `CudaView` / `CudaViewMut`, buffers
//!   `CudaSlice`, and `launch` pushes the arguments to cudarc's launch builder. A cudarc
//!   user calls the wrappers with their own views exactly as before.
//! - the CPU kernel harness (`tests/harness_support/device.rs`): views are ranges of
//!   `sparta_harness` buffers, and `launch` runs the kernel's exact source on the CPU
//!   with bounds checks on every view, three thread schedules and traffic counts.
//!
//! So the wrappers' own code — argument order, launch shapes, length checks, scratch
//! buffers, multi-kernel sequences — runs in CI without a GPU, and no test repeats a
//! wrapper's argument list by hand.
//!
//! Why a generic trait with associated view types rather than a trait object or an enum
//! of devices: the views are the devices' own types (cudarc's borrowed views carry
//! lifetimes and stream-synchronisation state that a `dyn` interface would have to erase
//! or copy), the GPU path stays a direct call into cudarc after monomorphisation, and the
//! test-only harness device lives in the tests (the harness is a dev-dependency, so the
//! library cannot name it). Element types are type parameters of the views, so one
//! wrapper serves f32, f16 and bf16; a launch's argument list erases them
//! ([`KernelArg`]) because one kernel may take buffers of several types (an f16 kernel
//! with an f32 scratch).

use std::ops::Range;
use std::sync::Arc;

use cudarc::driver::{
    CudaSlice, CudaView, CudaViewMut, DevicePtr, DevicePtrMut, DeviceRepr, PushKernelArg,
    SyncOnDrop, ValidAsZeroBits,
};

use crate::error::{check_len, Error, Result};
use crate::ops::conv2d::geom::{ConvGeom, ConvPass};
use crate::ops::LaunchDims;
use crate::Gpu;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
    impl Sealed for i32 {}
}

/// An element type of device buffers: f32, f16, bf16 or i32 (sealed).
pub trait DeviceElem:
    sealed::Sealed + DeviceRepr + ValidAsZeroBits + Copy + Default + Send + Sync + 'static
{
    /// The element type, for devices that store buffers untyped.
    const DTYPE: Dtype;
}

/// The element type of a [`DeviceElem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// `f32` (`float`).
    F32,
    /// `half::f16` (`__half`).
    F16,
    /// `half::bf16` (`__nv_bfloat16`).
    BF16,
    /// `i32` (`int`).
    I32,
}

impl DeviceElem for f32 {
    const DTYPE: Dtype = Dtype::F32;
}
impl DeviceElem for half::f16 {
    const DTYPE: Dtype = Dtype::F16;
}
impl DeviceElem for half::bf16 {
    const DTYPE: Dtype = Dtype::BF16;
}
impl DeviceElem for i32 {
    const DTYPE: Dtype = Dtype::I32;
}

/// The length of a device view, in elements.
pub trait ViewLen {
    /// Elements in the view.
    fn len(&self) -> usize;
    /// Whether the view holds no elements.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> ViewLen for CudaView<'_, T> {
    fn len(&self) -> usize {
        CudaView::len(self)
    }
}

impl<T> ViewLen for CudaViewMut<'_, T> {
    fn len(&self) -> usize {
        CudaViewMut::len(self)
    }
}

/// One kernel argument, in the order of the kernel's parameters: a buffer (made by
/// [`KernelDevice::read`] or [`KernelDevice::write`]) or a scalar of the parameter's
/// exact C type (`int` → `I32`, `long long` → `I64`, `float` → `F32`).
pub enum KernelArg<B> {
    /// A `const T*` or `T*` parameter.
    Buffer(B),
    /// An `int`.
    I32(i32),
    /// A `long long`.
    I64(i64),
    /// A `float`.
    F32(f32),
}

/// Whether a kernel's result is bit-identical whatever order its blocks run in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Determinism {
    /// Every output element is written by one thread in a fixed order: bit-identical
    /// under any schedule (the harness device demands it).
    BitExact,
    /// Float atomics from several blocks add in the order the blocks run, so the result
    /// is exact only up to rounding (the harness device compares its schedules within a
    /// relative tolerance instead of bitwise).
    FloatAtomics,
}

/// A device that runs sparta's kernels over its own buffers. See the module docs.
pub trait KernelDevice {
    /// A read-only view of `len` elements of device memory.
    type View<'a, T: DeviceElem>: ViewLen;
    /// A writable view.
    type ViewMut<'a, T: DeviceElem>: ViewLen;
    /// An owned device allocation (`'static`: a caching allocator keeps freed buffers).
    type Buffer<T: DeviceElem>: 'static;
    /// A buffer argument of a launch, its element type erased.
    type BufferArg<'a>
    where
        Self: 'a;

    /// A buffer of `len` zeros (for results that kernels add into).
    fn alloc_zeros<T: DeviceElem>(&self, name: &str, len: usize) -> Result<Self::Buffer<T>>;
    /// A buffer of `len` elements that a kernel overwrites before anything reads it. Zeros
    /// on the GPU; the harness poisons it and fails a launch that leaves part unwritten,
    /// so never use it for a result that a kernel adds into.
    fn alloc_scratch<T: DeviceElem>(&self, name: &str, len: usize) -> Result<Self::Buffer<T>>;
    /// A buffer holding a copy of `data`.
    fn upload<T: DeviceElem>(&self, name: &str, data: &[T]) -> Result<Self::Buffer<T>>;
    /// The contents of a view, once every queued launch has finished.
    fn download<T: DeviceElem>(&self, view: &Self::View<'_, T>) -> Result<Vec<T>>;
    /// Sets every element of a view to zero.
    fn zero<T: DeviceElem>(&self, view: &mut Self::ViewMut<'_, T>) -> Result<()>;
    /// Copies `data` into a view of the same length (queued like a launch).
    fn write_host<T: DeviceElem>(&self, view: &mut Self::ViewMut<'_, T>, data: &[T]) -> Result<()>;
    /// Copies one view into another of the same length (queued like a launch).
    fn copy<T: DeviceElem>(
        &self,
        src: &Self::View<'_, T>,
        dst: &mut Self::ViewMut<'_, T>,
    ) -> Result<()>;

    /// All of a buffer, read-only.
    fn view<'a, T: DeviceElem>(&self, buffer: &'a Self::Buffer<T>) -> Self::View<'a, T>;
    /// All of a buffer, writable.
    fn view_mut<'a, T: DeviceElem>(&self, buffer: &'a mut Self::Buffer<T>) -> Self::ViewMut<'a, T>;
    /// Elements `range` of a buffer, read-only (a shape error if the range leaves it).
    fn view_range<'a, T: DeviceElem>(
        &self,
        buffer: &'a Self::Buffer<T>,
        range: Range<usize>,
    ) -> Result<Self::View<'a, T>>;
    /// Elements `range` of a buffer, writable (a shape error if the range leaves it).
    fn view_range_mut<'a, T: DeviceElem>(
        &self,
        buffer: &'a mut Self::Buffer<T>,
        range: Range<usize>,
    ) -> Result<Self::ViewMut<'a, T>>;
    /// Elements `range` of a view (a shape error if the range leaves it).
    fn slice<'a, T: DeviceElem>(
        &self,
        view: &'a Self::View<'_, T>,
        range: Range<usize>,
    ) -> Result<Self::View<'a, T>>;
    /// Elements `range` of a writable view (a shape error if the range leaves it).
    fn slice_mut<'a, T: DeviceElem>(
        &self,
        view: &'a mut Self::ViewMut<'_, T>,
        range: Range<usize>,
    ) -> Result<Self::ViewMut<'a, T>>;
    /// A writable view, read-only (to pass a result to the next kernel).
    fn as_view<'a, T: DeviceElem>(&self, view: &'a Self::ViewMut<'_, T>) -> Self::View<'a, T>;

    /// A view as a `const T*` argument.
    fn read<'a, T: DeviceElem>(
        &'a self,
        view: &'a Self::View<'_, T>,
    ) -> KernelArg<Self::BufferArg<'a>>;
    /// A writable view as a `T*` argument.
    fn write<'a, T: DeviceElem>(
        &'a self,
        view: &'a mut Self::ViewMut<'_, T>,
    ) -> KernelArg<Self::BufferArg<'a>>;

    /// Runs convolution product `pass` of `g` on the device's own convolution library
    /// (cuDNN on a [`Gpu`] that has it) and returns true, or returns false when the
    /// device has none (the default), so the caller launches the handwritten kernels.
    /// Operands and output as [`crate::ops::conv2d::cuda::conv2d`] describes them, their
    /// lengths already checked.
    fn library_conv2d(
        &self,
        pass: ConvPass,
        g: &ConvGeom,
        a: &Self::View<'_, f32>,
        b: &Self::View<'_, f32>,
        out: &mut Self::ViewMut<'_, f32>,
    ) -> Result<bool> {
        let _ = (pass, g, a, b, out);
        Ok(false)
    }

    /// Queues kernel `kernel` of `kernels/<module>.cu` with launch shape `dims`.
    ///
    /// # Safety
    ///
    /// On a GPU nothing checks the arguments: `args` must match the kernel's parameters
    /// in number, order and type, and every index the kernel derives from the scalars
    /// and `dims` must stay inside the views passed. (The harness device checks all of
    /// this, which is what the harness tests of each wrapper verify.)
    unsafe fn launch(
        &self,
        module: &'static str,
        kernel: &str,
        dims: LaunchDims,
        determinism: Determinism,
        args: &[KernelArg<Self::BufferArg<'_>>],
    ) -> Result<()>;
}

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

/// A shared device is the device: callers holding an `Arc<Gpu>` pass `&gpu`.
impl<D: KernelDevice> KernelDevice for Arc<D> {
    type View<'a, T: DeviceElem> = D::View<'a, T>;
    type ViewMut<'a, T: DeviceElem> = D::ViewMut<'a, T>;
    type Buffer<T: DeviceElem> = D::Buffer<T>;
    type BufferArg<'a>
        = D::BufferArg<'a>
    where
        Self: 'a;

    fn alloc_zeros<T: DeviceElem>(&self, name: &str, len: usize) -> Result<D::Buffer<T>> {
        (**self).alloc_zeros(name, len)
    }
    fn alloc_scratch<T: DeviceElem>(&self, name: &str, len: usize) -> Result<D::Buffer<T>> {
        (**self).alloc_scratch(name, len)
    }
    fn upload<T: DeviceElem>(&self, name: &str, data: &[T]) -> Result<D::Buffer<T>> {
        (**self).upload(name, data)
    }
    fn download<T: DeviceElem>(&self, view: &D::View<'_, T>) -> Result<Vec<T>> {
        (**self).download(view)
    }
    fn zero<T: DeviceElem>(&self, view: &mut D::ViewMut<'_, T>) -> Result<()> {
        (**self).zero(view)
    }
    fn write_host<T: DeviceElem>(&self, view: &mut D::ViewMut<'_, T>, data: &[T]) -> Result<()> {
        (**self).write_host(view, data)
    }
    fn copy<T: DeviceElem>(&self, src: &D::View<'_, T>, dst: &mut D::ViewMut<'_, T>) -> Result<()> {
        (**self).copy(src, dst)
    }
    fn view<'a, T: DeviceElem>(&self, buffer: &'a D::Buffer<T>) -> D::View<'a, T> {
        (**self).view(buffer)
    }
    fn view_mut<'a, T: DeviceElem>(&self, buffer: &'a mut D::Buffer<T>) -> D::ViewMut<'a, T> {
        (**self).view_mut(buffer)
    }
    fn view_range<'a, T: DeviceElem>(
        &self,
        buffer: &'a D::Buffer<T>,
        range: Range<usize>,
    ) -> Result<D::View<'a, T>> {
        (**self).view_range(buffer, range)
    }
    fn view_range_mut<'a, T: DeviceElem>(
        &self,
        buffer: &'a mut D::Buffer<T>,
        range: Range<usize>,
    ) -> Result<D::ViewMut<'a, T>> {
        (**self).view_range_mut(buffer, range)
    }
    fn slice<'a, T: DeviceElem>(
        &self,
        view: &'a D::View<'_, T>,
        range: Range<usize>,
    ) -> Result<D::View<'a, T>> {
        (**self).slice(view, range)
    }
    fn slice_mut<'a, T: DeviceElem>(
        &self,
        view: &'a mut D::ViewMut<'_, T>,
        range: Range<usize>,
    ) -> Result<D::ViewMut<'a, T>> {
        (**self).slice_mut(view, range)
    }
    fn as_view<'a, T: DeviceElem>(&self, view: &'a D::ViewMut<'_, T>) -> D::View<'a, T> {
        (**self).as_view(view)
    }
    fn library_conv2d(
        &self,
        pass: ConvPass,
        g: &ConvGeom,
        a: &D::View<'_, f32>,
        b: &D::View<'_, f32>,
        out: &mut D::ViewMut<'_, f32>,
    ) -> Result<bool> {
        (**self).library_conv2d(pass, g, a, b, out)
    }
    fn read<'a, T: DeviceElem>(&'a self, view: &'a D::View<'_, T>) -> KernelArg<D::BufferArg<'a>> {
        (**self).read(view)
    }
    fn write<'a, T: DeviceElem>(
        &'a self,
        view: &'a mut D::ViewMut<'_, T>,
    ) -> KernelArg<D::BufferArg<'a>> {
        (**self).write(view)
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
        unsafe { (**self).launch(module, kernel, dims, determinism, args) }
    }
}
