// Softmax cross-entropy of logits [N, K] against labels (int, 0 ≤ label < K), f32.
//
//   rows:   loss[n]  = log Σ_j exp(z_j − max) + max − z[label]
//           dz[n][j] = (softmax(z)_j − [j = label]) · grad_scale
//           correct[n] = [argmax_j z_j = label], argmax the first largest logit, with
//           NaN never winning (and index 0 when z_0 is NaN), as sparta's argmax_rows
//   reduce: loss_total = (Σ_n loss[n]) · loss_scale,  correct_total = Σ_n correct[n]
// grad_scale and loss_scale are 1/N for the batch mean (training) and 1 for the sum
// (per-sample input gradients of attacks), as sparta::ops::loss. A label outside
// [0, K) gives a NaN loss and a gradient without the −1 rather than reading outside the
// row (the host op rejects such labels before any work).
//
// Launch shapes (src/ops/loss/mod.rs):
// - rows: grid ceil(N / 8), block 256; warp w of block b owns row 8b + w, its lanes
//   stride over the K logits (three passes over the row: max / argmax, Σ exp, dz), the
//   warp reductions are shuffles in a fixed butterfly order.
// - reduce: grid 1, block CE_REDUCE_THREADS (256); thread t sums rows t, t + 256, …,
//   then a fixed-order tree in shared memory: deterministic, no atomics.
#include "common.cuh"

#define CE_ROWS_PER_BLOCK 8
#define CE_REDUCE_THREADS 256
#define CE_NO_INDEX 0x7fffffff

// (v, i) beats (best_v, best_i): a larger value, or the same value at a smaller index.
// CE_NO_INDEX marks "no candidate yet" (a lane that saw only NaN).
__device__ __forceinline__ bool ce_beats(float v, int i, float best_v, int best_i) {
    return i != CE_NO_INDEX && (best_i == CE_NO_INDEX || v > best_v || (v == best_v && i < best_i));
}

extern "C" __global__ void cross_entropy_rows_f32(GLOBAL(const float) logits,
                                                  GLOBAL(const int) labels, GLOBAL(float) loss,
                                                  GLOBAL(float) dlogits, GLOBAL(int) correct,
                                                  int n, int k, float grad_scale) {
    const long long row = (long long)blockIdx.x * CE_ROWS_PER_BLOCK + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= n) return;  // whole warps leave together
    const long long base = row * k;
    float best_v = 0.0f;
    int best_i = CE_NO_INDEX;
    for (int j = lane; j < k; j += 32) {
        const float v = logits[base + j];
        if (v == v && ce_beats(v, j, best_v, best_i)) {  // v == v: NaN never wins
            best_v = v;
            best_i = j;
        }
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
        const float other_v = __shfl_xor_sync(0xffffffffu, best_v, offset);
        const int other_i = __shfl_xor_sync(0xffffffffu, best_i, offset);
        if (ce_beats(other_v, other_i, best_v, best_i)) {
            best_v = other_v;
            best_i = other_i;
        }
    }
    // The softmax shift is the plain max (NaN propagates into the loss, as on the CPU).
    float max = -inf_f32();
    for (int j = lane; j < k; j += 32) max = fmaxf(max, logits[base + j]);
    for (int offset = 16; offset > 0; offset >>= 1)
        max = fmaxf(max, __shfl_xor_sync(0xffffffffu, max, offset));
    float z = 0.0f;
    for (int j = lane; j < k; j += 32) z += expf(logits[base + j] - max);
    z = warp_sum(z);
    const int label = labels[row];
    const bool valid = label >= 0 && label < k;
    for (int j = lane; j < k; j += 32) {
        const float p = expf(logits[base + j] - max) / z;
        dlogits[base + j] = (j == label ? p - 1.0f : p) * grad_scale;
    }
    if (lane == 0) {
        loss[row] = valid ? logf(z) + max - logits[base + label] : nan_f32();
        const int argmax = (best_i == CE_NO_INDEX || logits[base] != logits[base]) ? 0 : best_i;
        correct[row] = argmax == label ? 1 : 0;
    }
}

extern "C" __global__ void cross_entropy_reduce_f32(GLOBAL(const float) loss,
                                                    GLOBAL(const int) correct,
                                                    GLOBAL(float) loss_total,
                                                    GLOBAL(int) correct_total, int n,
                                                    float loss_scale) {
    __shared__ float loss_partial[CE_REDUCE_THREADS];
    __shared__ int correct_partial[CE_REDUCE_THREADS];
    float l = 0.0f;
    int hits = 0;
    for (int i = threadIdx.x; i < n; i += CE_REDUCE_THREADS) {
        l += loss[i];
        hits += correct[i];
    }
    loss_partial[threadIdx.x] = l;
    correct_partial[threadIdx.x] = hits;
    __syncthreads();
    for (int half = CE_REDUCE_THREADS / 2; half > 0; half >>= 1) {
        if ((int)threadIdx.x < half) {
            loss_partial[threadIdx.x] += loss_partial[threadIdx.x + half];
            correct_partial[threadIdx.x] += correct_partial[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        loss_total[0] = loss_partial[0] * loss_scale;
        correct_total[0] = correct_partial[0];
    }
}
