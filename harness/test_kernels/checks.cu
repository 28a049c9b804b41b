// The harness's own kernels: each exercises one CUDA feature the emulator provides, so
// harness/tests/emulator.rs can check the emulator itself against plain Rust.
#include "common.cuh"

// Shared-memory tree reduction: one partial sum per block of 256 threads (blockDim.x
// must be 256); each thread owns one element, the tail of the last block adds zeros.
extern "C" __global__ void check_block_sum_f32(GLOBAL(const float) x, GLOBAL(float) out, int n) {
    __shared__ float partial[256];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    partial[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

// One sum per warp of 32 consecutive elements with warp_sum (xor shuffles); n must be a
// multiple of 32 and the grid cover it exactly.
extern "C" __global__ void check_warp_sum_f32(GLOBAL(const float) x, GLOBAL(float) out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const float total = warp_sum(x[i]);
    if ((threadIdx.x & 31) == 0) out[i / 32] = total;
}

// Inclusive prefix sum within each warp (__shfl_up_sync); same shape rules as above.
extern "C" __global__ void check_warp_scan_f32(GLOBAL(const float) x, GLOBAL(float) out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = x[i];
    for (int d = 1; d < 32; d <<= 1) {
        const float up = __shfl_up_sync(0xffffffffu, v, d);
        if ((int)(threadIdx.x & 31) >= d) v += up;
    }
    out[i] = v;
}

// Each warp's first lane receives lane 31's value (__shfl_sync) and lane (31 - k) the
// value of lane k by __shfl_down_sync from a reversed copy; checks lane arithmetic.
extern "C" __global__ void check_shfl_f32(GLOBAL(const float) x, GLOBAL(float) bcast, GLOBAL(float) down, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const float v = x[i];
    bcast[i] = __shfl_sync(0xffffffffu, v, 31);
    down[i] = __shfl_down_sync(0xffffffffu, v, 3);
}

// Counts positive elements per warp with __ballot_sync, and flags warps where any /
// all elements are positive.
extern "C" __global__ void check_votes(GLOBAL(const float) x, GLOBAL(int) count, GLOBAL(int) any, GLOBAL(int) all,
                                       int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int positive = x[i] > 0.0f;
    const unsigned ballot = __ballot_sync(0xffffffffu, positive);
    const int a = __any_sync(0xffffffffu, positive);
    const int b = __all_sync(0xffffffffu, positive);
    if ((threadIdx.x & 31) == 0) {
        count[i / 32] = __popc(ballot);
        any[i / 32] = a;
        all[i / 32] = b;
    }
}

// Histogram of x into `bins` buckets of width 1 with global atomics (grid-stride loop).
extern "C" __global__ void check_histogram(GLOBAL(const int) x, GLOBAL(int) hist, int n, int bins) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const int b = min(max(x[i], 0), bins - 1);
        atomicAdd(&hist[b], 1);
    }
}

// Reverses each block's slice through dynamic shared memory (blockDim.x floats).
extern "C" __global__ void check_reverse_block_f32(GLOBAL(const float) x, GLOBAL(float) y, int n) {
    extern __shared__ float tile[];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    tile[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    const int j = blockIdx.x * blockDim.x + (blockDim.x - 1 - threadIdx.x);
    if (j < n) y[j] = tile[threadIdx.x];
}

// Converts f32 to f16 and bf16 with from_f32 and back; 2-D grid of 2-D blocks over an
// h x w matrix (checks threadIdx.y / blockIdx.y indexing).
extern "C" __global__ void check_convert_2d(GLOBAL(const float) x, GLOBAL(__half) h, GLOBAL(__nv_bfloat16) b,
                                           GLOBAL(float) back, int rows, int cols) {
    const int r = blockIdx.y * blockDim.y + threadIdx.y;
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows || c >= cols) return;
    const int i = r * cols + c;
    const __half hv = from_f32<__half>(x[i]);
    const __nv_bfloat16 bv = from_f32<__nv_bfloat16>(x[i]);
    h[i] = hv;
    b[i] = bv;
    back[2 * i] = to_f32(hv);
    back[2 * i + 1] = to_f32(bv);
}

// y[i] = a * x[i * stride] for i < n: with stride > 1 every warp access touches up to 32
// sectors; the traffic tests use it to check the coalescing count.
extern "C" __global__ void check_gather_f32(GLOBAL(const float) x, GLOBAL(float) y, float a, int n, int stride) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[(long long)i * stride];
}


// Copies each thread's slot of a shared array it never initialised, then writes the
// slot: the harness must hand every block fresh NaN-poisoned shared memory, so `out`
// is all NaN whatever the previous block left behind.
extern "C" __global__ void check_shared_poison_f32(GLOBAL(float) out) {
    __shared__ float slots[64];
    out[blockIdx.x * blockDim.x + threadIdx.x] = slots[threadIdx.x];
    __syncthreads();
    slots[threadIdx.x] = 1.0f;
}

// total[0] += Σ x[i] by one float atomic per thread: the rounding depends on the order
// of the threads and blocks, the case Harness::launch_within exists for.
extern "C" __global__ void check_atomic_sum_f32(GLOBAL(const float) x, GLOBAL(float) total, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) atomicAdd(&total[0], x[i]);
}
