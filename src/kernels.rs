//! The kernel modules embedded in this build (build.rs): one per `kernels/<module>.cu`,
//! each as its flattened source (for NVRTC) and, when the build had nvcc, as a fatbin of
//! sm_90 machine code and compute_90 PTX, with ptxas' report of every kernel in it.

/// One embedded kernel family (`kernels/<module>.cu`).
pub(crate) struct KernelSource {
    pub(crate) module: &'static str,
    /// The `.cu` file with its `#include "…"` headers inlined, for NVRTC.
    pub(crate) source: &'static str,
    /// nvcc's fatbin, when the build found nvcc.
    pub(crate) fatbin: Option<&'static [u8]>,
}

/// What ptxas reported for one kernel of the embedded sm_90 machine code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelResources {
    /// The module (`kernels/<module>.cu`).
    pub module: &'static str,
    /// The kernel's entry point.
    pub kernel: &'static str,
    /// Registers per thread.
    pub registers: u32,
    /// Named barriers used.
    pub barriers: u32,
    /// Static shared memory per block, in bytes.
    pub shared_bytes: u32,
    /// Per-thread stack frame in local memory, in bytes.
    pub stack_frame_bytes: u32,
    /// Bytes stored to local memory by register spills.
    pub spill_store_bytes: u32,
    /// Bytes loaded from local memory by register spills.
    pub spill_load_bytes: u32,
    /// Other local memory per thread, in bytes (`lmem` in the report).
    pub local_bytes: u32,
}

impl KernelResources {
    /// Whether the kernel touches local memory at all: a stack frame, spills or `lmem`.
    pub fn uses_local_memory(&self) -> bool {
        self.stack_frame_bytes + self.spill_store_bytes + self.spill_load_bytes + self.local_bytes
            > 0
    }
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// The embedded modules' names, sorted (`gate` for `kernels/gate.cu`).
pub fn modules() -> impl Iterator<Item = &'static str> {
    KERNELS.iter().map(|k| k.module)
}

/// The module's flattened source, as NVRTC compiles it.
pub(crate) fn source(module: &str) -> Option<&'static KernelSource> {
    KERNELS.iter().find(|k| k.module == module)
}

/// Whether this build embedded nvcc's fatbins (else every GPU compiles the modules with
/// NVRTC).
pub fn has_fatbins() -> bool {
    KERNELS.iter().all(|k| k.fatbin.is_some())
}

/// The machine code in the fatbins (`sm_90`) and the PTX's virtual architecture
/// (`compute_90`).
pub fn fatbin_targets() -> (&'static str, &'static str) {
    (SASS_ARCH, PTX_ARCH)
}

/// The lowest compute capability that loads the fatbins: the PTX's.
pub(crate) fn fatbin_min_capability() -> (i32, i32) {
    let digits = PTX_ARCH.trim_start_matches("compute_");
    let (major, minor) = digits.split_at(digits.len() - 1);
    (
        major
            .parse()
            .expect("build.rs writes compute_<major><minor>"),
        minor
            .parse()
            .expect("build.rs writes compute_<major><minor>"),
    )
}

/// The release of the nvcc that built the fatbins (`V13.0.88`), if one did.
pub fn nvcc_release() -> Option<&'static str> {
    NVCC_RELEASE
}

/// ptxas' report of every kernel, sorted by module and kernel; empty when the build had
/// no nvcc.
pub fn ptxas_report() -> &'static [KernelResources] {
    PTXAS_REPORT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                (p.extension()? == "cu").then(|| p.file_stem().unwrap().to_string_lossy().into())
            })
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = modules().map(String::from).collect();
        assert_eq!(on_disk, embedded);
        for k in KERNELS {
            assert!(
                !k.source.contains("#include \"common.cuh\""),
                "{} not flattened",
                k.module
            );
        }
    }

    #[test]
    fn the_fatbins_load_from_compute_capability_9_0() {
        assert_eq!(fatbin_min_capability(), (9, 0));
        assert_eq!(fatbin_targets(), ("sm_90", "compute_90"));
    }
}
