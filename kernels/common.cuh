// Shared by every kernel: dtype conversions, the global-pointer type and launch helpers.
//
// The same kernel sources are compiled three ways:
//   - by nvcc to PTX (build.rs), the real thing;
//   - by NVRTC at first GPU use when the build had no nvcc (this file is inlined then);
//   - by the host C++ compiler inside the CPU kernel harness (harness/), with
//     SPARTA_HOST_HARNESS defined and harness/include/cuda_emu.h standing in for CUDA.
// To let the harness bounds-check and count every global access, kernels take global
// buffers as GLOBAL(T) and index them (`x[i]`, `x + off`); never cast them to other
// pointer types directly: use the load/store helpers below for vector access.
#pragma once

#ifdef SPARTA_HOST_HARNESS
#include "cuda_emu.h"
#include <limits>
#define GLOBAL(T) ::emu::GlobalPtr<T>
#else
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#define GLOBAL(T) T* __restrict__
#endif

// f16 / bf16 storage, f32 arithmetic: every kernel converts on load and on store.
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

// Infinity and a quiet NaN. Not INFINITY and NAN: NVRTC has no <math.h> to define them.
#ifdef SPARTA_HOST_HARNESS
__device__ __forceinline__ float inf_f32() { return std::numeric_limits<float>::infinity(); }
__device__ __forceinline__ float nan_f32() { return std::numeric_limits<float>::quiet_NaN(); }
#else
__device__ __forceinline__ float inf_f32() { return __int_as_float(0x7f800000); }
__device__ __forceinline__ float nan_f32() { return __int_as_float(0x7fffffff); }
#endif

// expf, not __expf: the f32 kernels must stay within 1e-5 of the f64 reference for large |a|.
__device__ __forceinline__ float sigmoid_f32(float a) { return 1.0f / (1.0f + expf(-a)); }

// Full-warp sum; every lane gets the total.
__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}
