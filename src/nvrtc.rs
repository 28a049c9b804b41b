//! The NVRTC path: compiling an embedded kernel module to PTX at run time. A [`Gpu`]
//! takes it for every module when the build had no nvcc, and on GPUs older than the
//! fatbins' compute capability 9.0 (`src/kernels.rs`).
//!
//! NVRTC carries no CUDA headers, and the kernels include `cuda_fp16.h` and
//! `cuda_bf16.h`, which since CUDA 13 include CCCL headers in turn. So the compile needs
//! a CUDA include folder and its `cccl` subfolder. Of these folders, the first that holds
//! `cuda_fp16.h` and CCCL's `nv/target` (in it or in its `cccl/`) is used, else the first
//! that holds `cuda_fp16.h` (NVRTC's error then names the header it misses):
//!
//! 1. `$SPARTA_CUDA_INCLUDE`;
//! 2. the `include` folder beside the `lib` folder of the libnvrtc this process loaded
//!    (the PyPI wheels' `nvidia/cu13/{lib,include}`, a toolkit's
//!    `targets/x86_64-linux/{lib,include}`), so headers and compiler match;
//! 3. `$CUDA_HOME/include`, `$CUDA_PATH/include`, `/usr/local/cuda/include`.
//!
//! [`Gpu`]: crate::Gpu

use std::path::{Path, PathBuf};

use cudarc::nvrtc::{CompileError, CompileOptions};

use crate::error::{Error, Result};
use crate::kernels;
use crate::loaded_libraries::find_loaded;

/// The header whose folder is the CUDA include folder.
const MARKER_HEADER: &str = "cuda_fp16.h";

/// Loads libnvrtc (once per process) or says why it cannot.
fn load_nvrtc() -> Result<()> {
    // SAFETY: only probes whether the shared library can be opened.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(Error::Cuda(
            "libnvrtc not found: no libnvrtc.so or libnvrtc.so.13 on the library path \
             (LD_LIBRARY_PATH, ldconfig)"
                .into(),
        ));
    }
    // SAFETY: the library was just found; this loads and keeps it.
    unsafe { cudarc::nvrtc::sys::culib() };
    Ok(())
}

/// The loaded libnvrtc's path (from `/proc/self/maps`), once NVRTC is loaded.
pub fn library() -> Result<Option<PathBuf>> {
    load_nvrtc()?;
    Ok(find_loaded("libnvrtc"))
}

/// The folders tried for the CUDA headers, in order (see the module docs).
fn include_candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("SPARTA_CUDA_INCLUDE") {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(lib) = find_loaded("libnvrtc") {
        if let Some(root) = lib.parent().and_then(Path::parent) {
            dirs.push(root.join("include"));
        }
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(home) = std::env::var_os(var) {
            dirs.push(Path::new(&home).join("include"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/include"));
    dirs
}

/// The include folders NVRTC is given: the CUDA include folder and, where it exists,
/// its `cccl` subfolder. An error lists every folder tried.
pub fn include_dirs() -> Result<Vec<PathBuf>> {
    load_nvrtc()?;
    let candidates = include_candidates();
    let has_cccl = |d: &&PathBuf| {
        d.join("nv").join("target").is_file() || d.join("cccl").join("nv").join("target").is_file()
    };
    let with_header = || {
        candidates
            .iter()
            .filter(|d| d.join(MARKER_HEADER).is_file())
    };
    let Some(dir) = with_header()
        .find(has_cccl)
        .or_else(|| with_header().next())
    else {
        let tried: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
        return Err(Error::Cuda(format!(
            "NVRTC needs the CUDA headers: {MARKER_HEADER} is in none of {}; set \
             SPARTA_CUDA_INCLUDE to the folder that holds it",
            tried.join(", ")
        )));
    };
    let mut dirs = vec![dir.clone()];
    let cccl = dir.join("cccl");
    if cccl.is_dir() {
        dirs.push(cccl);
    }
    Ok(dirs)
}

/// The options NVRTC is given for compute capability `(major, minor)`: C++17, the
/// virtual architecture `compute_<major><minor>`, and the include folders.
pub fn options(compute_capability: (i32, i32)) -> Result<Vec<String>> {
    let (major, minor) = compute_capability;
    let mut options = vec![
        "-std=c++17".to_string(),
        format!("--gpu-architecture=compute_{major}{minor}"),
    ];
    for dir in include_dirs()? {
        options.push(format!("--include-path={}", dir.display()));
    }
    Ok(options)
}

/// PTX of `kernels/<module>.cu` for compute capability `(major, minor)`, compiled by
/// NVRTC from the embedded flattened source with [`options`]. Errors name the module and
/// carry NVRTC's log.
pub fn compile(module: &str, compute_capability: (i32, i32)) -> Result<String> {
    let source = kernels::source(module)
        .ok_or_else(|| Error::Cuda(format!("no kernel module {module}.cu embedded")))?;
    let options = options(compute_capability)?;
    let (major, minor) = compute_capability;
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(
        source.source,
        CompileOptions {
            options,
            name: Some(format!("{module}.cu")),
            ..Default::default()
        },
    )
    .map_err(|e| {
        let why = match e {
            CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
            other => format!("{other:?}"),
        };
        Error::Cuda(format!(
            "NVRTC on {module}.cu for compute_{major}{minor}: {}",
            why.trim_end()
        ))
    })?;
    Ok(ptx.to_src())
}
