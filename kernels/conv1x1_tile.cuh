// The 16×16 shared-memory tile product behind every 1×1-conv kernel (conv1x1.cu and the
// fused SANet kernels of sanet.cu). Include after common.cuh.
//
// conv1x1_tile_dot returns Σ_k A(r, k)·B(k, p) for r = blockIdx-tile row + threadIdx.y and
// p = pixel tile + threadIdx.x: A is `rows × K` read through explicit strides (so the
// weight can be used as stored or transposed), B is a row-major `K × pixels` matrix (one
// sample's channels × pixels) stored as TB (f32, f16 or bf16; widened to f32 as it is
// staged). Out-of-range rows and pixels contribute zeros and return
// 0, so edge tiles need no special case. Every thread of the 16×16 block must call it:
// it synchronizes the block.
#pragma once

#define CONV_TILE 16

template <typename TB>
__device__ __forceinline__ float conv1x1_tile_dot(GLOBAL(const float) a, long long a_row_stride,
                                                  long long a_col_stride, int rows,
                                                  GLOBAL(const TB) b, int K, int pixels,
                                                  int r, int p) {
    __shared__ float a_tile[CONV_TILE][CONV_TILE + 1];
    __shared__ float b_tile[CONV_TILE][CONV_TILE + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += CONV_TILE) {
        // Thread (tx, ty) stages A(r, k0 + tx) and B(k0 + ty, p).
        a_tile[ty][tx] = (r < rows && k0 + tx < K)
                             ? a[r * a_row_stride + (long long)(k0 + tx) * a_col_stride]
                             : 0.0f;
        b_tile[ty][tx] = (p < pixels && k0 + ty < K) ? to_f32(b[(long long)(k0 + ty) * pixels + p]) : 0.0f;
        __syncthreads();
        for (int k = 0; k < CONV_TILE; ++k) acc += a_tile[ty][k] * b_tile[k][tx];
        __syncthreads();
    }
    return acc;
}

// Sum over the 16 threads of one tile row (threadIdx.x = 0..15 are 16 consecutive lanes
// of one warp, the row above or below holds the other 16); every lane of the row gets it.
__device__ __forceinline__ float tile_row_sum(float v) {
    for (int offset = CONV_TILE / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}
