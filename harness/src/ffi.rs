//! The C interface of the harness runtime (mirrors `csrc/emu_abi.h`).

use std::ffi::{c_char, c_int};

pub(crate) const ARG_BUFFER: u32 = 0;
pub(crate) const ARG_SCALAR: u32 = 1;

#[repr(C)]
pub(crate) struct EmuArg {
    pub kind: u32,
    pub reserved: u32,
    pub bits: u64,
}

#[repr(C)]
pub(crate) struct EmuBufferDesc {
    pub data: *mut u8,
    pub len: u64,
    pub elem_bytes: u32,
    pub reserved: u32,
    pub name: *const c_char,
    pub written: *mut u8,
    pub origin_bytes: u64,
    pub load_sectors: u64,
    pub store_sectors: u64,
    pub atomic_sectors: u64,
    pub loads: u64,
    pub stores: u64,
    pub atomics: u64,
}

#[repr(C)]
pub(crate) struct EmuLaunchCfg {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared_bytes: u32,
    pub schedule: u32,
    pub seed: u64,
}

pub(crate) type EmuTrampoline = Option<unsafe extern "C" fn(*const EmuArg, *const u8)>;

#[repr(C)]
pub(crate) struct EmuKernel {
    pub dir: *const c_char,
    pub module: *const c_char,
    pub name: *const c_char,
    pub params: *const c_char,
    pub trampoline: EmuTrampoline,
}

pub(crate) const ERR_OUT_OF_BOUNDS: c_int = 1;
pub(crate) const ERR_BARRIER: c_int = 2;
pub(crate) const ERR_WARP: c_int = 3;
pub(crate) const ERR_DEADLOCK: c_int = 4;
pub(crate) const ERR_SHARED_BOUNDS: c_int = 5;

extern "C" {
    pub(crate) fn emu_launch(
        trampoline: unsafe extern "C" fn(*const EmuArg, *const u8),
        cfg: *const EmuLaunchCfg,
        args: *const EmuArg,
        bufs: *mut EmuBufferDesc,
        nbufs: u32,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
    pub(crate) fn emu_kernel_count() -> usize;
    pub(crate) fn emu_kernel_at(i: usize) -> *const EmuKernel;
}
