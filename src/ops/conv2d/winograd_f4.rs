//! Winograd F(4×4, 3×3): the f32 CPU forward, input gradient and weight gradient of the
//! stride-1, padding-1 3×3 convolutions with at least 64 channels on images up to
//! 16×16, where [`chosen`] (ResNet-18's 128×16×16, 256×8×8 and 512×4×4; the main job's
//! 64×7×7 and 128×4×4). With AVX-512, the forward and input gradient of those with 64
//! channels in and out (so up to 16×16: 64×7×7 here) run in `winograd_f4_narrow.rs`
//! instead: the same sums, fused per sample.
//!
//! Each 4×4 block of outputs ("tile") is computed from the 6×6 input patch around it as
//! `Y = Aᵀ [(G w Gᵀ) ⊙ (Bᵀ d B)] A`, so a tile costs 36 multiplies per input and output
//! channel where the direct sum costs 144 (4× fewer; F(2×2, 3×3) in `winograd.rs` saves
//! 2.25×). A 4×4 image is a single tile. The products run as 36 GEMMs
//! `M[ξ] = V[ξ] · U[ξ]` over every tile of a group of samples (`V[ξ]`: `tiles × c_in`,
//! the transformed inputs; `U[ξ]`: `c_in × c_out`, the transformed weights).
//!
//! Every transform is a fixed small matrix applied to vectors over channels, so the
//! inputs are first laid out channel-last, and the 36 values of a tile and channel sit
//! 36 channel-vectors apart: `U` is `c_out × 36 × c_in` (the weights' order, for the
//! forward and the input gradient alike), `V` is `tiles × 36 × c_in`, `M` is `36 × tiles
//! × c_out`; the GEMMs read `U` and `V` at those strides. Per group of samples three
//! rayon loops run in turn: the input transform per sample, the 36 single-threaded GEMMs
//! per ξ, the output transform per sample. The GEMMs run without packing
//! (`gemm/unpacked.rs`) where the CPU has AVX-512 and there are at most 256 channels in
//! and out (128 for the input gradient), else in matrixmultiply; the unpacked forward
//! and input gradient read `U[ξ]` by rows, so the forward keeps its `U` as
//! `36 × c_in × c_out` instead. Groups and GEMMs depend on the shape only, so results do
//! not depend on the thread count. `U` is kept from one call to the next while the
//! weights stay the same, up to 16 MiB per convolution (`kept.rs`): PGD-K training runs
//! K + 1 forward and input-gradient passes per batch with one set of weights.
//!
//! The input gradient is the same convolution of `dy` with the weights transposed
//! (`c_in ↔ c_out`) and rotated by 180°: [`input_grad`]. The weight gradient runs the
//! forward backwards: `dM = A · dY · Aᵀ` per tile, `dU[ξ] = dM[ξ]ᵀ · V[ξ]` summed over
//! the tiles (36 GEMMs whose inner dimension is the tiles), `dw = Gᵀ · dU · G`:
//! [`weight_grad`].
//!
//! The transforms interpolate at the points 0, 1, −1, ½, −2 and ∞ rather than the usual
//! 0, ±1, ±2, ∞: `Bᵀ` and `Aᵀ` then hold only halves, quarters and eighths (exact in
//! binary) and weigh terms by at most 8, and `G` holds thirds and fifteenths. Accuracy:
//! the error is larger than the direct sum's or F(2×2)'s, about 2–6·10⁻⁶ of the largest
//! output with 64 to 512 channels, and 1.5–3·10⁻⁶ of the largest weight gradient
//! (BENCHMARKS.md, "Winograd F(4×4, 3×3)"; the usual points measured about 3× that),
//! inside the crate's f32 bound of the f64 reference (1e-5 of the largest value), which
//! the tests below hold. f64 keeps the im2col path, the reference.

use rayon::prelude::*;

use super::{kept, ConvGeom};
use crate::gemm::gemm_serial_strided;
#[cfg(target_arch = "x86_64")]
use crate::gemm::unpacked;
use crate::ops::par::Slot;
use crate::scratch::with_scratch;

/// Values per tile and channel pair in the transformed domain: 6×6.
const XI: usize = 36;

/// What a group's `V` and `M` may take together: samples are grouped to fit it, which
/// bounds the scratch; one group for the whole batch measured no faster at 128×256×8×8
/// and 128×128×16×16 (BENCHMARKS.md, "Winograd F(4×4, 3×3)").
const GROUP_BYTES: usize = 16 << 20;

/// Whether `g` is a convolution this module computes: 3×3, stride 1, padding 1, and no
/// empty dimension (an empty batch, whose weight gradient is zero, goes elsewhere).
pub(crate) fn fits(g: &ConvGeom) -> bool {
    let smallest = g.n.min(g.c_in).min(g.c_out).min(g.h).min(g.w);
    g.k == 3 && g.stride == 1 && g.pad == 1 && smallest > 0
}

/// Whether the CPU convolution takes this module for `g`: where it [`fits`], with at
/// least 64 channels in and out on images of at most 16×16 (ResNet-18's 128×16×16,
/// 256×8×8 and 512×4×4, the main job's 64×7×7 and 128×4×4). There its forward and input
/// gradient measured 1.1–2× faster than F(2×2) and the direct loop, or level (256 and
/// 512 channels on 4×4, 128 on 7×7) without the direct loop's slow phases, and its
/// weight gradient up to 3× faster than the loops it replaces; with 32 channels, or at
/// 64×32×32, it was slower (BENCHMARKS.md, "Winograd F(4×4, 3×3)"). The CPU
/// convolution asks `winograd_f4_narrow::chosen` first for the forward and input
/// gradient.
pub(crate) fn chosen(g: &ConvGeom) -> bool {
    fits(g) && g.c_in.min(g.c_out) >= 64 && g.h.max(g.w) <= 16
}

/// Tile rows and columns per image (sides that are not multiples of 4 get part tiles).
pub(super) fn tile_grid(g: &ConvGeom) -> (usize, usize) {
    (g.h.div_ceil(4), g.w.div_ceil(4))
}

/// Samples per group: as many as fit [`GROUP_BYTES`], the batch split into groups of
/// equal size but the last, which may be shorter (at least one sample).
fn group_len(g: &ConvGeom) -> usize {
    let (th, tw) = tile_grid(g);
    let per_sample = XI * th * tw * (g.c_in + g.c_out) * std::mem::size_of::<f32>();
    let most = (GROUP_BYTES / per_sample.max(1)).max(1);
    let groups = g.n.div_ceil(most).max(1);
    g.n.div_ceil(groups).max(1)
}

/// `K` consecutive vectors of `len` from the start of `buf`.
fn vectors_mut<const K: usize>(buf: &mut [f32], len: usize) -> [&mut [f32]; K] {
    let mut rows = buf.chunks_exact_mut(len);
    std::array::from_fn(|_| rows.next().expect("K vectors of len"))
}

/// `o = Bᵀ · d` on 6 vectors, with `Bᵀ` = `[[1, −3/2, −2, 3/2, 1, 0], [0, −1, ½, 5/2, 1, 0],
/// [0, 1, −5/2, ½, 1, 0], [0, −2, −1, 2, 1, 0], [0, ½, −1, −½, 1, 0], [0, 1, −3/2, −2, 3/2, 1]]`.
#[inline(always)]
fn input_rows(d: [&[f32]; 6], o: [&mut [f32]; 6]) {
    let [o0, o1, o2, o3, o4, o5] = o;
    let n = o0.len();
    let [d0, d1, d2, d3, d4, d5] = d.map(|v| &v[..n]);
    let (o1, o2, o3, o4, o5) = (
        &mut o1[..n],
        &mut o2[..n],
        &mut o3[..n],
        &mut o4[..n],
        &mut o5[..n],
    );
    for i in 0..n {
        let (a, b, c, e, f, h) = (d0[i], d1[i], d2[i], d3[i], d4[i], d5[i]);
        o0[i] = a + f - 2.0 * c + 1.5 * (e - b);
        o1[i] = f - b + 0.5 * c + 2.5 * e;
        o2[i] = f + b - 2.5 * c + 0.5 * e;
        o3[i] = f - c + 2.0 * (e - b);
        o4[i] = f - c + 0.5 * (b - e);
        o5[i] = b + h - 2.0 * e + 1.5 * (f - c);
    }
}

/// `o = G · w` on 3 vectors, with `G` = `[[1, 0, 0], [⅓, ⅓, ⅓], [−⅓, ⅓, −⅓],
/// [−16/15, −8/15, −4/15], [1/15, −2/15, 4/15], [0, 0, 1]]`.
#[inline(always)]
fn weight_rows(w: [&[f32]; 3], o: [&mut [f32]; 6]) {
    let [o0, o1, o2, o3, o4, o5] = o;
    let n = o0.len();
    let [w0, w1, w2] = w.map(|v| &v[..n]);
    let (o1, o2, o3, o4, o5) = (
        &mut o1[..n],
        &mut o2[..n],
        &mut o3[..n],
        &mut o4[..n],
        &mut o5[..n],
    );
    for i in 0..n {
        let (a, b, c) = (w0[i], w1[i], w2[i]);
        o0[i] = a;
        o1[i] = (a + b + c) / 3.0;
        o2[i] = (b - a - c) / 3.0;
        o3[i] = -4.0 * (4.0 * a + 2.0 * b + c) / 15.0;
        o4[i] = (a - 2.0 * b + 4.0 * c) / 15.0;
        o5[i] = c;
    }
}

/// `o = Aᵀ · m` on 6 vectors, with
/// `Aᵀ = [[1, 1, 1, 1, 1, 0], [0, 1, −1, ½, −2, 0], [0, 1, 1, ¼, 4, 0], [0, 1, −1, ⅛, −8, 1]]`.
#[inline(always)]
fn output_rows(m: [&[f32]; 6], o: [&mut [f32]; 4]) {
    let [o0, o1, o2, o3] = o;
    let n = o0.len();
    let [m0, m1, m2, m3, m4, m5] = m.map(|v| &v[..n]);
    let (o1, o2, o3) = (&mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for i in 0..n {
        let (sum12, diff12) = (m1[i] + m2[i], m1[i] - m2[i]);
        let (half, two) = (m3[i], m4[i]);
        o0[i] = m0[i] + sum12 + half + two;
        o1[i] = diff12 + 0.5 * half - 2.0 * two;
        o2[i] = sum12 + 0.25 * half + 4.0 * two;
        o3[i] = diff12 + 0.125 * half - 8.0 * two + m5[i];
    }
}

/// `o = A · d = (Aᵀ)ᵀ · d` on 4 vectors, `Aᵀ` as in [`output_rows`]: the gradient of
/// its input given that of its output.
#[inline(always)]
fn output_columns(d: [&[f32]; 4], o: [&mut [f32]; 6]) {
    let [o0, o1, o2, o3, o4, o5] = o;
    let n = o0.len();
    let [d0, d1, d2, d3] = d.map(|v| &v[..n]);
    let (o1, o2, o3, o4, o5) = (
        &mut o1[..n],
        &mut o2[..n],
        &mut o3[..n],
        &mut o4[..n],
        &mut o5[..n],
    );
    for i in 0..n {
        let (a, b, c, e) = (d0[i], d1[i], d2[i], d3[i]);
        o0[i] = a;
        o1[i] = (a + c) + (b + e);
        o2[i] = (a + c) - (b + e);
        o3[i] = a + 0.5 * b + 0.25 * c + 0.125 * e;
        o4[i] = a - 2.0 * b + 4.0 * c - 8.0 * e;
        o5[i] = e;
    }
}

/// `o = Gᵀ · d` on 6 vectors, `G` as in [`weight_rows`]: the gradient of its input given
/// that of its output.
#[inline(always)]
fn weight_columns(d: [&[f32]; 6], o: [&mut [f32]; 3]) {
    let [o0, o1, o2] = o;
    let n = o0.len();
    let [d0, d1, d2, d3, d4, d5] = d.map(|v| &v[..n]);
    let (o1, o2) = (&mut o1[..n], &mut o2[..n]);
    for i in 0..n {
        let (sum12, diff12) = (d1[i] + d2[i], d1[i] - d2[i]);
        let (a, b) = (d3[i], d4[i]);
        o0[i] = d0[i] + diff12 / 3.0 + (b - 16.0 * a) / 15.0;
        o1[i] = sum12 / 3.0 - (8.0 * a + 2.0 * b) / 15.0;
        o2[i] = diff12 / 3.0 + 4.0 * (b - a) / 15.0 + d5[i];
    }
}

/// Which transformed weights a call uses.
#[derive(Clone, Copy)]
pub(super) enum Derived {
    /// [`transform_weights`]' `c_out × 36 × c_in`, for the forward's packed products.
    Forward,
    /// The same, the kernels rotated by 180°, for the input gradient.
    Rotated,
    /// [`Derived::Forward`]'s values as `36 × c_in × c_out`, for the forward's products
    /// without packing ([`unpacked_products`]), which read `U[ξ]` by rows.
    ByRows,
}

impl Derived {
    /// The name of its derivation in the kept table (`kept.rs`).
    fn name(self) -> &'static str {
        match self {
            Derived::Forward => "winograd_f4 forward",
            Derived::Rotated => "winograd_f4 rotated",
            Derived::ByRows => "winograd_f4 by rows",
        }
    }
}

/// Calls `use_u` with the transformed weights of `weight` that `derived` names: the
/// ones kept from an earlier call with the same weights where there are (`kept.rs`).
pub(super) fn with_transformed<R>(
    weight: &[f32],
    c_in: usize,
    derived: Derived,
    use_u: impl FnOnce(&[f32]) -> R,
) -> R {
    let len = weight.len() / 9 * XI;
    let tag = kept::Tag {
        name: derived.name(),
        shape: [c_in, 0, 0],
    };
    let derive = |u: &mut [f32]| match derived {
        Derived::Forward => transform_weights(weight, c_in, false, u),
        Derived::Rotated => transform_weights(weight, c_in, true, u),
        Derived::ByRows => with_scratch(len, |by_channel: &mut [f32]| {
            transform_weights(weight, c_in, false, by_channel);
            let c_out = len / (XI * c_in);
            // u[ξ][ci][co] = by_channel[co][ξ][ci], one task per ξ.
            u.par_chunks_mut(c_in * c_out)
                .enumerate()
                .for_each(|(xi, u_xi)| {
                    for (ci, row) in u_xi.chunks_exact_mut(c_out).enumerate() {
                        for (co, value) in row.iter_mut().enumerate() {
                            *value = by_channel[(co * XI + xi) * c_in + ci];
                        }
                    }
                });
        }),
    };
    kept::KEPT.with_derived(weight, tag, len, derive, use_u)
}

/// Writes the transformed weights `u[co][ξ][ci] = (G · k · Gᵀ)[ξ]` (`c_out × 36 × c_in`)
/// for the 3×3 kernel `k` of each output and input channel pair of `weight` (`c_out ×
/// c_in × 3 × 3`), rotated by 180° where `rotate` (for the input gradient). The weights
/// are read in order, one task per output channel.
fn transform_weights(weight: &[f32], c_in: usize, rotate: bool, u: &mut [f32]) {
    u.par_chunks_mut(XI * c_in)
        .zip(weight.par_chunks(9 * c_in))
        .for_each(|(u_row, kernels)| {
            with_scratch(27 * c_in, |tmp: &mut [f32]| {
                let (taps, gw) = tmp.split_at_mut(9 * c_in);
                // taps[t][ci]: tap t of every kernel of this output channel, as vectors
                // over ci.
                for (ci, kernel) in kernels.chunks_exact(9).enumerate() {
                    for (t, &w) in kernel.iter().enumerate() {
                        let t = if rotate { 8 - t } else { t };
                        taps[t * c_in + ci] = w;
                    }
                }
                // gw[j][a] = (G · k)[a][j]: G times column j of the kernels.
                for j in 0..3 {
                    let column = std::array::from_fn(|p| &taps[(3 * p + j) * c_in..][..c_in]);
                    weight_rows(column, vectors_mut(&mut gw[6 * j * c_in..], c_in));
                }
                // u[co][6a + b] = (G · k · Gᵀ)[a][b]: G times row a of G · k.
                for a in 0..6 {
                    let row = std::array::from_fn(|j| &gw[(6 * j + a) * c_in..][..c_in]);
                    weight_rows(row, vectors_mut(&mut u_row[6 * a * c_in..], c_in));
                }
            });
        });
}

/// Writes `out[py][px][ch] = plane[ch][py − border][px − border]` (`plane` is `c × h × w`,
/// `out` is `rows × cols × c`), zero outside the image.
fn channels_last(
    plane: &[f32],
    (c, h, w): (usize, usize, usize),
    border: usize,
    cols: usize,
    out: &mut [f32],
) {
    out[..border * cols * c].fill(0.0);
    out[(h + border) * cols * c..].fill(0.0);
    for py in border..h + border {
        let row = &mut out[py * cols * c..][..cols * c];
        row[..border * c].fill(0.0);
        row[(w + border) * c..].fill(0.0);
    }
    for (ch, image) in plane.chunks_exact(h * w).enumerate() {
        for (y, src) in image.chunks_exact(w).enumerate() {
            let first = ((y + border) * cols + border) * c + ch;
            for (x, &value) in src.iter().enumerate() {
                out[first + x * c] = value;
            }
        }
    }
}

/// Writes `out[t][6i + j] = (T · d · Tᵀ)[i][j]` for every tile `t` of a `th × tw` grid,
/// where `d` is the tile's `K × K` patch of `patches` (channel-last, `cols` wide, tiles 4
/// apart), vectors of `c` channels, and `T` the 6 × K matrix that `apply` multiplies by;
/// `t` is scratch of `6 · K · c`.
fn transform_tiles<const K: usize>(
    patches: &[f32],
    (cols, c): (usize, usize),
    (th, tw): (usize, usize),
    apply: impl Fn([&[f32]; K], [&mut [f32]; 6]),
    t: &mut [f32],
    out: &mut [f32],
) {
    for ty in 0..th {
        for tx in 0..tw {
            // t[j][i] = (T · d)[i][j]: T times column j of the patch.
            for j in 0..K {
                let column = std::array::from_fn(|k| {
                    &patches[((4 * ty + k) * cols + 4 * tx + j) * c..][..c]
                });
                apply(column, vectors_mut(&mut t[6 * j * c..], c));
            }
            // out[tile][6i + j] = (T · d · Tᵀ)[i][j]: T times row i of T · d.
            let tile = &mut out[(ty * tw + tx) * XI * c..][..XI * c];
            for i in 0..6 {
                let row = std::array::from_fn(|j| &t[(6 * j + i) * c..][..c]);
                apply(row, vectors_mut(&mut tile[6 * i * c..], c));
            }
        }
    }
}

/// Writes `v[t][ξ][ci] = (Bᵀ · d · B)[ξ]` for every tile `t` of one sample `x_sample`
/// (`c_in × h × w`), with `d` the 6×6 patch of input channel `ci` at rows
/// `4·ty − 1 ..= 4·ty + 4` and columns `4·tx − 1 ..= 4·tx + 4` (zero outside the image).
fn transform_input(g: &ConvGeom, x_sample: &[f32], v_sample: &mut [f32]) {
    let c = g.c_in;
    let grid = tile_grid(g);
    let (rows, cols) = (4 * grid.0 + 2, 4 * grid.1 + 2);
    with_scratch(rows * cols * c + 6 * 6 * c, |tmp: &mut [f32]| {
        let (padded, t) = tmp.split_at_mut(rows * cols * c);
        channels_last(x_sample, (c, g.h, g.w), 1, cols, padded);
        transform_tiles::<6>(padded, (cols, c), grid, input_rows, t, v_sample);
    });
}

/// Writes `dm[t][ξ][co] = (A · dY · Aᵀ)[ξ]` for every tile `t` of one sample's `dy`
/// (`c_out × h × w`), with `dY` the tile's 4×4 block of output channel `co` (zero
/// outside the image): the gradient of `M` through [`transform_output`].
fn transform_output_grad(g: &ConvGeom, dy_sample: &[f32], dm_sample: &mut [f32]) {
    let c = g.c_out;
    let grid = tile_grid(g);
    let (rows, cols) = (4 * grid.0, 4 * grid.1);
    with_scratch(rows * cols * c + 6 * 4 * c, |tmp: &mut [f32]| {
        let (blocks, t) = tmp.split_at_mut(rows * cols * c);
        channels_last(dy_sample, (c, g.h, g.w), 0, cols, blocks);
        transform_tiles::<4>(blocks, (cols, c), grid, output_columns, t, dm_sample);
    });
}

/// Writes one sample's output `y_sample` (`c_out × h × w`): tile `t` of its 4×4 blocks
/// is `Aᵀ · m · A` with `m[ξ] = M[ξ][first + t]` (`M` is `36 × tiles × c_out`); part
/// tiles write their part inside the image.
fn transform_output<O: Slot<f32>>(
    g: &ConvGeom,
    m: &[f32],
    first: usize,
    tiles: usize,
    y_sample: &mut [O],
) {
    let c = g.c_out;
    let (th, tw) = tile_grid(g);
    with_scratch(40 * c, |tmp: &mut [f32]| {
        let (s, o) = tmp.split_at_mut(24 * c);
        for ty in 0..th {
            for tx in 0..tw {
                let tile = first + ty * tw + tx;
                // s[j][r] = (Aᵀ · m)[r][j]: Aᵀ times column j of m.
                for j in 0..6 {
                    let column =
                        std::array::from_fn(|i| &m[((6 * i + j) * tiles + tile) * c..][..c]);
                    output_rows(column, vectors_mut(&mut s[4 * j * c..], c));
                }
                // o[4r + q] = (Aᵀ · m · A)[r][q]: Aᵀ times row r of Aᵀ · m.
                for r in 0..4 {
                    let row = std::array::from_fn(|j| &s[(4 * j + r) * c..][..c]);
                    output_rows(row, vectors_mut(&mut o[4 * r * c..], c));
                }
                let (rows, cols) = (4.min(g.h - 4 * ty), 4.min(g.w - 4 * tx));
                for (co, plane) in y_sample.chunks_exact_mut(g.h * g.w).enumerate() {
                    for r in 0..rows {
                        let dst = &mut plane[(4 * ty + r) * g.w + 4 * tx..][..cols];
                        for (q, d) in dst.iter_mut().enumerate() {
                            d.put(o[(4 * r + q) * c + co]);
                        }
                    }
                }
            }
        }
    });
}

/// `y = conv(x, weight)` for `g` that [`fits`], in f32; `y` is overwritten.
pub(crate) fn forward<O: Slot<f32>>(g: &ConvGeom, x: &[f32], weight: &[f32], y: &mut [O]) {
    if unpacked_products(g, FORWARD_UNPACKED) {
        return with_transformed(weight, g.c_in, Derived::ByRows, |u| {
            // U[ξ] is c_in × c_out, row-major, at u[ξ · c_in · c_out].
            convolve(g, x, u, g.c_in * g.c_out, [g.c_out, 1], true, y);
        });
    }
    with_transformed(weight, g.c_in, Derived::Forward, |u| {
        // U[ξ] is c_in × c_out: its rows (over ci) run along u's vectors.
        convolve(g, x, u, g.c_in, [1, XI * g.c_in], false, y);
    });
}

/// The most channels in and out with which the forward's products run unpacked: with
/// 512, where `U[ξ]` is 1 MiB, the general GEMM's cache blocking measured faster
/// (BENCHMARKS.md, "Winograd products without packing").
const FORWARD_UNPACKED: usize = 256;

/// The same for the input gradient, whose unpacked products read the rows of `U[ξ]`
/// `36 · c_in` apart: at 256 channels they measured slower than the general GEMM (the
/// same section).
const INPUT_GRAD_UNPACKED: usize = 128;

/// The same for the weight gradient's products `dU[ξ] = dM[ξ]ᵀ · V[ξ]`: with 512
/// channels they measured level with the general GEMM or slower, with 64 to 256
/// faster (BENCHMARKS.md, "Small products without packing").
const WEIGHT_GRAD_UNPACKED: usize = 256;

/// Whether the products of `g` (as convolved: `c_in` in, `c_out` out) run in
/// [`unpacked`] rather than matrixmultiply: with at most `most` channels in and out.
fn unpacked_products(g: &ConvGeom, most: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        g.c_in <= most && g.c_out <= most && unpacked::fits(g.c_out, g.c_in)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (g, most);
        false
    }
}

/// `dx` of `y = conv(x, weight)` given `dy`, for `g` that [`fits`], in f32: the
/// forward convolution of `dy` with `weight` transposed and rotated. `dx` is overwritten.
pub(crate) fn input_grad<O: Slot<f32>>(g: &ConvGeom, weight: &[f32], dy: &[f32], dx: &mut [O]) {
    with_transformed(weight, g.c_in, Derived::Rotated, |u| {
        let back = ConvGeom {
            c_in: g.c_out,
            c_out: g.c_in,
            ..*g
        };
        // U[ξ] is c_out × c_in (the backward convolution's c_in × c_out): its columns run
        // along u's vectors.
        let unpacked = unpacked_products(&back, INPUT_GRAD_UNPACKED);
        convolve(&back, dy, u, g.c_in, [XI * g.c_in, 1], unpacked, dx);
    });
}

/// `y = conv(x, ·)` given the transformed weights `u`: `U[ξ]` (`c_in × c_out` of `g`)
/// starts at `u[ξ · xi_stride]` with strides `strides`. With `unpacked` (which needs
/// contiguous columns, `strides[1] == 1`, and [`unpacked_products`]) the products run
/// without packing.
fn convolve<O: Slot<f32>>(
    g: &ConvGeom,
    x: &[f32],
    u: &[f32],
    xi_stride: usize,
    strides: [usize; 2],
    unpacked: bool,
    y: &mut [O],
) {
    let (th, tw) = tile_grid(g);
    let per_sample = th * tw;
    let group = group_len(g);
    debug_assert!(!unpacked || strides[1] == 1);
    let (sample_x, sample_y) = (g.c_in * g.h * g.w, g.c_out * g.h * g.w);
    for (x_group, y_group) in x
        .chunks(group * sample_x)
        .zip(y.chunks_mut(group * sample_y))
    {
        let tiles = x_group.len() / sample_x * per_sample;
        // Each loop below overwrites its part of the scratch before anything reads it.
        with_scratch(tiles * XI * g.c_in, |v: &mut [f32]| {
            v.par_chunks_mut(per_sample * XI * g.c_in)
                .zip(x_group.par_chunks(sample_x))
                .for_each(|(v_sample, x_sample)| transform_input(g, x_sample, v_sample));
            with_scratch(XI * tiles * g.c_out, |m: &mut [f32]| {
                m.par_chunks_mut(tiles * g.c_out)
                    .enumerate()
                    // A job per item (ops/par.rs).
                    .with_max_len(1)
                    .for_each(|(xi, m_xi)| {
                        let (v, u) = (&v[xi * g.c_in..], &u[xi * xi_stride..]);
                        #[cfg(target_arch = "x86_64")]
                        if unpacked {
                            let ops = unpacked::Operands {
                                a: v,
                                a_strides: [XI * g.c_in, 1],
                                b: u,
                                b_row: strides[0],
                            };
                            return unpacked::product(
                                tiles, g.c_out, g.c_in, &ops, false, m_xi, g.c_out,
                            );
                        }
                        let _ = unpacked;
                        gemm_serial_strided(
                            tiles,
                            g.c_out,
                            g.c_in,
                            v,
                            [XI * g.c_in, 1],
                            u,
                            strides,
                            0.0,
                            m_xi,
                            g.c_out,
                        )
                    });
                y_group
                    .par_chunks_mut(sample_y)
                    .enumerate()
                    .for_each(|(s, y_sample)| {
                        transform_output(g, m, s * per_sample, tiles, y_sample)
                    });
            });
        });
    }
}

/// `dw` of `y = conv(x, weight)` given `dy`, for `g` that [`fits`], in f32; `dw` is
/// overwritten. Per group of samples: the inputs transformed as by the forward (`V`),
/// `dy` through the adjoint of the output transform (`dM`), then 36 GEMMs
/// `dU[ξ] += dM[ξ]ᵀ · V[ξ]` over the group's tiles, added in group order; last
/// `dw = Gᵀ · dU · G` per output channel.
pub(crate) fn weight_grad(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (th, tw) = tile_grid(g);
    let per_sample = th * tw;
    let group = group_len(g);
    let (c_in, c_out) = (g.c_in, g.c_out);
    let (sample_x, sample_y) = (c_in * g.h * g.w, c_out * g.h * g.w);
    let unpacked_du = unpacked_products(g, WEIGHT_GRAD_UNPACKED);
    // dU[ξ][co][ci], summed over the groups.
    with_scratch(XI * c_out * c_in, |du: &mut [f32]| {
        let pairs = x.chunks(group * sample_x).zip(dy.chunks(group * sample_y));
        for (index, (x_group, dy_group)) in pairs.enumerate() {
            let tiles = x_group.len() / sample_x * per_sample;
            // Each loop below overwrites its part of the scratch before anything reads it.
            with_scratch(tiles * XI * c_in, |v: &mut [f32]| {
                v.par_chunks_mut(per_sample * XI * c_in)
                    .zip(x_group.par_chunks(sample_x))
                    .for_each(|(v_sample, x_sample)| transform_input(g, x_sample, v_sample));
                with_scratch(tiles * XI * c_out, |dm: &mut [f32]| {
                    dm.par_chunks_mut(per_sample * XI * c_out)
                        .zip(dy_group.par_chunks(sample_y))
                        .for_each(|(dm_sample, dy_sample)| {
                            transform_output_grad(g, dy_sample, dm_sample)
                        });
                    du.par_chunks_mut(c_out * c_in)
                        .enumerate()
                        // A job per item (ops/par.rs).
                        .with_max_len(1)
                        .for_each(|(xi, du_xi)| {
                            if unpacked_du {
                                #[cfg(target_arch = "x86_64")]
                                {
                                    let ops = unpacked::Operands {
                                        a: &dm[xi * c_out..],
                                        a_strides: [1, XI * c_out],
                                        b: &v[xi * c_in..],
                                        b_row: XI * c_in,
                                    };
                                    let accumulate = index > 0;
                                    return unpacked::product(
                                        c_out, c_in, tiles, &ops, accumulate, du_xi, c_in,
                                    );
                                }
                            }
                            gemm_serial_strided(
                                c_out,
                                c_in,
                                tiles,
                                &dm[xi * c_out..],
                                [1, XI * c_out],
                                &v[xi * c_in..],
                                [XI * c_in, 1],
                                if index == 0 { 0.0 } else { 1.0 },
                                du_xi,
                                c_in,
                            )
                        });
                });
            });
        }
        let du: &[f32] = du;
        dw.par_chunks_mut(9 * c_in)
            .enumerate()
            .for_each(|(co, dw_row)| {
                with_scratch(27 * c_in, |tmp: &mut [f32]| {
                    let (s, taps) = tmp.split_at_mut(18 * c_in);
                    // s[b][p] = (Gᵀ · dU)[p][b]: Gᵀ times column b of dU.
                    for b in 0..6 {
                        let column = std::array::from_fn(|a| {
                            &du[((6 * a + b) * c_out + co) * c_in..][..c_in]
                        });
                        weight_columns(column, vectors_mut(&mut s[3 * b * c_in..], c_in));
                    }
                    // taps[3p + q] = (Gᵀ · dU · G)[p][q]: Gᵀ times row p of Gᵀ · dU.
                    for p in 0..3 {
                        let row = std::array::from_fn(|b| &s[(3 * b + p) * c_in..][..c_in]);
                        weight_columns(row, vectors_mut(&mut taps[3 * p * c_in..], c_in));
                    }
                    for (ci, kernel) in dw_row.chunks_exact_mut(9).enumerate() {
                        for (t, w) in kernel.iter_mut().enumerate() {
                            *w = taps[t * c_in + ci];
                        }
                    }
                });
            });
    });
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

    /// Forward, input and weight gradient against the f64 im2col reference: one tile per
    /// image (4×4), several (8×8), part tiles (odd sides; 1×1 and 1×2 images, whose taps
    /// read mostly padding), lone samples, a batch of two groups of 31 and 30 samples
    /// (61×64×16×15, the weight gradient summed over both), few and many channels.
    #[test]
    fn forward_and_gradients_match_the_f64_reference() {
        let shapes = [
            (3, 5, 4, 4, 7),
            (2, 3, 8, 8, 4),
            (3, 2, 5, 6, 3),
            (4, 4, 1, 1, 2),
            (2, 3, 1, 2, 5),
            (5, 16, 7, 9, 16),
            (9, 256, 4, 4, 256),
            (1, 64, 13, 11, 32),
            (70, 512, 4, 4, 40),
            (61, 64, 16, 15, 64),
        ];
        for_each_3x3(&shapes, 11, |g, what, operands| {
            assert!(fits(g));
            assert_forward_and_input_grad(g, what, operands, forward, input_grad);
            let [x, wt, dy] = &operands.f32s;
            let [x64, wt64, dy64] = &operands.f64s;
            let (_, want_dw) = cpu::backward(g, x64, wt64, dy64, false, true);
            let mut dw = vec![f32::NAN; wt.len()];
            weight_grad(g, x, dy, &mut dw);
            assert_close(&format!("dw {what}"), &dw, &want_dw.unwrap());
        });
    }

    /// The batch is split into groups where V and M would not fit [`GROUP_BYTES`].
    #[test]
    fn large_batches_run_in_equal_groups() {
        let g = |n, c, side| ConvGeom {
            n,
            c_in: c,
            h: side,
            w: side,
            c_out: c,
            k: 3,
            stride: 1,
            pad: 1,
        };
        assert_eq!(group_len(&g(128, 512, 4)), 64);
        assert_eq!(group_len(&g(8, 16, 4)), 8);
        assert_eq!(group_len(&g(0, 16, 4)), 1);
        assert_eq!(group_len(&g(70, 512, 4)), 70);
        assert_eq!(group_len(&g(300, 512, 4)), 100);
        assert_eq!(
            group_len(&ConvGeom {
                h: 16,
                w: 15,
                ..g(61, 64, 4)
            }),
            31
        );
    }

    /// The CPU convolution in f32 takes this module where [`chosen`] says so (each of its
    /// three results the same as this module's), and they match the f64 reference there.
    #[test]
    fn cpu_conv_in_f32_uses_it_where_chosen() {
        let mut rng = StdRng::seed_from_u64(12);
        let g = ConvGeom {
            n: 3,
            c_in: 64,
            h: 9,
            w: 3,
            c_out: 80,
            k: 3,
            stride: 1,
            pad: 1,
        };
        assert!(chosen(&g));
        let (x, x64) = random(g.n * g.c_in * g.h * g.w, &mut rng);
        let (wt, wt64) = random(g.c_out * g.c_in * 9, &mut rng);
        let (dy, dy64) = random(g.n * g.c_out * g.h * g.w, &mut rng);
        let mut ours = [vec![0.0; dy.len()], vec![0.0; x.len()], vec![0.0; wt.len()]];
        forward(&g, &x, &wt, &mut ours[0]);
        input_grad(&g, &wt, &dy, &mut ours[1]);
        weight_grad(&g, &x, &dy, &mut ours[2]);
        let y = cpu::forward(&g, &x, &wt);
        let (dx, dw) = cpu::backward(&g, &x, &wt, &dy, true, true);
        let (dx, dw) = (dx.unwrap(), dw.unwrap());
        assert_eq!(
            [&y, &dx, &dw],
            [&ours[0], &ours[1], &ours[2]],
            "the same loops"
        );
        let (dx64, dw64) = cpu::backward(&g, &x64, &wt64, &dy64, true, true);
        assert_close("y", &y, &cpu::forward(&g, &x64, &wt64));
        assert_close("dx", &dx, &dx64.unwrap());
        assert_close("dw", &dw, &dw64.unwrap());
        // An empty batch goes elsewhere: its weight gradient is zero.
        let empty = ConvGeom { n: 0, ..g };
        let (_, dw) = cpu::backward(&empty, &[], &wt, &[], true, true);
        assert!(dw.unwrap().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn only_stride_one_3x3_convolutions_of_64_channels_up_to_16x16_are_chosen() {
        let g = |c, side, stride| ConvGeom {
            n: 1,
            c_in: c,
            h: side,
            w: side,
            c_out: c,
            k: 3,
            stride,
            pad: 1,
        };
        assert!(chosen(&g(512, 4, 1)) && chosen(&g(256, 8, 1)) && chosen(&g(64, 16, 1)));
        assert!(!chosen(&g(512, 4, 2)) && !chosen(&g(32, 14, 1)) && !chosen(&g(64, 17, 1)));
        assert!(!fits(&g(0, 4, 1)) && !fits(&g(4, 0, 1)));
        assert!(!fits(&ConvGeom {
            n: 0,
            ..g(64, 4, 1)
        }));
    }
}
