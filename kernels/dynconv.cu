// Per-sample dynamic 1×1 conv to one channel (DSCANet's Conv5, unfused path), f32:
//
//   forward:       s[n][p] = b[n·ldb] + Σ_k w[n·ldw + k]·h[n][k][p]
//   input grad:    dh[n][k][p] += w[n·ldw + k]·ds[n][p]
//   weight grad:   dw[n·lddw + k] += Σ_p ds[n][p]·h[n][k][p]
//   bias grad:     db[n·lddb] += Σ_p ds[n][p]          (also the fused SANet path's db5)
//
// Row strides as in sanet.cu: DPNet rows (ld = Co+1) or one broadcast vector (ld = 0,
// the atomics then sum over samples).
//
// Launch shapes (src/ops/dynconv/mod.rs):
// - forward: grid ceil(N·P/256), block 256; one s[n][p] per thread (loop over k).
// - input grad: grid ceil(N·K·P/256), block 256; one dh element per thread.
// - weight grad: grid ceil(N·K/8), block 256; warp (n, k) owns dw[n][k], lanes stride
//   over pixels.
// - bias grad: grid (N), block 256; the block sums one sample.
#include "common.cuh"

extern "C" __global__ void dynconv_forward_f32(GLOBAL(const float) h, GLOBAL(const float) w, int ldw,
                                               GLOBAL(const float) b, int ldb, GLOBAL(float) s,
                                               int n_samples, int k_channels, int pixels) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n_samples * pixels) return;
    const long long n = idx / pixels;
    const int p = (int)(idx % pixels);
    float acc = b[n * ldb];
    for (int k = 0; k < k_channels; ++k) acc += w[n * ldw + k] * h[(n * k_channels + k) * pixels + p];
    s[idx] = acc;
}

extern "C" __global__ void dynconv_backward_input_f32(GLOBAL(const float) w, int ldw,
                                                      GLOBAL(const float) ds, GLOBAL(float) dh,
                                                      int n_samples, int k_channels, int pixels) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n_samples * k_channels * pixels) return;
    const long long row = idx / pixels;
    const long long n = row / k_channels;
    const int k = (int)(row % k_channels), p = (int)(idx % pixels);
    dh[idx] += w[n * ldw + k] * ds[n * pixels + p];
}

extern "C" __global__ void dynconv_backward_weight_f32(GLOBAL(const float) h, GLOBAL(const float) ds,
                                                       GLOBAL(float) dw, int lddw, int n_samples,
                                                       int k_channels, int pixels) {
    const long long item = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (item >= (long long)n_samples * k_channels) return;  // whole warps leave together
    const long long n = item / k_channels;
    const int k = (int)(item % k_channels);
    float acc = 0.0f;
    for (int p = lane; p < pixels; p += 32) acc += ds[n * pixels + p] * h[(n * k_channels + k) * pixels + p];
    acc = warp_sum(acc);
    if (lane == 0) atomicAdd(&dw[n * lddw + k], acc);
}

extern "C" __global__ void dynconv_backward_bias_f32(GLOBAL(const float) ds, GLOBAL(float) db, int lddb,
                                                     int pixels) {
    __shared__ float warp_totals[32];
    const int n = blockIdx.x;
    float acc = 0.0f;
    for (int p = threadIdx.x; p < pixels; p += blockDim.x) acc += ds[(long long)n * pixels + p];
    acc = warp_sum(acc);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) warp_totals[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        float total = lane < (int)(blockDim.x / 32) ? warp_totals[lane] : 0.0f;
        total = warp_sum(total);
        if (lane == 0) atomicAdd(&db[(long long)n * lddb], total);
    }
}
