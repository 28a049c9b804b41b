// Batch normalization over N·H·W per channel of x [N, C, H·W] (H·W = 1 for [N, C]), f32.
//
//   stats (training):  μ_c = Σ x / M,  σ²_c = Σ (x − μ_c)² / M        (M = N·H·W, biased)
//                      running_mean ← (1 − m)·running_mean + m·μ_c
//                      running_var  ← (1 − m)·running_var  + m·σ²_c·M/(M − 1)  (M > 1)
//   forward:           y = γ·(x − μ)/√(σ² + eps) + β, with the batch (μ, σ²) in training
//                      and the running statistics in evaluation: the same kernel
//   grad sums:         dβ_c = Σ dy,  dγ_c = Σ dy·x̂,  x̂ = (x − μ_c)/√(σ²_c + eps)
//   input grad, train: dx = γ·invstd/M · (M·dy − dβ_c − x̂·dγ_c)
//   input grad, eval:  dx = dy·γ·invstd (the statistics are constants; what PGD uses)
// All outputs are overwritten. The running-statistics update and the unbiased factor are
// those of sparta::ops::batchnorm (the op returns M/(M−1)·σ², the layer blends it in).
//
// Launch shapes (src/ops/batchnorm/mod.rs):
// - stats, grad sums: grid C, block BN_THREADS (256), no dynamic shared memory; block c
//   owns channel c. Thread t accumulates elements t, t + 256, … of the channel's N·H·W
//   (plane by plane, so a warp reads consecutive pixels), then a fixed-order tree in
//   shared memory sums the 256 partials: the result does not depend on scheduling and
//   no float atomics are used.
// - forward, input grads: 1-D grid-stride, block 256, grid min(ceil(len/256), 8192);
//   element i is in channel (i / hw) % C; x, dy read once and y, dx written once,
//   coalesced; the per-channel vectors are tiny and served by the caches.
#include "common.cuh"

#define BN_THREADS 256

// Sum of one value per thread over the block, in a fixed order; every thread gets it.
__device__ __forceinline__ float bn_block_sum(float v, float* partial) {
    partial[threadIdx.x] = v;
    __syncthreads();
    for (int half = BN_THREADS / 2; half > 0; half >>= 1) {
        if ((int)threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    const float total = partial[0];
    __syncthreads();  // partial is reused by the caller's next sum
    return total;
}

// Element j (0 ≤ j < N·hw) of channel ch.
__device__ __forceinline__ long long bn_index(long long j, int ch, int c, int hw) {
    const long long s = j / hw;
    return (s * c + ch) * hw + (j - s * hw);
}

extern "C" __global__ void batchnorm_stats_f32(GLOBAL(const float) x, GLOBAL(float) mean,
                                               GLOBAL(float) var, GLOBAL(float) running_mean,
                                               GLOBAL(float) running_var, int n, int c, int hw,
                                               float momentum) {
    __shared__ float partial[BN_THREADS];
    const int ch = blockIdx.x;
    const long long m = (long long)n * hw;
    float acc = 0.0f;
    for (long long j = threadIdx.x; j < m; j += BN_THREADS) acc += x[bn_index(j, ch, c, hw)];
    const float mu = bn_block_sum(acc, partial) / (float)m;
    // Second pass over x rather than E[x²] − μ², which cancels catastrophically.
    acc = 0.0f;
    for (long long j = threadIdx.x; j < m; j += BN_THREADS) {
        const float d = x[bn_index(j, ch, c, hw)] - mu;
        acc += d * d;
    }
    const float sigma2 = bn_block_sum(acc, partial) / (float)m;
    if (threadIdx.x == 0) {
        mean[ch] = mu;
        var[ch] = sigma2;
        const float bessel = m > 1 ? (float)m / (float)(m - 1) : 1.0f;
        running_mean[ch] = (1.0f - momentum) * running_mean[ch] + momentum * mu;
        running_var[ch] = (1.0f - momentum) * running_var[ch] + momentum * (sigma2 * bessel);
    }
}

extern "C" __global__ void batchnorm_forward_f32(GLOBAL(const float) x, GLOBAL(const float) mean,
                                                 GLOBAL(const float) var,
                                                 GLOBAL(const float) gamma,
                                                 GLOBAL(const float) beta, GLOBAL(float) y,
                                                 long long len, int c, int hw, float eps) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len; i += stride) {
        const int ch = (int)((i / hw) % c);
        // (x − μ)·scale + β, not the CPU op's x·scale + (β − μ·scale): in f32 the latter
        // cancels catastrophically when σ² ≪ μ² (scale up to 1/√eps ≈ 316).
        const float scale = gamma[ch] * (1.0f / sqrtf(var[ch] + eps));
        y[i] = (x[i] - mean[ch]) * scale + beta[ch];
    }
}

extern "C" __global__ void batchnorm_grad_sums_f32(GLOBAL(const float) x, GLOBAL(const float) dy,
                                                   GLOBAL(const float) mean,
                                                   GLOBAL(const float) var,
                                                   GLOBAL(float) sum_dy,
                                                   GLOBAL(float) sum_dy_xhat, int n, int c,
                                                   int hw, float eps) {
    __shared__ float partial[BN_THREADS];
    const int ch = blockIdx.x;
    const long long m = (long long)n * hw;
    const float mu = mean[ch];
    float sdy = 0.0f, sdyx = 0.0f;
    for (long long j = threadIdx.x; j < m; j += BN_THREADS) {
        const long long i = bn_index(j, ch, c, hw);
        const float g = dy[i];
        sdy += g;
        sdyx += g * (x[i] - mu);
    }
    sdy = bn_block_sum(sdy, partial);
    sdyx = bn_block_sum(sdyx, partial);
    if (threadIdx.x == 0) {
        sum_dy[ch] = sdy;
        sum_dy_xhat[ch] = sdyx * (1.0f / sqrtf(var[ch] + eps));
    }
}

extern "C" __global__ void batchnorm_backward_input_train_f32(
    GLOBAL(const float) x, GLOBAL(const float) dy, GLOBAL(const float) mean,
    GLOBAL(const float) var, GLOBAL(const float) gamma, GLOBAL(const float) sum_dy,
    GLOBAL(const float) sum_dy_xhat, GLOBAL(float) dx, long long len, int n, int c, int hw,
    float eps) {
    const float m = (float)((long long)n * hw);
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len; i += stride) {
        const int ch = (int)((i / hw) % c);
        const float invstd = 1.0f / sqrtf(var[ch] + eps);
        const float k = gamma[ch] * invstd / m;
        const float xhat = (x[i] - mean[ch]) * invstd;
        dx[i] = k * (m * dy[i] - sum_dy[ch] - xhat * sum_dy_xhat[ch]);
    }
}

extern "C" __global__ void batchnorm_backward_input_eval_f32(GLOBAL(const float) dy,
                                                             GLOBAL(const float) var,
                                                             GLOBAL(const float) gamma,
                                                             GLOBAL(float) dx, long long len,
                                                             int c, int hw, float eps) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len; i += stride) {
        const int ch = (int)((i / hw) % c);
        dx[i] = dy[i] * (gamma[ch] * (1.0f / sqrtf(var[ch] + eps)));
    }
}
