// The fused SPARTA gate  Y = max(X,0) · σ(s ⊗ c)  (docs/design.md#activation), its fused backward, and
// the unfused three-pass peer the benchmarks compare it with.
//
// Shapes: x, y, dy, dx are [N, C, H, W]; c, dc are [N, C]; s, ds are [N, SH, SW] with
// SH = ceil(H/B), SW = ceil(W/B) for block size B >= 1 (paper Eq. 6): the gate of pixel
// (h, w) reads s[n, h/B, w/B]. T is f32, f16 or bf16 (suffix _f32, _f16, _bf16); all
// arithmetic and every accumulator is f32. Ints are C `int`: the Rust wrappers refuse
// tensors of 2^31 elements or more.
//
// Entry points, arguments in this order:
//   gate_forward_<T>(x, s, c, y, N, C, H, W, B)
//       y = max(x,0) · σ(s[n,h/B,w/B] · c[n,ch])
//   gate_backward_<T>(x, s, c, dy, dx, ds_partial, dc, N, C, H, W, B)
//       dx = dy · g · [x >= 0]            (direct term only; paper's convention at 0)
//       dA = dy · max(x,0) · g · (1 - g)  with g = σ(s·c) recomputed (g is never stored)
//       dc[n,ch] = Σ_hw dA · s            (complete: one block sees every pixel of n)
//       ds_partial[n, grp, h, w] = Σ_{ch in channel group grp} dA · c   (f32 scratch)
//   gate_backward_ds_<T>(ds_partial, ds, N, groups, H, W, B)
//       ds[n,bh,bw] = Σ_grp Σ_{(h,w) in the B×B block (bh,bw)} ds_partial[n,grp,h,w]
//   gate_unfused_sigmoid_<T>(s, c, g, N, C, H, W, B)   g = σ(s ⊗ c) as a full [N,C,H,W]
//   gate_unfused_mul_<T>(a, b, y, long long len)       y = a · b
//   gate_forward_f32map_<T>, gate_backward_f32map_<T> (T = f16, bf16): the same with
//       s, c, dc in f32 (the SPARTA layer's maps); then gate_backward_ds_f32 for ds.
// The unfused peer is relu_forward (relu.cu), then these two: three passes over memory.
//
// Launch shape of gate_forward, gate_backward and gate_unfused_sigmoid
// (sparta::ops::gate::gate_launch): block (PX, CY) with PX = min(256, next power of two
// >= max(H·W, 32)) and CY = 256 / PX, so small images put several channels side by side
// instead of idling lanes. A block owns one sample n and one group of CY·GATE_CPT
// channels; grid.x = N · groups, groups = ceil(C / (CY·GATE_CPT)). Thread (tx, ty) owns
// channels group_start + ty + CY·j (j < GATE_CPT) at pixels tx, tx + PX, …: for each of
// its pixels it reads s once and then GATE_CPT independent elements of x (and dy), so
// each warp access is 32 consecutive pixels of one channel (coalesced) and each element
// of x, y, dy, dx is touched exactly once. No division happens per element: h, w and the
// s index are computed once per pixel and reused across the thread's channels.
//
// Backward determinism (why this design): ds sums over channels and dc over pixels,
// and float atomics would make both depend on scheduling. Here a block covers every
// pixel of its (n, channel group), so dc is reduced completely inside the block (per
// thread over its pixels, then warp_sum, then the row's warps in index order). ds is
// summed per thread over its GATE_CPT channels, then over the CY rows of the block in
// order, and written as one f32 partial per (n, group, pixel); the tiny second kernel
// gate_backward_ds sums the groups and the B×B block in a fixed order. x and dy are read
// once; the scratch is 1/(CY·GATE_CPT) of x. Same inputs and shape, same bits.
// gate_backward_ds and gate_unfused_mul are 1-D grid-stride kernels, 256 threads a block
// (sparta::ops::gate::gate_ds_launch, sparta::ops::gate::gate_mul_launch).
#include "common.cuh"

// Channels per thread; the Rust launch functions use the same constant (GATE_CPT).
#define GATE_CPT 8
#define GATE_MUL_ILP 4

// Where a block and thread sit: sample, first channel of the thread, channel step.
struct GateTile {
    int n;
    int group;
    int groups;
    int ch0;
};

__device__ __forceinline__ GateTile gate_tile(int C) {
    const int per_group = blockDim.y * GATE_CPT;
    const int groups = (C + per_group - 1) / per_group;
    GateTile t;
    t.n = blockIdx.x / groups;
    t.group = blockIdx.x - t.n * groups;
    t.groups = groups;
    t.ch0 = t.group * per_group + threadIdx.y;
    return t;
}

// Index of s for pixel p of sample n.
__device__ __forceinline__ int gate_s_index(int n, int p, int H, int W, int B) {
    const int sh = (H + B - 1) / B, sw = (W + B - 1) / B;
    const int h = p / W, w = p - h * W;
    return (n * sh + h / B) * sw + w / B;
}

template <typename T, typename M>
__device__ __forceinline__ void gate_forward_impl(GLOBAL(const T) x, GLOBAL(const M) s,
                                                  GLOBAL(const M) c, GLOBAL(T) y, int N, int C,
                                                  int H, int W, int B) {
    const GateTile t = gate_tile(C);
    if (t.n >= N) return;
    const int HW = H * W;
    float cv[GATE_CPT];
#pragma unroll
    for (int j = 0; j < GATE_CPT; ++j) {
        const int ch = t.ch0 + j * (int)blockDim.y;
        cv[j] = ch < C ? to_f32(c[t.n * C + ch]) : 0.0f;
    }
    for (int p = threadIdx.x; p < HW; p += blockDim.x) {
        const float sv = to_f32(s[gate_s_index(t.n, p, H, W, B)]);
#pragma unroll
        for (int j = 0; j < GATE_CPT; ++j) {
            const int ch = t.ch0 + j * (int)blockDim.y;
            if (ch < C) {
                const int i = (t.n * C + ch) * HW + p;
                const float xv = to_f32(x[i]);
                const float r = xv < 0.0f ? 0.0f : xv;
                y[i] = from_f32<T>(r * sigmoid_f32(sv * cv[j]));
            }
        }
    }
}

template <typename T, typename M>
__device__ __forceinline__ void gate_backward_impl(GLOBAL(const T) x, GLOBAL(const M) s,
                                                   GLOBAL(const M) c, GLOBAL(const T) dy,
                                                   GLOBAL(T) dx, GLOBAL(float) ds_partial,
                                                   GLOBAL(M) dc, int N, int C, int H, int W,
                                                   int B) {
    // One float per thread: the block is always 256 threads (PX · CY).
    __shared__ float red[256];
    const GateTile t = gate_tile(C);
    if (t.n >= N) return;  // uniform over the block: no __syncthreads is skipped by half
    const int HW = H * W;
    const int row = threadIdx.y * blockDim.x;
    float cv[GATE_CPT];
    float dc_acc[GATE_CPT];
#pragma unroll
    for (int j = 0; j < GATE_CPT; ++j) {
        const int ch = t.ch0 + j * (int)blockDim.y;
        cv[j] = ch < C ? to_f32(c[t.n * C + ch]) : 0.0f;
        dc_acc[j] = 0.0f;
    }
    // The trip count is the same for every thread, so the barriers below are safe.
    for (int base = 0; base < HW; base += blockDim.x) {
        const int p = base + threadIdx.x;
        float ds_acc = 0.0f;
        if (p < HW) {
            const float sv = to_f32(s[gate_s_index(t.n, p, H, W, B)]);
#pragma unroll
            for (int j = 0; j < GATE_CPT; ++j) {
                const int ch = t.ch0 + j * (int)blockDim.y;
                if (ch < C) {
                    const int i = (t.n * C + ch) * HW + p;
                    const float xv = to_f32(x[i]);
                    const float d = to_f32(dy[i]);
                    const float g = sigmoid_f32(sv * cv[j]);
                    dx[i] = from_f32<T>(xv >= 0.0f ? d * g : 0.0f);
                    const float r = xv < 0.0f ? 0.0f : xv;
                    const float da = d * r * g * (1.0f - g);
                    ds_acc += da * cv[j];
                    dc_acc[j] += da * sv;
                }
            }
        }
        const int out = (t.n * t.groups + t.group) * HW + p;
        if (blockDim.y == 1) {
            if (p < HW) ds_partial[out] = ds_acc;
        } else {
            red[row + threadIdx.x] = ds_acc;
            __syncthreads();
            if (threadIdx.y == 0 && p < HW) {
                float sum = 0.0f;
                for (int k = 0; k < (int)blockDim.y; ++k) sum += red[k * blockDim.x + threadIdx.x];
                ds_partial[out] = sum;
            }
            __syncthreads();
        }
    }
    // dc: sum each channel's per-thread partials over the PX threads of its row.
    const int warps_per_row = blockDim.x / 32;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
#pragma unroll
    for (int j = 0; j < GATE_CPT; ++j) {
        const float v = warp_sum(dc_acc[j]);
        if (lane == 0) red[threadIdx.y * warps_per_row + warp] = v;
        __syncthreads();
        const int ch = t.ch0 + j * (int)blockDim.y;
        if (threadIdx.x == 0 && ch < C) {
            float sum = 0.0f;
            for (int k = 0; k < warps_per_row; ++k) sum += red[threadIdx.y * warps_per_row + k];
            dc[t.n * C + ch] = from_f32<M>(sum);
        }
        __syncthreads();
    }
}

template <typename T>
__device__ __forceinline__ void gate_backward_ds_impl(GLOBAL(const float) ds_partial,
                                                      GLOBAL(T) ds, int N, int groups, int H,
                                                      int W, int B) {
    const int sh = (H + B - 1) / B, sw = (W + B - 1) / B;
    const int total = N * sh * sw;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        const int n = i / (sh * sw);
        const int r = i - n * sh * sw;
        const int bh = r / sw, bw = r - bh * sw;
        // Blocks at the bottom and right edges are clipped to the image.
        const int h_end = (bh + 1) * B < H ? (bh + 1) * B : H;
        const int w_end = (bw + 1) * B < W ? (bw + 1) * B : W;
        float sum = 0.0f;
        for (int grp = 0; grp < groups; ++grp) {
            const int plane = (n * groups + grp) * H;
            for (int h = bh * B; h < h_end; ++h)
                for (int w = bw * B; w < w_end; ++w) sum += ds_partial[(plane + h) * W + w];
        }
        ds[i] = from_f32<T>(sum);
    }
}

template <typename T>
__device__ __forceinline__ void gate_unfused_sigmoid_impl(GLOBAL(const T) s, GLOBAL(const T) c,
                                                          GLOBAL(T) g, int N, int C, int H,
                                                          int W, int B) {
    const GateTile t = gate_tile(C);
    if (t.n >= N) return;
    const int HW = H * W;
    for (int p = threadIdx.x; p < HW; p += blockDim.x) {
        const float sv = to_f32(s[gate_s_index(t.n, p, H, W, B)]);
#pragma unroll
        for (int j = 0; j < GATE_CPT; ++j) {
            const int ch = t.ch0 + j * (int)blockDim.y;
            if (ch < C) {
                const int i = (t.n * C + ch) * HW + p;
                g[i] = from_f32<T>(sigmoid_f32(sv * to_f32(c[t.n * C + ch])));
            }
        }
    }
}

template <typename T>
__device__ __forceinline__ void gate_unfused_mul_impl(GLOBAL(const T) a, GLOBAL(const T) b,
                                                      GLOBAL(T) y, long long len) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long base = (long long)blockIdx.x * blockDim.x + threadIdx.x; base < len;
         base += stride * GATE_MUL_ILP) {
        float av[GATE_MUL_ILP], bv[GATE_MUL_ILP];
#pragma unroll
        for (int k = 0; k < GATE_MUL_ILP; ++k) {
            const long long i = base + k * stride;
            av[k] = i < len ? to_f32(a[i]) : 0.0f;
            bv[k] = i < len ? to_f32(b[i]) : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < GATE_MUL_ILP; ++k) {
            const long long i = base + k * stride;
            if (i < len) y[i] = from_f32<T>(av[k] * bv[k]);
        }
    }
}

#define GATE_ENTRY_POINTS(SUFFIX, T)                                                          \
    extern "C" __global__ void gate_forward_##SUFFIX(GLOBAL(const T) x, GLOBAL(const T) s,    \
                                                     GLOBAL(const T) c, GLOBAL(T) y, int N,   \
                                                     int C, int H, int W, int B) {            \
        gate_forward_impl<T, T>(x, s, c, y, N, C, H, W, B);                                      \
    }                                                                                         \
    extern "C" __global__ void gate_backward_##SUFFIX(                                        \
        GLOBAL(const T) x, GLOBAL(const T) s, GLOBAL(const T) c, GLOBAL(const T) dy,          \
        GLOBAL(T) dx, GLOBAL(float) ds_partial, GLOBAL(T) dc, int N, int C, int H, int W,     \
        int B) {                                                                              \
        gate_backward_impl<T, T>(x, s, c, dy, dx, ds_partial, dc, N, C, H, W, B);                \
    }                                                                                         \
    extern "C" __global__ void gate_backward_ds_##SUFFIX(GLOBAL(const float) ds_partial,      \
                                                         GLOBAL(T) ds, int N, int groups,     \
                                                         int H, int W, int B) {               \
        gate_backward_ds_impl<T>(ds_partial, ds, N, groups, H, W, B);                         \
    }                                                                                         \
    extern "C" __global__ void gate_unfused_sigmoid_##SUFFIX(GLOBAL(const T) s,               \
                                                             GLOBAL(const T) c, GLOBAL(T) g,  \
                                                             int N, int C, int H, int W,      \
                                                             int B) {                         \
        gate_unfused_sigmoid_impl<T>(s, c, g, N, C, H, W, B);                                 \
    }                                                                                         \
    extern "C" __global__ void gate_unfused_mul_##SUFFIX(GLOBAL(const T) a, GLOBAL(const T) b, \
                                                         GLOBAL(T) y, long long len) {        \
        gate_unfused_mul_impl<T>(a, b, y, len);                                               \
    }

GATE_ENTRY_POINTS(f32, float)
GATE_ENTRY_POINTS(f16, __half)
GATE_ENTRY_POINTS(bf16, __nv_bfloat16)

// Activations in f16 / bf16, maps in f32 (the SPARTA layer's own s and c): no rounding of
// s, c, ds or dc to the activation type. ds is finished by gate_backward_ds_f32.
#define GATE_F32MAP_ENTRY_POINTS(SUFFIX, T)                                                   \
    extern "C" __global__ void gate_forward_f32map_##SUFFIX(                                  \
        GLOBAL(const T) x, GLOBAL(const float) s, GLOBAL(const float) c, GLOBAL(T) y, int N,  \
        int C, int H, int W, int B) {                                                         \
        gate_forward_impl<T, float>(x, s, c, y, N, C, H, W, B);                               \
    }                                                                                         \
    extern "C" __global__ void gate_backward_f32map_##SUFFIX(                                 \
        GLOBAL(const T) x, GLOBAL(const float) s, GLOBAL(const float) c, GLOBAL(const T) dy,  \
        GLOBAL(T) dx, GLOBAL(float) ds_partial, GLOBAL(float) dc, int N, int C, int H, int W, \
        int B) {                                                                              \
        gate_backward_impl<T, float>(x, s, c, dy, dx, ds_partial, dc, N, C, H, W, B);         \
    }

GATE_F32MAP_ENTRY_POINTS(f16, __half)
GATE_F32MAP_ENTRY_POINTS(bf16, __nv_bfloat16)
