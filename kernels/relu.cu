// ReLU forward and backward, the baseline the fused SPARTA gate is benchmarked against.
//
//   relu_forward_<T>(GLOBAL(const T) x, GLOBAL(T) y, long long len)
//       y[i] = x[i] < 0 ? 0 : x[i]                (NaN propagates, -0 stays -0)
//   relu_backward_<T>(GLOBAL(const T) x, GLOBAL(const T) dy, GLOBAL(T) dx, long long len)
//       dx[i] = x[i] > 0 ? dy[i] : 0              (gradient 0 at x = 0, the usual ReLU
//                                                  convention; the gate uses [x >= 0])
// T is f32, f16 or bf16 (suffix _f32, _f16, _bf16); arithmetic in f32.
//
// Launch shape (sparta::ops::relu::relu_launch): 1-D, 256 threads per block,
// grid = min(ceil(len / (256 * RELU_ILP)), 8192) blocks. Grid-stride: thread t of the
// grid owns elements t + k * stride for k = 0, 1, … with stride = gridDim.x * blockDim.x;
// it loads RELU_ILP of them (k, k+1, …) before storing any, so each thread has several
// independent loads in flight. Consecutive threads touch consecutive elements: every warp
// access is coalesced, and x, dy are each read once, y, dx written once.
#include "common.cuh"

#define RELU_ILP 4

template <typename T>
__device__ __forceinline__ void relu_forward_impl(GLOBAL(const T) x, GLOBAL(T) y, long long len) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long base = (long long)blockIdx.x * blockDim.x + threadIdx.x; base < len;
         base += stride * RELU_ILP) {
        float v[RELU_ILP];
#pragma unroll
        for (int k = 0; k < RELU_ILP; ++k) {
            const long long i = base + k * stride;
            v[k] = i < len ? to_f32(x[i]) : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < RELU_ILP; ++k) {
            const long long i = base + k * stride;
            if (i < len) y[i] = from_f32<T>(v[k] < 0.0f ? 0.0f : v[k]);
        }
    }
}

template <typename T>
__device__ __forceinline__ void relu_backward_impl(GLOBAL(const T) x, GLOBAL(const T) dy,
                                                   GLOBAL(T) dx, long long len) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long base = (long long)blockIdx.x * blockDim.x + threadIdx.x; base < len;
         base += stride * RELU_ILP) {
        float xv[RELU_ILP], dv[RELU_ILP];
#pragma unroll
        for (int k = 0; k < RELU_ILP; ++k) {
            const long long i = base + k * stride;
            xv[k] = i < len ? to_f32(x[i]) : 0.0f;
            dv[k] = i < len ? to_f32(dy[i]) : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < RELU_ILP; ++k) {
            const long long i = base + k * stride;
            if (i < len) dx[i] = from_f32<T>(xv[k] > 0.0f ? dv[k] : 0.0f);
        }
    }
}

#define RELU_ENTRY_POINTS(SUFFIX, T)                                                          \
    extern "C" __global__ void relu_forward_##SUFFIX(GLOBAL(const T) x, GLOBAL(T) y,          \
                                                     long long len) {                        \
        relu_forward_impl<T>(x, y, len);                                                      \
    }                                                                                         \
    extern "C" __global__ void relu_backward_##SUFFIX(GLOBAL(const T) x, GLOBAL(const T) dy,  \
                                                      GLOBAL(T) dx, long long len) {         \
        relu_backward_impl<T>(x, dy, dx, len);                                                \
    }

RELU_ENTRY_POINTS(f32, float)
RELU_ENTRY_POINTS(f16, __half)
RELU_ENTRY_POINTS(bf16, __nv_bfloat16)
