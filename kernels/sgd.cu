// In-place SGD step with momentum and L2 weight decay (PyTorch's form, as
// sparta::optim::Sgd), f32, over one flat buffer:
//
//   v ← μ·v + g + λ·p,   p ← p − lr·v
//
// The update is element-wise with the same μ, λ, lr for every element, so when a model
// keeps all its parameters, gradients and velocities in three flat device buffers (each
// tensor a slice at the same offset in all three) ONE launch updates the whole model.
//
// Launch shape (sparta::optim::sgd_launch): 1-D grid-stride, block 256, grid
// min(ceil(len / 256), 8192). Consecutive threads own consecutive elements, so every
// warp access is 128 coalesced bytes: p, g, v are each read once and p, v written once
// (the harness pins this at the minimum sector count). Scalar accesses, not float4:
// they already request each sector exactly once, and the harness (which runs this exact
// source on the CPU) has no reinterpreting vector loads.
#include "common.cuh"

extern "C" __global__ void sgd_update_f32(GLOBAL(float) p, GLOBAL(const float) g,
                                          GLOBAL(float) v, long long len, float lr,
                                          float momentum, float weight_decay) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len; i += stride) {
        const float pi = p[i];
        const float vi = momentum * v[i] + g[i] + weight_decay * pi;
        v[i] = vi;
        p[i] = pi - lr * vi;
    }
}
