//! One convolution geometry's cuDNN descriptors (x, w, y and the convolution: f32 NCHW,
//! cross-correlation, `CUDNN_FMA_MATH`), created once and kept, and the algorithm chosen
//! for each pass from cuDNN's full heuristic list ([`super::cudnn_algo`]).

use cudarc::cudnn::result::{self as cudnn, CudnnError};
use cudarc::cudnn::sys::{
    self, cudnnConvolutionMode_t, cudnnDataType_t, cudnnHandle_t, cudnnMathType_t,
    cudnnTensorFormat_t,
};

use super::cudnn_algo::{choose, Algo, Candidate, Choice, WORKSPACE_LIMIT};
use super::{ConvGeom, ConvPass};
use crate::error::{Error, Result};

pub(crate) fn cudnn_error(what: &str, e: CudnnError) -> Error {
    Error::Cuda(format!("cuDNN {what}: {:?}", e.0))
}

fn c_int(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::shape("conv2d_cudnn", what, "a value below 2^31", v))
}

struct TensorDesc(sys::cudnnTensorDescriptor_t);
struct FilterDesc(sys::cudnnFilterDescriptor_t);
struct ConvDesc(sys::cudnnConvolutionDescriptor_t);

impl Drop for TensorDesc {
    fn drop(&mut self) {
        // SAFETY: created by create_tensor_descriptor and destroyed only here. A failure
        // to free cannot be reported from a drop.
        let _ = unsafe { cudnn::destroy_tensor_descriptor(self.0) };
    }
}
impl Drop for FilterDesc {
    fn drop(&mut self) {
        // SAFETY: as for TensorDesc.
        let _ = unsafe { cudnn::destroy_filter_descriptor(self.0) };
    }
}
impl Drop for ConvDesc {
    fn drop(&mut self) {
        // SAFETY: as for TensorDesc.
        let _ = unsafe { cudnn::destroy_convolution_descriptor(self.0) };
    }
}

fn tensor(dims: [i32; 4]) -> Result<TensorDesc> {
    let desc = TensorDesc(cudnn::create_tensor_descriptor().map_err(|e| cudnn_error("tensor", e))?);
    // SAFETY: a descriptor just created.
    unsafe {
        cudnn::set_tensor4d_descriptor(
            desc.0,
            cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
            cudnnDataType_t::CUDNN_DATA_FLOAT,
            dims,
        )
    }
    .map_err(|e| cudnn_error("tensor", e))?;
    Ok(desc)
}

/// A pass's algorithm, once chosen: cuDNN's list and the pick, and the workspace bytes
/// to give it.
pub(crate) struct PassChoice {
    pub(crate) choice: Choice,
    pub(crate) workspace: usize,
}

/// Descriptors of one geometry and the algorithm of each pass chosen so far.
pub(crate) struct Plan {
    x: TensorDesc,
    w: FilterDesc,
    y: TensorDesc,
    conv: ConvDesc,
    /// Forward, backward data, backward filter.
    passes: [Option<PassChoice>; 3],
}

fn slot(pass: ConvPass) -> usize {
    match pass {
        ConvPass::Forward => 0,
        ConvPass::BackwardData => 1,
        ConvPass::BackwardFilter => 2,
    }
}

impl Plan {
    pub(crate) fn new(g: &ConvGeom) -> Result<Self> {
        let [n, c, h, w, co, k, ho, wo, pad, stride] = [
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
        ]
        .map(|v| c_int("geometry", v));
        let (n, c, h, w, co, k) = (n?, c?, h?, w?, co?, k?);
        let (ho, wo, pad, stride) = (ho?, wo?, pad?, stride?);
        let filter =
            FilterDesc(cudnn::create_filter_descriptor().map_err(|e| cudnn_error("filter", e))?);
        // SAFETY: a descriptor just created.
        unsafe {
            cudnn::set_filter4d_descriptor(
                filter.0,
                cudnnDataType_t::CUDNN_DATA_FLOAT,
                cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                [co, c, k, k],
            )
        }
        .map_err(|e| cudnn_error("filter", e))?;
        let conv = ConvDesc(
            cudnn::create_convolution_descriptor().map_err(|e| cudnn_error("convolution", e))?,
        );
        // SAFETY: a descriptor just created.
        unsafe {
            cudnn::set_convolution2d_descriptor(
                conv.0,
                pad,
                pad,
                stride,
                stride,
                1,
                1,
                cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                cudnnDataType_t::CUDNN_DATA_FLOAT,
            )
        }
        .map_err(|e| cudnn_error("convolution", e))?;
        // SAFETY: as above.
        unsafe { cudnn::set_convolution_math_type(conv.0, cudnnMathType_t::CUDNN_FMA_MATH) }
            .map_err(|e| cudnn_error("math type", e))?;
        Ok(Plan {
            x: tensor([n, c, h, w])?,
            w: filter,
            y: tensor([n, co, ho, wo])?,
            conv,
            passes: [None, None, None],
        })
    }

    /// Whether the algorithm of `pass` was chosen already.
    pub(crate) fn has_choice(&self, pass: ConvPass) -> bool {
        self.passes[slot(pass)].is_some()
    }

    /// The passes chosen so far, with their choices.
    pub(crate) fn choices(&self) -> impl Iterator<Item = (ConvPass, &PassChoice)> {
        [
            ConvPass::Forward,
            ConvPass::BackwardData,
            ConvPass::BackwardFilter,
        ]
        .into_iter()
        .filter_map(|pass| self.passes[slot(pass)].as_ref().map(|c| (pass, c)))
    }

    /// The choice for `pass`, made on first call (cuDNN's heuristic list, then
    /// [`choose`]), kept after.
    ///
    /// # Safety
    ///
    /// `handle` is a live cuDNN handle, its CUDA context current on this thread.
    pub(crate) unsafe fn choice(
        &mut self,
        handle: cudnnHandle_t,
        pass: ConvPass,
    ) -> Result<&PassChoice> {
        let i = slot(pass);
        if self.passes[i].is_none() {
            // SAFETY: forwarded.
            let made = unsafe { self.make_choice(handle, pass) }?;
            self.passes[i] = Some(made);
        }
        Ok(self.passes[i].as_ref().expect("just filled"))
    }

    /// # Safety
    ///
    /// As [`Plan::choice`].
    unsafe fn make_choice(&self, handle: cudnnHandle_t, pass: ConvPass) -> Result<PassChoice> {
        let mut count = 0i32;
        // SAFETY (all three arms): the handle and descriptors are live, the result
        // array holds the count passed, and cuDNN writes `count` entries of it. The
        // arrays start zeroed, which is a valid perf struct (every enum has a 0).
        let candidates: Vec<Candidate> = unsafe {
            match pass {
                ConvPass::Forward => {
                    const N: usize =
                        sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_COUNT as usize;
                    let mut list: [sys::cudnnConvolutionFwdAlgoPerf_t; N] = std::mem::zeroed();
                    cudnn::get_convolution_forward_algorithm(
                        handle,
                        self.x.0,
                        self.w.0,
                        self.conv.0,
                        self.y.0,
                        N as i32,
                        &mut count,
                        list.as_mut_ptr(),
                    )
                    .map_err(|e| cudnn_error("forward algorithms", e))?;
                    list.iter()
                        .take(count.max(0) as usize)
                        .map(Candidate::from)
                        .collect()
                }
                ConvPass::BackwardData => {
                    const N: usize =
                        sys::cudnnConvolutionBwdDataAlgo_t::CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT
                            as usize;
                    let mut list: [sys::cudnnConvolutionBwdDataAlgoPerf_t; N] = std::mem::zeroed();
                    cudnn::get_convolution_backward_data_algorithm(
                        handle,
                        self.w.0,
                        self.y.0,
                        self.conv.0,
                        self.x.0,
                        N as i32,
                        &mut count,
                        list.as_mut_ptr(),
                    )
                    .map_err(|e| cudnn_error("backward data algorithms", e))?;
                    list.iter()
                        .take(count.max(0) as usize)
                        .map(Candidate::from)
                        .collect()
                }
                ConvPass::BackwardFilter => {
                    const N: usize = sys::cudnnConvolutionBwdFilterAlgo_t::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT as usize;
                    let mut list: [sys::cudnnConvolutionBwdFilterAlgoPerf_t; N] =
                        std::mem::zeroed();
                    cudnn::get_convolution_backward_filter_algorithm(
                        handle,
                        self.x.0,
                        self.y.0,
                        self.conv.0,
                        self.w.0,
                        N as i32,
                        &mut count,
                        list.as_mut_ptr(),
                    )
                    .map_err(|e| cudnn_error("backward filter algorithms", e))?;
                    list.iter()
                        .take(count.max(0) as usize)
                        .map(Candidate::from)
                        .collect()
                }
            }
        };
        let choice = choose(&candidates, WORKSPACE_LIMIT);
        // The workspace the size query asks for the chosen algorithm, if more than the
        // heuristic listed.
        let workspace = match choice.chosen {
            None => 0,
            // SAFETY: forwarded; the algorithm is one cuDNN listed for this pass.
            Some(c) => c
                .workspace
                .max(unsafe { self.workspace_size(handle, c.algo) }?),
        };
        Ok(PassChoice { choice, workspace })
    }

    /// # Safety
    ///
    /// As [`Plan::choice`].
    unsafe fn workspace_size(&self, handle: cudnnHandle_t, algo: Algo) -> Result<usize> {
        // SAFETY: forwarded; descriptors live.
        unsafe {
            match algo {
                Algo::Forward(a) => cudnn::get_convolution_forward_workspace_size(
                    handle,
                    self.x.0,
                    self.w.0,
                    self.conv.0,
                    self.y.0,
                    a,
                ),
                Algo::Data(a) => cudnn::get_convolution_backward_data_workspace_size(
                    handle,
                    self.w.0,
                    self.y.0,
                    self.conv.0,
                    self.x.0,
                    a,
                ),
                Algo::Filter(a) => cudnn::get_convolution_backward_filter_workspace_size(
                    handle,
                    self.x.0,
                    self.y.0,
                    self.conv.0,
                    self.w.0,
                    a,
                ),
            }
        }
        .map_err(|e| cudnn_error("workspace size", e))
    }

    /// Runs `algo` with operands `a`, `b` and output `out` as
    /// [`crate::ops::conv2d::cuda::conv2d`] orders them for its pass (`out`
    /// overwritten: α = 1, β = 0).
    ///
    /// # Safety
    ///
    /// As [`Plan::choice`]; `algo` is this plan's choice for its pass; the pointers are
    /// live device allocations of f32 with the lengths this geometry implies, on the
    /// handle's stream; `workspace` holds at least `workspace_bytes` bytes (or is null
    /// with 0).
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn run(
        &self,
        handle: cudnnHandle_t,
        algo: Algo,
        workspace: u64,
        workspace_bytes: usize,
        a: u64,
        b: u64,
        out: u64,
    ) -> Result<()> {
        let (alpha, beta) = (1.0f32, 0.0f32);
        let alpha = (&alpha as *const f32).cast();
        let beta = (&beta as *const f32).cast();
        let ws = workspace as *mut std::ffi::c_void;
        let (a, b, out) = (
            a as *const std::ffi::c_void,
            b as *const std::ffi::c_void,
            out as *mut std::ffi::c_void,
        );
        // SAFETY: forwarded from the caller.
        unsafe {
            match algo {
                // (x, w) -> y
                Algo::Forward(al) => cudnn::convolution_forward(
                    handle,
                    alpha,
                    self.x.0,
                    a,
                    self.w.0,
                    b,
                    self.conv.0,
                    al,
                    ws,
                    workspace_bytes,
                    beta,
                    self.y.0,
                    out,
                ),
                // (dy, w) -> dx
                Algo::Data(al) => cudnn::convolution_backward_data(
                    handle,
                    alpha,
                    self.w.0,
                    b,
                    self.y.0,
                    a,
                    self.conv.0,
                    al,
                    ws,
                    workspace_bytes,
                    beta,
                    self.x.0,
                    out,
                ),
                // (x, dy) -> dw
                Algo::Filter(al) => cudnn::convolution_backward_filter(
                    handle,
                    alpha,
                    self.x.0,
                    a,
                    self.y.0,
                    b,
                    self.conv.0,
                    al,
                    ws,
                    workspace_bytes,
                    beta,
                    self.w.0,
                    out,
                ),
            }
        }
        .map_err(|e| cudnn_error(&format!("{algo}"), e))
    }
}
