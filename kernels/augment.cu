// The training augmentation of sparta::data::augment on the device, f32: random crop from
// a zero-padded image and horizontal flip, per image, out of place (a crop reads its
// neighbours' pixels, so it cannot run in place):
//
//   dst[s][ch][r][c] = src[s][ch][r + dy_s][c' + dx_s]   if inside the image, else 0,
//   c' = flip_s ? w − 1 − c : c
// with (dy_s, dx_s, flip_s) = params[3s .. 3s + 3], drawn on the host by
// crop_flip_draws (the same RNG calls as crop_flip_batch), so the device batch equals the
// host one for the same seed.
//
// Launch shape (sparta::data::augment::crop_flip_launch): 1-D grid-stride over the
// N·C·H·W output pixels, block 256, grid min(ceil(len / 256), 8192). Consecutive threads
// write consecutive pixels (dst stored once, coalesced); each reads one source pixel of
// the same row shifted by dx (reversed when flipped), so a warp's loads stay within a
// row's sectors; padding pixels load nothing.
#include "common.cuh"

extern "C" __global__ void augment_crop_flip_f32(GLOBAL(const float) src, GLOBAL(float) dst,
                                                 GLOBAL(const int) params, int n, int c, int h,
                                                 int w) {
    const long long image = (long long)c * h * w;
    const long long len = image * n;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len; i += stride) {
        const long long s = i / image;
        const int col = (int)(i % w);
        const int row = (int)((i / w) % h);
        const int sr = row + params[3 * s];
        const int sc = (params[3 * s + 2] != 0 ? w - 1 - col : col) + params[3 * s + 1];
        const bool inside = sr >= 0 && sr < h && sc >= 0 && sc < w;
        // i − col − row·w is the start of this (sample, channel) plane
        dst[i] = inside ? src[i - col - (long long)row * w + (long long)sr * w + sc] : 0.0f;
    }
}
