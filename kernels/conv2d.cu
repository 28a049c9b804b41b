// 2-D convolution (square kernel R×R, zero padding, no bias), NCHW, f32: the handwritten
// implicit-GEMM path that runs where cuDNN is missing, and its two gradients.
//
//   forward:       y[n,k,p,q]  = Σ_{c,r,s} w[k,c,r,s]·x[n,c, p·st−pad+r, q·st−pad+s]
//   input grad:    dx[n,c,h,v] = Σ_{k,r,s} w[k,c,r,s]·dy[n,k, (h+pad−r)/st, (v+pad−s)/st]
//                                (only taps where both divisions are exact and in range)
//   weight grad:   dw[k,c,r,s] = Σ_{n,p,q} dy[n,k,p,q]·x[n,c, p·st−pad+r, q·st−pad+s]
// x outside the image reads as zero. Every output is overwritten, never accumulated.
//
// Each is a GEMM whose operands are gathered from the tensors on the fly (no im2col
// buffer). One block of 256 threads owns a 64×64 output tile: "tile rows" run along the
// output's contiguous dimension (pixels for y and dx, c·r·s for dw) so that the 16 lanes
// with consecutive threadIdx.x store 16 consecutive elements; "tile columns" are output
// channels. Thread (tx, ty) = (t % 16, t / 16) owns the 4×4 register micro-tile of rows
// tx + 16i and columns ty + 16j. The reduction advances 8 at a time: each thread gathers
// 2 elements of the 8×64 A slice (rows) and 2 of the 8×64 B slice (columns) into
// registers while the block multiplies the previous slice out of shared memory (double
// buffered, one barrier per step). Elements past any edge (rows, columns, reduction)
// are gathered as zeros and never stored, so every size works.
//
// Launch shapes (src/ops/conv2d/mod.rs), block 256, static shared memory only:
// - conv2d_forward_f32: grid (ceil(N·P·Q/64), ceil(K/64)); rows = output pixels (n,p,q),
//   columns = k, reduction c·r·s.
// - conv2d_backward_input_f32: grid (ceil(N·ceil(H/st)·ceil(W/st)/64), ceil(C/64), st²).
//   Only taps with r ≡ h+pad (mod st) reach input row h, so grid z splits the input pixels
//   into the st² classes of (h+pad, v+pad) mod st; within a class every pixel uses the
//   same taps (r = zr, zr+st, …), so the reduction k·r·s runs over those taps only and
//   stride 2 does no work on the 3/4 of taps that cannot touch a pixel. Rows = the class's
//   pixels, columns = c. A class with no taps (1×1 stride 2: odd rows/columns) writes 0.
// - conv2d_backward_weight_f32: grid (ceil(C·R·R/64), ceil(K/64), splits); rows = c·r·s,
//   columns = k, reduction n·p·q cut into `splits` consecutive chunks of `chunk`. Split z
//   writes its tile's partial sums to partial[z][k][c·r·s] (no atomics); with splits = 1
//   `partial` is dw itself. conv2d_backward_weight_reduce_f32 then sums the splits in
//   order z = 0, 1, … (grid ceil(K·C·R·R/256), one dw element per thread), so the result
//   is the same on every run.
//
// Why split-K for the weight gradient only (ResNet-18 on CIFAR at batch 128, 132 SMs):
// the weight gradient's tile count is set by the weight (ceil(CRR/64)·ceil(K/64)) while
// its reduction is the whole batch's output pixels. In the first group (K = C = 64, 32×32
// output) that is 9 tiles over a reduction of 131,072; the stem (C = 3) is one tile; the
// 1×1 stride-2 shortcut to 128 channels two tiles over 32,768. One block per tile would
// leave >90 % of the GPU idle for the whole sum, so the reduction is split until there
// are about two blocks per SM (264), but never into chunks shorter than 256 (below that
// the partial tile written and re-read costs more than the multiply-adds it spreads):
// 30 splits for the first group, 128 for that shortcut, 261 for the stem. In the last group (K = C = 512, 4×4
// output) the weight already has 576 tiles and the reduction is only 2,048: one split,
// written straight into dw, no second pass. The forward and input gradient have a
// row per output / input pixel: the smallest ResNet-18 case (the last group, 2,048
// pixels × 512 channels) is already 256 tiles, so they need no split.
#include "common.cuh"

#define CONV_TILE 64      // rows and columns of a block's output tile
#define CONV_STEP 8       // reduction elements per shared-memory slice
#define CONV_THREADS 256  // threads per block: 16 × 16, each a 4×4 micro-tile
#define CONV_SMEM_PAD 4   // keeps the reduction-major staging stores conflict-free

// Which element of an 8×64 slice (reduction index kk, tile index idx) thread t gathers in
// its slot e (0 or 1). Along the tile: the 64 consecutive threads of a row take 64
// consecutive tile indices (consecutive pixels: coalesced loads). Along the reduction:
// 8 consecutive threads take the 8 reduction indices of one tile index (consecutive in
// memory for w in the forward, the taps of one k for w in the input gradient, output
// pixels for x and dy in the weight gradient).
template <bool AlongReduction> __device__ __forceinline__ int slot_kk(int t, int e) {
    return AlongReduction ? t % CONV_STEP : t / CONV_TILE + (CONV_THREADS / CONV_TILE) * e;
}
template <bool AlongReduction> __device__ __forceinline__ int slot_idx(int t, int e) {
    return AlongReduction ? t / CONV_STEP + (CONV_THREADS / CONV_STEP) * e : t % CONV_TILE;
}

typedef float ConvSlice[CONV_STEP][CONV_TILE + CONV_SMEM_PAD];

// acc[i][j] = Σ_{kk in [k_begin, k_end)} A(row tx+16i, kk)·B(kk, column ty+16j), where
// gather.load(k0, a, b) fetches the slots of slice k0 (zeros past the edges) and the
// gather's A_ALONG_REDUCTION / B_ALONG_REDUCTION say which slot map it uses. Every
// thread of the block must call it with the same range: it synchronizes the block.
template <class Gather>
__device__ __forceinline__ void conv_tile_product(const Gather& gather, int k_begin, int k_end,
                                                  float (&acc)[4][4]) {
    __shared__ float a_slices[2][CONV_STEP][CONV_TILE + CONV_SMEM_PAD];
    __shared__ float b_slices[2][CONV_STEP][CONV_TILE + CONV_SMEM_PAD];
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    if (k_begin >= k_end) return;
    float a_reg[2], b_reg[2];
    int buf = 0;
    gather.load(k_begin, a_reg, b_reg);
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        a_slices[0][slot_kk<Gather::A_ALONG_REDUCTION>(t, e)][slot_idx<Gather::A_ALONG_REDUCTION>(t, e)] = a_reg[e];
        b_slices[0][slot_kk<Gather::B_ALONG_REDUCTION>(t, e)][slot_idx<Gather::B_ALONG_REDUCTION>(t, e)] = b_reg[e];
    }
    __syncthreads();
    for (int k0 = k_begin; k0 < k_end; k0 += CONV_STEP) {
        const bool more = k0 + CONV_STEP < k_end;
        // The next slice's global loads are in flight while this one is multiplied.
        if (more) gather.load(k0 + CONV_STEP, a_reg, b_reg);
        const ConvSlice& as = a_slices[buf];
        const ConvSlice& bs = b_slices[buf];
#pragma unroll
        for (int kk = 0; kk < CONV_STEP; ++kk) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = as[kk][tx + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = bs[kk][ty + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        // The other buffer was last read before the previous barrier: safe to refill.
        if (more) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                a_slices[buf ^ 1][slot_kk<Gather::A_ALONG_REDUCTION>(t, e)][slot_idx<Gather::A_ALONG_REDUCTION>(t, e)] = a_reg[e];
                b_slices[buf ^ 1][slot_kk<Gather::B_ALONG_REDUCTION>(t, e)][slot_idx<Gather::B_ALONG_REDUCTION>(t, e)] = b_reg[e];
            }
        }
        __syncthreads();
        buf ^= 1;
    }
}

// ---- forward: rows = output pixels m = (n, p, q), columns = k, reduction = (c, r, s) ----

struct ForwardGather {
    static constexpr bool A_ALONG_REDUCTION = false;  // a thread's pixel is fixed: coalesced x
    static constexpr bool B_ALONG_REDUCTION = true;   // w[k][c·r·s] is contiguous in c·r·s
    GLOBAL(const float) x;
    GLOBAL(const float) w;
    int C, H, W, R, crr;
    bool pixel_ok;
    int x_sample, ih0, iw0;  // this thread's pixel: n·C·H·W, p·st − pad, q·st − pad
    bool k_ok[2];
    int w_row[2];  // k·crr of this thread's two weight rows

    __device__ void load(int k0, float (&a)[2], float (&b)[2]) const {
        const int t = threadIdx.x;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int kk = k0 + slot_kk<A_ALONG_REDUCTION>(t, e);
            float v = 0.0f;
            if (pixel_ok && kk < crr) {
                const int c = kk / (R * R), rs = kk - c * R * R;
                const int ih = ih0 + rs / R, iw = iw0 + rs % R;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W) v = x[x_sample + (c * H + ih) * W + iw];
            }
            a[e] = v;
        }
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int kk = k0 + slot_kk<B_ALONG_REDUCTION>(t, e);
            b[e] = (k_ok[e] && kk < crr) ? w[w_row[e] + kk] : 0.0f;
        }
    }
};

extern "C" __global__ void conv2d_forward_f32(GLOBAL(const float) x, GLOBAL(const float) w,
                                              GLOBAL(float) y, int N, int C, int H, int W, int K,
                                              int R, int stride, int pad, int P, int Q) {
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;
    const int m0 = blockIdx.x * CONV_TILE, k_col0 = blockIdx.y * CONV_TILE;
    const int PQ = P * Q, M = N * PQ;
    ForwardGather g{x, w, C, H, W, R, C * R * R, false, 0, 0, 0, {false, false}, {0, 0}};
    {
        const int m = m0 + slot_idx<ForwardGather::A_ALONG_REDUCTION>(t, 0);
        g.pixel_ok = m < M;
        // Offsets are formed only for elements that exist: they then stay below the
        // buffers' lengths, which the wrapper checked to fit an int.
        const int n = g.pixel_ok ? m / PQ : 0, pq = m % PQ;
        g.x_sample = n * C * H * W;
        g.ih0 = (pq / Q) * stride - pad;
        g.iw0 = (pq % Q) * stride - pad;
    }
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        const int k = k_col0 + slot_idx<ForwardGather::B_ALONG_REDUCTION>(t, e);
        g.k_ok[e] = k < K;
        g.w_row[e] = g.k_ok[e] ? k * g.crr : 0;
    }
    float acc[4][4];
    conv_tile_product(g, 0, g.crr, acc);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int m = m0 + tx + 16 * i;
        if (m >= M) continue;
        const int n = m / PQ, pq = m % PQ;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int k = k_col0 + ty + 16 * j;
            if (k < K) y[(n * K + k) * PQ + pq] = acc[i][j];
        }
    }
}

// ---- input grad, one residue class (zr, zs) of (h+pad, v+pad) mod st per grid z:
// rows = the class's pixels (n, i, j) at h = h0 + st·i, v = v0 + st·j; columns = c;
// reduction = (k, jr, js) over the class's taps r = zr + st·jr, s = zs + st·js. ----

// First row (or column) of the input whose taps are ≡ zr (mod st), and how many rows of
// `len` the class has.
__device__ __forceinline__ int class_first(int zr, int pad, int stride) {
    return ((zr - pad) % stride + stride) % stride;
}
__device__ __forceinline__ int class_count(int first, int len, int stride) {
    return first < len ? (len - first + stride - 1) / stride : 0;
}

struct InputGather {
    static constexpr bool A_ALONG_REDUCTION = false;  // a thread's pixel is fixed
    static constexpr bool B_ALONG_REDUCTION = true;   // w[k][c][r][s]: taps of one k adjacent
    GLOBAL(const float) dy;
    GLOBAL(const float) w;
    int C, R, P, Q, taps_r, taps_s, zr, zs, stride, reduction;
    bool pixel_ok;
    int dy_sample, p_top, q_left;  // this thread's pixel: n·K·P·Q, and p, q of its tap jr = js = 0
    bool c_ok[2];
    int c[2];

    __device__ void load(int k0, float (&a)[2], float (&b)[2]) const {
        const int t = threadIdx.x, taps = taps_r * taps_s;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int kk = k0 + slot_kk<A_ALONG_REDUCTION>(t, e);
            float v = 0.0f;
            if (pixel_ok && kk < reduction) {
                const int k = kk / taps, tap = kk - k * taps;
                const int p = p_top - tap / taps_s, q = q_left - tap % taps_s;
                if (p >= 0 && p < P && q >= 0 && q < Q) v = dy[dy_sample + (k * P + p) * Q + q];
            }
            a[e] = v;
        }
        // Both B slots share one reduction index (k, r, s).
        const int kk = k0 + slot_kk<B_ALONG_REDUCTION>(t, 0);
        const bool kk_ok = kk < reduction;
        const int k = kk_ok ? kk / taps : 0, tap = kk - k * taps;
        const int r = zr + stride * (kk_ok ? tap / taps_s : 0);
        const int s = zs + stride * (kk_ok ? tap % taps_s : 0);
#pragma unroll
        for (int e = 0; e < 2; ++e) b[e] = (kk_ok && c_ok[e]) ? w[((k * C + c[e]) * R + r) * R + s] : 0.0f;
    }
};

extern "C" __global__ void conv2d_backward_input_f32(GLOBAL(const float) dy, GLOBAL(const float) w,
                                                     GLOBAL(float) dx, int N, int C, int H, int W,
                                                     int K, int R, int stride, int pad, int P,
                                                     int Q) {
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;
    const int zr = blockIdx.z / stride, zs = blockIdx.z % stride;
    const int h0 = class_first(zr, pad, stride), v0 = class_first(zs, pad, stride);
    const int rows = class_count(h0, H, stride), cols = class_count(v0, W, stride);
    const int pixels = N * rows * cols;
    const int m0 = blockIdx.x * CONV_TILE, c_col0 = blockIdx.y * CONV_TILE;
    // The grid covers the largest class; the whole block leaves together, before any barrier.
    if (m0 >= pixels) return;
    const int taps_r = class_count(zr, R, stride), taps_s = class_count(zs, R, stride);
    InputGather g{dy, w, C, R, P, Q, taps_r, taps_s, zr, zs, stride, K * taps_r * taps_s,
                  false, 0, 0, 0, {false, false}, {0, 0}};
    {
        const int m = m0 + slot_idx<InputGather::A_ALONG_REDUCTION>(t, 0);
        g.pixel_ok = m < pixels;
        const int n = g.pixel_ok ? m / (rows * cols) : 0, rc = m % (rows * cols);
        g.dy_sample = n * K * P * Q;
        // (h0 + pad − zr) is a non-negative multiple of st by the choice of h0.
        g.p_top = (h0 + pad - zr) / stride + rc / cols;
        g.q_left = (v0 + pad - zs) / stride + rc % cols;
    }
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        g.c[e] = c_col0 + slot_idx<InputGather::B_ALONG_REDUCTION>(t, e);
        g.c_ok[e] = g.c[e] < C;
    }
    float acc[4][4];
    conv_tile_product(g, 0, g.reduction, acc);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int m = m0 + tx + 16 * i;
        if (m >= pixels) continue;
        const int n = m / (rows * cols), rc = m % (rows * cols);
        const int h = h0 + stride * (rc / cols), v = v0 + stride * (rc % cols);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int c = c_col0 + ty + 16 * j;
            if (c < C) dx[((n * C + c) * H + h) * W + v] = acc[i][j];
        }
    }
}

// ---- weight grad: rows = (c, r, s), columns = k, reduction = (n, p, q) of one split ----

struct WeightGather {
    static constexpr bool A_ALONG_REDUCTION = true;  // 8 lanes read 8 consecutive output pixels
    static constexpr bool B_ALONG_REDUCTION = true;  // of x (stride st apart) and of dy
    GLOBAL(const float) x;
    GLOBAL(const float) dy;
    int C, H, W, K, Q, PQ, stride, k_end;
    bool row_ok[2];
    int x_plane[2], dr[2], ds[2];  // per row (c, r, s): c·H·W, r − pad, s − pad
    bool k_ok[2];
    int dy_plane[2];  // per column k: k·P·Q

    __device__ void load(int k0, float (&a)[2], float (&b)[2]) const {
        // Both maps run along the reduction, so both slots of A and B share one (n, p, q).
        const int kk = k0 + slot_kk<true>(threadIdx.x, 0);
        const bool kk_ok = kk < k_end;
        const int n = kk / PQ, pq = kk - n * PQ;
        const int ih0 = (pq / Q) * stride, iw0 = (pq % Q) * stride;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int ih = ih0 + dr[e], iw = iw0 + ds[e];
            const bool in = kk_ok && row_ok[e] && ih >= 0 && ih < H && iw >= 0 && iw < W;
            a[e] = in ? x[n * C * H * W + x_plane[e] + ih * W + iw] : 0.0f;
            b[e] = (kk_ok && k_ok[e]) ? dy[n * K * PQ + dy_plane[e] + pq] : 0.0f;
        }
    }
};

extern "C" __global__ void conv2d_backward_weight_f32(GLOBAL(const float) x, GLOBAL(const float) dy,
                                                      GLOBAL(float) partial, int N, int C, int H,
                                                      int W, int K, int R, int stride, int pad,
                                                      int P, int Q, int chunk) {
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;
    const int crr = C * R * R, PQ = P * Q;
    const int row0 = blockIdx.x * CONV_TILE, k_col0 = blockIdx.y * CONV_TILE;
    const int k_begin = blockIdx.z * chunk;
    const int k_end = min(k_begin + chunk, N * PQ);
    WeightGather g{x, dy, C, H, W, K, Q, PQ, stride, k_end, {false, false}, {0, 0}, {0, 0},
                   {0, 0}, {false, false}, {0, 0}};
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        const int row = row0 + slot_idx<true>(t, e);
        const int c = row / (R * R), rs = row % (R * R);
        g.row_ok[e] = row < crr;
        g.x_plane[e] = g.row_ok[e] ? c * H * W : 0;
        g.dr[e] = rs / R - pad;
        g.ds[e] = rs % R - pad;
        const int k = k_col0 + slot_idx<true>(t, e);
        g.k_ok[e] = k < K;
        g.dy_plane[e] = g.k_ok[e] ? k * PQ : 0;
    }
    float acc[4][4];
    conv_tile_product(g, k_begin, k_end, acc);
    const long long split_base = (long long)blockIdx.z * K * crr;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int row = row0 + tx + 16 * i;
        if (row >= crr) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int k = k_col0 + ty + 16 * j;
            if (k < K) partial[split_base + k * crr + row] = acc[i][j];
        }
    }
}

// dw[i] = Σ_{z < splits} partial[z][i], summed in the order z = 0, 1, …
extern "C" __global__ void conv2d_backward_weight_reduce_f32(GLOBAL(const float) partial,
                                                             GLOBAL(float) dw, int len, int splits) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    float acc = 0.0f;
    for (int z = 0; z < splits; ++z) acc += partial[(long long)z * len + i];
    dw[i] = acc;
}
