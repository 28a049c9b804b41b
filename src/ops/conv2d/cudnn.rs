//! 2-D convolution through cuDNN (loaded at run time through cudarc's bindings): what a
//! [`Gpu`](crate::Gpu) runs for [`super::cuda::conv2d`] when libcudnn is found. Without
//! it (or with `SPARTA_CONV=implicit-gemm`) that falls back to the handwritten
//! implicit-GEMM kernels of `kernels/conv2d.cu`, as it does for a pass of a geometry
//! for which cuDNN lists no algorithm that qualifies.
//!
//! f32 NCHW tensors, cross-correlation (PyTorch's convolution), math type
//! `CUDNN_FMA_MATH`: no TF32, so results stay within f32 rounding of the CPU reference.
//! Each geometry's descriptors are made once and kept, with the algorithm of each pass
//! picked from cuDNN's whole heuristic list by status, determinism, math type,
//! rounding and workspace ([`super::cudnn_algo`]). The workspace is one buffer, grown to
//! the largest request and kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::cudnn::result as cudnn;
use cudarc::cudnn::sys::cudnnHandle_t;
use cudarc::driver::{CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut};

use super::cudnn_plan::{cudnn_error, Plan};
use super::{ConvGeom, ConvPass};
use crate::error::Result;

/// `[n, c_in, h, w, c_out, k, stride, pad]`.
type GeomKey = [usize; 8];

fn key(g: &ConvGeom) -> GeomKey {
    [g.n, g.c_in, g.h, g.w, g.c_out, g.k, g.stride, g.pad]
}

/// A cuDNN handle, destroyed on drop.
struct Handle(cudnnHandle_t);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by create_handle, destroyed only here; a failure to free
        // cannot be reported from a drop.
        let _ = unsafe { cudnn::destroy_handle(self.0) };
    }
}

struct State {
    /// `None` once cuDNN was found missing (or turned off): never asked again.
    handle: Option<Handle>,
    plans: HashMap<GeomKey, Plan>,
    workspace: Option<CudaSlice<u8>>,
}

/// The cuDNN side of a [`Gpu`](crate::Gpu), created lazily on first use.
pub(crate) struct CudnnConv {
    state: Mutex<Option<State>>,
}

// SAFETY: a cuDNN handle must not be used by two threads at once. Every use here holds
// `state`'s lock, so the handle and the descriptors are only ever used by one thread at
// a time.
unsafe impl Send for CudnnConv {}
// SAFETY: as above: all access goes through the mutex.
unsafe impl Sync for CudnnConv {}

impl CudnnConv {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(None),
        }
    }

    /// Runs `pass` with cuDNN and returns true, or returns false when cuDNN is not
    /// available or lists no algorithm that qualifies for this pass and geometry (the
    /// caller runs the implicit-GEMM kernels instead). The output is overwritten.
    pub(crate) fn run(
        &self,
        stream: &Arc<CudaStream>,
        pass: ConvPass,
        g: &ConvGeom,
        a: &CudaView<'_, f32>,
        b: &CudaView<'_, f32>,
        out: &mut CudaViewMut<'_, f32>,
    ) -> Result<bool> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = guard.get_or_insert_with(|| State {
            handle: open(stream),
            plans: HashMap::new(),
            workspace: None,
        });
        let Some(handle) = state.handle.as_ref().map(|h| h.0) else {
            return Ok(false);
        };
        stream.context().bind_to_thread()?;
        let plan = match state.plans.entry(key(g)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(Plan::new(g)?),
        };
        let announce = !plan.has_choice(pass);
        // SAFETY: the handle is live and its context was just made current.
        let chosen = unsafe { plan.choice(handle, pass) }?;
        let Some(candidate) = chosen.choice.chosen else {
            if announce {
                eprintln!(
                    "sparta: cuDNN {pass:?} {g:?}: {}; implicit-GEMM kernels instead",
                    chosen.choice
                );
            }
            return Ok(false);
        };
        let bytes = chosen.workspace;
        if bytes > 0 && state.workspace.as_ref().is_none_or(|ws| ws.len() < bytes) {
            state.workspace = None; // free the old one before taking the larger
            state.workspace = Some(stream.alloc_zeros::<u8>(bytes)?);
        }
        let (a_ptr, _a_sync) = a.device_ptr(stream);
        let (b_ptr, _b_sync) = b.device_ptr(stream);
        let (out_ptr, _out_sync) = out.device_ptr_mut(stream);
        let (ws_ptr, _ws_sync) = match state.workspace.as_mut().filter(|_| bytes > 0) {
            Some(ws) => {
                let (p, s) = ws.device_ptr_mut(stream);
                (p, Some(s))
            }
            None => (0, None),
        };
        // SAFETY: the plan's descriptors describe exactly these views (f32, NCHW, the
        // lengths the calling wrapper checked against `g`); the workspace holds at least
        // the bytes chosen for this algorithm; everything is on the handle's stream, and
        // the sync guards live past the call.
        unsafe { plan.run(handle, candidate.algo, ws_ptr, bytes, a_ptr, b_ptr, out_ptr) }?;
        Ok(true)
    }

    /// One line per geometry and pass run so far: the algorithm chosen and why the ones
    /// before it were passed over. Empty when cuDNN did not start.
    pub(crate) fn report(&self) -> Vec<String> {
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(state) = guard.as_ref() else {
            return Vec::new();
        };
        let mut lines: Vec<String> = state
            .plans
            .iter()
            .flat_map(|(k, plan)| {
                plan.choices()
                    .map(move |(pass, c)| format!("{k:?} {pass:?}: {}", c.choice))
            })
            .collect();
        lines.sort();
        lines
    }
}

/// A cuDNN handle on `stream`, or `None` (with one line saying why) when libcudnn is
/// missing, cannot start, or `SPARTA_CONV=implicit-gemm` asks for the fallback.
fn open(stream: &Arc<CudaStream>) -> Option<Handle> {
    if std::env::var("SPARTA_CONV").is_ok_and(|v| v == "implicit-gemm") {
        eprintln!("sparta: conv2d on the implicit-GEMM kernels (SPARTA_CONV=implicit-gemm)");
        return None;
    }
    // SAFETY: only probes whether the shared library can be opened.
    if !unsafe { cudarc::cudnn::sys::is_culib_present() } {
        eprintln!("sparta: libcudnn not found, conv2d on the implicit-GEMM kernels");
        return None;
    }
    let started = stream
        .context()
        .bind_to_thread()
        .map_err(|e| format!("{e}"))
        .and_then(|()| {
            let handle = Handle(cudnn::create_handle().map_err(|e| format!("{e:?}"))?);
            // SAFETY: a live handle and this context's stream.
            unsafe { cudnn::set_stream(handle.0, stream.cu_stream() as _) }
                .map_err(|e| format!("{:?}", cudnn_error("set stream", e)))?;
            Ok(handle)
        });
    match started {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!("sparta: cuDNN did not start ({e}), conv2d on the implicit-GEMM kernels");
            None
        }
    }
}
