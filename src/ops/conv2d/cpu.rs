//! 2-D convolution on the CPU: the batch in groups of samples, one rayon task per group;
//! in each, im2col of the group into the thread's reusable scratch
//! (`crate::scratch`), then one single-threaded GEMM. In f32, most forwards, input
//! and weight gradients take a loop without im2col instead (`Loop`,
//! `weight_grad_without_im2col`); f64, the reference, always takes im2col.
//!
//! A group holds about `GROUP_COLUMNS` output pixels, so its im2col block (k²·C_in
//! rows of ~1,024: 2.3 MiB at 64 channels, 9 MiB at 256 or 512) is still in the
//! caches when the GEMM packs it, and the GEMM is wide enough to run near its peak; the
//! tasks, not the GEMM, share the cores. Each group's weight gradient is its own partial
//! sum, added in group order, so the result depends on the shape only, never on the
//! thread count.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::winograd_f4_narrow;
#[cfg(target_arch = "x86_64")]
use super::{direct, weight_grad};
use super::{pointwise, winograd, winograd_f4, ConvGeom};
use crate::gemm::{gemm_serial, Op};
use crate::ops::columns::{from_columns, to_columns};
use crate::ops::par::{f32_slots, for_each_piece, new_written, samples_per_group, Slot};
use crate::real::{f32s, f32s_mut, is_f32, Real};
use crate::scratch::with_scratch;

/// Output pixels (samples × pixels per sample) a group aims for.
const GROUP_COLUMNS: usize = 1024;

/// Samples per group.
fn group_len(g: &ConvGeom) -> usize {
    samples_per_group(g.n, g.h_out() * g.w_out(), GROUP_COLUMNS)
}

/// Output positions `lo..hi` (of `out_len`) whose input index `o·stride + k − pad`
/// falls inside `0..in_len`.
fn valid_range(
    out_len: usize,
    in_len: usize,
    stride: usize,
    k: usize,
    pad: usize,
) -> (usize, usize) {
    let lo = pad.saturating_sub(k).div_ceil(stride).min(out_len);
    let hi = if in_len + pad > k {
        ((in_len + pad - k - 1) / stride + 1).min(out_len)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// `col[r, s·hwo + p]` for the samples of `x_group`: row `r = (ci·k + ky)·k + kx`,
/// output pixel `p`, zero where the kernel reads padding.
fn im2col<T: Real>(g: &ConvGeom, x_group: &[T], col: &mut [T]) {
    let (ho, wo) = (g.h_out(), g.w_out());
    let hwo = ho * wo;
    let nb = x_group.len() / (g.c_in * g.h * g.w);
    let cols = nb * hwo;
    col[..g.patch() * cols]
        .chunks_mut(cols)
        .enumerate()
        .for_each(|(r, row)| {
            let (ci, ky, kx) = (r / (g.k * g.k), (r / g.k) % g.k, r % g.k);
            // The output rows and columns whose input lies inside the image depend on
            // (ky, kx) only: worked out once per row of col, not per output row.
            let (oy_lo, oy_hi) = valid_range(ho, g.h, g.stride, ky, g.pad);
            let (lo, hi) = valid_range(wo, g.w, g.stride, kx, g.pad);
            let shift = plane_shift(g, ky, kx);
            for s in 0..nb {
                let plane = &x_group[(s * g.c_in + ci) * g.h * g.w..][..g.h * g.w];
                let out = &mut row[s * hwo..(s + 1) * hwo];
                out[..oy_lo * wo].fill(T::zero());
                out[oy_hi * wo..].fill(T::zero());
                if let Some(shift) = shift {
                    copy_shifted(&mut out[oy_lo * wo..oy_hi * wo], plane, oy_lo * wo, shift);
                    for oy in oy_lo..oy_hi {
                        zero_edges(&mut out[oy * wo..(oy + 1) * wo], lo, hi);
                    }
                    continue;
                }
                for oy in oy_lo..oy_hi {
                    let dst = &mut out[oy * wo..(oy + 1) * wo];
                    let src = &plane[(oy * g.stride + ky - g.pad) * g.w..][..g.w];
                    zero_edges(dst, lo, hi);
                    if lo == hi {
                        continue;
                    }
                    let start = lo * g.stride + kx - g.pad;
                    let src = &src[start..start + (hi - lo - 1) * g.stride + 1];
                    copy_strided(&mut dst[lo..hi], src, g.stride);
                }
            }
        });
}

/// For a stride-1 convolution that keeps the width (`w_out == w`, as every 3×3 one with
/// padding 1), output pixel `p` of kernel tap `(ky, kx)` reads input pixel `p + shift`
/// of the same plane: the rows of the valid band are one contiguous stretch of the
/// input, shifted, apart from the padding columns that wrap into the neighbouring row.
/// `None` for any other geometry.
fn plane_shift(g: &ConvGeom, ky: usize, kx: usize) -> Option<isize> {
    (g.stride == 1 && g.w_out() == g.w)
        .then(|| (ky as isize - g.pad as isize) * g.w as isize + kx as isize - g.pad as isize)
}

/// The valid `i` of `dst[i] ↔ plane[first + i + shift]` (those whose plane index lies
/// inside the plane) as `(lo, hi, plane index of lo)`; `lo == hi` when there are none.
fn shifted_overlap(
    len: usize,
    plane_len: usize,
    first: usize,
    shift: isize,
) -> (usize, usize, usize) {
    let begin = first as isize + shift;
    let lo = (-begin).clamp(0, len as isize) as usize;
    let hi = (plane_len as isize - begin).clamp(lo as isize, len as isize) as usize;
    if lo == hi {
        return (lo, lo, 0);
    }
    (lo, hi, (begin + lo as isize) as usize)
}

/// `dst[i] = plane[first + i + shift]`, zero where that index falls outside the plane
/// (only wrapped padding columns, which the caller zeroes anyway).
fn copy_shifted<T: Real>(dst: &mut [T], plane: &[T], first: usize, shift: isize) {
    let (lo, hi, from) = shifted_overlap(dst.len(), plane.len(), first, shift);
    dst[..lo].fill(T::zero());
    dst[hi..].fill(T::zero());
    dst[lo..hi].copy_from_slice(&plane[from..from + hi - lo]);
}

/// `plane[first + i + shift] += src[i]` where that index lies inside the plane.
fn add_shifted<T: Real>(plane: &mut [T], src: &[T], first: usize, shift: isize) {
    let (lo, hi, from) = shifted_overlap(src.len(), plane.len(), first, shift);
    for (d, &v) in plane[from..from + hi - lo].iter_mut().zip(&src[lo..hi]) {
        *d += v;
    }
}

/// Elements per fixed-size step of [`copy_row`] and [`add_row`]: one AVX-512 vector of
/// f32, moved by inline loads and stores.
const ROW_STEP: usize = 16;

/// `dst = src` for the short rows of im2col and of the direct convolution's padded
/// planes (4 to 32 elements at the ResNet shapes), where a `memcpy` call per row had
/// cost more than the copy.
#[inline(always)]
pub(super) fn copy_row<T: Real>(dst: &mut [T], src: &[T]) {
    let mut ds = dst.chunks_exact_mut(ROW_STEP);
    let mut ss = src.chunks_exact(ROW_STEP);
    for (d, s) in (&mut ds).zip(&mut ss) {
        let d: &mut [T; ROW_STEP] = d.try_into().unwrap();
        *d = s.try_into().unwrap();
    }
    for (d, &v) in ds.into_remainder().iter_mut().zip(ss.remainder()) {
        *d = v;
    }
}

/// `dst[j] = src[j·stride]` for every `j` of `dst`, for rows of im2col and of the
/// direct convolution's phase planes; for a non-empty `dst`, `src` holds
/// `(dst.len() − 1)·stride + 1` elements.
#[inline(always)]
pub(super) fn copy_strided<T: Real>(dst: &mut [T], src: &[T], stride: usize) {
    if dst.is_empty() {
        return;
    }
    debug_assert_eq!(src.len(), (dst.len() - 1) * stride + 1, "copy_strided: src");
    match stride {
        1 => copy_row(dst, src),
        2 => {
            // Whole pairs, then the last element alone: a loop the compiler
            // vectorizes (an indexed `src[2j]` compiled to one element per step).
            let last = dst.len() - 1;
            for (d, pair) in dst[..last].iter_mut().zip(src.chunks_exact(2)) {
                *d = pair[0];
            }
            dst[last] = src[2 * last];
        }
        // Indexing, not `step_by`: on rows this short its set-up and per-element
        // `nth` cost more than the copy itself.
        _ => {
            for (j, d) in dst.iter_mut().enumerate() {
                *d = src[j * stride];
            }
        }
    }
}

/// `dst += src`, in the same fixed steps as [`copy_row`].
#[inline(always)]
fn add_row<T: Real>(dst: &mut [T], src: &[T]) {
    let mut ds = dst.chunks_exact_mut(ROW_STEP);
    let mut ss = src.chunks_exact(ROW_STEP);
    for (d, s) in (&mut ds).zip(&mut ss) {
        let d: &mut [T; ROW_STEP] = d.try_into().unwrap();
        let s: &[T; ROW_STEP] = s.try_into().unwrap();
        for k in 0..ROW_STEP {
            d[k] += s[k];
        }
    }
    for (d, &v) in ds.into_remainder().iter_mut().zip(ss.remainder()) {
        *d += v;
    }
}

/// Zeroes `row[..lo]` and `row[hi..]`: the padding columns, at most `pad` on each side.
/// One or none on a side (padding 1) is a single store: a loop or `fill` of that length
/// had compiled to a `memset` call per row, which cost more than the row's copy.
#[inline(always)]
fn zero_edges<T: Real>(row: &mut [T], lo: usize, hi: usize) {
    let zero = T::zero();
    match lo {
        0 => {}
        1 => row[0] = zero,
        _ => row[..lo].fill(zero),
    }
    match row.len() - hi {
        0 => {}
        1 => row[hi] = zero,
        _ => row[hi..].fill(zero),
    }
}

/// Adds `dcol` (the im2col layout) back into `dx_group`, the input gradient of the
/// group's samples. Where [`plane_shift`] applies, the entries of `dcol` at wrapped
/// padding columns are zeroed first, so that each tap adds its band as one contiguous
/// stretch.
fn col2im<T: Real>(g: &ConvGeom, dcol: &mut [T], dx_group: &mut [T]) {
    let (ho, wo) = (g.h_out(), g.w_out());
    let hwo = ho * wo;
    let nb = dx_group.len() / (g.c_in * g.h * g.w);
    let cols = nb * hwo;
    if plane_shift(g, 0, 0).is_some() {
        for (r, row) in dcol[..g.patch() * cols].chunks_mut(cols).enumerate() {
            let (lo, hi) = valid_range(wo, g.w, 1, r % g.k, g.pad);
            for out_row in row.chunks_mut(wo) {
                zero_edges(out_row, lo, hi);
            }
        }
    }
    let dcol: &[T] = dcol;
    dx_group
        .chunks_mut(g.h * g.w)
        .enumerate()
        .for_each(|(plane_idx, plane)| {
            let (s, ci) = (plane_idx / g.c_in, plane_idx % g.c_in);
            for ky in 0..g.k {
                let (oy_lo, oy_hi) = valid_range(ho, g.h, g.stride, ky, g.pad);
                for kx in 0..g.k {
                    let (lo, hi) = valid_range(wo, g.w, g.stride, kx, g.pad);
                    if lo == hi {
                        continue;
                    }
                    let start = lo * g.stride + kx - g.pad;
                    let r = (ci * g.k + ky) * g.k + kx;
                    let src = &dcol[r * cols + s * hwo..][..hwo];
                    if let Some(shift) = plane_shift(g, ky, kx) {
                        let band = &src[oy_lo * wo..oy_hi * wo];
                        add_shifted(plane, band, oy_lo * wo, shift);
                        continue;
                    }
                    for oy in oy_lo..oy_hi {
                        let dst = &mut plane[(oy * g.stride + ky - g.pad) * g.w..][..g.w];
                        let row = &src[oy * wo + lo..oy * wo + hi];
                        if g.stride == 1 {
                            add_row(&mut dst[start..start + hi - lo], row);
                        } else {
                            let dst = &mut dst[start..start + (hi - lo - 1) * g.stride + 1];
                            for (j, &v) in row.iter().enumerate() {
                                dst[j * g.stride] += v;
                            }
                        }
                    }
                }
            }
        });
}

/// An f32 loop that computes a convolution's forward, or its input gradient, without
/// im2col. Each overwrites every element of its output, so the output needs no zero
/// fill first.
#[derive(Clone, Copy)]
enum Loop {
    /// Winograd F(2×2, 3×3) ([`super::winograd`]).
    Winograd,
    /// Winograd F(4×4, 3×3) ([`super::winograd_f4`]).
    WinogradF4,
    /// Winograd F(4×4, 3×3) in registers for 16, 32 or 64 channels in and out
    /// ([`super::winograd_f4_narrow`]), on x86-64 with AVX-512.
    #[cfg(target_arch = "x86_64")]
    WinogradF4Narrow,
    /// The direct loop (`direct.rs`), on x86-64 with AVX-512.
    #[cfg(target_arch = "x86_64")]
    Direct,
    /// One product per sample for 1×1 kernels ([`super::pointwise`]).
    Pointwise,
}

impl Loop {
    /// The loop for the forward of `g`: a product per sample for 1×1 kernels, Winograd
    /// for the stride-1 3×3 convolutions with at least 64 channels (F(4×4) on images up
    /// to 16×16, F(2×2) on larger ones; with AVX-512 those with 16, 32 or 64 channels
    /// in and out on images up to 32×32 as F(4×4) in registers), else the direct loop
    /// for most others; `None`: im2col.
    fn forward(g: &ConvGeom) -> Option<Loop> {
        if pointwise::fits(g) {
            return Some(Loop::Pointwise);
        }
        #[cfg(target_arch = "x86_64")]
        if winograd_f4_narrow::chosen(g) {
            return Some(Loop::WinogradF4Narrow);
        }
        if winograd_f4::chosen(g) {
            return Some(Loop::WinogradF4);
        }
        if winograd::chosen(g) {
            return Some(Loop::Winograd);
        }
        #[cfg(target_arch = "x86_64")]
        if direct::fits(g) {
            return Some(Loop::Direct);
        }
        None
    }

    /// The loop for the input gradient of `g` (the forward's, for the backward
    /// convolution); `None`: im2col.
    fn input_grad(g: &ConvGeom) -> Option<Loop> {
        if pointwise::fits(g) {
            return Some(Loop::Pointwise);
        }
        #[cfg(target_arch = "x86_64")]
        if winograd_f4_narrow::chosen(g) {
            return Some(Loop::WinogradF4Narrow);
        }
        if winograd_f4::chosen(g) {
            return Some(Loop::WinogradF4);
        }
        if winograd::chosen(g) {
            return Some(Loop::Winograd);
        }
        #[cfg(target_arch = "x86_64")]
        if direct::fits_input_grad(g) {
            return Some(Loop::Direct);
        }
        None
    }

    /// Writes `y = conv(x, weight)`, every element of `y`.
    fn run_forward<O: Slot<f32>>(self, g: &ConvGeom, x: &[f32], weight: &[f32], y: &mut [O]) {
        match self {
            Loop::Winograd => winograd::forward(g, x, weight, y),
            Loop::WinogradF4 => winograd_f4::forward(g, x, weight, y),
            #[cfg(target_arch = "x86_64")]
            Loop::WinogradF4Narrow => winograd_f4_narrow::forward(g, x, weight, y),
            #[cfg(target_arch = "x86_64")]
            Loop::Direct => direct::forward(g, x, weight, y),
            Loop::Pointwise => pointwise::forward(g, x, weight, y),
        }
    }

    /// Writes the input gradient `dx` given `dy`, every element of `dx`.
    fn run_input_grad<O: Slot<f32>>(self, g: &ConvGeom, weight: &[f32], dy: &[f32], dx: &mut [O]) {
        match self {
            Loop::Winograd => winograd::input_grad(g, weight, dy, dx),
            Loop::WinogradF4 => winograd_f4::input_grad(g, weight, dy, dx),
            #[cfg(target_arch = "x86_64")]
            Loop::WinogradF4Narrow => winograd_f4_narrow::input_grad(g, weight, dy, dx),
            #[cfg(target_arch = "x86_64")]
            Loop::Direct => direct::input_grad(g, weight, dy, dx),
            Loop::Pointwise => pointwise::input_grad(g, weight, dy, dx),
        }
    }
}

/// Writes the weight gradient `dw` in f32 without im2col where Winograd F(4×4, 3×3)
/// takes `g` (`winograd_f4.rs`), or else the CPU has AVX-512 and `g` is a 3×3
/// convolution of stride 1 or 2 (`weight_grad.rs`). Returns whether it did.
fn weight_grad_without_im2col(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) -> bool {
    if winograd_f4::chosen(g) {
        winograd_f4::weight_grad(g, x, dy, dw);
        return true;
    }
    #[cfg(target_arch = "x86_64")]
    if weight_grad::fits(g) {
        weight_grad::weight_grad(g, x, dy, dw);
        return true;
    }
    false
}

/// `y = conv(x, weight)`; weight is `[c_out, c_in, k, k]`. In f32, most convolutions
/// skip im2col (a product per sample for 1×1 kernels, the direct loop or Winograd); f64
/// always takes im2col, the reference.
///
/// # Panics
/// If `x` or `weight` differ in length from `g.lens()` (the tape's `conv2d` checks
/// shapes first and returns an error).
pub fn forward<T: Real>(g: &ConvGeom, x: &[T], weight: &[T]) -> Vec<T> {
    let (x_len, w_len, _) = g.lens();
    assert_eq!(
        (x.len(), weight.len()),
        (x_len, w_len),
        "conv2d forward: x, weight for {g:?}"
    );
    let hwo = g.h_out() * g.w_out();
    let group = group_len(g);
    let (sample_x, sample_y) = (g.c_in * g.h * g.w, g.c_out * hwo);
    if let Some(fast) = Loop::forward(g).filter(|_| is_f32::<T>()) {
        let (x, weight) = (f32s(x), f32s(weight));
        // SAFETY: the loop writes every element of y.
        return unsafe {
            new_written(g.n * sample_y, |y| {
                fast.run_forward(g, x, weight, f32_slots::<T, _>(y))
            })
        };
    }
    let mut y = vec![T::zero(); g.n * sample_y];
    y.par_chunks_mut(group * sample_y)
        .zip(x.par_chunks(group * sample_x))
        .for_each(|(y_group, x_group)| {
            let nb = y_group.len() / sample_y;
            let cols = nb * hwo;
            // im2col and the GEMM overwrite their scratch before reading it.
            with_scratch(g.patch() * cols, |col: &mut [T]| {
                im2col(g, x_group, col);
                let product = |dst: &mut [T]| {
                    let (one, zero) = (T::one(), T::zero());
                    gemm_serial(
                        g.c_out,
                        cols,
                        g.patch(),
                        one,
                        weight,
                        Op::N,
                        col,
                        Op::N,
                        zero,
                        dst,
                    )
                };
                // A lone sample's output is already y's layout: the GEMM writes it in
                // place.
                if nb == 1 {
                    return product(y_group);
                }
                with_scratch(g.c_out * cols, |out: &mut [T]| {
                    product(out);
                    from_columns(out, g.c_out, hwo, y_group);
                });
            });
        });
    y
}

/// Gradients of `conv(x, weight)` given `dy`: `(dx, dweight)`, each only if asked for.
/// In f32, `dx` and `dweight` skip im2col where a faster loop takes `g`.
///
/// # Panics
/// If `x`, `weight` or `dy` differ in length from `g.lens()` (the tape's `conv2d`
/// checks shapes first and returns an error).
pub fn backward<T: Real>(
    g: &ConvGeom,
    x: &[T],
    weight: &[T],
    dy: &[T],
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<T>>, Option<Vec<T>>) {
    let lens = (x.len(), weight.len(), dy.len());
    assert_eq!(lens, g.lens(), "conv2d backward: x, weight, dy for {g:?}");
    let hwo = g.h_out() * g.w_out();
    let group = group_len(g);
    let (sample_x, sample_y) = (g.c_in * g.h * g.w, g.c_out * hwo);
    let groups = g.n.div_ceil(group);
    // dx without im2col where a faster loop takes it; the per-group tasks below then
    // compute the weight gradient only. im2col's dx is summed into zeros.
    let dx_loop = Loop::input_grad(g).filter(|_| want_dx && is_f32::<T>());
    let dx_done = dx_loop.is_some();
    let mut dx = match dx_loop {
        Some(fast) => {
            let (weight, dy) = (f32s(weight), f32s(dy));
            // SAFETY: the loop writes every element of dx.
            Some(unsafe {
                new_written(x.len(), |dx| {
                    fast.run_input_grad(g, weight, dy, f32_slots::<T, _>(dx))
                })
            })
        }
        None => want_dx.then(|| vec![T::zero(); x.len()]),
    };
    // The weight gradient without im2col where a faster loop takes it.
    let mut dw_done = None;
    if want_dw && is_f32::<T>() {
        let mut dw = vec![T::zero(); weight.len()];
        if weight_grad_without_im2col(g, f32s(x), f32s(dy), f32s_mut(&mut dw)) {
            dw_done = Some(dw);
        }
    }
    let want_dw = want_dw && dw_done.is_none();
    if (dx_done || !want_dx) && !want_dw {
        return (dx, dw_done);
    }
    let dx_groups: Vec<Option<&mut [T]>> = match dx.as_deref_mut() {
        Some(dx) if !dx_done => dx.chunks_mut(group * sample_x).map(Some).collect(),
        _ => (0..groups).map(|_| None).collect(),
    };
    // Per group, its own weight-gradient sum (added below in group order).
    let dw_parts: Vec<Option<Vec<T>>> = dx_groups
        .into_par_iter()
        .enumerate()
        .map(|(i, dx_group)| {
            let s0 = i * group;
            let nb = group.min(g.n - s0);
            let cols = nb * hwo;
            let dy_group = &dy[s0 * sample_y..(s0 + nb) * sample_y];
            // dy in the column layout; a lone sample's is already so.
            with_scratch(
                if nb == 1 { 0 } else { g.c_out * cols },
                |dyc: &mut [T]| {
                    let dyg: &[T] = if nb == 1 {
                        dy_group
                    } else {
                        to_columns(dy_group, g.c_out, hwo, dyc);
                        dyc
                    };
                    // im2col and the GEMMs overwrite col before reading it.
                    with_scratch(g.patch() * cols, |col: &mut [T]| {
                        let (one, zero) = (T::one(), T::zero());
                        let dw_part = want_dw.then(|| {
                            im2col(g, &x[s0 * sample_x..(s0 + nb) * sample_x], col);
                            let mut part = vec![T::zero(); weight.len()];
                            gemm_serial(
                                g.c_out,
                                g.patch(),
                                cols,
                                one,
                                dyg,
                                Op::N,
                                col,
                                Op::T,
                                zero,
                                &mut part,
                            );
                            part
                        });
                        if let Some(dx_group) = dx_group {
                            gemm_serial(
                                g.patch(),
                                cols,
                                g.c_out,
                                one,
                                weight,
                                Op::T,
                                dyg,
                                Op::N,
                                zero,
                                col,
                            );
                            col2im(g, col, dx_group);
                        }
                        dw_part
                    })
                },
            )
        })
        .collect();
    // Each element summed over the groups in group order, the elements in parallel
    // pieces: the same bits as a serial sum, without one core adding every group's
    // weight-sized partial.
    let dw = dw_done.or_else(|| {
        want_dw.then(|| {
            let parts: Vec<Vec<T>> = dw_parts.into_iter().flatten().collect();
            let mut dw = vec![T::zero(); weight.len()];
            for_each_piece(&mut dw, |off, piece| {
                for part in &parts {
                    for (t, &v) in piece.iter_mut().zip(&part[off..]) {
                        *t += v;
                    }
                }
            });
            dw
        })
    });
    (dx, dw)
}
