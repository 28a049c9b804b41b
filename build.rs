//! Compiles every `kernels/*.cu` to PTX with nvcc and embeds it (candle-kernels style).
//!
//! nvcc is looked up in `NVCC`, then `$CUDA_HOME/bin`, `$CUDA_PATH/bin`, then `PATH`.
//! Kernels compile with warnings as errors; a kernel that does not compile fails the
//! build. With no nvcc the build prints one cargo warning and embeds only the flattened
//! sources, which `sparta::device` compiles with NVRTC at first GPU use. A CPU-only build
//! never fails for lack of CUDA.
//!
//! `SPARTA_CUDA_ARCH` (default `90`, the lent H100/H200) picks the PTX target; the
//! `ptxas -v` report (registers, spills) of each kernel for that arch is shown as cargo
//! warnings whenever the kernels are rebuilt.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=kernels");
    for var in ["NVCC", "CUDA_HOME", "CUDA_PATH", "SPARTA_CUDA_ARCH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let kernels_dir = Path::new("kernels");
    let mut sources: Vec<PathBuf> = fs::read_dir(kernels_dir)
        .expect("kernels/ folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    sources.sort();

    let arch = env::var("SPARTA_CUDA_ARCH").unwrap_or_else(|_| "90".into());
    let nvcc = find_nvcc();
    if nvcc.is_none() {
        println!(
            "cargo:warning=nvcc not found (NVCC, CUDA_HOME, CUDA_PATH, PATH): kernels will be \
             compiled with NVRTC at first GPU use"
        );
    }

    let mut registry = String::from("pub(crate) const KERNELS: &[KernelSource] = &[\n");
    for src in &sources {
        let stem = src.file_stem().unwrap().to_str().unwrap().to_string();
        let flat = out.join(format!("{stem}.flat.cu"));
        fs::write(&flat, flatten(src, kernels_dir)).expect("write flattened kernel");
        let ptx_expr = match &nvcc {
            Some(nvcc) => {
                let ptx = out.join(format!("{stem}.ptx"));
                compile_ptx(nvcc, src, &ptx, &arch);
                report_resources(nvcc, src, &out, &arch);
                format!("Some(include_str!({:?}))", ptx.display().to_string())
            }
            None => "None".to_string(),
        };
        writeln!(
            registry,
            "    KernelSource {{ module: {stem:?}, source: include_str!({:?}), ptx: {ptx_expr} }},",
            flat.display().to_string()
        )
        .unwrap();
    }
    registry.push_str("];\n");
    fs::write(out.join("kernels.rs"), registry).unwrap();
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

/// Inlines `#include "x.cuh"` lines (kernels/ headers) so NVRTC sees one self-contained
/// source with no include path.
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

fn run(cmd: &mut Command, what: &str) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("running nvcc for {what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        panic!("nvcc failed on {what}:\n{text}");
    }
    text
}

fn compile_ptx(nvcc: &Path, src: &Path, ptx: &Path, arch: &str) {
    run(
        Command::new(nvcc)
            .args(["-ptx", "-O3", "-std=c++17", "--Werror", "all-warnings"])
            .arg(format!("-arch=compute_{arch}"))
            .arg("-Ikernels")
            .arg(src)
            .arg("-o")
            .arg(ptx),
        &src.display().to_string(),
    );
}

/// Shows ptxas' per-kernel registers and spills as cargo warnings.
fn report_resources(nvcc: &Path, src: &Path, out: &Path, arch: &str) {
    let cubin = out.join("resources.cubin");
    let text = run(
        Command::new(nvcc)
            .args(["-cubin", "-O3", "-std=c++17", "-Xptxas", "-v"])
            .arg(format!("-arch=sm_{arch}"))
            .arg("-Ikernels")
            .arg(src)
            .arg("-o")
            .arg(&cubin),
        &src.display().to_string(),
    );
    let mut function = String::new();
    for line in text.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            function = rest.split('\'').next().unwrap_or("").to_string();
        } else if line.contains("spill stores") || line.contains("Used ") {
            let detail = line.split("ptxas info    :").last().unwrap_or(line).trim();
            println!("cargo:warning=ptxas sm_{arch} {function}: {detail}");
        }
    }
}
