//! CPU SANet + DPNet, fused (per sample, h in a cache-sized scratch) and unfused (whole
//! batch, op by op, h stored).

use rayon::prelude::*;

use super::{Conv5Source, SanetGrads, SanetOutputs, SanetParamGrads, SanetShape};
use crate::error::{check_len, Result};
use crate::ops::conv1x1::cpu::{conv1x1_backward, conv1x1_forward};
use crate::ops::conv1x1::Conv1x1Shape;
use crate::ops::dynconv::cpu::{dynconv_backward, dynconv_forward};
use crate::ops::dynconv::DynConvShape;
use crate::ops::fc::cpu::{fc_backward, fc_forward};
use crate::ops::fc::FcShape;
use crate::ops::pool::cpu::{pool_backward, pool_forward};
use crate::ops::pool::PoolShape;
use crate::ops::reduce;
use crate::real::Real;

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

// The fused loops give each rayon task whole samples and keep every per-sample step
// serial: matrixmultiply splits a C×Co product over one sample's pixels into pieces too
// small to be worth a thread hand-off, so two samples at once on two cores beat one
// sample on two cores, and nothing waits between the GEMMs and the elementwise steps.

/// ReLU of each row of `h` (`co × p`) in place, and each row's mean into `means`.
fn relu_rows_and_means<T: Real>(h: &mut [T], p: usize, means: &mut [T]) {
    let inv = T::one() / T::of_f64(p as f64);
    for (row, mean) in h.chunks_mut(p).zip(means.iter_mut()) {
        *mean = reduce::map_and_sum(row, |v| v.max(T::zero())) * inv;
    }
}

/// Conv5 for one sample: `s[j] = b5 + Σ_k w5[k]·h[k, j]`.
fn conv5_one_sample<T: Real>(h: &[T], p: usize, w5: &[T], b5: T, s: &mut [T]) {
    s.fill(b5);
    for (&wk, row) in w5.iter().zip(h.chunks(p)) {
        for (o, &v) in s.iter_mut().zip(row) {
            *o += wk * v;
        }
    }
}

/// Conv5's weight gradient for one sample: `dw5[k] = Σ_j ds[j]·h[k, j]`.
fn conv5_weight_grad_one_sample<T: Real>(h: &[T], p: usize, ds: &[T], dw5: &mut [T]) {
    for (g, row) in dw5.iter_mut().zip(h.chunks(p)) {
        *g = reduce::dot(row, ds);
    }
}

/// Samples per task of [`sanet_backward_fused`]: each task sums its samples' parameter
/// gradients into its own buffers, and the tasks' sums are added in task order, so the
/// result does not depend on which thread ran what.
const SAMPLES_PER_TASK: usize = 8;

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

/// Fused forward: per sample, h in a scratch buffer, never stored for the batch.
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
    let one = Conv1x1Shape {
        n: 1,
        cin: c,
        cout: co,
        pixels: p,
    };
    let mut out = SanetOutputs {
        q: vec![T::zero(); n * co],
        w5: vec![T::zero(); n * co],
        b5: vec![T::zero(); n],
        s: vec![T::zero(); n * p],
    };
    out.q
        .par_chunks_mut(co)
        .zip(out.w5.par_chunks_mut(co))
        .zip(out.b5.par_iter_mut())
        .zip(out.s.par_chunks_mut(p))
        .enumerate()
        .try_for_each_init(
            || vec![T::zero(); co * p],
            |h, (i, (((q, w5_out), b5_out), s))| -> Result<()> {
                conv1x1_forward(&one, &xs[i * c * p..(i + 1) * c * p], w3, b3, h)?;
                relu_rows_and_means(h, p, q);
                let (w5, b5) = head_forward(src, co, q);
                conv5_one_sample(h, p, &w5, b5[0], s);
                w5_out.copy_from_slice(&w5);
                *b5_out = b5[0];
                Ok(())
            },
        )?;
    Ok(out)
}

/// Fused backward: per sample, recomputes h, then `dh` in the same scratch, and adds the
/// gradients of xs and (unless `grads.params` is `None`) of Conv3 and Conv4/Conv5.
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
    let SanetShape {
        n: _,
        c,
        co,
        pixels: p,
    } = *shape;
    let one = Conv1x1Shape {
        n: 1,
        cin: c,
        cout: co,
        pixels: p,
    };
    let (mut conv3, mut head) = split_param_grads(grads.params);
    let sizes = |g: &GradPair<'_, T>| g.as_ref().map(|(w, b)| (w.len(), b.len()));
    let (conv3_sizes, head_sizes) = (sizes(&conv3), sizes(&head));
    let inv_p = T::one() / T::of_f64(p as f64);
    let partials = grads
        .dxs
        .par_chunks_mut(SAMPLES_PER_TASK * c * p)
        .enumerate()
        .map_init(
            || vec![T::zero(); co * p],
            |h, (task, dxs_task)| -> Result<[GradSums<T>; 2]> {
                let zeros = |s: Option<(usize, usize)>| {
                    s.map(|(w, b)| (vec![T::zero(); w], vec![T::zero(); b]))
                };
                let (mut conv3_sum, mut head_sum) = (zeros(conv3_sizes), zeros(head_sizes));
                let (mut dw5, mut db5, mut dq) =
                    (vec![T::zero(); co], [T::zero()], vec![T::zero(); co]);
                for (k, dxs_i) in dxs_task.chunks_mut(c * p).enumerate() {
                    let i = task * SAMPLES_PER_TASK + k;
                    let xs_i = &xs[i * c * p..(i + 1) * c * p];
                    let ds_i = &ds[i * p..(i + 1) * p];
                    let w5_i = &out.w5[i * co..(i + 1) * co];
                    conv1x1_forward(&one, xs_i, w3, b3, h)?;
                    for v in h.iter_mut() {
                        *v = v.max(T::zero());
                    }
                    conv5_weight_grad_one_sample(h, p, ds_i, &mut dw5);
                    db5[0] = reduce::sum(ds_i);
                    let head_i = head_sum.as_mut().map(|(w, b)| (&mut w[..], &mut b[..]));
                    let q_i = &out.q[i * co..(i + 1) * co];
                    head_backward(src, co, q_i, &dw5, &db5, &mut dq, head_i);
                    // h becomes dh: Conv5 and the pool feed every positive h, ReLU
                    // blocks the rest.
                    // Branch-free (the gradient formed for every element, then
                    // selected), so that the loop vectorizes.
                    for ((row, &wk), &dqk) in h.chunks_mut(p).zip(w5_i).zip(&dq) {
                        let pooled = dqk * inv_p;
                        for (v, &d) in row.iter_mut().zip(ds_i) {
                            let g = wk * d + pooled;
                            *v = if *v > T::zero() { g } else { T::zero() };
                        }
                    }
                    let (dw3, db3) = match conv3_sum.as_mut() {
                        Some((w, b)) => (Some(&mut w[..]), Some(&mut b[..])),
                        None => (None, None),
                    };
                    conv1x1_backward(&one, xs_i, w3, h, Some(dxs_i), dw3, db3)?;
                }
                Ok([conv3_sum, head_sum])
            },
        )
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
    Ok((SanetOutputs { q, w5, b5, s }, h))
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

    /// Three backward tasks (the last one short), so the tasks' parameter-gradient sums
    /// are added across tasks; the fused backward is also bit-identical run to run.
    #[test]
    fn fused_and_unfused_agree_forward_and_backward() {
        let n = 2 * SAMPLES_PER_TASK + 3;
        let shape = SanetShape::new(n, 5, 4, 6).unwrap();
        let xs = data(shape.xs_len(), 0.0);
        let (w3, b3) = (data(20, 1.0), data(4, 2.0));
        let (w4, b4) = (data(20, 3.0), data(5, 4.0));
        let (w5, b5) = (data(4, 5.0), data(1, 6.0));
        let ds = data(n * 6, 7.0);
        for src in [
            Conv5Source::Predicted { w4: &w4, b4: &b4 },
            Conv5Source::Learned { w5: &w5, b5: &b5 },
        ] {
            let fused = sanet_forward_fused(&shape, &xs, &w3, &b3, &src).unwrap();
            let (unfused, h) = sanet_forward_unfused(&shape, &xs, &w3, &b3, &src).unwrap();
            for (a, b) in fused.s.iter().zip(&unfused.s) {
                assert!((a - b).abs() <= 1e-12, "s {a} vs {b}");
            }
            let head = if matches!(src, Conv5Source::Predicted { .. }) {
                25
            } else {
                5
            };
            let run = |fused_path: bool| {
                let mut g = vec![0.0; shape.xs_len() + 24 + head];
                let (dxs, rest) = g.split_at_mut(shape.xs_len());
                let (dw3, rest) = rest.split_at_mut(20);
                let (db3, rest) = rest.split_at_mut(4);
                let (dw_head, db_head) = rest.split_at_mut(head - if head == 25 { 5 } else { 1 });
                let grads = SanetGrads {
                    dxs,
                    params: Some(SanetParamGrads {
                        dw3,
                        db3,
                        dw_head,
                        db_head,
                    }),
                };
                if fused_path {
                    sanet_backward_fused(&shape, &xs, &w3, &b3, &src, &fused, &ds, grads)
                } else {
                    sanet_backward_unfused(&shape, &xs, &w3, &src, &unfused, &h, &ds, grads)
                }
                .unwrap();
                g
            };
            let (gf, gu) = (run(true), run(false));
            assert!(gf.iter().any(|&v| v != 0.0));
            assert_eq!(gf, run(true), "fused backward differs between runs");
            for (i, (a, b)) in gf.iter().zip(&gu).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-12 * a.abs().max(1.0),
                    "grad {i}: {a} vs {b}"
                );
            }
        }
    }
}
