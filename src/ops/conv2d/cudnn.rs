//! 2-D convolution through cuDNN (cudarc's safe bindings, loaded at run time): what a
//! [`Gpu`](crate::Gpu) runs for [`super::cuda::conv2d`] when libcudnn is found. Without
//! it (or with `SPARTA_CONV=implicit-gemm`) that falls back to the handwritten
//! implicit-GEMM kernels of `kernels/conv2d.cu`.
//!
//! f32 NCHW tensors, cross-correlation (PyTorch's convolution), math type
//! `CUDNN_FMA_MATH`: no TF32, so results stay within f32 rounding of the CPU reference.
//! Algorithms come from cuDNN's heuristics, cached per geometry; a backward algorithm
//! that adds with atomics (data ALGO_0, filter ALGO_0 and ALGO_3) is replaced by the
//! deterministic ALGO_1, so a GPU run gives the same bits every time. The workspace is
//! one buffer grown to the largest request and kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::cudnn::sys::{
    cudnnConvolutionBwdDataAlgo_t as DataAlgo, cudnnConvolutionBwdFilterAlgo_t as FilterAlgo,
    cudnnConvolutionFwdAlgo_t as FwdAlgo, cudnnConvolutionMode_t, cudnnMathType_t,
    cudnnTensorFormat_t,
};
use cudarc::cudnn::{ConvBackwardData, ConvBackwardFilter, ConvForward, Cudnn, CudnnError};
use cudarc::driver::{CudaSlice, CudaStream, CudaView, CudaViewMut};

use super::ConvGeom;
use crate::error::{Error, Result};

/// Which convolution product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvPass {
    /// `y = conv(x, w)`: operands `(x, w)`, output y.
    Forward,
    /// The input gradient: operands `(dy, w)`, output dx.
    BackwardData,
    /// The weight gradient: operands `(x, dy)`, output dw.
    BackwardFilter,
}

#[derive(Clone, Copy)]
enum Algo {
    Forward(FwdAlgo),
    Data(DataAlgo),
    Filter(FilterAlgo),
}

type Key = (ConvPass, [usize; 8]);

struct State {
    /// `None` once cuDNN was found missing (or turned off): never asked again.
    handle: Option<Arc<Cudnn>>,
    algos: HashMap<Key, (Algo, usize)>,
    workspace: Option<CudaSlice<u8>>,
}

/// The cuDNN side of a [`Gpu`](crate::Gpu), created lazily on first use.
pub(crate) struct CudnnConv {
    state: Mutex<Option<State>>,
}

// SAFETY: cudarc marks its cuDNN handle !Send/!Sync because one handle must not be used
// by two threads at once. Every use here holds `state`'s lock, so the handle is only
// ever used by one thread at a time.
unsafe impl Send for CudnnConv {}
// SAFETY: as above: all access goes through the mutex.
unsafe impl Sync for CudnnConv {}

fn cudnn_error(e: CudnnError) -> Error {
    Error::Cuda(format!("cuDNN: {e:?}"))
}

fn c_int(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::shape("conv2d_cudnn", what, "a value below 2^31", v))
}

impl CudnnConv {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(None),
        }
    }

    /// Runs `pass` with cuDNN and returns true, or returns false when cuDNN is not
    /// available (the caller runs the implicit-GEMM kernels instead). The output is
    /// overwritten.
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
            algos: HashMap::new(),
            workspace: None,
        });
        let Some(handle) = state.handle.clone() else {
            return Ok(false);
        };
        let nchw = cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
        let sizes = [
            g.n,
            g.c_in,
            g.h,
            g.w,
            g.c_out,
            g.k,
            g.h_out(),
            g.w_out(),
            g.pad,
            g.stride,
        ];
        let mut ints = [0i32; 10];
        for (slot, v) in ints.iter_mut().zip(sizes) {
            *slot = c_int("geometry", v)?;
        }
        let [n, c, h, w, co, k, ho, wo, pad, stride] = ints;
        let mut conv = handle
            .create_conv2d::<f32>(
                [pad, pad],
                [stride, stride],
                [1, 1],
                cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
            )
            .map_err(cudnn_error)?;
        conv.set_math_type(cudnnMathType_t::CUDNN_FMA_MATH)
            .map_err(cudnn_error)?;
        let x = handle
            .create_4d_tensor::<f32>(nchw, [n, c, h, w])
            .map_err(cudnn_error)?;
        let f = handle
            .create_4d_filter::<f32>(nchw, [co, c, k, k])
            .map_err(cudnn_error)?;
        let y = handle
            .create_4d_tensor::<f32>(nchw, [n, co, ho, wo])
            .map_err(cudnn_error)?;
        let key = (pass, [g.n, g.c_in, g.h, g.w, g.c_out, g.k, g.stride, g.pad]);
        let fwd = ConvForward {
            conv: &conv,
            x: &x,
            w: &f,
            y: &y,
        };
        let data = ConvBackwardData {
            conv: &conv,
            dx: &x,
            w: &f,
            dy: &y,
        };
        let filter = ConvBackwardFilter {
            conv: &conv,
            x: &x,
            dw: &f,
            dy: &y,
        };
        let (algo, bytes) = match state.algos.get(&key) {
            Some(&chosen) => chosen,
            None => {
                let chosen = match pass {
                    ConvPass::Forward => {
                        let a = fwd.pick_algorithm().map_err(cudnn_error)?;
                        (
                            Algo::Forward(a),
                            fwd.get_workspace_size(a).map_err(cudnn_error)?,
                        )
                    }
                    ConvPass::BackwardData => {
                        let a = match data.pick_algorithm().map_err(cudnn_error)? {
                            DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 => {
                                DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1
                            }
                            a => a,
                        };
                        (
                            Algo::Data(a),
                            data.get_workspace_size(a).map_err(cudnn_error)?,
                        )
                    }
                    ConvPass::BackwardFilter => {
                        let a = match filter.pick_algorithm().map_err(cudnn_error)? {
                            FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0
                            | FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3 => {
                                FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1
                            }
                            a => a,
                        };
                        (
                            Algo::Filter(a),
                            filter.get_workspace_size(a).map_err(cudnn_error)?,
                        )
                    }
                };
                state.algos.insert(key, chosen);
                chosen
            }
        };
        if bytes > 0 && state.workspace.as_ref().is_none_or(|ws| ws.len() < bytes) {
            state.workspace = Some(stream.alloc_zeros::<u8>(bytes)?);
        }
        let ws = state.workspace.as_mut().filter(|_| bytes > 0);
        // SAFETY: the descriptors above describe exactly the views passed (f32, NCHW,
        // the lengths the calling wrapper checked against `g`), and the workspace holds
        // at least the bytes cuDNN asked for this algorithm.
        unsafe {
            match algo {
                Algo::Forward(al) => fwd.launch(al, ws, (1.0, 0.0), a, b, out),
                Algo::Data(al) => data.launch(al, ws, (1.0, 0.0), out, b, a),
                Algo::Filter(al) => filter.launch(al, ws, (1.0, 0.0), a, out, b),
            }
        }
        .map_err(cudnn_error)?;
        Ok(true)
    }
}

/// A cuDNN handle on `stream`, or `None` (with one line saying why) when libcudnn is
/// missing, cannot start, or `SPARTA_CONV=implicit-gemm` asks for the fallback.
fn open(stream: &Arc<CudaStream>) -> Option<Arc<Cudnn>> {
    if std::env::var("SPARTA_CONV").is_ok_and(|v| v == "implicit-gemm") {
        eprintln!("sparta: conv2d on the implicit-GEMM kernels (SPARTA_CONV=implicit-gemm)");
        return None;
    }
    // SAFETY: only probes whether the shared library can be opened.
    if !unsafe { cudarc::cudnn::sys::is_culib_present() } {
        eprintln!("sparta: libcudnn not found, conv2d on the implicit-GEMM kernels");
        return None;
    }
    match Cudnn::new(stream.clone()) {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!("sparta: cuDNN did not start ({e:?}), conv2d on the implicit-GEMM kernels");
            None
        }
    }
}
