// The PGD step and projection of sparta::attack::pgd, f32, element-wise over a batch of
// images in [0, 1]:
//
//   step:          x ← project(x + direction·sign(g), x0),   sign(0) = sign(NaN) = 0
//   random start:  x = project(x0 + noise, x0),   noise drawn on the host (uniform in
//                  [−ε, ε], one per element in order, random_start_noise) so the device
//                  run follows the CPU run bit for bit from the same RNG
//   project(v, o) = clamp(clamp(v, o − ε, o + ε), 0, 1)   (the ball first, as the CPU)
// direction = −α for a targeted attack (descend the target's loss), +α untargeted.
// Bit-exact with the CPU: direction·sign is exact (sign ∈ {−1, 0, 1}), so an FMA
// contraction of x + direction·sign rounds the same; each clamp is a comparison.
//
// Launch shape (sparta::attack::pgd_launch): 1-D grid-stride, block 256, grid
// min(ceil(len / 256), 8192); consecutive threads own consecutive elements (coalesced,
// every buffer moved once; the harness pins this).
#include "common.cuh"

// Rust's f32::clamp for min ≤ max: NaN stays NaN.
__device__ __forceinline__ float pgd_clamp(float v, float lo, float hi) {
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return v;
}

__device__ __forceinline__ float pgd_project(float v, float origin, float eps) {
    return pgd_clamp(pgd_clamp(v, origin - eps, origin + eps), 0.0f, 1.0f);
}

extern "C" __global__ void pgd_step_f32(GLOBAL(float) x, GLOBAL(const float) grad,
                                        GLOBAL(const float) x0, long long len, float direction,
                                        float eps) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len; i += stride) {
        const float g = grad[i];
        const float sign = g > 0.0f ? 1.0f : (g < 0.0f ? -1.0f : 0.0f);
        x[i] = pgd_project(x[i] + direction * sign, x0[i], eps);
    }
}

extern "C" __global__ void pgd_random_start_f32(GLOBAL(float) x, GLOBAL(const float) x0,
                                                GLOBAL(const float) noise, long long len,
                                                float eps) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len; i += stride) {
        const float o = x0[i];
        x[i] = pgd_project(o + noise[i], o, eps);
    }
}
