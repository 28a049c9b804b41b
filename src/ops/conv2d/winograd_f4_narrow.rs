//! Winograd F(4×4, 3×3) in AVX-512 registers, fused per sample: the f32 CPU forward and
//! input gradient of the stride-1, padding-1 3×3 convolutions with 16, 32 or 64
//! channels in and out on images up to 32×32 ([`chosen`]: the main job's 16×28×28,
//! 32×14×14 and 64×7×7, ResNet-18's 64×32×32).
//!
//! `winograd_f4.rs` computes the same transforms as loops over vectors of channels and
//! runs each step over a whole group of samples; with 16 or 32 channels its transforms
//! cost more than its 4× fewer multiply-adds save, and the direct loop (`direct.rs`)
//! was faster. Here one register holds 16 channels of one pixel, a sample is one rayon
//! task, and each band of tiles (whole tile rows or pieces of one, up to 8 tiles, 4
//! with 64 channels) passes through all steps while it is in L1:
//!
//! - the sample is first copied channel-last with its zero padding, a 16×16 transpose
//!   in registers per 16 pixels and 16 channels;
//! - per tile of the band and 16 input channels, `Bᵀ · d · B` on 36 registers, stored
//!   as `V[tile][ξ][ci]`;
//! - per ξ, `M[tile][ξ][co] = Σ_ci V[tile][ξ][ci] · U[ξ][ci][co]` for all tiles of the
//!   band at once: one accumulator per tile and 16 output channels, so each row of
//!   `U[ξ]` is loaded once per band;
//! - per tile and 16 output channels, `Aᵀ · m · A` into a channel-last buffer of the
//!   band's output rows, transposed back into the output's planes once every band of
//!   those rows is done.
//!
//! The arithmetic is `winograd_f4.rs`'s term for term: the same interpolation points,
//! the same operations in the same order in each transform, each product summed in one
//! chain of multiply-adds over the input channels from zero as `gemm/unpacked.rs` sums
//! it. So the two give the same bits (a test below holds them equal), and the accuracy
//! is that module's (its header). The transformed weights are that module's too, kept
//! between calls while the weights stay the same.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::winograd_f4::{self, tile_grid, Derived};
use super::ConvGeom;
use crate::gemm::transpose::{self, part_mask};
use crate::ops::par::Slot;
use crate::scratch::with_scratch;

/// f32 lanes of one AVX-512 register.
const LANES: usize = 16;

/// Values per tile and channel pair in the transformed domain: 6×6.
const XI: usize = 36;

/// Accumulator registers of the products of a band of tiles (with 16 channels out, 16
/// tiles would fit; a band holds at most 8).
const ACCUMULATORS: usize = 16;

/// Whether the CPU convolution takes this module for `g` in f32: a stride-1, padding-1
/// 3×3 convolution (`winograd_f4::fits`) with 16, 32 or 64 channels in and out on
/// images of 4×4 to 32×32, on a CPU with AVX-512. There its forward and input gradient
/// measured 1.6–2× faster than the direct loop (16×28×28, 32×14×14), 1.3–1.8× faster
/// than `winograd_f4.rs` (64×7×7, 64×16×16) and 1.4–1.6× faster than F(2×2)
/// (ResNet-18's 64×32×32): BENCHMARKS.md, "Winograd F(4×4) in registers".
pub(crate) fn chosen(g: &ConvGeom) -> bool {
    let narrow = |c: usize| c == 16 || c == 32 || c == 64;
    winograd_f4::fits(g)
        && narrow(g.c_in)
        && narrow(g.c_out)
        && (4..=32).contains(&g.h)
        && (4..=32).contains(&g.w)
        && is_x86_feature_detected!("avx512f")
}

/// Where the transformed weights lie: row `r` of `U[ξ]` (its `c_out` values of input
/// channel `r`) starts at `u[ξ · xi_stride + r · row]`.
#[derive(Clone, Copy)]
struct Weights<'a> {
    u: &'a [f32],
    xi_stride: usize,
    row: usize,
}

/// `y = conv(x, weight)` for `g` that is [`chosen`]; `y` is overwritten.
pub(crate) fn forward<O: Slot<f32>>(g: &ConvGeom, x: &[f32], weight: &[f32], y: &mut [O]) {
    winograd_f4::with_transformed(weight, g.c_in, Derived::ByRows, |u| {
        // U[ξ] is c_in × c_out, row-major, at u[ξ · c_in · c_out].
        let u = Weights {
            u,
            xi_stride: g.c_in * g.c_out,
            row: g.c_out,
        };
        convolve(g, x, u, y);
    });
}

/// `dx` of `y = conv(x, weight)` given `dy`, for `g` that is [`chosen`]: the forward
/// convolution of `dy` with `weight` transposed and rotated. `dx` is overwritten.
pub(crate) fn input_grad<O: Slot<f32>>(g: &ConvGeom, weight: &[f32], dy: &[f32], dx: &mut [O]) {
    winograd_f4::with_transformed(weight, g.c_in, Derived::Rotated, |u| {
        let back = ConvGeom {
            c_in: g.c_out,
            c_out: g.c_in,
            ..*g
        };
        // The rotated weights are c_out × 36 × c_in: row co of the backward U[ξ] holds
        // its c_in values at u[(co · 36 + ξ) · c_in].
        let u = Weights {
            u,
            xi_stride: g.c_in,
            row: XI * g.c_in,
        };
        convolve(&back, dy, u, dx);
    });
}

/// `y = conv(x, ·)` given the transformed weights, one rayon task per sample.
fn convolve<O: Slot<f32>>(g: &ConvGeom, x: &[f32], u: Weights<'_>, y: &mut [O]) {
    assert!(chosen(g), "winograd_f4_narrow: {g:?} is not taken here");
    let (sample_x, sample_y) = (g.c_in * g.h * g.w, g.c_out * g.h * g.w);
    assert!(x.len() == g.n * sample_x && y.len() == g.n * sample_y);
    let last_row = (XI - 1) * u.xi_stride + (g.c_in - 1) * u.row + g.c_out;
    assert!(
        u.u.len() >= last_row,
        "winograd_f4_narrow: transformed weights too short"
    );
    y.par_chunks_mut(sample_y)
        .zip(x.par_chunks(sample_x))
        // A job per item (ops/par.rs).
        .with_max_len(1)
        // SAFETY: AVX-512F (`chosen`); the lengths are checked above.
        .for_each(|(y_sample, x_sample)| unsafe { sample(g, x_sample, u, y_sample) });
}

/// The tiles whose products run together, as tile rows by tile columns: whole rows,
/// as many as hold at most [`most_tiles`] tiles, or where a row holds more, one row in
/// pieces of that many columns (the last may be shorter).
fn band(g: &ConvGeom) -> (usize, usize) {
    let (th, tw) = tile_grid(g);
    let most = most_tiles(g.c_out / LANES);
    ((most / tw).clamp(1, th), tw.min(most))
}

/// The most tiles whose products run together with `blocks` registers of output
/// channels each, so that their accumulators stay in registers: 8, 8 and 4 with 16, 32
/// and 64 channels.
fn most_tiles(blocks: usize) -> usize {
    (ACCUMULATORS / blocks).min(8)
}

/// One sample: `x_sample` is `c_in × h × w`, `y_sample` `c_out × h × w`.
///
/// # Safety
/// AVX-512F; `g` is [`chosen`], the slices are one sample long and `u` reaches every
/// row of every `U[ξ]` (checked by [`convolve`]).
#[target_feature(enable = "avx512f")]
unsafe fn sample<O: Slot<f32>>(g: &ConvGeom, x_sample: &[f32], u: Weights<'_>, y_sample: &mut [O]) {
    let (th, tw) = tile_grid(g);
    let (band_rows, band_cols) = band(g);
    let (rows, cols) = (4 * th + 2, 4 * tw + 2);
    let padded_len = rows * cols * g.c_in;
    let tiles = band_rows * band_cols;
    let (v_len, m_len) = (tiles * XI * g.c_in, tiles * XI * g.c_out);
    let out_row = 4 * tw * g.c_out;
    // Each step overwrites its part of the scratch before the next reads it.
    with_scratch(
        padded_len + v_len + m_len + 4 * band_rows * out_row,
        |scratch: &mut [f32]| {
            let (padded, rest) = scratch.split_at_mut(padded_len);
            let (v, rest) = rest.split_at_mut(v_len);
            let (m, out) = rest.split_at_mut(m_len);
            channels_last(x_sample, (g.c_in, g.h, g.w), cols, padded);
            for first_row in (0..th).step_by(band_rows) {
                let band_rows = band_rows.min(th - first_row);
                for first_col in (0..tw).step_by(band_cols) {
                    let band_cols = band_cols.min(tw - first_col);
                    let tiles = band_rows * band_cols;
                    for t in 0..tiles {
                        let (ty, tx) = (first_row + t / band_cols, first_col + t % band_cols);
                        for block in 0..g.c_in / LANES {
                            let first = (4 * ty * cols + 4 * tx) * g.c_in + block * LANES;
                            let tile = &mut v[t * XI * g.c_in + block * LANES..];
                            transform_input(&padded[first..], cols * g.c_in, g.c_in, tile);
                        }
                    }
                    let products = products_for(tiles, g.c_out / LANES);
                    // SAFETY: `v` holds `tiles` tiles of 36 × c_in, `m` of 36 × c_out;
                    // `u` as the caller promises.
                    unsafe { products(v, u, g.c_in, g.c_out, m) };
                    for t in 0..tiles {
                        let (r, tx) = (t / band_cols, first_col + t % band_cols);
                        for block in 0..g.c_out / LANES {
                            let tile = &m[t * XI * g.c_out + block * LANES..];
                            let first = 4 * r * out_row + 4 * tx * g.c_out + block * LANES;
                            transform_output(tile, g.c_out, out_row, &mut out[first..]);
                        }
                    }
                }
                let top = 4 * first_row;
                for r in 0..(4 * band_rows).min(g.h - top) {
                    let row = &out[r * out_row..][..out_row];
                    planes_row(row, (g.c_out, g.h, g.w), top + r, y_sample);
                }
            }
        },
    );
}

/// Writes `padded[py][px][ch] = plane[ch][py − 1][px − 1]` (`plane` is `c × h × w`,
/// `padded` is `rows × cols × c`), zero outside the image.
#[target_feature(enable = "avx512f")]
fn channels_last(plane: &[f32], (c, h, w): (usize, usize, usize), cols: usize, padded: &mut [f32]) {
    let row_len = cols * c;
    padded[..row_len].fill(0.0);
    padded[(h + 1) * row_len..].fill(0.0);
    for py in 1..=h {
        let row = &mut padded[py * row_len..][..row_len];
        row[..c].fill(0.0);
        row[(w + 1) * c..].fill(0.0);
        for block in 0..c / LANES {
            for x0 in (0..w).step_by(LANES) {
                let count = LANES.min(w - x0);
                // Lane j of channel i's register: pixel x0 + j of row py − 1.
                let channels: [__m512; LANES] = std::array::from_fn(|i| {
                    let at = ((block * LANES + i) * h + py - 1) * w + x0;
                    load_part(&plane[at..at + count])
                });
                let pixels = transpose::registers(channels);
                for (j, &p) in pixels[..count].iter().enumerate() {
                    store(&mut row[(x0 + 1 + j) * c + block * LANES..], p);
                }
            }
        }
    }
}

/// Writes row `y` of each output plane of `planes` (`c × h × w`) from `row`, the row's
/// pixels channel-last (`c` values per pixel, at least `w` pixels).
#[target_feature(enable = "avx512f")]
#[inline(never)]
fn planes_row<O: Slot<f32>>(
    row: &[f32],
    (c, h, w): (usize, usize, usize),
    y: usize,
    planes: &mut [O],
) {
    // The stores write f32s through the slots' address: a slot is an f32 or a
    // MaybeUninit<f32>, of the same layout.
    const { assert!(std::mem::size_of::<O>() == std::mem::size_of::<f32>()) };
    for block in 0..c / LANES {
        for x0 in (0..w).step_by(LANES) {
            let count = LANES.min(w - x0);
            let pixels: [__m512; LANES] = std::array::from_fn(|j| {
                if j < count {
                    load(&row[(x0 + j) * c + block * LANES..])
                } else {
                    _mm512_setzero_ps()
                }
            });
            let channels = transpose::registers(pixels);
            for (i, &values) in channels.iter().enumerate() {
                let at = ((block * LANES + i) * h + y) * w + x0;
                let dst = &mut planes[at..at + count];
                // SAFETY: `dst` holds `count` slots of f32 layout; the mask writes
                // those and no more.
                unsafe {
                    _mm512_mask_storeu_ps(dst.as_mut_ptr().cast::<f32>(), part_mask(count), values)
                }
            }
        }
    }
}

/// Writes `tile[ξ · c] = (Bᵀ · d · B)[ξ]` for the 6×6 patch `d` whose pixel `(k, j)`
/// holds its 16 channels at `patch[k · row + j · c]`.
#[target_feature(enable = "avx512f")]
fn transform_input(patch: &[f32], row: usize, c: usize, tile: &mut [f32]) {
    // t[j][i] = (Bᵀ · d)[i][j]: Bᵀ times column j of the patch.
    let t: [[__m512; 6]; 6] = std::array::from_fn(|j| {
        input_rows(std::array::from_fn(|k| load(&patch[k * row + j * c..])))
    });
    // tile[6i + j'] = (Bᵀ · d · B)[i][j']: Bᵀ times row i of Bᵀ · d.
    for i in 0..6 {
        let out = input_rows(std::array::from_fn(|j| t[j][i]));
        for (j, &o) in out.iter().enumerate() {
            store(&mut tile[(6 * i + j) * c..], o);
        }
    }
}

/// Writes `out[r · row + q · c] = (Aᵀ · m · A)[r][q]` for the 36 registers of one tile,
/// `m[ξ]` at `tile[ξ · c]`.
#[target_feature(enable = "avx512f")]
fn transform_output(tile: &[f32], c: usize, row: usize, out: &mut [f32]) {
    // s[j][r] = (Aᵀ · m)[r][j]: Aᵀ times column j of m.
    let s: [[__m512; 4]; 6] = std::array::from_fn(|j| {
        output_rows(std::array::from_fn(|i| load(&tile[(6 * i + j) * c..])))
    });
    // (Aᵀ · m · A)[r][q]: Aᵀ times row r of Aᵀ · m.
    for r in 0..4 {
        let o = output_rows(std::array::from_fn(|j| s[j][r]));
        for (q, &value) in o.iter().enumerate() {
            store(&mut out[r * row + q * c..], value);
        }
    }
}

/// `Bᵀ · d` on 6 registers, `Bᵀ` and the order of operations as in `winograd_f4.rs`'s
/// `input_rows`.
#[target_feature(enable = "avx512f")]
fn input_rows(d: [__m512; 6]) -> [__m512; 6] {
    let [a, b, c, e, f, h] = d;
    let (add, sub) = (_mm512_add_ps, _mm512_sub_ps);
    let times = |k: f32, v: __m512| _mm512_mul_ps(_mm512_set1_ps(k), v);
    [
        add(sub(add(a, f), times(2.0, c)), times(1.5, sub(e, b))),
        add(add(sub(f, b), times(0.5, c)), times(2.5, e)),
        add(sub(add(f, b), times(2.5, c)), times(0.5, e)),
        add(sub(f, c), times(2.0, sub(e, b))),
        add(sub(f, c), times(0.5, sub(b, e))),
        add(sub(add(b, h), times(2.0, e)), times(1.5, sub(f, c))),
    ]
}

/// `Aᵀ · m` on 6 registers, `Aᵀ` and the order of operations as in `winograd_f4.rs`'s
/// `output_rows`.
#[target_feature(enable = "avx512f")]
fn output_rows(m: [__m512; 6]) -> [__m512; 4] {
    let (add, sub) = (_mm512_add_ps, _mm512_sub_ps);
    let times = |k: f32, v: __m512| _mm512_mul_ps(_mm512_set1_ps(k), v);
    let (sum12, diff12) = (add(m[1], m[2]), sub(m[1], m[2]));
    let (half, two) = (m[3], m[4]);
    [
        add(add(add(m[0], sum12), half), two),
        sub(add(diff12, times(0.5, half)), times(2.0, two)),
        add(add(sum12, times(0.25, half)), times(4.0, two)),
        add(sub(add(diff12, times(0.125, half)), times(8.0, two)), m[5]),
    ]
}

/// The products of one band of tiles: `m[t][ξ][co] = Σ_ci v[t][ξ][ci] · U[ξ][ci][co]`.
type Products = unsafe fn(&[f32], Weights<'_>, usize, usize, &mut [f32]);

/// [`products`] for `tiles` tiles and `blocks` registers of output channels.
fn products_for(tiles: usize, blocks: usize) -> Products {
    macro_rules! table {
        ($(($t:literal, $b:literal))*) => {
            match (tiles, blocks) {
                $(($t, $b) => products::<$t, $b>,)*
                _ => unreachable!("winograd_f4_narrow: {tiles} tiles, {blocks} blocks"),
            }
        };
    }
    // Up to `most_tiles(blocks)` tiles.
    table!(
        (1, 1)(2, 1)(3, 1)(4, 1)(5, 1)(6, 1)(7, 1)(8, 1)(1, 2)(2, 2)(3, 2)(4, 2)(5, 2)(6, 2)(7, 2)(
            8, 2
        )(1, 4)(2, 4)(3, 4)(4, 4)
    )
}

/// `m[t][ξ][co] = Σ_ci v[t][ξ][ci] · U[ξ][ci][co]` for `T` tiles (`v`: `T × 36 × c_in`,
/// `m`: `T × 36 × c_out`, `c_out = 16B`), each sum one chain of multiply-adds in the
/// order of `ci` from zero.
///
/// # Safety
/// AVX-512F; `u` reaches row `c_in − 1` of `U[35]` and its `c_out` values.
#[target_feature(enable = "avx512f")]
unsafe fn products<const T: usize, const B: usize>(
    v: &[f32],
    u: Weights<'_>,
    c_in: usize,
    c_out: usize,
    m: &mut [f32],
) {
    debug_assert_eq!(c_out, B * LANES);
    assert!(v.len() >= T * XI * c_in && m.len() >= T * XI * c_out);
    for xi in 0..XI {
        let mut acc = [[_mm512_setzero_ps(); B]; T];
        let u_xi = u.u.as_ptr().wrapping_add(xi * u.xi_stride);
        for ci in 0..c_in {
            // SAFETY: row ci of U[ξ] lies within `u` (the caller's promise).
            let w: [__m512; B] = std::array::from_fn(|b| unsafe {
                _mm512_loadu_ps(u_xi.add(ci * u.row + b * LANES))
            });
            for (t, acc) in acc.iter_mut().enumerate() {
                // SAFETY: t < T, ξ < 36, ci < c_in: within `v` (asserted).
                let a = _mm512_set1_ps(unsafe { *v.get_unchecked((t * XI + xi) * c_in + ci) });
                for (sum, &w) in acc.iter_mut().zip(&w) {
                    *sum = _mm512_fmadd_ps(a, w, *sum);
                }
            }
        }
        for (t, acc) in acc.iter().enumerate() {
            for (b, &sum) in acc.iter().enumerate() {
                store(&mut m[(t * XI + xi) * c_out + b * LANES..], sum);
            }
        }
    }
}

/// The first 16 values of `src`.
#[target_feature(enable = "avx512f")]
#[inline]
fn load(src: &[f32]) -> __m512 {
    let src: &[f32; LANES] = src[..LANES].try_into().unwrap();
    // SAFETY: 16 readable values.
    unsafe { _mm512_loadu_ps(src.as_ptr()) }
}

/// The values of `src` (at most 16), zero in the lanes after them.
#[target_feature(enable = "avx512f")]
#[inline]
fn load_part(src: &[f32]) -> __m512 {
    debug_assert!(src.len() <= LANES);
    // SAFETY: the mask reads `src.len()` values and no more.
    unsafe { _mm512_maskz_loadu_ps(part_mask(src.len()), src.as_ptr()) }
}

/// Stores `v` into the first 16 values of `dst`.
#[target_feature(enable = "avx512f")]
#[inline]
fn store(dst: &mut [f32], v: __m512) {
    let dst: &mut [f32; LANES] = (&mut dst[..LANES]).try_into().unwrap();
    // SAFETY: 16 writable values.
    unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), v) }
}

#[cfg(test)]
mod tests {
    use super::super::test_values::{assert_forward_and_input_grad, for_each_3x3};
    use super::super::{cpu, kept};
    use super::*;

    fn has_avx512() -> bool {
        let has = is_x86_feature_detected!("avx512f");
        if !has {
            eprintln!("winograd_f4_narrow tests: skipped, this CPU has no AVX-512");
        }
        has
    }

    /// Forward and input gradient against the f64 im2col reference and, bit for bit,
    /// against `winograd_f4.rs`'s loops, which compute the same sums: the main job's
    /// shapes, part tiles (sides not multiples of 4), the smallest and largest images
    /// taken (4×4, 32×32), bands of several tile rows, of one and of pieces of one
    /// (a short last piece at 64×20×24), channel counts changing both ways, a lone
    /// sample.
    #[test]
    fn forward_and_input_grad_match_the_f64_reference_and_winograd_f4() {
        if !has_avx512() {
            return;
        }
        let shapes = [
            (4, 16, 28, 28, 16),
            (3, 32, 14, 14, 32),
            (3, 64, 7, 7, 64),
            (2, 16, 9, 13, 32),
            (2, 32, 31, 10, 16),
            (1, 16, 8, 8, 16),
            (2, 32, 32, 32, 32),
            (2, 64, 16, 16, 64),
            (2, 16, 5, 6, 64),
            (1, 64, 4, 4, 32),
            (2, 64, 21, 14, 16),
            (1, 64, 32, 32, 64),
            (2, 64, 20, 24, 64),
        ];
        for_each_3x3(&shapes, 23, |g, what, operands| {
            assert!(chosen(g), "{what}");
            assert_forward_and_input_grad(g, what, operands, forward, input_grad);
            let [x, wt, dy] = &operands.f32s;
            let (mut ours, mut theirs) = (vec![f32::NAN; dy.len()], vec![f32::NAN; dy.len()]);
            forward(g, x, wt, &mut ours);
            winograd_f4::forward(g, x, wt, &mut theirs);
            assert!(kept::same_bits(&ours, &theirs), "y {what}");
            let (mut ours, mut theirs) = (vec![f32::NAN; x.len()], vec![f32::NAN; x.len()]);
            input_grad(g, wt, dy, &mut ours);
            winograd_f4::input_grad(g, wt, dy, &mut theirs);
            assert!(kept::same_bits(&ours, &theirs), "dx {what}");
        });
    }

    /// The CPU convolution in f32 takes this module for its forward and input gradient
    /// where [`chosen`] says so: the same bits as calling it.
    #[test]
    fn cpu_conv_in_f32_uses_it_where_chosen() {
        if !has_avx512() {
            return;
        }
        for_each_3x3(&[(3, 16, 12, 20, 32)], 5, |g, what, operands| {
            assert!(chosen(g), "{what}");
            let [x, wt, dy] = &operands.f32s;
            let (mut y, mut dx) = (vec![0.0; dy.len()], vec![0.0; x.len()]);
            forward(g, x, wt, &mut y);
            input_grad(g, wt, dy, &mut dx);
            assert_eq!(cpu::forward(g, x, wt), y, "y {what}");
            let (cpu_dx, _) = cpu::backward(g, x, wt, dy, true, false);
            assert_eq!(cpu_dx.unwrap(), dx, "dx {what}");
        });
    }

    /// What is not taken holds on any CPU; what is, on one with AVX-512. 48 channels
    /// (three registers) are not taken: `products_for` has no products for them.
    #[test]
    fn only_16_32_or_64_channels_on_images_up_to_32x32_are_chosen() {
        let g = |c_in, c_out, side, stride| ConvGeom {
            n: 1,
            c_in,
            h: side,
            w: side,
            c_out,
            k: 3,
            stride,
            pad: 1,
        };
        assert!(!chosen(&g(16, 16, 3, 1)) && !chosen(&g(16, 16, 33, 1)));
        assert!(!chosen(&g(48, 48, 14, 1)) && !chosen(&g(16, 48, 14, 1)));
        assert!(!chosen(&g(128, 128, 4, 1)) && !chosen(&g(8, 16, 14, 1)));
        assert!(!chosen(&g(24, 16, 14, 1)) && !chosen(&g(16, 16, 28, 2)));
        assert!(!chosen(&ConvGeom {
            n: 0,
            ..g(16, 16, 28, 1)
        }));
        if !has_avx512() {
            return;
        }
        assert!(chosen(&g(16, 16, 28, 1)) && chosen(&g(32, 32, 14, 1)));
        assert!(chosen(&g(64, 64, 7, 1)) && chosen(&g(64, 64, 16, 1)));
        assert!(chosen(&g(16, 32, 4, 1)) && chosen(&g(32, 16, 32, 1)));
        assert!(chosen(&g(64, 64, 32, 1)) && chosen(&g(16, 64, 17, 1)));
    }
}
