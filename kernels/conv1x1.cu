// 1×1 convolution over pixels (DSCANet's Conv3, unfused path) and its backward.
//
//   forward:       y[n][o][p] = b[o] + Σ_i w[o][i]·x[n][i][p]      (then ReLU if relu != 0)
//   input grad:    dx[n][i][p] += Σ_o w[o][i]·dy[n][o][p]
//   weight grad:   dw[o][i] += Σ_n Σ_p dy[n][o][p]·x[n][i][p]
//   bias grad:     db[o] += Σ_n Σ_p dy[n][o][p]
//   ReLU mask:     dh[i] = h[i] > 0 ? dh[i] : 0
//
// The suffix of forward, input grad and weight grad (_f32, _f16, _bf16) is the storage of
// the layer input x and its gradient dx (X itself when B = 1); w, b, y, dy and the
// gradients of w and b are f32, as is all arithmetic. Bias grad and mask are f32 only.
//
// Launch shapes (src/ops/conv1x1/mod.rs):
// - forward / input grad: grid (ceil(P/16), ceil(rows/16), N), block (16, 16); thread
//   (tx, ty) owns output row ty, pixel tx of its tile (conv1x1_tile.cuh).
// - weight grad: grid (ceil(Cin/16), ceil(Cout/16), S), block (16, 16); thread (tx, ty)
//   owns dw[o0 + ty][i0 + tx] summed over samples z, z + S, … and adds it atomically.
// - bias grad: grid (Cout), block 256; the block sums one output channel.
// - mask: grid ceil(len/256), block 256, one element per thread.
#include "common.cuh"
#include "conv1x1_tile.cuh"

template <typename T>
__device__ __forceinline__ void conv1x1_forward_impl(GLOBAL(const T) x, GLOBAL(const float) w,
                                                     GLOBAL(const float) b, GLOBAL(float) y, int cin,
                                                     int cout, int pixels, int relu) {
    const int n = blockIdx.z;
    const int o = blockIdx.y * CONV_TILE + threadIdx.y;
    const int p = blockIdx.x * CONV_TILE + threadIdx.x;
    const float acc = conv1x1_tile_dot(w, cin, 1, cout, x + (long long)n * cin * pixels, cin, pixels, o, p);
    if (o < cout && p < pixels) {
        const float v = acc + b[o];
        y[((long long)n * cout + o) * pixels + p] = (relu != 0 && v < 0.0f) ? 0.0f : v;
    }
}

template <typename T>
__device__ __forceinline__ void conv1x1_backward_input_impl(GLOBAL(const float) dy, GLOBAL(const float) w,
                                                            GLOBAL(T) dx, int cin, int cout, int pixels) {
    const int n = blockIdx.z;
    const int i = blockIdx.y * CONV_TILE + threadIdx.y;
    const int p = blockIdx.x * CONV_TILE + threadIdx.x;
    // Wᵀ: row i of the product reads column i of w.
    const float acc = conv1x1_tile_dot(w, 1, cin, cin, dy + (long long)n * cout * pixels, cout, pixels, i, p);
    if (i < cin && p < pixels) {
        const long long at = ((long long)n * cin + i) * pixels + p;
        dx[at] = from_f32<T>(to_f32(dx[at]) + acc);
    }
}

template <typename T>
__device__ __forceinline__ void conv1x1_backward_weight_impl(GLOBAL(const T) x, GLOBAL(const float) dy,
                                                             GLOBAL(float) dw, int n_samples, int cin,
                                                             int cout, int pixels) {
    __shared__ float dy_tile[CONV_TILE][CONV_TILE + 1];
    __shared__ float x_tile[CONV_TILE][CONV_TILE + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int o0 = blockIdx.y * CONV_TILE, i0 = blockIdx.x * CONV_TILE;
    float acc = 0.0f;
    for (int n = blockIdx.z; n < n_samples; n += gridDim.z) {
        const long long dy_off = (long long)n * cout * pixels, x_off = (long long)n * cin * pixels;
        for (int p0 = 0; p0 < pixels; p0 += CONV_TILE) {
            // dy_tile[r][k] = dy[n][o0 + r][p0 + k], x_tile[c][k] = x[n][i0 + c][p0 + k].
            const bool p_ok = p0 + tx < pixels;
            dy_tile[ty][tx] = (p_ok && o0 + ty < cout) ? dy[dy_off + (long long)(o0 + ty) * pixels + p0 + tx] : 0.0f;
            x_tile[ty][tx] = (p_ok && i0 + ty < cin) ? to_f32(x[x_off + (long long)(i0 + ty) * pixels + p0 + tx]) : 0.0f;
            __syncthreads();
            for (int k = 0; k < CONV_TILE; ++k) acc += dy_tile[ty][k] * x_tile[tx][k];
            __syncthreads();
        }
    }
    const int o = o0 + ty, i = i0 + tx;
    if (o < cout && i < cin) atomicAdd(&dw[(long long)o * cin + i], acc);
}

#define CONV1X1_ENTRY_POINTS(SUFFIX, T)                                                             \
    extern "C" __global__ void conv1x1_forward_##SUFFIX(GLOBAL(const T) x, GLOBAL(const float) w,   \
                                                        GLOBAL(const float) b, GLOBAL(float) y,     \
                                                        int cin, int cout, int pixels, int relu) {  \
        conv1x1_forward_impl<T>(x, w, b, y, cin, cout, pixels, relu);                               \
    }                                                                                               \
    extern "C" __global__ void conv1x1_backward_input_##SUFFIX(GLOBAL(const float) dy,              \
                                                               GLOBAL(const float) w, GLOBAL(T) dx, \
                                                               int cin, int cout, int pixels) {     \
        conv1x1_backward_input_impl<T>(dy, w, dx, cin, cout, pixels);                               \
    }                                                                                               \
    extern "C" __global__ void conv1x1_backward_weight_##SUFFIX(GLOBAL(const T) x,                  \
                                                                GLOBAL(const float) dy,             \
                                                                GLOBAL(float) dw, int n_samples,    \
                                                                int cin, int cout, int pixels) {    \
        conv1x1_backward_weight_impl<T>(x, dy, dw, n_samples, cin, cout, pixels);                   \
    }

CONV1X1_ENTRY_POINTS(f32, float)
CONV1X1_ENTRY_POINTS(f16, __half)
CONV1X1_ENTRY_POINTS(bf16, __nv_bfloat16)

extern "C" __global__ void conv1x1_backward_bias_f32(GLOBAL(const float) dy, GLOBAL(float) db,
                                                     int n_samples, int cout, int pixels) {
    __shared__ float warp_totals[32];
    const int o = blockIdx.x;
    float acc = 0.0f;
    for (int n = 0; n < n_samples; ++n) {
        const long long off = ((long long)n * cout + o) * pixels;
        for (int p = threadIdx.x; p < pixels; p += blockDim.x) acc += dy[off + p];
    }
    acc = warp_sum(acc);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) warp_totals[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        float total = lane < (int)(blockDim.x / 32) ? warp_totals[lane] : 0.0f;
        total = warp_sum(total);
        if (lane == 0) db[o] += total;
    }
}

extern "C" __global__ void relu_mask_f32(GLOBAL(const float) h, GLOBAL(float) dh, long long len) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < len && !(h[i] > 0.0f)) dh[i] = 0.0f;
}
