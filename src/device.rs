//! Where ops run: the CPU (always) or a CUDA GPU (when libcuda and a device exist).
//!
//! A [`Gpu`] loads each kernel module once, on first use: nvcc's fatbin when the build
//! had nvcc and the GPU's compute capability is at least the fatbins' (9.0: the H100 and
//! H200 run its sm_90 machine code, newer GPUs JIT its compute_90 PTX), else the PTX
//! NVRTC compiles from the embedded source ([`crate::nvrtc`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;

use crate::error::{Error, Result};
use crate::kernels;
use crate::ops::conv2d::cudnn::CudnnConv;

/// A device to run ops on.
#[derive(Clone, Debug)]
pub enum Device {
    /// The host CPU (rayon over all cores).
    Cpu,
    /// A CUDA GPU.
    Cuda(Arc<Gpu>),
}

impl Device {
    /// CUDA device 0 when libcuda loads and a device exists, else the CPU, with a
    /// one-line notice on stderr saying why. Never panics.
    pub fn detect() -> Device {
        match Gpu::new(0) {
            Ok(gpu) => Device::Cuda(gpu),
            Err(e) => {
                eprintln!("sparta: using the CPU ({e})");
                Device::Cpu
            }
        }
    }

    /// Parses `auto`, `cpu`, `cuda` or `cuda:N`.
    pub fn from_name(name: &str) -> Result<Device> {
        match name {
            "auto" => Ok(Device::detect()),
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(Gpu::new(0)?)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Device::Cuda(Gpu::new(n)?)),
                _ => Err(Error::Config(format!(
                    "unknown device {other:?}: expected auto, cpu, cuda or cuda:N"
                ))),
            },
        }
    }

    /// The GPU, if this is one.
    pub fn gpu(&self) -> Option<&Arc<Gpu>> {
        match self {
            Device::Cpu => None,
            Device::Cuda(g) => Some(g),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(g) => write!(f, "cuda:{} ({})", g.ordinal, g.name),
        }
    }
}

/// A CUDA context, its default stream and the kernel modules loaded into it.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    ordinal: usize,
    name: String,
    compute_capability: (i32, i32),
    cudnn: CudnnConv,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("ordinal", &self.ordinal)
            .field("name", &self.name)
            .field("compute_capability", &self.compute_capability)
            .finish()
    }
}

impl Gpu {
    /// Opens CUDA device `ordinal`. Errors (never panics) when libcuda is missing or
    /// there is no such device.
    pub fn new(ordinal: usize) -> Result<Arc<Gpu>> {
        // SAFETY: only probes whether the shared library can be opened.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(Error::Cuda("libcuda not found".into()));
        }
        let count = CudaContext::device_count()?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Cuda(format!(
                "no CUDA device {ordinal} ({count} present)"
            )));
        }
        let ctx = CudaContext::new(ordinal)?;
        let stream = ctx.default_stream();
        Ok(Arc::new(Gpu {
            name: ctx.name()?,
            compute_capability: ctx.compute_capability()?,
            ctx,
            stream,
            modules: Mutex::new(HashMap::new()),
            ordinal,
            cudnn: CudnnConv::new(),
        }))
    }

    /// The CUDA context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream every op of this crate launches on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The cuDNN convolutions (opened on first use).
    pub(crate) fn cudnn(&self) -> &CudnnConv {
        &self.cudnn
    }

    /// cuDNN's convolution algorithms chosen so far, one line per geometry and pass
    /// (`[n, c_in, h, w, c_out, k, stride, pad] Forward: …`), with the candidates passed
    /// over and why. Empty before the first convolution or without cuDNN.
    pub fn cudnn_report(&self) -> Vec<String> {
        self.cudnn.report()
    }

    /// The device name the driver reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `(major, minor)`.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    /// Kernel `function` of `kernels/<module>.cu`, loading the module on first use.
    pub fn function(&self, module: &'static str, function: &str) -> Result<CudaFunction> {
        let module_handle = self.module(module)?;
        module_handle
            .load_function(function)
            .map_err(|e| Error::Cuda(format!("{module}.cu: kernel {function}: {e}")))
    }

    /// Where this GPU's kernel modules come from.
    pub fn kernel_origin(&self) -> KernelOrigin {
        if kernels::has_fatbins() && self.compute_capability >= kernels::fatbin_min_capability() {
            KernelOrigin::Fatbin
        } else {
            KernelOrigin::Nvrtc
        }
    }

    /// Kernel module `kernels/<module>.cu`, loaded on first use.
    pub fn module(&self, module: &'static str) -> Result<Arc<CudaModule>> {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = modules.get(module) {
            return Ok(m.clone());
        }
        let source = kernels::source(module)
            .ok_or_else(|| Error::Cuda(format!("no kernel module {module}.cu embedded")))?;
        let image = match (self.kernel_origin(), source.fatbin) {
            // cuModuleLoadData reads the fatbin from this copy; the system allocator
            // aligns it to 16 bytes.
            (KernelOrigin::Fatbin, Some(fatbin)) => Ptx::from_binary(fatbin.to_vec()),
            _ => Ptx::from_src(crate::nvrtc::compile(module, self.compute_capability)?),
        };
        let loaded = self
            .ctx
            .load_module(image)
            .map_err(|e| Error::Cuda(format!("loading {module}.cu: {e}")))?;
        modules.insert(module, loaded.clone());
        Ok(loaded)
    }
}

/// Where a [`Gpu`]'s kernel modules come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelOrigin {
    /// The embedded fatbins (sm_90 machine code, compute_90 PTX).
    Fatbin,
    /// PTX compiled at first use by NVRTC from the embedded sources.
    Nvrtc,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse() {
        assert!(matches!(Device::from_name("cpu"), Ok(Device::Cpu)));
        assert!(Device::from_name("tpu").is_err());
        // `auto` never fails: it falls back to the CPU.
        Device::from_name("auto").unwrap();
    }
}
