// Small batched linear layer (DSCANet's Conv1, Conv2 and Conv4 on pooled vectors) and its
// backward, f32.
//
//   forward:      y[n][o] = b[o] + Σ_i w[o][i]·x[n][i]        (then ReLU if relu != 0)
//   input grad:   dx[n][i] += Σ_o dy[n][o]·w[o][i]
//   param grads:  dw[o][i] += Σ_n dy[n][o]·x[n][i],  db[o] += Σ_n dy[n][o]
//
// Launch shapes (src/ops/fc/mod.rs):
// - forward: grid ceil(N·out/8), block 256; each warp owns y[n][o], lanes stride over i.
// - input grad: grid ceil(N·in/256), block 256; one dx[n][i] per thread (loop over o).
// - param grads: grid ceil(out·(in+1)/256), block 256; thread (o, i < in) owns dw[o][i],
//   thread (o, in) owns db[o]; each loops over the batch.
#include "common.cuh"

extern "C" __global__ void fc_forward_f32(GLOBAL(const float) x, GLOBAL(const float) w,
                                          GLOBAL(const float) b, GLOBAL(float) y, int n_rows, int in,
                                          int out, int relu) {
    const long long item = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (item >= (long long)n_rows * out) return;  // whole warps leave together
    const long long n = item / out;
    const int o = (int)(item % out);
    float acc = 0.0f;
    for (int i = lane; i < in; i += 32) acc += w[(long long)o * in + i] * x[n * in + i];
    acc = warp_sum(acc);
    if (lane == 0) {
        const float v = acc + b[o];
        y[item] = (relu != 0 && v < 0.0f) ? 0.0f : v;
    }
}

extern "C" __global__ void fc_backward_input_f32(GLOBAL(const float) dy, GLOBAL(const float) w,
                                                 GLOBAL(float) dx, int n_rows, int in, int out) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n_rows * in) return;
    const long long n = idx / in;
    const int i = (int)(idx % in);
    float acc = 0.0f;
    for (int o = 0; o < out; ++o) acc += dy[n * out + o] * w[(long long)o * in + i];
    dx[idx] += acc;
}

extern "C" __global__ void fc_backward_params_f32(GLOBAL(const float) x, GLOBAL(const float) dy,
                                                  GLOBAL(float) dw, GLOBAL(float) db, int n_rows,
                                                  int in, int out) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)out * (in + 1)) return;
    const int o = (int)(idx / (in + 1)), i = (int)(idx % (in + 1));
    float acc = 0.0f;
    for (int n = 0; n < n_rows; ++n)
        acc += dy[(long long)n * out + o] * (i < in ? x[(long long)n * in + i] : 1.0f);
    if (i < in)
        dw[(long long)o * in + i] += acc;
    else
        db[o] += acc;
}
