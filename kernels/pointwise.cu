// The smooth baseline activations (ELU, GELU in tanh form, SiLU, Softplus) forward and
// backward, f32; the formulas are those of sparta::ops::pointwise (src/ops/pointwise).
//
//   pointwise_forward_f32(GLOBAL(const float) x, GLOBAL(float) y, long long len, int kind)
//       y[i] = f(x[i])
//   pointwise_backward_f32(GLOBAL(const float) x, GLOBAL(const float) dy, GLOBAL(float) dx,
//                          long long len, int kind)
//       dx[i] = dy[i] · f'(x[i])        (from x: nothing but the input is kept)
// kind: 1 ELU (α = 1), 2 GELU (tanh form), 3 SiLU, 4 Softplus. ReLU is relu.cu.
//
// Launch shape (sparta::ops::pointwise::pointwise_launch): 1-D, 256 threads a block,
// min(ceil(len / 256), 8192) blocks, grid-stride; consecutive threads touch consecutive
// elements, so every access is coalesced and each tensor is touched once. The
// transcendental functions are the accurate ones (expf, expm1f, log1pf), not the fast
// intrinsics: the f32 results stay within 1e-5 of the f64 reference.
#include "common.cuh"

#define POINTWISE_ELU 1
#define POINTWISE_GELU 2
#define POINTWISE_SILU 3
#define POINTWISE_SOFTPLUS 4

// √(2/π) and the cubic coefficient of GELU's tanh form.
#define GELU_SCALE 0.7978845608028654f
#define GELU_CUBIC 0.044715f

__device__ __forceinline__ float pointwise_sigmoid(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    const float e = expf(x);
    return e / (1.0f + e);
}

// f(x) and f'(x) of one element.
__device__ __forceinline__ void pointwise_value_and_slope(int kind, float x, float* value,
                                                          float* slope) {
    switch (kind) {
        case POINTWISE_ELU:
            if (x > 0.0f) {
                *value = x;
                *slope = 1.0f;
            } else {
                *value = expm1f(x);
                *slope = expf(x);
            }
            break;
        case POINTWISE_GELU: {
            // x/2·(1 + tanh u) = x·σ(2u), through σ so that neither 1 ± tanh u cancels.
            const float u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
            const float e = expf(-2.0f * fabsf(u));
            const float big = 1.0f / (1.0f + e), small = e / (1.0f + e);
            const float s = u >= 0.0f ? big : small, s_bar = u >= 0.0f ? small : big;
            const float du = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x * x);
            *value = x * s;
            *slope = s + 2.0f * x * s * s_bar * du;
            break;
        }
        case POINTWISE_SILU: {
            const float s = pointwise_sigmoid(x);
            *value = x * s;
            *slope = s * (1.0f + x * (1.0f - s));
            break;
        }
        default: {  // POINTWISE_SOFTPLUS; the wrapper passes no other kind
            const float r = x > 0.0f ? x : 0.0f;
            *value = r + log1pf(expf(-fabsf(x)));
            *slope = pointwise_sigmoid(x);
            break;
        }
    }
}

extern "C" __global__ void pointwise_forward_f32(GLOBAL(const float) x, GLOBAL(float) y, long long len,
                                                 int kind) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len; i += stride) {
        float value, slope;
        pointwise_value_and_slope(kind, x[i], &value, &slope);
        y[i] = value;
    }
}

extern "C" __global__ void pointwise_backward_f32(GLOBAL(const float) x, GLOBAL(const float) dy,
                                                  GLOBAL(float) dx, long long len, int kind) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len; i += stride) {
        float value, slope;
        pointwise_value_and_slope(kind, x[i], &value, &slope);
        dx[i] = dy[i] * slope;
    }
}
