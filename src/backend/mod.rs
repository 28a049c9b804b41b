//! Where tensors live and kernels run: a [`Backend`].
//!
//! Two kinds implement it:
//! - the host, in f32 or f64: the element type itself is the backend (`f32`, `f64`),
//!   buffers are `Vec`s and kernels are the CPU functions of `src/ops/*/cpu.rs`;
//! - a device, [`OnDevice<D>`] over any [`KernelDevice`](crate::KernelDevice) (a GPU, the CPU kernel harness in
//!   the tests, the dry run): f32 buffers in device memory from a caching allocator, and
//!   kernels are the CUDA wrappers of `src/ops/*/cuda.rs`.
//!
//! The tape ([`crate::autograd::Tape`]), every op's autograd rule, the ResNet, the SGD
//! step, PGD and the augmentation are written once, over `B: Backend` and the op kernel
//! traits the op folders define (`Conv2dKernels`, `BatchNormKernels`, …), each
//! implemented for the host and for `OnDevice<D>` beside the op's CPU kernel and CUDA
//! wrapper. A backend is a type; what its operations need at run time (nothing on the
//! host, the device and its allocator otherwise) is its [`Backend::Ctx`], passed to
//! every call.

pub mod add;
mod device;
mod host;

pub use device::OnDevice;

use crate::error::Result;
use crate::launch::ViewLen;
use crate::real::Real;

/// A place for tensors and the kernels that run there (see the module docs).
pub trait Backend: Sized + 'static {
    /// The element type: f32 or f64 on the host, f32 on a device.
    type Real: Real;
    /// What the backend's calls need: `()` on the host, the device with its caching
    /// allocator otherwise.
    type Ctx: 'static;
    /// An owned buffer of `Real` values.
    type Buf: 'static;
    /// A read-only view of a buffer, as kernels take it.
    type View<'a>: ViewLen;

    /// All of `buf`, read-only.
    fn view<'a>(ctx: &Self::Ctx, buf: &'a Self::Buf) -> Self::View<'a>;

    /// Elements of `buf`.
    fn len(ctx: &Self::Ctx, buf: &Self::Buf) -> usize;

    /// `len` zeros (for results kernels add into).
    fn zeros(ctx: &Self::Ctx, what: &'static str, len: usize) -> Result<Self::Buf>;

    /// A buffer holding `values`.
    fn upload(ctx: &Self::Ctx, what: &'static str, values: &[Self::Real]) -> Result<Self::Buf>;

    /// The values of a view, once every queued kernel has finished.
    fn download(ctx: &Self::Ctx, view: &Self::View<'_>) -> Result<Vec<Self::Real>>;

    /// A copy of a view.
    fn duplicate(ctx: &Self::Ctx, view: &Self::View<'_>) -> Result<Self::Buf>;

    /// `a + b`, element-wise, into a new buffer (gradients that meet at a node).
    fn add(ctx: &Self::Ctx, a: &Self::View<'_>, b: &Self::View<'_>) -> Result<Self::Buf>;

    /// `acc ← acc + g`, element-wise, with the roundings of [`Backend::add`]`(acc, g)`:
    /// the tape sums the gradients that meet at a node into the first one. By default
    /// through `add`'s new buffer; a backend overrides it to add in place.
    fn add_assign(ctx: &Self::Ctx, acc: &mut Self::Buf, g: &Self::View<'_>) -> Result<()> {
        let sum = Self::add(ctx, &Self::view(ctx, acc), g)?;
        *acc = sum;
        Ok(())
    }

    /// Overwrites `dst` with the values of `src` (same length), in place: a model's
    /// state restored from a checkpoint.
    fn overwrite(ctx: &Self::Ctx, dst: &mut Self::Buf, src: &[Self::Real]) -> Result<()>;
}

/// The context of backend `B`.
pub type Ctx<B> = <B as Backend>::Ctx;

/// An owned buffer of backend `B`.
pub type Buf<B> = <B as Backend>::Buf;

/// A view of backend `B`.
pub type View<'a, B> = <B as Backend>::View<'a>;
