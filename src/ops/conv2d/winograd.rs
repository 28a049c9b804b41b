//! Winograd F(2×2, 3×3): the f32 CPU forward and input gradient of the stride-1,
//! padding-1 3×3 convolutions where they are large enough to gain from it and F(4×4, 3×3)
//! does not take them ([`chosen`]: ResNet-18's 64×32×32 on CPUs without AVX-512; with
//! it, `winograd_f4_narrow.rs` takes those first).
//!
//! Each 2×2 block of outputs ("tile") is computed from the 4×4 input patch around it as
//! `Y = Aᵀ [(G w Gᵀ) ⊙ (Bᵀ d B)] A`, so a tile costs 16 multiplies per input and output
//! channel where the direct form costs 36: the products run as 16 GEMMs
//! `M[ξ] = U[ξ] · V[ξ]` (`U[ξ]`: `c_out × c_in`, the transformed weights; `V[ξ]`:
//! `c_in × tiles`, the transformed inputs), 2.25× fewer multiply-adds than im2col's one
//! GEMM, and the transformed input holds 4× the input where im2col's holds 9×.
//!
//! The batch runs in groups of samples (about [`TILE_COLUMNS`] tiles each, at least
//! [`MIN_GROUPS`](crate::ops::par::MIN_GROUPS) groups where the batch allows), one rayon task per group: transform
//! the group's inputs, 16 single-threaded GEMMs, transform the outputs straight into
//! `y`. Grouping depends on the shape only, so results do not depend on the thread count.
//!
//! The input gradient of such a convolution is the same convolution of `dy` with the
//! weights transposed (`c_in ↔ c_out`) and rotated by 180°: [`input_grad`]. The weight
//! gradient is not computed here (`weight_grad.rs`, or im2col): run through the same
//! transforms (16 GEMMs over the tiles, then `Gᵀ · dU · G`) it measured no faster than
//! im2col, its reduction being the short tile axis.
//!
//! Accuracy: the transforms add and subtract a few terms and halve (exact in binary);
//! the tests below hold both results within the crate's f32 bound of the f64
//! reference (1e-5 of the largest value). f64 keeps the im2col path, which stays the
//! reference.

use rayon::prelude::*;

use super::ConvGeom;
use crate::gemm::{gemm_serial, Op};
use crate::ops::par::{samples_per_group, Slot};
use crate::scratch::with_scratch;

/// Tiles (columns of the 16 GEMMs) a group aims for: wide enough for the GEMM kernel,
/// small enough that `V` and `M` (16 · channels · tiles each) stay in the caches.
const TILE_COLUMNS: usize = 256;

/// Whether `g` is a convolution this module computes: 3×3, stride 1, padding 1.
pub(crate) fn fits(g: &ConvGeom) -> bool {
    g.k == 3 && g.stride == 1 && g.pad == 1
}

/// Whether the CPU convolution takes this module for `g`: where it [`fits`] and the
/// products are large enough to pay for the transforms, at least 64 channels in and out
/// and images of at least 8×8, but not where F(4×4, 3×3) is chosen (`winograd_f4.rs`:
/// images up to 16×16), so in ResNet-18 the 64×32×32 convolutions (which the CPU
/// convolution gives `winograd_f4_narrow.rs` first where it takes them). Below 64 channels
/// (the main job's 16 and 32) im2col measured as fast or faster (BENCHMARKS.md,
/// "Winograd 3×3 convolutions"), and where the CPU has AVX-512 the direct loop
/// (`direct.rs`) and F(4×4) in registers (`winograd_f4_narrow.rs`) faster still.
pub(crate) fn chosen(g: &ConvGeom) -> bool {
    fits(g) && g.c_in.min(g.c_out) >= 64 && g.h.min(g.w) >= 8 && !super::winograd_f4::chosen(g)
}

/// Tile rows and columns per image (the output is `h × w`; odd sides get a half tile).
fn tile_grid(g: &ConvGeom) -> (usize, usize) {
    (g.h.div_ceil(2), g.w.div_ceil(2))
}

/// Tiles per sample.
fn tiles_per_sample(g: &ConvGeom) -> usize {
    let (th, tw) = tile_grid(g);
    th * tw
}

/// Samples per group.
fn group_len(g: &ConvGeom) -> usize {
    samples_per_group(g.n, tiles_per_sample(g), TILE_COLUMNS)
}

/// `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`, the weight transform.
const G: [[f32; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// The transformed weights `U[ξ][a][b] = (G · k · Gᵀ)[ξ]` as 16 matrices of `rows × cols`,
/// where the 3×3 kernel `k` of entry `(a, b)` is `k(a, b)` (9 values, row-major).
fn transform_weights(
    rows: usize,
    cols: usize,
    k: impl Fn(usize, usize) -> [f32; 9] + Sync,
) -> Vec<f32> {
    let mut u = vec![0.0f32; 16 * rows * cols];
    // One task per ξ, each writing its own matrix.
    u.par_chunks_mut(rows * cols)
        .enumerate()
        .for_each(|(xi, out)| {
            let (gr, gc) = (G[xi / 4], G[xi % 4]);
            for (pair, o) in out.iter_mut().enumerate() {
                let w = k(pair / cols, pair % cols);
                let mut sum = 0.0;
                for (a, &ga) in gr.iter().enumerate() {
                    let row = gc[0] * w[3 * a] + gc[1] * w[3 * a + 1] + gc[2] * w[3 * a + 2];
                    sum += ga * row;
                }
                *o = sum;
            }
        });
    u
}

/// `V[ξ][ci][s·p + t] = (Bᵀ · d · B)[ξ]` for every tile `t` of every sample `s` of the
/// group, with `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]` and `d`
/// the 4×4 input patch at rows and columns `2·ty − 1 ..= 2·ty + 2` (zero outside).
///
/// Each input plane is first split into its even and odd columns of the zero-padded
/// image, so that both halves of the transform run on unit-stride rows.
fn transform_input(g: &ConvGeom, x_group: &[f32], v: &mut [f32]) {
    let (th, tw) = tile_grid(g);
    let per_sample = th * tw;
    let nb = x_group.len() / (g.c_in * g.h * g.w);
    let tiles = nb * per_sample;
    // Padded row r is input row r − 1; padded column c is input column c − 1, stored
    // at [c / 2] of `even` or `odd`.
    let (rows, half) = (2 * th + 2, tw + 1);
    let mut even = vec![0.0f32; rows * half];
    let mut odd = vec![0.0f32; rows * half];
    let (mut ce, mut co) = (vec![0.0f32; half], vec![0.0f32; half]);
    for (plane_idx, plane) in x_group.chunks_exact(g.h * g.w).enumerate() {
        let (s, ci) = (plane_idx / g.c_in, plane_idx % g.c_in);
        for (r, (e, o)) in even
            .chunks_exact_mut(half)
            .zip(odd.chunks_exact_mut(half))
            .enumerate()
        {
            split_padded_row(
                r.checked_sub(1)
                    .and_then(|y| plane.get(y * g.w..(y + 1) * g.w)),
                e,
                o,
            );
        }
        for ty in 0..th {
            let first = s * per_sample + ty * tw;
            for i in 0..4 {
                // Row i of Bᵀ · d, in its even and odd padded columns.
                for (dst, data) in [(&mut ce, &even), (&mut co, &odd)] {
                    let [r0, r1, r2, r3]: [&[f32]; 4] =
                        std::array::from_fn(|k| &data[(2 * ty + k) * half..][..half]);
                    let rows = r0.iter().zip(r1).zip(r2).zip(r3);
                    for (d, (((&a, &b), &c), &e)) in dst.iter_mut().zip(rows) {
                        *d = match i {
                            0 => a - c,
                            1 => b + c,
                            2 => c - b,
                            _ => b - e,
                        };
                    }
                }
                // · B along the row: padded columns 2·tx .. 2·tx + 3 of each tile are
                // ce[tx], co[tx], ce[tx + 1], co[tx + 1].
                for j in 0..4 {
                    let dst = &mut v[((4 * i + j) * g.c_in + ci) * tiles + first..][..tw];
                    let cols = ce.iter().zip(&co).zip(ce[1..].iter().zip(&co[1..]));
                    for (d, ((&e0, &o0), (&e1, &o1))) in dst.iter_mut().zip(cols) {
                        *d = match j {
                            0 => e0 - e1,
                            1 => o0 + e1,
                            2 => e1 - o0,
                            _ => o0 - o1,
                        };
                    }
                }
            }
        }
    }
}

/// Splits one row of the zero-padded image (`src`, the input row, or `None` for a
/// padding row) into its even (`e`) and odd (`o`) padded columns: padded column `c`
/// is input column `c − 1`.
fn split_padded_row(src: Option<&[f32]>, e: &mut [f32], o: &mut [f32]) {
    let Some(src) = src else {
        e.fill(0.0);
        o.fill(0.0);
        return;
    };
    e[0] = 0.0;
    let mut pairs = src.chunks_exact(2);
    for (k, pair) in (&mut pairs).enumerate() {
        o[k] = pair[0];
        e[k + 1] = pair[1];
    }
    let done = src.len() / 2;
    match pairs.remainder() {
        [last] => {
            o[done] = *last;
            o[done + 1..].fill(0.0);
        }
        _ => o[done..].fill(0.0),
    }
    e[done + 1..].fill(0.0);
}

/// `y[s][co]`'s 2×2 block of tile `t` = `Aᵀ · m · A` with `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]`
/// and `m[ξ] = M[ξ][co][s·p + t]`; the half tiles of odd sides write their valid part.
fn transform_output<O: Slot<f32>>(g: &ConvGeom, m: &[f32], y_group: &mut [O]) {
    let (th, tw) = tile_grid(g);
    let per_sample = th * tw;
    let nb = y_group.len() / (g.c_out * g.h * g.w);
    let tiles = nb * per_sample;
    // Aᵀ · m for a row of tiles: [row of Aᵀ][column j of m], each over the tiles.
    let mut t = [[(); 4]; 2].map(|r| r.map(|()| vec![0.0f32; tw]));
    let (mut even, mut odd) = (vec![0.0f32; tw], vec![0.0f32; tw]);
    for (plane_idx, plane) in y_group.chunks_exact_mut(g.h * g.w).enumerate() {
        let (s, co) = (plane_idx / g.c_out, plane_idx % g.c_out);
        for ty in 0..th {
            let first = s * per_sample + ty * tw;
            let row = |xi: usize| &m[(xi * g.c_out + co) * tiles + first..][..tw];
            for j in 0..4 {
                let (m0, m1, m2, m3) = (row(j), row(4 + j), row(8 + j), row(12 + j));
                let [t0, t1] = &mut t;
                let ms = m0.iter().zip(m1).zip(m2).zip(m3);
                for ((a, b), (((&m0, &m1), &m2), &m3)) in t0[j].iter_mut().zip(&mut t1[j]).zip(ms) {
                    *a = m0 + m1 + m2;
                    *b = m1 - m2 - m3;
                }
            }
            // (Aᵀ · m) · A: output columns 2·tx (even) and 2·tx + 1 (odd) of rows
            // 2·ty and 2·ty + 1.
            for (dy, [t0, t1, t2, t3]) in t.iter().enumerate() {
                let y = 2 * ty + dy;
                if y >= g.h {
                    continue;
                }
                let ts = t0.iter().zip(t1).zip(t2.iter().zip(t3));
                for ((e, o), ((&a, &b), (&c, &d))) in even.iter_mut().zip(&mut odd).zip(ts) {
                    *e = a + b + c;
                    *o = b - c - d;
                }
                let dst = &mut plane[y * g.w..][..g.w];
                let mut pairs = dst.chunks_exact_mut(2);
                for (pair, (&e, &o)) in (&mut pairs).zip(even.iter().zip(&odd)) {
                    pair[0].put(e);
                    pair[1].put(o);
                }
                if let [last] = pairs.into_remainder() {
                    last.put(even[tw - 1]);
                }
            }
        }
    }
}

/// `y = conv(x, weight)` for `g` that [`fits`], in f32; `y` is overwritten.
pub(crate) fn forward<O: Slot<f32>>(g: &ConvGeom, x: &[f32], weight: &[f32], y: &mut [O]) {
    let u = transform_weights(g.c_out, g.c_in, |co, ci| {
        weight[(co * g.c_in + ci) * 9..][..9].try_into().unwrap()
    });
    convolve(g, x, &u, y);
}

/// `y = conv(x, ·)` given the transformed weights `u` (`16 × c_out × c_in`).
fn convolve<O: Slot<f32>>(g: &ConvGeom, x: &[f32], u: &[f32], y: &mut [O]) {
    let per_sample = tiles_per_sample(g);
    let group = group_len(g);
    let (sample_x, sample_y) = (g.c_in * g.h * g.w, g.c_out * g.h * g.w);
    y.par_chunks_mut(group * sample_y)
        .zip(x.par_chunks(group * sample_x))
        .for_each(|(y_group, x_group)| {
            let tiles = y_group.len() / sample_y * per_sample;
            // The transforms and GEMMs overwrite their scratch before reading it.
            with_scratch(16 * g.c_in * tiles, |v: &mut [f32]| {
                transform_input(g, x_group, v);
                with_scratch(16 * g.c_out * tiles, |m: &mut [f32]| {
                    for xi in 0..16 {
                        gemm_serial(
                            g.c_out,
                            tiles,
                            g.c_in,
                            1.0,
                            &u[xi * g.c_out * g.c_in..][..g.c_out * g.c_in],
                            Op::N,
                            &v[xi * g.c_in * tiles..][..g.c_in * tiles],
                            Op::N,
                            0.0,
                            &mut m[xi * g.c_out * tiles..][..g.c_out * tiles],
                        );
                    }
                    transform_output(g, m, y_group);
                });
            });
        });
}

/// `dx` of `y = conv(x, weight)` given `dy`, for `g` that [`fits`], in f32: the
/// forward convolution of `dy` with `weight` transposed and rotated. `dx` is overwritten.
pub(crate) fn input_grad<O: Slot<f32>>(g: &ConvGeom, weight: &[f32], dy: &[f32], dx: &mut [O]) {
    let u = transform_weights(g.c_in, g.c_out, |ci, co| {
        let k = &weight[(co * g.c_in + ci) * 9..][..9];
        std::array::from_fn(|t| k[8 - t])
    });
    let back = ConvGeom {
        c_in: g.c_out,
        c_out: g.c_in,
        ..*g
    };
    convolve(&back, dy, &u, dx);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv2d::cpu;
    use crate::ops::conv2d::test_values::{
        assert_close, assert_forward_and_input_grad, for_each_3x3, random,
    };
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// Forward and input gradient against the f64 im2col reference: square and odd
    /// sides (half tiles), 1×1 and 1×2 images (whose taps read mostly padding), lone
    /// samples and groups of several, channel counts of the ResNets.
    #[test]
    fn forward_and_input_grad_match_the_f64_reference() {
        let shapes = [
            (2, 3, 8, 8, 4),
            (5, 16, 7, 7, 16),
            (3, 2, 5, 6, 3),
            (4, 4, 1, 1, 2),
            (2, 3, 1, 2, 5),
            (9, 32, 4, 4, 64),
            (1, 64, 32, 32, 64),
            (40, 8, 14, 14, 8),
        ];
        for_each_3x3(&shapes, 7, |g, what, operands| {
            assert!(fits(g));
            assert_forward_and_input_grad(g, what, operands, forward, input_grad);
        });
    }

    /// The CPU convolution in f32 takes this module where [`chosen`] says so, and its
    /// three results (the weight gradient by im2col) match the f64 reference there.
    #[test]
    fn cpu_conv_in_f32_uses_it_where_chosen() {
        let mut rng = StdRng::seed_from_u64(8);
        let g = ConvGeom {
            n: 3,
            c_in: 64,
            h: 17,
            w: 9,
            c_out: 64,
            k: 3,
            stride: 1,
            pad: 1,
        };
        assert!(chosen(&g));
        let (x, x64) = random(g.n * g.c_in * g.h * g.w, &mut rng);
        let (wt, wt64) = random(g.c_out * g.c_in * 9, &mut rng);
        let (dy, dy64) = random(g.n * g.c_out * g.h * g.w, &mut rng);
        assert_close(
            "y",
            &cpu::forward(&g, &x, &wt),
            &cpu::forward(&g, &x64, &wt64),
        );
        let (dx, dw) = cpu::backward(&g, &x, &wt, &dy, true, true);
        let (dx64, dw64) = cpu::backward(&g, &x64, &wt64, &dy64, true, true);
        assert_close("dx", &dx.unwrap(), &dx64.unwrap());
        assert_close("dw", &dw.unwrap(), &dw64.unwrap());
        let (dx, dw) = cpu::backward(&g, &x, &wt, &dy, true, false);
        assert!(dw.is_none());
        assert_close(
            "dx alone",
            &dx.unwrap(),
            &cpu::backward(&g, &x64, &wt64, &dy64, true, false)
                .0
                .unwrap(),
        );
    }

    #[test]
    fn only_stride_one_pad_one_3x3_fits_and_only_large_ones_are_chosen() {
        let g = |c, side, k, stride, pad| ConvGeom {
            n: 1,
            c_in: c,
            h: side,
            w: side,
            c_out: c,
            k,
            stride,
            pad,
        };
        assert!(fits(&g(1, 8, 3, 1, 1)));
        assert!(!fits(&g(1, 8, 3, 2, 1)));
        assert!(!fits(&g(1, 8, 1, 1, 0)));
        assert!(!fits(&g(1, 8, 3, 1, 0)));
        assert!(chosen(&g(64, 32, 3, 1, 1)) && chosen(&g(256, 17, 3, 1, 1)));
        assert!(!chosen(&g(32, 14, 3, 1, 1)) && !chosen(&g(512, 4, 3, 1, 1)));
        assert!(!chosen(&g(256, 8, 3, 1, 1)) && !chosen(&g(64, 16, 3, 1, 1)));
        assert!(!chosen(&g(64, 16, 3, 2, 1)));
    }
}
