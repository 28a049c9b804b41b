// The C interface between the harness runtime, the generated kernel trampolines and the
// Rust side (harness/src/ffi.rs mirrors these structs).
#pragma once

#include "cuda_emu.h"

extern "C" {

enum EmuArgKind : uint32_t { EMU_ARG_BUFFER = 0, EMU_ARG_SCALAR = 1 };

// One kernel argument: a buffer index, or a scalar's bytes (little-endian, low bytes).
struct EmuArg {
    uint32_t kind;
    uint32_t reserved;
    uint64_t bits;
};

// One global buffer of a launch; the counters are filled by the launch.
struct EmuBufferDesc {
    unsigned char* data;
    uint64_t len;
    uint32_t elem_bytes;
    uint32_t reserved;
    const char* name;
    unsigned char* written;  // one flag per element, set by stores and atomics
    // Byte offset of `data` in its allocation (a view at an offset): sectors are counted
    // at the allocation's 32-byte alignment, as the hardware counts them.
    uint64_t origin_bytes;
    uint64_t load_sectors, store_sectors, atomic_sectors;
    uint64_t loads, stores, atomics;
};

enum EmuSchedule : uint32_t { EMU_SCHEDULE_FORWARD = 0, EMU_SCHEDULE_REVERSE = 1, EMU_SCHEDULE_SHUFFLED = 2 };

struct EmuLaunchCfg {
    uint32_t grid[3];
    uint32_t block[3];
    uint32_t shared_bytes;
    uint32_t schedule;
    uint64_t seed;
};

enum EmuError : int {
    EMU_OK = 0,
    EMU_ERR_OUT_OF_BOUNDS = 1,
    EMU_ERR_BARRIER = 2,
    EMU_ERR_WARP = 3,
    EMU_ERR_DEADLOCK = 4,
    EMU_ERR_SHARED_BOUNDS = 5,
    EMU_ERR_USAGE = 6,
};

typedef void (*EmuTrampoline)(const EmuArg* args, const ::emu::Buffer* buffers);

// One extern "C" __global__ kernel found in a source file.
struct EmuKernel {
    const char* dir;  // "kernels", "test_kernels" or "broken"
    const char* module;
    const char* name;
    const char* params;  // "name:kind;..." with kind like `const f32*`, `f32*`, `i32`
    EmuTrampoline trampoline;
};

int emu_launch(EmuTrampoline trampoline, const EmuLaunchCfg* cfg, const EmuArg* args, EmuBufferDesc* bufs,
               uint32_t nbufs, char* error, size_t error_len);
size_t emu_kernel_count(void);
const EmuKernel* emu_kernel_at(size_t i);
}

namespace emu {
template <typename T> inline T scalar(const EmuArg& a) {
    T v;
    std::memcpy(static_cast<void*>(&v), &a.bits, sizeof(T));
    return v;
}
}  // namespace emu
