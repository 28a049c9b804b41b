// Block average pool over planes of H×W (B×B blocks, partial edge blocks average their
// valid pixels; B ≥ max(H, W) gives the plane mean) and its backward.
//
//   forward:   y[pl][oi][oj] = mean of x[pl] over block (oi, oj)
//   backward:  dx[pl][i][j] += dy[pl][i/B][j/B] / count(i/B, j/B)
//
// The suffix (_f32, _f16, _bf16) is the storage of the activation-sized x and dx; the
// pooled y and dy are always f32 (DSCANet's internals), as is all arithmetic.
//
// Launch shapes (src/ops/pool/mod.rs):
// - forward: grid ceil(out_len/8), block 256; each warp owns one output cell, its lanes
//   stride over the cell's pixels, and warp_sum reduces them.
// - backward: grid ceil(in_len/256), block 256; one input pixel per thread.
#include "common.cuh"

__device__ __forceinline__ int pool_count(int h, int w, int block, int oi, int oj) {
    const int rows = min(h, (oi + 1) * block) - oi * block;
    const int cols = min(w, (oj + 1) * block) - oj * block;
    return rows * cols;
}

template <typename T>
__device__ __forceinline__ void pool_forward_impl(GLOBAL(const T) x, GLOBAL(float) y, long long out_len,
                                                  int h, int w, int block) {
    const long long cell = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (cell >= out_len) return;  // whole warps leave together: out_len is per warp
    const int oh = (h + block - 1) / block, ow = (w + block - 1) / block;
    const long long plane = cell / (oh * ow);
    const int oi = (int)(cell % (oh * ow)) / ow, oj = (int)(cell % (oh * ow)) % ow;
    const int rows = min(h, (oi + 1) * block) - oi * block;
    const int cols = min(w, (oj + 1) * block) - oj * block;
    const long long base = plane * h * w + (long long)(oi * block) * w + oj * block;
    float acc = 0.0f;
    for (int k = lane; k < rows * cols; k += 32) acc += to_f32(x[base + (long long)(k / cols) * w + k % cols]);
    acc = warp_sum(acc);
    if (lane == 0) y[cell] = acc / (float)(rows * cols);
}

template <typename T>
__device__ __forceinline__ void pool_backward_impl(GLOBAL(const float) dy, GLOBAL(T) dx, long long in_len,
                                                   int h, int w, int block) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= in_len) return;
    const long long plane = idx / (h * w);
    const int i = (int)(idx % (h * w)) / w, j = (int)(idx % (h * w)) % w;
    const int oh = (h + block - 1) / block, ow = (w + block - 1) / block;
    const int oi = i / block, oj = j / block;
    dx[idx] = from_f32<T>(to_f32(dx[idx]) + dy[(plane * oh + oi) * ow + oj] / (float)pool_count(h, w, block, oi, oj));
}

#define POOL_ENTRY_POINTS(SUFFIX, T)                                                            \
    extern "C" __global__ void pool_forward_##SUFFIX(GLOBAL(const T) x, GLOBAL(float) y,        \
                                                     long long out_len, int h, int w, int block) { \
        pool_forward_impl<T>(x, y, out_len, h, w, block);                                       \
    }                                                                                           \
    extern "C" __global__ void pool_backward_##SUFFIX(GLOBAL(const float) dy, GLOBAL(T) dx,     \
                                                      long long in_len, int h, int w, int block) { \
        pool_backward_impl<T>(dy, dx, in_len, h, w, block);                                     \
    }

POOL_ENTRY_POINTS(f32, float)
POOL_ENTRY_POINTS(f16, __half)
POOL_ENTRY_POINTS(bf16, __nv_bfloat16)
