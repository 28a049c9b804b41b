//! [`HarnessDevice`]: sparta's [`KernelDevice`] on the CPU kernel harness, so the CUDA
//! wrappers themselves (argument lists, launch shapes, length checks, scratch buffers,
//! kernel sequences) run in every test run, GPU or not.
//!
//! Views are ranges of harness buffers passed as `Arg::View`, so a wrapper that
//! oversteps the view it was given fails the launch even when the buffer goes on.
//! Launches run under the harness's three schedules and must be bit-identical, except
//! those a wrapper marks [`Determinism::FloatAtomics`], which must agree within
//! [`ATOMICS_TOLERANCE`] (their float atomics add in block order). Buffers from
//! `alloc_scratch` are harness outputs: poisoned before each launch that writes them and
//! checked fully written.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::ops::Range;

use half::{bf16, f16};
use sparta::error::check_len;
use sparta::launch::{Determinism, DeviceElem, Dtype, KernelArg, KernelDevice, ViewLen};
use sparta::ops::LaunchDims;
use sparta::{Error, Result};
use sparta_harness::{Arg, Buf, Harness, HarnessError, LaunchReport};

use super::dims;

/// Relative tolerance (of a buffer's largest magnitude) between the schedules of a
/// launch with float atomics.
pub const ATOMICS_TOLERANCE: f64 = 1e-5;

/// Runs `$body` with `$u` the harness element type equal to `$t`.
macro_rules! with_elem {
    ($t:ty, $u:ident => $body:expr) => {
        match <$t as DeviceElem>::DTYPE {
            Dtype::F32 => {
                type $u = f32;
                $body
            }
            Dtype::F16 => {
                type $u = f16;
                $body
            }
            Dtype::BF16 => {
                type $u = bf16;
                $body
            }
            Dtype::I32 => {
                type $u = i32;
                $body
            }
        }
    };
}

/// `v` as a `Vec<U>`, when `T` and `U` are the same type (which `with_elem!` ensures).
fn same<T: 'static, U: 'static>(v: Vec<T>) -> Vec<U> {
    *(Box::new(v) as Box<dyn Any>)
        .downcast::<Vec<U>>()
        .expect("DeviceElem::DTYPE names the element type")
}

/// A range of a harness buffer, read-only.
pub struct HarnessView<T> {
    buf: Buf,
    offset: usize,
    len: usize,
    elem: PhantomData<T>,
}

/// A range of a harness buffer, writable.
pub struct HarnessViewMut<T>(HarnessView<T>);

/// A whole harness buffer.
pub struct HarnessBuffer<T>(HarnessView<T>);

/// A buffer argument: the view's range.
#[derive(Clone, Copy)]
pub struct HarnessArg {
    buf: Buf,
    offset: usize,
    len: usize,
}

impl<T> HarnessView<T> {
    fn new(buf: Buf, offset: usize, len: usize) -> Self {
        Self {
            buf,
            offset,
            len,
            elem: PhantomData,
        }
    }
    fn copy(&self) -> Self {
        Self::new(self.buf, self.offset, self.len)
    }
    fn sub(&self, range: Range<usize>) -> Result<Self> {
        if range.start <= range.end && range.end <= self.len {
            Ok(Self::new(
                self.buf,
                self.offset + range.start,
                range.end - range.start,
            ))
        } else {
            Err(Error::shape(
                "slice",
                "view",
                format!("a range within {} elements", self.len),
                format!("{range:?}"),
            ))
        }
    }
    fn arg(&self) -> KernelArg<HarnessArg> {
        KernelArg::Buffer(HarnessArg {
            buf: self.buf,
            offset: self.offset,
            len: self.len,
        })
    }
}

impl<T> ViewLen for HarnessView<T> {
    fn len(&self) -> usize {
        self.len
    }
}

impl<T> ViewLen for HarnessViewMut<T> {
    fn len(&self) -> usize {
        self.0.len
    }
}

/// sparta's kernels on the CPU kernel harness (see the module docs).
#[derive(Default)]
pub struct HarnessDevice {
    harness: RefCell<Harness>,
    reports: RefCell<Vec<LaunchReport>>,
    error: RefCell<Option<HarnessError>>,
    /// `(kernel, mutant)`: launches of `kernel` run the planted-bug copy `mutant`.
    mutant: Option<(String, String)>,
}

impl HarnessDevice {
    pub fn new() -> Self {
        Self::default()
    }

    /// A device on which every launch of `kernel` runs `<mutant>__<kernel>` from
    /// harness/mutants/ instead.
    pub fn with_mutant(mutant: &str, kernel: &str) -> Self {
        Self {
            mutant: Some((kernel.to_string(), format!("{mutant}__{kernel}"))),
            ..Self::default()
        }
    }

    /// The reports of the launches so far, in launch order (their kernel names are the
    /// sequence the wrappers launched).
    pub fn reports(&self) -> Vec<LaunchReport> {
        self.reports.borrow().clone()
    }

    /// The names of the kernels launched so far, in order; clears the record.
    pub fn take_launched(&self) -> Vec<String> {
        self.reports
            .borrow_mut()
            .drain(..)
            .map(|r| r.kernel)
            .collect()
    }

    /// A plain device, or with `Some(mutant)` one that runs the mutant in place of
    /// `kernel` (see [`Self::with_mutant`]).
    pub fn maybe_mutant(mutant: Option<&str>, kernel: &str) -> Self {
        match mutant {
            Some(m) => Self::with_mutant(m, kernel),
            None => Self::new(),
        }
    }

    /// A wrapper's result with the harness's error if a launch failed (a wrapper's own
    /// shape error panics: it is a bug in the test).
    pub fn harness_result<T>(&self, r: Result<T>) -> std::result::Result<T, HarnessError> {
        r.map_err(|e| {
            self.error
                .borrow_mut()
                .take()
                .unwrap_or_else(|| panic!("{e}"))
        })
    }
}

impl KernelDevice for HarnessDevice {
    type View<'a, T: DeviceElem> = HarnessView<T>;
    type ViewMut<'a, T: DeviceElem> = HarnessViewMut<T>;
    type Buffer<T: DeviceElem> = HarnessBuffer<T>;
    type BufferArg<'a> = HarnessArg;

    fn alloc_zeros<T: DeviceElem>(&self, name: &str, len: usize) -> Result<HarnessBuffer<T>> {
        self.upload(name, &vec![T::default(); len])
    }

    fn alloc_scratch<T: DeviceElem>(&self, name: &str, len: usize) -> Result<HarnessBuffer<T>> {
        let buf = with_elem!(T, U => self.harness.borrow_mut().output::<U>(name, len));
        Ok(HarnessBuffer(HarnessView::new(buf, 0, len)))
    }

    fn upload<T: DeviceElem>(&self, name: &str, data: &[T]) -> Result<HarnessBuffer<T>> {
        let buf = with_elem!(T, U => self
            .harness
            .borrow_mut()
            .input::<U>(name, &same::<T, U>(data.to_vec())));
        Ok(HarnessBuffer(HarnessView::new(buf, 0, data.len())))
    }

    fn download<T: DeviceElem>(&self, view: &HarnessView<T>) -> Result<Vec<T>> {
        let range = view.offset..view.offset + view.len;
        Ok(with_elem!(T, U => {
            let all = self.harness.borrow().read::<U>(view.buf);
            same::<U, T>(all[range].to_vec())
        }))
    }

    fn zero<T: DeviceElem>(&self, view: &mut HarnessViewMut<T>) -> Result<()> {
        let v = &view.0;
        with_elem!(T, U => {
            let mut h = self.harness.borrow_mut();
            let mut all = h.read::<U>(v.buf);
            all[v.offset..v.offset + v.len].fill(U::default());
            h.write(v.buf, &all);
        });
        Ok(())
    }

    fn write_host<T: DeviceElem>(&self, view: &mut HarnessViewMut<T>, data: &[T]) -> Result<()> {
        let v = &view.0;
        check_len("write_host", "data", data.len(), v.len)?;
        with_elem!(T, U => {
            let mut h = self.harness.borrow_mut();
            let mut all = h.read::<U>(v.buf);
            all[v.offset..v.offset + v.len].copy_from_slice(&same::<T, U>(data.to_vec()));
            h.write(v.buf, &all);
        });
        Ok(())
    }

    fn copy<T: DeviceElem>(&self, src: &HarnessView<T>, dst: &mut HarnessViewMut<T>) -> Result<()> {
        check_len("copy", "destination", dst.0.len, src.len)?;
        let data = self.download(src)?;
        self.write_host(dst, &data)
    }

    fn view<T: DeviceElem>(&self, buffer: &HarnessBuffer<T>) -> HarnessView<T> {
        buffer.0.copy()
    }

    fn view_mut<T: DeviceElem>(&self, buffer: &mut HarnessBuffer<T>) -> HarnessViewMut<T> {
        HarnessViewMut(buffer.0.copy())
    }

    fn view_range<T: DeviceElem>(
        &self,
        buffer: &HarnessBuffer<T>,
        range: Range<usize>,
    ) -> Result<HarnessView<T>> {
        buffer.0.sub(range)
    }

    fn view_range_mut<T: DeviceElem>(
        &self,
        buffer: &mut HarnessBuffer<T>,
        range: Range<usize>,
    ) -> Result<HarnessViewMut<T>> {
        buffer.0.sub(range).map(HarnessViewMut)
    }

    fn slice<T: DeviceElem>(
        &self,
        view: &HarnessView<T>,
        range: Range<usize>,
    ) -> Result<HarnessView<T>> {
        view.sub(range)
    }

    fn slice_mut<T: DeviceElem>(
        &self,
        view: &mut HarnessViewMut<T>,
        range: Range<usize>,
    ) -> Result<HarnessViewMut<T>> {
        view.0.sub(range).map(HarnessViewMut)
    }

    fn as_view<T: DeviceElem>(&self, view: &HarnessViewMut<T>) -> HarnessView<T> {
        view.0.copy()
    }

    fn read<T: DeviceElem>(&self, view: &HarnessView<T>) -> KernelArg<HarnessArg> {
        view.arg()
    }

    fn write<T: DeviceElem>(&self, view: &mut HarnessViewMut<T>) -> KernelArg<HarnessArg> {
        view.0.arg()
    }

    unsafe fn launch(
        &self,
        _module: &'static str,
        kernel: &str,
        launch: LaunchDims,
        determinism: Determinism,
        args: &[KernelArg<HarnessArg>],
    ) -> Result<()> {
        let kernel = match &self.mutant {
            Some((target, mutant)) if target == kernel => mutant.as_str(),
            _ => kernel,
        };
        let args: Vec<Arg> = args
            .iter()
            .map(|a| match *a {
                KernelArg::Buffer(HarnessArg { buf, offset, len }) => {
                    Arg::View { buf, offset, len }
                }
                KernelArg::I32(v) => Arg::I32(v),
                KernelArg::I64(v) => Arg::I64(v),
                KernelArg::F32(v) => Arg::F32(v),
            })
            .collect();
        let mut h = self.harness.borrow_mut();
        let result = match determinism {
            Determinism::BitExact => h.launch(kernel, dims(launch), &args),
            Determinism::FloatAtomics => {
                h.launch_within(kernel, dims(launch), &args, ATOMICS_TOLERANCE)
            }
        };
        match result {
            Ok(report) => {
                self.reports.borrow_mut().push(report);
                Ok(())
            }
            Err(e) => {
                let message = format!("harness: {e}");
                *self.error.borrow_mut() = Some(e);
                Err(Error::Cuda(message))
            }
        }
    }
}
