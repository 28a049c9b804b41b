//! CPU SANet + DPNet, fused (per sample, h in a cache-sized scratch) and unfused (whole
//! batch, op by op, h stored).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{Conv5Source, SanetGrads, SanetOutputs, SanetParamGrads, SanetShape};
use crate::error::{check_len, Result};
use crate::gemm::gemm_serial_rows;
use crate::gemm::transpose::transpose_into;
use crate::ops::conv1x1::cpu::{conv1x1_backward, conv1x1_forward};
use crate::ops::conv1x1::Conv1x1Shape;
use crate::ops::dynconv::cpu::{dynconv_backward, dynconv_forward};
use crate::ops::dynconv::DynConvShape;
use crate::ops::fc::cpu::{fc_backward, fc_forward};
use crate::ops::fc::FcShape;
use crate::ops::par::{new_written, samples_per_group, Slot};
use crate::ops::pool::cpu::{pool_backward, pool_forward};
use crate::ops::pool::PoolShape;
use crate::ops::reduce;
use crate::real::Real;
use crate::scratch::with_scratch;

fn check_params<T: Real>(
    op: &'static str,
    shape: &SanetShape,
    w3: &[T],
    b3: &[T],
    src: &Conv5Source<'_, T>,
) -> Result<()> {
    let co = shape.co;
    check_len(op, "w3", w3.len(), co * shape.c)?;
    check_len(op, "b3", b3.len(), co)?;
    match src {
        Conv5Source::Predicted { w4, b4 } => {
            check_len(op, "w4", w4.len(), (co + 1) * co)?;
            check_len(op, "b4", b4.len(), co + 1)
        }
        Conv5Source::Learned { w5, b5 } => {
            check_len(op, "w5", w5.len(), co)?;
            check_len(op, "b5", b5.len(), 1)
        }
    }
}

/// Conv5's weights for `n` samples from their pooled `q` (`[n, co]`).
fn head_forward<T: Real>(src: &Conv5Source<'_, T>, co: usize, q: &[T]) -> (Vec<T>, Vec<T>) {
    let n = q.len() / co;
    match src {
        Conv5Source::Predicted { w4, b4 } => {
            let mut d = vec![T::zero(); n * (co + 1)];
            let shape = FcShape {
                n,
                inp: co,
                out: co + 1,
            };
            fc_forward(&shape, q, w4, b4, &mut d).expect("lengths checked by the caller");
            let w5 = d.chunks(co + 1).flat_map(|r| &r[..co]).copied().collect();
            let b5 = d.chunks(co + 1).map(|r| r[co]).collect();
            (w5, b5)
        }
        Conv5Source::Learned { w5, b5 } => (w5.repeat(n), vec![b5[0]; n]),
    }
}

/// Back through [`head_forward`]: from the gradients of the per-sample Conv5 weights to
/// `dq` (overwritten; zero without DPNet) and the head's parameter gradients (added).
fn head_backward<T: Real>(
    src: &Conv5Source<'_, T>,
    co: usize,
    q: &[T],
    dw5: &[T],
    db5: &[T],
    dq: &mut [T],
    params: Option<(&mut [T], &mut [T])>,
) {
    let n = q.len() / co;
    dq.fill(T::zero());
    match src {
        Conv5Source::Predicted { w4, .. } => {
            let dd: Vec<T> = dw5
                .chunks(co)
                .zip(db5)
                .flat_map(|(w, &b)| w.iter().copied().chain(std::iter::once(b)))
                .collect();
            let shape = FcShape {
                n,
                inp: co,
                out: co + 1,
            };
            let (dw4, db4) = match params {
                Some((dw, db)) => (Some(dw), Some(db)),
                None => (None, None),
            };
            fc_backward(&shape, q, w4, &dd, Some(dq), dw4, db4)
                .expect("lengths checked by the caller");
        }
        Conv5Source::Learned { .. } => {
            if let Some((dw, db)) = params {
                for row in dw5.chunks(co) {
                    for (g, &d) in dw.iter_mut().zip(row) {
                        *g += d;
                    }
                }
                db[0] += db5.iter().copied().sum::<T>();
            }
        }
    }
}

fn relu_in_place<T: Real>(v: &mut [T]) {
    v.par_iter_mut().for_each(|x| *x = x.max(T::zero()));
}

// The fused loops run on groups of samples whose pixels, side by side, make the columns
// of one h and dh (`[co, G·p]`) and one product for Conv3's weight gradient: at the
// deep, small grids (8×8, 4×4) a per-sample weight gradient would sum over only 16 or
// 64 pixels per call. Conv3 and `W3ᵀ·dh` run as a product per sample on xs and dxs
// where they lie (`gemm_serial_rows`). Each rayon task takes whole groups and keeps
// every step in them serial, so nothing waits between the products and the elementwise
// steps.

/// From this many pixels per sample on, a sample is a group by itself: its Conv3 weight
/// gradient sums over enough pixels per call, and groups of several such samples
/// measured slower (BENCHMARKS.md, "SANet in groups").
const PER_SAMPLE_PIXELS: usize = 256;
/// Columns (samples × pixels) a group of small-grid samples aims for.
const GROUP_COLUMNS: usize = 1024;

/// From this many input channels on, the fused forward keeps h for the backward: running
/// Conv3 again costs C multiply-adds per element of h, keeping it a write and a read.
/// With 64 channels (ResNet-18's 64×32×32) the layer measured about 10 % slower with h
/// kept, with 128 to 512 up to a third faster (BENCHMARKS.md, "SANet keeps h").
const KEEP_H_CHANNELS: usize = 128;

/// Values between the rows of the backward's dh scratch beyond the group's columns:
/// rows a power of two apart (1024 columns, 4 KiB in f32) fall into the same few L1
/// cache sets, and the per-sample `W3ᵀ·dh` products read 64 to 256 of them in turn.
const DH_ROW_GAP: usize = 16;

/// Samples per fused group for a batch of `n` samples of `p` pixels.
fn group_len(n: usize, p: usize) -> usize {
    if p >= PER_SAMPLE_PIXELS {
        return 1;
    }
    samples_per_group(n, p, GROUP_COLUMNS)
}

/// Samples per rayon task of the fused backward: whole groups, at least
/// [`MIN_SAMPLES_PER_TASK`]. Each task sums its samples' parameter gradients into its own
/// buffers, and the tasks' sums are added in task order, so the result depends on the
/// shape only, never on which thread ran what.
fn task_len(group: usize) -> usize {
    group * MIN_SAMPLES_PER_TASK.div_ceil(group)
}

/// Fewest samples per backward task: one-sample groups share a task's gradient sums
/// eight at a time instead of each allocating its own.
const MIN_SAMPLES_PER_TASK: usize = 8;

/// `h = W3·xs + b3` for one group, before its ReLU: `h` is `[co, cols]` with its rows
/// `h_row` apart, the group's `xs` is `[samples, c, p]`. One product per sample, read
/// where the sample lies and written into its `p` columns, rather than the samples
/// copied side by side for one product: faster where `p` is a multiple of 16 (8×8,
/// 4×4), about as fast at 14×14, slower at 7×7, whose 49 columns end in a part
/// register (BENCHMARKS.md, "SANet products per sample").
fn conv3_group<T: Real>(
    w3: &[T],
    b3: &[T],
    xs: &[T],
    c: usize,
    p: usize,
    h: &mut [T],
    h_row: usize,
) {
    let cols = xs.len() / c;
    let co = b3.len();
    for (row, &bias) in h.chunks_mut(h_row).zip(b3) {
        row[..cols].fill(bias);
    }
    for (s, sample) in xs.chunks(c * p).enumerate() {
        gemm_serial_rows(
            co,
            p,
            c,
            w3,
            [c, 1],
            sample,
            p,
            true,
            &mut h[s * p..],
            h_row,
        );
    }
}

/// Sample `s`'s row `k` of a group's h (`co` rows `h_row` apart, `p` pixels per sample).
fn sample_row<T>(h: &[T], h_row: usize, p: usize, k: usize, s: usize) -> &[T] {
    &h[k * h_row + s * p..][..p]
}

/// Conv5 for sample `s` of a group: `out[j] = b5 + Σ_k w5[k]·h[k, s·p + j]`.
fn conv5_in_group<T: Real>(
    h: &[T],
    cols: usize,
    p: usize,
    s: usize,
    w5: &[T],
    b5: T,
    out: &mut [T],
) {
    out.fill(b5);
    for (k, &wk) in w5.iter().enumerate() {
        for (o, &v) in out.iter_mut().zip(sample_row(h, cols, p, k, s)) {
            *o += wk * v;
        }
    }
}

/// One sample's stretch of a row of dh: `wk·ds + pooled` where h is positive, zero
/// where the ReLU blocked it. h is read from `h`, or where that is `None` from `dh`
/// itself (Conv3 run again into dh's scratch), which is overwritten. Branch-free (the
/// gradient formed for every element, then selected), so that the loops vectorize.
fn dh_segment<T: Real>(dh: &mut [T], h: Option<&[T]>, ds: &[T], wk: T, pooled: T) {
    let select = |h: T, d: T| {
        if h > T::zero() {
            wk * d + pooled
        } else {
            T::zero()
        }
    };
    match h {
        Some(h) => {
            for ((v, &hv), &d) in dh.iter_mut().zip(h).zip(ds) {
                *v = select(hv, d);
            }
        }
        None => {
            for (v, &d) in dh.iter_mut().zip(ds) {
                *v = select(*v, d);
            }
        }
    }
}

/// A task's own sums of a weight gradient and its bias gradient.
type GradSums<T> = Option<(Vec<T>, Vec<T>)>;

/// A weight gradient and its bias gradient.
type GradPair<'a, T> = Option<(&'a mut [T], &'a mut [T])>;

fn split_param_grads<'a, T>(
    p: Option<SanetParamGrads<'a, T>>,
) -> (GradPair<'a, T>, GradPair<'a, T>) {
    match p {
        Some(p) => (Some((p.dw3, p.db3)), Some((p.dw_head, p.db_head))),
        None => (None, None),
    }
}

fn check_grads<T: Real>(op: &'static str, shape: &SanetShape, g: &SanetGrads<'_, T>) -> Result<()> {
    check_len(op, "dxs", g.dxs.len(), shape.xs_len())?;
    if let Some(p) = &g.params {
        check_len(op, "dw3", p.dw3.len(), shape.co * shape.c)?;
        check_len(op, "db3", p.db3.len(), shape.co)?;
        let head = p.dw_head.len() + p.db_head.len();
        let (pred, learned) = ((shape.co + 1) * (shape.co + 1), shape.co + 1);
        if head != pred && head != learned {
            return Err(crate::Error::shape(
                op,
                "conv4/conv5 gradients",
                format!("{pred} (DPNet) or {learned} elements"),
                format!("{head} elements"),
            ));
        }
    }
    Ok(())
}

/// Fused forward: group by group, h in a scratch buffer; a copy of it after its ReLU is
/// kept in the outputs for the backward where C ≥ 128 (`KEEP_H_CHANNELS`).
pub fn sanet_forward_fused<T: Real>(
    shape: &SanetShape,
    xs: &[T],
    w3: &[T],
    b3: &[T],
    src: &Conv5Source<'_, T>,
) -> Result<SanetOutputs<T>> {
    const OP: &str = "sanet_forward_fused";
    check_len(OP, "xs", xs.len(), shape.xs_len())?;
    check_params(OP, shape, w3, b3, src)?;
    let SanetShape {
        n,
        c,
        co,
        pixels: p,
    } = *shape;
    let g = group_len(n, p);
    let mut out = SanetOutputs {
        q: vec![T::zero(); n * co],
        w5: vec![T::zero(); n * co],
        b5: vec![T::zero(); n],
        s: vec![T::zero(); n * p],
        h_groups: Vec::new(),
    };
    // One pass per group: Conv3, then the ReLU with DPNet's pool, Conv4 and Conv5 on
    // h while it is in cache, and h copied to its group's slots where it is kept.
    let mut groups = |h_slots: Vec<Option<&mut [MaybeUninit<T>]>>| {
        out.q
            .par_chunks_mut(g * co)
            .zip(out.w5.par_chunks_mut(g * co))
            .zip(out.b5.par_chunks_mut(g))
            .zip(out.s.par_chunks_mut(g * p))
            .zip(h_slots)
            .zip(xs.par_chunks(g * c * p))
            .for_each(|(((((q, w5_out), b5_out), s), h_kept), xs_group)| {
                let cols = b5_out.len() * p;
                // h is written in full before it is read.
                with_scratch(co * cols, |h: &mut [T]| {
                    conv3_group(w3, b3, xs_group, c, p, h, cols);
                    // The ReLU and DPNet's pool in one pass: q[s, k] is the mean of
                    // sample s's stretch of row k.
                    let inv_p = T::one() / T::of_f64(p as f64);
                    for (k, row) in h.chunks_mut(cols).enumerate() {
                        for (s_idx, stretch) in row.chunks_mut(p).enumerate() {
                            let relu = |v: T| v.max(T::zero());
                            q[s_idx * co + k] = reduce::map_and_sum(stretch, relu) * inv_p;
                        }
                    }
                    if let Some(kept) = h_kept {
                        kept.iter_mut().zip(h.iter()).for_each(|(k, &v)| k.put(v));
                    }
                    let (w5, b5) = head_forward(src, co, q);
                    for (s_idx, s_out) in s.chunks_mut(p).enumerate() {
                        let w5_s = &w5[s_idx * co..(s_idx + 1) * co];
                        conv5_in_group(h, cols, p, s_idx, w5_s, b5[s_idx], s_out);
                    }
                    w5_out.copy_from_slice(&w5);
                    b5_out.copy_from_slice(&b5);
                })
            });
    };
    out.h_groups = if c >= KEEP_H_CHANNELS {
        // SAFETY: the groups' slots tile the vector, and each group writes all of its
        // own (`co × cols` values of h).
        unsafe {
            new_written(shape.h_len(), |slots| {
                groups(slots.chunks_mut(g * co * p).map(Some).collect())
            })
        }
    } else {
        groups((0..n.div_ceil(g)).map(|_| None).collect());
        Vec::new()
    };
    Ok(out)
}

/// Fused backward: group by group, h read where the forward kept it (Conv3 run again into
/// a scratch where it kept none: fewer than 128 channels, or `out` from the unfused
/// forward), then `dh` in that scratch; adds the gradients of xs and (unless `grads.params` is `None`) of Conv3
/// and Conv4/Conv5. `out` must come from the forward of the same `xs`, `w3`, `b3` and
/// Conv5 source: its h, q and Conv5 weights are read, not recomputed.
#[allow(clippy::too_many_arguments)]
pub fn sanet_backward_fused<T: Real>(
    shape: &SanetShape,
    xs: &[T],
    w3: &[T],
    b3: &[T],
    src: &Conv5Source<'_, T>,
    out: &SanetOutputs<T>,
    ds: &[T],
    grads: SanetGrads<'_, T>,
) -> Result<()> {
    const OP: &str = "sanet_backward_fused";
    check_len(OP, "xs", xs.len(), shape.xs_len())?;
    check_params(OP, shape, w3, b3, src)?;
    check_len(OP, "ds", ds.len(), shape.n * shape.pixels)?;
    check_grads(OP, shape, &grads)?;
    if !out.h_groups.is_empty() {
        check_len(OP, "the forward's h", out.h_groups.len(), shape.h_len())?;
    }
    let SanetShape {
        n,
        c,
        co,
        pixels: p,
    } = *shape;
    let g = group_len(n, p);
    let per_task = task_len(g);
    let (mut conv3, mut head) = split_param_grads(grads.params);
    let sizes = |g: &GradPair<'_, T>| g.as_ref().map(|(w, b)| (w.len(), b.len()));
    let (conv3_sizes, head_sizes) = (sizes(&conv3), sizes(&head));
    let inv_p = T::one() / T::of_f64(p as f64);
    // A group's scratches, every value read written first: dh, `[co, cols]` in rows
    // `cols + DH_ROW_GAP` apart; xs transposed for Conv3's weight gradient, `[cols, c]`.
    let dh_row = |cols: usize| cols + DH_ROW_GAP;
    let xst_len = if conv3_sizes.is_some() { g * p * c } else { 0 };
    let dh_len = co * dh_row(g * p);
    let partials = grads
        .dxs
        .par_chunks_mut(per_task * c * p)
        .enumerate()
        .map(|(task, dxs_task)| -> Result<[GradSums<T>; 2]> {
            with_scratch(dh_len + xst_len, |scratch: &mut [T]| {
                let (dh, xst) = scratch.split_at_mut(dh_len);
                let zeros = |s: Option<(usize, usize)>| {
                    s.map(|(w, b)| (vec![T::zero(); w], vec![T::zero(); b]))
                };
                let (mut conv3_sum, mut head_sum) = (zeros(conv3_sizes), zeros(head_sizes));
                for (k, dxs_group) in dxs_task.chunks_mut(g * c * p).enumerate() {
                    let first = task * per_task + k * g;
                    let len = dxs_group.len() / (c * p);
                    let cols = len * p;
                    let samples = first..first + len;
                    let dh_row = dh_row(cols);
                    let dh = &mut dh[..co * dh_row];
                    let xs_group = &xs[first * c * p..][..len * c * p];
                    // h: the forward's, after its ReLU, read where it lies (rows `cols`
                    // apart); or Conv3's, before it, run again into dh's scratch (rows
                    // `dh_row` apart), which the dh step below then overwrites in
                    // place. The dot below applies the ReLU (a second time changes
                    // nothing) and the dh step reads only the sign, so both give the
                    // same bits.
                    let kept = (!out.h_groups.is_empty())
                        .then(|| &out.h_groups[first * co * p..][..co * cols]);
                    if kept.is_none() {
                        conv3_group(w3, b3, xs_group, c, p, dh, dh_row);
                    }
                    let (h, h_row): (&[T], usize) = match kept {
                        Some(h) => (h, cols),
                        None => (dh, dh_row),
                    };
                    let ds_g = &ds[first * p..][..cols];
                    let w5_g = &out.w5[first * co..][..len * co];
                    let mut dw5 = vec![T::zero(); len * co];
                    for (s_idx, dw5_s) in dw5.chunks_mut(co).enumerate() {
                        let ds_s = &ds_g[s_idx * p..][..p];
                        for (kk, d) in dw5_s.iter_mut().enumerate() {
                            let relu = |v: T| v.max(T::zero());
                            let h_s = sample_row(h, h_row, p, kk, s_idx);
                            *d = reduce::map_dot(h_s, ds_s, relu);
                        }
                    }
                    let db5: Vec<T> = ds_g.chunks(p).map(reduce::sum).collect();
                    let mut dq = vec![T::zero(); len * co];
                    let head_g = head_sum.as_mut().map(|(w, b)| (&mut w[..], &mut b[..]));
                    let q_g = &out.q[samples.start * co..samples.end * co];
                    head_backward(src, co, q_g, &dw5, &db5, &mut dq, head_g);
                    // dh: Conv5 and the pool feed every positive h, ReLU blocks the rest.
                    for (kk, row) in dh.chunks_mut(dh_row).enumerate() {
                        let h_row = kept.map(|h| &h[kk * cols..][..cols]);
                        for (s_idx, seg) in row[..cols].chunks_mut(p).enumerate() {
                            let h_seg = h_row.map(|r| &r[s_idx * p..][..p]);
                            let wk = w5_g[s_idx * co + kk];
                            let pooled = dq[s_idx * co + kk] * inv_p;
                            dh_segment(seg, h_seg, &ds_g[s_idx * p..][..p], wk, pooled);
                        }
                    }
                    // dxs += W3ᵀ·dh, a product per sample straight into its xs layout
                    // (with Co ≤ 256, as the layer has it, the sum over Co is one chain
                    // added to dxs at its end, as when a group product was added).
                    let dh: &[T] = dh;
                    for (s_idx, dxs_s) in dxs_group.chunks_mut(c * p).enumerate() {
                        let dh_s = &dh[s_idx * p..];
                        gemm_serial_rows(c, p, co, w3, [1, c], dh_s, dh_row, true, dxs_s, p);
                    }
                    if let Some((dw3, db3)) = conv3_sum.as_mut() {
                        // dW3 += dh·xsᵀ, each sample's [c, p] transposed into its p rows
                        // of xsᵀ right before the product reads them, while in cache.
                        let xst = &mut xst[..cols * c];
                        for (sample, rows) in xs_group.chunks(c * p).zip(xst.chunks_mut(p * c)) {
                            transpose_into(sample, c, p, p, rows, c);
                        }
                        gemm_serial_rows(co, c, cols, dh, [dh_row, 1], xst, c, true, dw3, c);
                        for (g, row) in db3.iter_mut().zip(dh.chunks(dh_row)) {
                            *g += reduce::sum(&row[..cols]);
                        }
                    }
                }
                Ok([conv3_sum, head_sum])
            })
        })
        .collect::<Result<Vec<_>>>()?;
    for [conv3_part, head_part] in partials {
        for (total, part) in [(&mut conv3, conv3_part), (&mut head, head_part)] {
            if let (Some((w, b)), Some((pw, pb))) = (total.as_mut(), part) {
                for (t, v) in w.iter_mut().zip(pw).chain(b.iter_mut().zip(pb)) {
                    *t += v;
                }
            }
        }
    }
    Ok(())
}

/// Unfused forward: Conv3, ReLU, pool, Conv4 and Conv5 as separate batch ops. Returns
/// the outputs and h `[n, co, pixels]`, which [`sanet_backward_unfused`] reads.
pub fn sanet_forward_unfused<T: Real>(
    shape: &SanetShape,
    xs: &[T],
    w3: &[T],
    b3: &[T],
    src: &Conv5Source<'_, T>,
) -> Result<(SanetOutputs<T>, Vec<T>)> {
    const OP: &str = "sanet_forward_unfused";
    check_len(OP, "xs", xs.len(), shape.xs_len())?;
    check_params(OP, shape, w3, b3, src)?;
    let SanetShape {
        n,
        c,
        co,
        pixels: p,
    } = *shape;
    let mut h = vec![T::zero(); shape.h_len()];
    conv1x1_forward(&Conv1x1Shape::new(n, c, co, p)?, xs, w3, b3, &mut h)?;
    relu_in_place(&mut h);
    let mut q = vec![T::zero(); n * co];
    pool_forward(&PoolShape::global(n * co, 1, p)?, &h, &mut q)?;
    let (w5, b5) = head_forward(src, co, &q);
    let mut s = vec![T::zero(); n * p];
    dynconv_forward(&DynConvShape::new(n, co, p)?, &h, &w5, &b5, &mut s)?;
    let outputs = SanetOutputs {
        q,
        w5,
        b5,
        s,
        h_groups: Vec::new(),
    };
    Ok((outputs, h))
}

/// Unfused backward: the batch ops of [`sanet_forward_unfused`] in reverse, reading the
/// stored `h`.
#[allow(clippy::too_many_arguments)]
pub fn sanet_backward_unfused<T: Real>(
    shape: &SanetShape,
    xs: &[T],
    w3: &[T],
    src: &Conv5Source<'_, T>,
    out: &SanetOutputs<T>,
    h: &[T],
    ds: &[T],
    grads: SanetGrads<'_, T>,
) -> Result<()> {
    const OP: &str = "sanet_backward_unfused";
    check_len(OP, "xs", xs.len(), shape.xs_len())?;
    check_len(OP, "h", h.len(), shape.h_len())?;
    check_len(OP, "ds", ds.len(), shape.n * shape.pixels)?;
    check_grads(OP, shape, &grads)?;
    let SanetShape {
        n,
        c,
        co,
        pixels: p,
    } = *shape;
    let dyn_shape = DynConvShape::new(n, co, p)?;
    let mut dh = vec![T::zero(); shape.h_len()];
    let (mut dw5, mut db5) = (vec![T::zero(); n * co], vec![T::zero(); n]);
    dynconv_backward(
        &dyn_shape,
        h,
        &out.w5,
        ds,
        Some(&mut dh),
        Some(&mut dw5),
        Some(&mut db5),
    )?;
    let (conv3, head) = split_param_grads(grads.params);
    let mut dq = vec![T::zero(); n * co];
    head_backward(src, co, &out.q, &dw5, &db5, &mut dq, head);
    pool_backward(&PoolShape::global(n * co, 1, p)?, &dq, &mut dh)?;
    for (g, &v) in dh.iter_mut().zip(h) {
        if v <= T::zero() {
            *g = T::zero();
        }
    }
    let (dw3, db3) = match conv3 {
        Some((w, b)) => (Some(w), Some(b)),
        None => (None, None),
    };
    conv1x1_backward(
        &Conv1x1Shape::new(n, c, co, p)?,
        xs,
        w3,
        &dh,
        Some(grads.dxs),
        dw3,
        db3,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: f64) -> Vec<f64> {
        (0..len)
            .map(|i| ((i as f64 + seed) * 0.7371).sin())
            .collect()
    }

    /// Both kinds of group, several backward tasks whose parameter-gradient sums are
    /// added across tasks, and a short last group; the fused backward is also
    /// bit-identical run to run, and from the forward's kept h as from Conv3 run again.
    #[test]
    fn fused_and_unfused_agree_forward_and_backward() {
        let n = 2 * MIN_SAMPLES_PER_TASK + 3;
        // 19 samples: groups of ceil(19/4) = 5 at 6 pixels (tasks of 10, the last one
        // short), one sample per group at 256 pixels.
        assert_eq!((group_len(n, 6), task_len(5)), (5, 10));
        assert_eq!(group_len(n, PER_SAMPLE_PIXELS), 1);
        // 5 channels: the backward runs Conv3 again; KEEP_H_CHANNELS: it reads kept h.
        for c in [5, KEEP_H_CHANNELS] {
            for pixels in [6, PER_SAMPLE_PIXELS] {
                fused_and_unfused_agree_at(SanetShape::new(n, c, 4, pixels).unwrap());
            }
        }
    }

    /// The fused path in f32 (on a CPU with AVX-512, its unpacked per-sample products
    /// and `gemm_serial_rows`) within 1e-5 of the largest value of the same path in
    /// f64, for s, dxs and every parameter gradient, each added to non-zero values:
    /// groups of several samples with a short last one at 16, 49 (part registers) and
    /// 64 pixels, lone samples at 256, h run again (5 channels) and kept
    /// (KEEP_H_CHANNELS), Conv5 predicted by DPNet and learned.
    #[test]
    fn fused_f32_is_within_the_f32_bound_of_f64() {
        fn run<T: Real>(shape: &SanetShape, learned: bool) -> Vec<Vec<f64>> {
            let (c, co) = (shape.c, shape.co);
            let cast = |v: Vec<f64>| -> Vec<T> { v.into_iter().map(T::of_f64).collect() };
            let xs = cast(data(shape.xs_len(), 0.0));
            let (w3, b3) = (cast(data(co * c, 1.0)), cast(data(co, 2.0)));
            let (w4, b4) = (cast(data((co + 1) * co, 3.0)), cast(data(co + 1, 4.0)));
            let (w5, b5) = (cast(data(co, 5.0)), cast(data(1, 6.0)));
            let ds = cast(data(shape.n * shape.pixels, 7.0));
            let (src, head_w, head_b) = if learned {
                (Conv5Source::Learned { w5: &w5, b5: &b5 }, co, 1)
            } else {
                (
                    Conv5Source::Predicted { w4: &w4, b4: &b4 },
                    (co + 1) * co,
                    co + 1,
                )
            };
            let out = sanet_forward_fused(shape, &xs, &w3, &b3, &src).unwrap();
            let mut g = cast(data(shape.xs_len() + co * c + co + head_w + head_b, 9.0));
            let (dxs, rest) = g.split_at_mut(shape.xs_len());
            let (dw3, rest) = rest.split_at_mut(co * c);
            let (db3, rest) = rest.split_at_mut(co);
            let (dw_head, db_head) = rest.split_at_mut(head_w);
            let params = Some(SanetParamGrads {
                dw3,
                db3,
                dw_head,
                db_head,
            });
            let grads = SanetGrads { dxs, params };
            sanet_backward_fused(shape, &xs, &w3, &b3, &src, &out, &ds, grads).unwrap();
            let f64s = |v: &[T]| v.iter().map(|x| x.as_f64()).collect::<Vec<_>>();
            // s, dxs, dW3, db3, and Conv4's or Conv5's weights and biases.
            let ends = [shape.xs_len(), co * c, co, head_w, head_b];
            let mut parts = vec![f64s(&out.s)];
            let mut rest = &g[..];
            for len in ends {
                let (part, tail) = rest.split_at(len);
                parts.push(f64s(part));
                rest = tail;
            }
            parts
        }
        for c in [5, KEEP_H_CHANNELS] {
            for (pixels, learned) in [(16, false), (49, true), (64, false), (256, true)] {
                let shape = SanetShape::new(19, c, 32, pixels).unwrap();
                assert_eq!(group_len(19, pixels) > 1, pixels < PER_SAMPLE_PIXELS);
                let (single, double) = (run::<f32>(&shape, learned), run::<f64>(&shape, learned));
                let names = ["s", "dxs", "dw3", "db3", "head weights", "head biases"];
                for (what, (a, b)) in names.iter().zip(single.iter().zip(&double)) {
                    let largest = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    for (i, (x, y)) in a.iter().zip(b).enumerate() {
                        assert!(
                            (x - y).abs() <= 1e-5 * largest,
                            "{what} {i} at C {c}, {pixels} pixels: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    fn fused_and_unfused_agree_at(shape: SanetShape) {
        let (n, c, co, pixels) = (shape.n, shape.c, shape.co, shape.pixels);
        let xs = data(shape.xs_len(), 0.0);
        let (w3, b3) = (data(co * c, 1.0), data(co, 2.0));
        let (w4, b4) = (data((co + 1) * co, 3.0), data(co + 1, 4.0));
        let (w5, b5) = (data(co, 5.0), data(1, 6.0));
        let ds = data(n * pixels, 7.0);
        for src in [
            Conv5Source::Predicted { w4: &w4, b4: &b4 },
            Conv5Source::Learned { w5: &w5, b5: &b5 },
        ] {
            let fused = sanet_forward_fused(&shape, &xs, &w3, &b3, &src).unwrap();
            let (unfused, h) = sanet_forward_unfused(&shape, &xs, &w3, &b3, &src).unwrap();
            for (a, b) in fused.s.iter().zip(&unfused.s) {
                assert!((a - b).abs() <= 1e-12, "s {a} vs {b}");
            }
            // Conv4's or Conv5's weights, then its biases.
            let (head_w, head_b) = if matches!(src, Conv5Source::Predicted { .. }) {
                ((co + 1) * co, co + 1)
            } else {
                (co, 1)
            };
            // The fused backward from the forward's kept h, and from Conv3 run again.
            let kept = if c >= KEEP_H_CHANNELS {
                shape.h_len()
            } else {
                0
            };
            assert_eq!(fused.h_groups.len(), kept);
            let recomputed = SanetOutputs {
                h_groups: Vec::new(),
                ..fused.clone()
            };
            // Gradients are added to what the buffers hold.
            let start = data(shape.xs_len() + co * c + co + head_w + head_b, 9.0);
            let run = |fused_from: Option<&SanetOutputs<f64>>| {
                let mut g = start.clone();
                let (dxs, rest) = g.split_at_mut(shape.xs_len());
                let (dw3, rest) = rest.split_at_mut(co * c);
                let (db3, rest) = rest.split_at_mut(co);
                let (dw_head, db_head) = rest.split_at_mut(head_w);
                let grads = SanetGrads {
                    dxs,
                    params: Some(SanetParamGrads {
                        dw3,
                        db3,
                        dw_head,
                        db_head,
                    }),
                };
                match fused_from {
                    Some(out) => sanet_backward_fused(&shape, &xs, &w3, &b3, &src, out, &ds, grads),
                    None => {
                        sanet_backward_unfused(&shape, &xs, &w3, &src, &unfused, &h, &ds, grads)
                    }
                }
                .unwrap();
                g
            };
            let (gf, gu) = (run(Some(&fused)), run(None));
            assert_ne!(gf, start, "no gradient added");
            assert_eq!(gf, run(Some(&fused)), "fused backward differs between runs");
            assert_eq!(gf, run(Some(&recomputed)), "kept h and Conv3 again differ");
            for (i, (a, b)) in gf.iter().zip(&gu).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-12 * a.abs().max(1.0),
                    "grad {i}: {a} vs {b}"
                );
            }
        }
    }
}
