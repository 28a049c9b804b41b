//! The first look at a GPU machine (phase a of scripts/gpu-check.sh), in a few seconds:
//! the device and driver, how the kernel modules load (fatbin or NVRTC) and whether the
//! registers and local memory the driver reports for each kernel are ptxas' (a
//! difference means the driver compiled PTX instead of loading the sm_90 code), one
//! launch of every module (`sparta::smoke`), an NVRTC compile loaded by the driver,
//! cuDNN's version and its algorithm for one convolution, and which libcuda, libnvrtc,
//! libcudnn and libcublas the process actually mapped (`/proc/self/maps`).
//!
//!     cargo run --release --example gpu_probe > probe.json
//!
//! Prints one JSON object on stdout and a line per finding on stderr. Exit status 0
//! when everything it tried worked, 1 when something failed (the JSON says what), 2
//! when there is no GPU (the JSON says why).

use std::time::Instant;

use serde_json::{json, Value};
use sparta::device::KernelOrigin;
use sparta::loaded_libraries::loaded_libraries;
use sparta::ops::conv2d::{cuda as conv2d_cuda, ConvGeom, ConvPass};
use sparta::{kernels, smoke, Gpu, KernelDevice};

/// The mapped CUDA libraries the check asks about.
fn cuda_libraries() -> Value {
    let wanted = ["libcuda.", "libnvrtc", "libcudnn", "libcublas", "libcudart"];
    let found: Vec<String> = loaded_libraries()
        .into_iter()
        .map(|p| p.display().to_string())
        .filter(|p| {
            let name = p.rsplit('/').next().unwrap_or(p);
            wanted.iter().any(|w| name.starts_with(w))
        })
        .collect();
    json!(found)
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

fn driver_version() -> Option<i32> {
    let mut v = 0;
    // SAFETY: libcuda is loaded (a Gpu exists); the pointer is a live i32.
    let status = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) };
    (status == cudarc::driver::sys::cudaError_enum::CUDA_SUCCESS).then_some(v)
}

/// Loads every module and compares each kernel's driver attributes with ptxas' report.
fn modules(gpu: &Gpu, problems: &mut Vec<String>) -> Value {
    let mut out = Vec::new();
    for module in kernels::modules() {
        let start = Instant::now();
        let loaded = gpu.module(module);
        let load_ms = ms(start);
        let mut kernels_json = Vec::new();
        match loaded {
            Err(e) => problems.push(format!("module {module}: {e}")),
            Ok(_) => {
                for k in kernels::ptxas_report()
                    .iter()
                    .filter(|k| k.module == module)
                {
                    let f = match gpu.function(module, k.kernel) {
                        Ok(f) => f,
                        Err(e) => {
                            problems.push(format!("{e}"));
                            continue;
                        }
                    };
                    let registers = f.num_regs().ok();
                    let local = f.local_size_bytes().ok();
                    let binary = f.binary_version().ok();
                    let matches = registers == Some(k.registers as i32)
                        && local == Some(k.stack_frame_bytes as i32);
                    if !matches {
                        problems.push(format!(
                            "{}: driver reports {registers:?} registers, {local:?} B local, \
                             ptxas {} and {} (binary version {binary:?})",
                            k.kernel, k.registers, k.stack_frame_bytes
                        ));
                    }
                    kernels_json.push(json!({
                        "kernel": k.kernel,
                        "registers": registers,
                        "ptxas_registers": k.registers,
                        "local_bytes": local,
                        "binary_version": binary,
                        "ptx_version": f.ptx_version().ok(),
                        "matches_ptxas": matches,
                    }));
                }
            }
        }
        out.push(json!({"module": module, "load_ms": load_ms, "kernels": kernels_json}));
    }
    json!(out)
}

/// One launch of every module (`sparta::smoke`).
fn launches(gpu: &std::sync::Arc<Gpu>, problems: &mut Vec<String>) -> Value {
    let mut out = Vec::new();
    for launch in smoke::module_launches() {
        let start = Instant::now();
        let result = launch.run(gpu);
        if let Err(e) = &result {
            problems.push(format!("launch {}: {e}", launch.module));
        }
        out.push(json!({
            "module": launch.module,
            "what": launch.what,
            "ok": result.is_ok(),
            "error": result.err().map(|e| e.to_string()),
            "ms": ms(start),
        }));
    }
    json!(out)
}

/// NVRTC compiles one module for this GPU and the driver loads the PTX.
fn nvrtc(gpu: &Gpu, problems: &mut Vec<String>) -> Value {
    let start = Instant::now();
    let outcome = sparta::nvrtc::library().and_then(|library| {
        let options = sparta::nvrtc::options(gpu.compute_capability())?;
        let ptx = sparta::nvrtc::compile("gate", gpu.compute_capability())?;
        gpu.context()
            .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
            .map_err(|e| sparta::Error::Cuda(format!("loading NVRTC's gate PTX: {e}")))?;
        Ok(json!({"library": library, "options": options}))
    });
    match outcome {
        Ok(mut v) => {
            v["ok"] = json!(true);
            v["ms"] = json!(ms(start));
            v
        }
        Err(e) => {
            problems.push(format!("NVRTC: {e}"));
            json!({"ok": false, "error": e.to_string()})
        }
    }
}

/// cuDNN's version and the algorithm chosen for one forward convolution.
fn cudnn(gpu: &std::sync::Arc<Gpu>, problems: &mut Vec<String>) -> Value {
    // SAFETY: only probes whether the shared library can be opened.
    if !unsafe { cudarc::cudnn::sys::is_culib_present() } {
        return json!({"found": false});
    }
    let version = cudarc::cudnn::result::get_version();
    let g = ConvGeom {
        n: 8,
        c_in: 64,
        h: 32,
        w: 32,
        c_out: 64,
        k: 3,
        stride: 1,
        pad: 1,
    };
    let (x_len, w_len, y_len) = g.lens();
    let run = || -> sparta::Result<()> {
        let x = gpu.upload("x", &vec![0.5f32; x_len])?;
        let w = gpu.upload("w", &vec![0.25f32; w_len])?;
        let mut y = gpu.alloc_zeros::<f32>("y", y_len)?;
        conv2d_cuda::conv2d(
            gpu,
            ConvPass::Forward,
            &g,
            &gpu.view(&x),
            &gpu.view(&w),
            &mut gpu.view_mut(&mut y),
        )?;
        gpu.download(&gpu.view(&y)).map(drop)
    };
    let result = run();
    if let Err(e) = &result {
        problems.push(format!("cuDNN convolution: {e}"));
    }
    json!({
        "found": true,
        "version": version,
        "ok": result.is_ok(),
        "error": result.err().map(|e| e.to_string()),
        "choices": gpu.cudnn_report(),
    })
}

fn main() -> std::process::ExitCode {
    let start = Instant::now();
    let gpu = match Gpu::new(0) {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!("gpu_probe: no GPU ({e})");
            let report = json!({
                "gpu": null,
                "why": e.to_string(),
                "libraries": cuda_libraries(),
                "fatbins": kernels::has_fatbins(),
                "nvcc": kernels::nvcc_release(),
            });
            println!("{report}");
            return std::process::ExitCode::from(2);
        }
    };
    let ctx = gpu.context();
    let attribute = |a| ctx.attribute(a).ok();
    use cudarc::driver::sys::CUdevice_attribute as A;
    let mut problems = Vec::new();
    let modules = modules(&gpu, &mut problems);
    let launches = launches(&gpu, &mut problems);
    let nvrtc = nvrtc(&gpu, &mut problems);
    let cudnn = cudnn(&gpu, &mut problems);
    let report = json!({
        "gpu": gpu.name(),
        "compute_capability": gpu.compute_capability(),
        "multiprocessors": attribute(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
        "l2_bytes": attribute(A::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE),
        "memory_bytes": ctx.total_mem().ok(),
        "driver_cuda_version": driver_version(),
        "kernel_origin": match gpu.kernel_origin() {
            KernelOrigin::Fatbin => "fatbin",
            KernelOrigin::Nvrtc => "nvrtc",
        },
        "fatbin_targets": kernels::fatbin_targets(),
        "nvcc": kernels::nvcc_release(),
        "modules": modules,
        "launches": launches,
        "nvrtc": nvrtc,
        "cudnn": cudnn,
        "libraries": cuda_libraries(),
        "ld_library_path": std::env::var("LD_LIBRARY_PATH").ok(),
        "problems": problems,
        "seconds": start.elapsed().as_secs_f64(),
    });
    for p in &problems {
        eprintln!("gpu_probe: {p}");
    }
    println!("{report}");
    if problems.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
