// Input normalization of sparta::ops::normalize, f32, on x [N, C, H·W] with constant
// per-channel statistics, and its input gradient (what PGD back-propagates through):
//
//   forward:   y  = x·(1/std_c) + (−mean_c·(1/std_c))   (the CPU op's scale and shift)
//   backward:  dx = dy·(1/std_c)
// Outputs are overwritten.
//
// Launch shape (sparta::ops::normalize::normalize_launch): 1-D grid-stride, block 256,
// grid min(ceil(len / 256), 8192); element i is in channel (i / hw) % C. x, dy read once
// and y, dx written once, coalesced (pinned in the harness); mean and std are C floats
// served by the caches.
#include "common.cuh"

extern "C" __global__ void normalize_forward_f32(GLOBAL(const float) x, GLOBAL(const float) mean,
                                                 GLOBAL(const float) stdev, GLOBAL(float) y,
                                                 long long len, int c, int hw) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len; i += stride) {
        const int ch = (int)((i / hw) % c);
        const float scale = 1.0f / stdev[ch];
        const float shift = -mean[ch] * scale;
        y[i] = x[i] * scale + shift;
    }
}

extern "C" __global__ void normalize_backward_f32(GLOBAL(const float) dy, GLOBAL(const float) stdev,
                                                  GLOBAL(float) dx, long long len, int c,
                                                  int hw) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len; i += stride) {
        const int ch = (int)((i / hw) % c);
        dx[i] = dy[i] * (1.0f / stdev[ch]);
    }
}
