// Fused SANet kernels: h = ReLU(Conv3(xs)) is computed in registers tile by tile
// and never written to device memory; backward recomputes it.
//
//   sanet_pool:    q[n][o] += (1/P) Σ_p h[n][o][p]                        (q zeroed first)
//   sanet_conv5:   s[n][p] = b5[n·ldb5] + Σ_o w5[n·ldw5 + o]·h[n][o][p]
//   sanet_dw5:     dw5[n·lddw5 + o] += Σ_p ds[n][p]·h[n][o][p]
//   (db5 = Σ_p ds is dynconv_backward_bias of dynconv.cu)
//   sanet_dh:      dh[n][o][p] = h > 0 ? w5[n·ldw5 + o]·ds[n][p] + dq[n][o]/P : 0
//
// The row strides ldw5 / ldb5 let Conv5's weights be DPNet's output rows ([N, Co+1]:
// ld = Co+1, bias at offset Co) or one learned vector broadcast to every sample (ld = 0);
// the gradient strides do the same, and with ld = 0 the atomics sum over samples.
//
// The suffix (_f32, _f16, _bf16) is the storage of xs (X itself when B = 1, else the f32
// block pool); weights, q, s, ds, dq, dh and all arithmetic are f32.
//
// Launch shapes (src/ops/sanet/mod.rs):
// - sanet_pool, sanet_dw5, sanet_dh: grid (ceil(P/16), ceil(Co/16), N), block (16, 16);
//   thread (tx, ty) owns h[n][o0 + ty][p0 + tx] (conv1x1_tile.cuh).
// - sanet_conv5: grid (ceil(P/16), 1, N), block (16, 16); the block walks every Co tile
//   for its 16 pixels, so s needs no atomics; thread (tx, 0) owns s[n][p0 + tx].
#include "common.cuh"
#include "conv1x1_tile.cuh"

template <typename T>
__device__ __forceinline__ float sanet_h(GLOBAL(const T) xs, GLOBAL(const float) w3,
                                         GLOBAL(const float) b3, int c, int co, int pixels, int n,
                                         int o, int p) {
    const float acc = conv1x1_tile_dot(w3, c, 1, co, xs + (long long)n * c * pixels, c, pixels, o, p);
    if (o >= co || p >= pixels) return 0.0f;
    const float v = acc + b3[o];
    return v > 0.0f ? v : 0.0f;
}

template <typename T>
__device__ __forceinline__ void sanet_pool_impl(GLOBAL(const T) xs, GLOBAL(const float) w3,
                                          GLOBAL(const float) b3, GLOBAL(float) q, int c, int co,
                                          int pixels) {
    const int n = blockIdx.z;
    const int o = blockIdx.y * CONV_TILE + threadIdx.y;
    const int p = blockIdx.x * CONV_TILE + threadIdx.x;
    const float row = tile_row_sum(sanet_h(xs, w3, b3, c, co, pixels, n, o, p));
    if (threadIdx.x == 0 && o < co) atomicAdd(&q[(long long)n * co + o], row / (float)pixels);
}

template <typename T>
__device__ __forceinline__ void sanet_conv5_impl(GLOBAL(const T) xs, GLOBAL(const float) w3,
                                           GLOBAL(const float) b3, GLOBAL(const float) w5, int ldw5,
                                           GLOBAL(const float) b5, int ldb5, GLOBAL(float) s, int c,
                                           int co, int pixels) {
    __shared__ float partial[CONV_TILE][CONV_TILE + 1];
    const int n = blockIdx.z, tx = threadIdx.x, ty = threadIdx.y;
    const int p = blockIdx.x * CONV_TILE + tx;
    float total = 0.0f;
    for (int o0 = 0; o0 < co; o0 += CONV_TILE) {
        const int o = o0 + ty;
        const float h = sanet_h(xs, w3, b3, c, co, pixels, n, o, p);
        partial[ty][tx] = o < co ? w5[(long long)n * ldw5 + o] * h : 0.0f;
        __syncthreads();
        if (ty == 0)
            for (int r = 0; r < CONV_TILE; ++r) total += partial[r][tx];
        __syncthreads();
    }
    if (ty == 0 && p < pixels) s[(long long)n * pixels + p] = total + b5[(long long)n * ldb5];
}

template <typename T>
__device__ __forceinline__ void sanet_dw5_impl(GLOBAL(const T) xs, GLOBAL(const float) w3,
                                         GLOBAL(const float) b3, GLOBAL(const float) ds,
                                         GLOBAL(float) dw5, int lddw5, int c, int co, int pixels) {
    const int n = blockIdx.z;
    const int o = blockIdx.y * CONV_TILE + threadIdx.y;
    const int p = blockIdx.x * CONV_TILE + threadIdx.x;
    const float h = sanet_h(xs, w3, b3, c, co, pixels, n, o, p);
    const float row = tile_row_sum(p < pixels ? h * ds[(long long)n * pixels + p] : 0.0f);
    if (threadIdx.x == 0 && o < co) atomicAdd(&dw5[(long long)n * lddw5 + o], row);
}

template <typename T>
__device__ __forceinline__ void sanet_dh_impl(GLOBAL(const T) xs, GLOBAL(const float) w3,
                                        GLOBAL(const float) b3, GLOBAL(const float) w5, int ldw5,
                                        GLOBAL(const float) ds, GLOBAL(const float) dq,
                                        GLOBAL(float) dh, int c, int co, int pixels) {
    const int n = blockIdx.z;
    const int o = blockIdx.y * CONV_TILE + threadIdx.y;
    const int p = blockIdx.x * CONV_TILE + threadIdx.x;
    const float h = sanet_h(xs, w3, b3, c, co, pixels, n, o, p);
    if (o < co && p < pixels) {
        const long long row = (long long)n * co + o;
        dh[row * pixels + p] = h > 0.0f ? w5[(long long)n * ldw5 + o] * ds[(long long)n * pixels + p] +
                                              dq[row] / (float)pixels
                                        : 0.0f;
    }
}

#define SANET_ENTRY_POINTS(SUFFIX, T)                                                              \
    extern "C" __global__ void sanet_pool_##SUFFIX(GLOBAL(const T) xs, GLOBAL(const float) w3,     \
                                                   GLOBAL(const float) b3, GLOBAL(float) q, int c, \
                                                   int co, int pixels) {                           \
        sanet_pool_impl<T>(xs, w3, b3, q, c, co, pixels);                                          \
    }                                                                                              \
    extern "C" __global__ void sanet_conv5_##SUFFIX(                                               \
        GLOBAL(const T) xs, GLOBAL(const float) w3, GLOBAL(const float) b3,                        \
        GLOBAL(const float) w5, int ldw5, GLOBAL(const float) b5, int ldb5, GLOBAL(float) s,       \
        int c, int co, int pixels) {                                                               \
        sanet_conv5_impl<T>(xs, w3, b3, w5, ldw5, b5, ldb5, s, c, co, pixels);                     \
    }                                                                                              \
    extern "C" __global__ void sanet_dw5_##SUFFIX(GLOBAL(const T) xs, GLOBAL(const float) w3,      \
                                                  GLOBAL(const float) b3, GLOBAL(const float) ds,  \
                                                  GLOBAL(float) dw5, int lddw5, int c, int co,     \
                                                  int pixels) {                                    \
        sanet_dw5_impl<T>(xs, w3, b3, ds, dw5, lddw5, c, co, pixels);                              \
    }                                                                                              \
    extern "C" __global__ void sanet_dh_##SUFFIX(                                                  \
        GLOBAL(const T) xs, GLOBAL(const float) w3, GLOBAL(const float) b3,                        \
        GLOBAL(const float) w5, int ldw5, GLOBAL(const float) ds, GLOBAL(const float) dq,          \
        GLOBAL(float) dh, int c, int co, int pixels) {                                             \
        sanet_dh_impl<T>(xs, w3, b3, w5, ldw5, ds, dq, dh, c, co, pixels);                         \
    }

SANET_ENTRY_POINTS(f32, float)
SANET_ENTRY_POINTS(f16, __half)
SANET_ENTRY_POINTS(bf16, __nv_bfloat16)
