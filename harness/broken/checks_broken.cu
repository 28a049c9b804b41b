// Deliberately broken copies of the harness's own check kernels (test_kernels/checks.cu):
// harness/tests/emulator.rs expects each to fail. Never launched outside those tests.
#include "common.cuh"

// check_block_sum_f32 without the barrier inside the tree loop.
extern "C" __global__ void broken_block_sum_no_sync_f32(GLOBAL(const float) x, GLOBAL(float) out, int n) {
    __shared__ float partial[256];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    partial[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    }
    if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

// check_block_sum_f32 with the barrier inside a branch only some threads take.
extern "C" __global__ void broken_block_sum_divergent_sync_f32(GLOBAL(const float) x, GLOBAL(float) out, int n) {
    __shared__ float partial[256];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    partial[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) {
            partial[threadIdx.x] += partial[threadIdx.x + stride];
            __syncthreads();
        }
    }
    if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

// check_warp_sum_f32 with the xor offsets starting at 8: lanes sum only 16-lane groups.
extern "C" __global__ void broken_warp_sum_offset_f32(GLOBAL(const float) x, GLOBAL(float) out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = x[i];
    for (int offset = 8; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if ((threadIdx.x & 31) == 0) out[i / 32] = v;
}

// check_gather_f32 without its bounds check.
extern "C" __global__ void broken_gather_no_guard_f32(GLOBAL(const float) x, GLOBAL(float) y, float a, int n,
                                                      int stride) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    y[i] = a * x[(long long)i * stride];
}

// check_reverse_block_f32 indexing its tile one past the end.
extern "C" __global__ void broken_reverse_block_overflow_f32(GLOBAL(const float) x, GLOBAL(float) y, int n) {
    extern __shared__ float tile[];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    tile[threadIdx.x + 1] = i < n ? x[i] : 0.0f;
    __syncthreads();
    const int j = blockIdx.x * blockDim.x + (blockDim.x - 1 - threadIdx.x);
    if (j < n) y[j] = tile[threadIdx.x + 1];
}
