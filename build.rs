//! Compiles every `kernels/*.cu` with nvcc into a fatbin and embeds it, with the ptxas
//! report of each kernel (`src/kernels.rs` serves both).
//!
//! Each fatbin holds sm_90 machine code (the H100 and H200 load it as it is: no JIT, and
//! the registers are the ones ptxas reported) and compute_90 PTX, which the driver
//! compiles for GPUs newer than Hopper. GPUs older than compute capability 9.0 take the
//! NVRTC path (`src/nvrtc.rs`), as does every GPU when the build had no nvcc.
//!
//! nvcc is looked up in `NVCC`, then `$CUDA_HOME/bin`, `$CUDA_PATH/bin`, then `PATH`.
//! Kernels compile with warnings as errors; a kernel that does not compile fails the
//! build. With no nvcc the build prints one cargo warning and embeds only the flattened
//! sources (a CPU-only build never fails for lack of CUDA), unless `SPARTA_REQUIRE_NVCC=1`
//! (CI) makes that an error. Builds with nvcc set the cfg `sparta_fatbin`, which the
//! ptxas-report tests need, and with the nvcc that scripts/nvcc-env.sh pins also
//! `sparta_pinned_nvcc`: the report in docs/gpu.md is that nvcc's.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The machine code embedded, and the virtual architecture of the PTX beside it.
const SASS_ARCH: &str = "sm_90";
const PTX_ARCH: &str = "compute_90";
/// The nvcc scripts/nvcc-env.sh installs (`nvcc --version`'s release).
const PINNED_NVCC: &str = "V13.0.88";

/// One kernel's line of the ptxas report.
#[derive(Default)]
struct Resources {
    kernel: String,
    registers: u32,
    barriers: u32,
    shared_bytes: u32,
    stack_frame_bytes: u32,
    spill_store_bytes: u32,
    spill_load_bytes: u32,
    local_bytes: u32,
}

fn main() {
    println!("cargo:rerun-if-changed=kernels");
    for var in ["NVCC", "CUDA_HOME", "CUDA_PATH", "SPARTA_REQUIRE_NVCC"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo::rustc-check-cfg=cfg(sparta_fatbin, sparta_pinned_nvcc)");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let kernels_dir = Path::new("kernels");
    let mut sources: Vec<PathBuf> = fs::read_dir(kernels_dir)
        .expect("kernels/ folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    sources.sort();

    let nvcc = find_nvcc();
    let nvcc_version = nvcc.as_deref().map(nvcc_release);
    match &nvcc {
        Some(_) => println!("cargo::rustc-cfg=sparta_fatbin"),
        None if env::var("SPARTA_REQUIRE_NVCC").is_ok_and(|v| v == "1") => {
            panic!(
                "SPARTA_REQUIRE_NVCC=1 but nvcc was not found (NVCC, CUDA_HOME, CUDA_PATH, PATH)"
            )
        }
        None => println!(
            "cargo:warning=nvcc not found (NVCC, CUDA_HOME, CUDA_PATH, PATH): kernels will be \
             compiled with NVRTC at first GPU use"
        ),
    }

    if nvcc_version.as_deref() == Some(PINNED_NVCC) {
        println!("cargo::rustc-cfg=sparta_pinned_nvcc");
    }

    for src in &sources {
        let stem = stem(src);
        fs::write(
            out.join(format!("{stem}.flat.cu")),
            flatten(src, kernels_dir),
        )
        .expect("write flattened kernel");
    }
    // Each module is one nvcc run; they are independent, so run them on every core.
    let reports: Mutex<Vec<(String, Vec<Resources>)>> = Mutex::new(Vec::new());
    if let Some(nvcc) = &nvcc {
        let next = Mutex::new(sources.iter());
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let Some(src) = next.lock().unwrap().next() else {
                        break;
                    };
                    let fatbin = out.join(format!("{}.fatbin", stem(src)));
                    let report = compile_fatbin(nvcc, src, &fatbin);
                    reports.lock().unwrap().push((stem(src), report));
                });
            }
        });
    }
    let mut reports = reports.into_inner().unwrap();
    reports.sort_by(|a, b| a.0.cmp(&b.0));

    let mut registry = String::from("pub(crate) const KERNELS: &[KernelSource] = &[\n");
    for src in &sources {
        let stem = stem(src);
        let flat = out.join(format!("{stem}.flat.cu"));
        let fatbin = match &nvcc {
            Some(_) => format!(
                "Some(include_bytes!({:?}))",
                out.join(format!("{stem}.fatbin")).display().to_string()
            ),
            None => "None".to_string(),
        };
        writeln!(
            registry,
            "    KernelSource {{ module: {stem:?}, source: include_str!({:?}), fatbin: {fatbin} }},",
            flat.display().to_string()
        )
        .unwrap();
    }
    registry.push_str("];\n\n");
    writeln!(
        registry,
        "pub(crate) const SASS_ARCH: &str = {SASS_ARCH:?};"
    )
    .unwrap();
    writeln!(registry, "pub(crate) const PTX_ARCH: &str = {PTX_ARCH:?};").unwrap();
    writeln!(
        registry,
        "pub(crate) const NVCC_RELEASE: Option<&str> = {nvcc_version:?};"
    )
    .unwrap();
    registry.push_str("pub(crate) const PTXAS_REPORT: &[KernelResources] = &[\n");
    for (module, kernels) in &reports {
        for r in kernels {
            writeln!(
                registry,
                "    KernelResources {{ module: {module:?}, kernel: {:?}, registers: {}, \
                 barriers: {}, shared_bytes: {}, stack_frame_bytes: {}, spill_store_bytes: {}, \
                 spill_load_bytes: {}, local_bytes: {} }},",
                r.kernel,
                r.registers,
                r.barriers,
                r.shared_bytes,
                r.stack_frame_bytes,
                r.spill_store_bytes,
                r.spill_load_bytes,
                r.local_bytes
            )
            .unwrap();
        }
    }
    registry.push_str("];\n");
    fs::write(out.join("kernels.rs"), registry).unwrap();
}

fn stem(src: &Path) -> String {
    src.file_stem().unwrap().to_str().unwrap().to_string()
}

fn find_nvcc() -> Option<PathBuf> {
    if let Ok(p) = env::var("NVCC") {
        return Some(PathBuf::from(p));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Ok(home) = env::var(var) {
            let p = Path::new(&home).join("bin").join("nvcc");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    env::var_os("PATH").and_then(|paths| {
        env::split_paths(&paths)
            .map(|d| d.join("nvcc"))
            .find(|p| p.is_file())
    })
}

/// The `V13.0.88` of `nvcc --version`'s "Cuda compilation tools, release 13.0, V13.0.88".
fn nvcc_release(nvcc: &Path) -> String {
    let output = Command::new(nvcc)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("running {} --version: {e}", nvcc.display()));
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Cuda compilation tools, "))
        .and_then(|l| l.split(", ").nth(1))
        .unwrap_or_else(|| panic!("{} --version: no release line in\n{text}", nvcc.display()))
        .to_string()
}

/// Inlines `#include "x.cuh"` lines (kernels/ headers) so NVRTC sees one self-contained
/// source with no include path of ours.
fn flatten(path: &Path, dir: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("#include \"") {
            let name = rest.trim_end_matches('"');
            let header = dir.join(name);
            if header.is_file() {
                out.push_str(&flatten(&header, dir));
            } else {
                // e.g. common.cuh's harness-only `cuda_emu.h`, under an #ifdef NVRTC
                // never takes: left as it is.
                out.push_str(line);
                out.push('\n');
            }
        } else if t != "#pragma once" {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Compiles `src` into `fatbin` (sm_90 machine code + compute_90 PTX) and returns the
/// ptxas report of its kernels.
fn compile_fatbin(nvcc: &Path, src: &Path, fatbin: &Path) -> Vec<Resources> {
    let output = Command::new(nvcc)
        .args(["-fatbin", "-O3", "-std=c++17", "--Werror", "all-warnings"])
        .args(["-Xptxas", "-v"])
        .arg(format!("-gencode=arch={PTX_ARCH},code={SASS_ARCH}"))
        .arg(format!("-gencode=arch={PTX_ARCH},code={PTX_ARCH}"))
        .arg("-Ikernels")
        .arg(src)
        .arg("-o")
        .arg(fatbin)
        .output()
        .unwrap_or_else(|e| panic!("running {} on {}: {e}", nvcc.display(), src.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        panic!("nvcc failed on {}:\n{text}", src.display());
    }
    parse_ptxas(&text, src)
}

/// The numbers of `ptxas -v`'s lines for each entry function:
///
/// ```text
/// ptxas info    : Compiling entry function 'relu_forward_f32' for 'sm_90'
/// ptxas info    : Function properties for relu_forward_f32
///     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
/// ptxas info    : Used 16 registers, used 0 barriers, 1024 bytes smem
/// ```
///
/// Every entry function must have its properties and `Used` lines; a report in another
/// form fails the build rather than reading as zero spills.
fn parse_ptxas(text: &str, src: &Path) -> Vec<Resources> {
    let mut kernels: Vec<Resources> = Vec::new();
    let mut seen_properties: Vec<String> = Vec::new();
    let mut seen_used: Vec<String> = Vec::new();
    let mut properties_of: Option<String> = None;
    for line in text.lines() {
        let info = line.trim_start_matches("ptxas info    :").trim();
        if let Some(rest) = info.strip_prefix("Compiling entry function '") {
            let name = rest.split('\'').next().unwrap_or_default().to_string();
            kernels.push(Resources {
                kernel: name,
                ..Resources::default()
            });
        } else if let Some(name) = info.strip_prefix("Function properties for ") {
            properties_of = Some(name.trim().to_string());
        } else if info.contains("stack frame") {
            let name = properties_of.take().unwrap_or_default();
            if let Some(k) = kernels.iter_mut().find(|k| k.kernel == name) {
                for (n, what) in numbers(info) {
                    match what.as_str() {
                        "bytes stack frame" => k.stack_frame_bytes = n,
                        "bytes spill stores" => k.spill_store_bytes = n,
                        "bytes spill loads" => k.spill_load_bytes = n,
                        _ => {}
                    }
                }
                seen_properties.push(name);
            }
        } else if let Some(rest) = info.strip_prefix("Used ") {
            let k = kernels
                .last_mut()
                .unwrap_or_else(|| panic!("{}: ptxas 'Used' line before any entry", src.display()));
            for (n, what) in numbers(rest) {
                match what.as_str() {
                    "registers" => k.registers = n,
                    "barriers" => k.barriers = n,
                    "bytes smem" => k.shared_bytes = n,
                    "bytes lmem" => k.local_bytes = n,
                    _ => {}
                }
            }
            seen_used.push(k.kernel.clone());
        }
    }
    if kernels.is_empty() {
        panic!("{}: no kernel in the ptxas report:\n{text}", src.display());
    }
    for k in &kernels {
        if !seen_properties.contains(&k.kernel) || !seen_used.contains(&k.kernel) {
            panic!(
                "{}: ptxas report of {} not understood:\n{text}",
                src.display(),
                k.kernel
            );
        }
    }
    kernels.sort_by(|a, b| a.kernel.cmp(&b.kernel));
    kernels
}

/// `"72 registers, used 1 barriers, 1024 bytes smem"` → `[(72, "registers"), (1,
/// "barriers"), (1024, "bytes smem")]`.
fn numbers(text: &str) -> Vec<(u32, String)> {
    text.split(',')
        .filter_map(|part| {
            let words: Vec<&str> = part.split_whitespace().filter(|w| *w != "used").collect();
            let (first, rest) = words.split_first()?;
            Some((first.parse().ok()?, rest.join(" ")))
        })
        .collect()
}
