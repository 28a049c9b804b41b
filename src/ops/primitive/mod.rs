//! Small tape ops the SPARTA layer is composed from in its cross-check (the fused node
//! in [`crate::nn::sparta_node`] must equal the composition): reshape, per-channel bias,
//! sigmoid, elementwise product, the per-sample 1×1 "dynamic" conv (Conv5) and the
//! broadcast outer product `s ⊗ c`.
//!
//! ```
//! use sparta::autograd::Tape;
//! use sparta::ops::primitive::{mul, sigmoid};
//!
//! let mut tape = Tape::<f64>::new();
//! let x = tape.leaf(&[2], vec![0.0, 2.0], true)?;
//! let g = sigmoid(&mut tape, x)?;
//! let y = mul(&mut tape, x, g)?;
//! assert_eq!(tape.value(y)[0], 0.0);
//! # Ok::<(), sparta::Error>(())
//! ```

use crate::autograd::{Nodes, Tape, Var};
use crate::error::{Error, Result};
use crate::real::Real;

/// The same elements under another shape with as many elements.
pub fn reshape<T: Real>(tape: &mut Tape<'_, T>, x: Var, shape: &[usize]) -> Result<Var> {
    let y = tape.value(x).to_vec();
    tape.push_op(y, shape, &[x], || {
        Box::new(move |_: &Nodes<'_, T>, dy: Vec<T>| Ok(vec![(x, dy)]))
    })
}

/// `x[n, c, …] + b[c]`.
pub fn bias_channels<T: Real>(tape: &mut Tape<'_, T>, x: Var, b: Var) -> Result<Var> {
    let xs = tape.shape(x).to_vec();
    if xs.len() < 2 || tape.shape(b) != [xs[1]] {
        return Err(Error::shape(
            "bias_channels",
            "x / b",
            "x [N,C,…] and b [C]",
            format!("{xs:?} / {:?}", tape.shape(b)),
        ));
    }
    let (c, inner) = (xs[1], xs[2..].iter().product::<usize>());
    let bv = tape.value(b).to_vec();
    let mut y = tape.value(x).to_vec();
    for (i, plane) in y.chunks_mut(inner).enumerate() {
        plane.iter_mut().for_each(|v| *v += bv[i % c]);
    }
    tape.push_op(y, &xs, &[x, b], || {
        Box::new(move |nodes: &Nodes<'_, T>, dy: Vec<T>| {
            let mut grads = Vec::new();
            if nodes.requires_grad(b) {
                let mut db = vec![T::zero(); c];
                for (i, plane) in dy.chunks(inner).enumerate() {
                    db[i % c] += plane.iter().copied().sum::<T>();
                }
                grads.push((b, db));
            }
            if nodes.requires_grad(x) {
                grads.push((x, dy));
            }
            Ok(grads)
        })
    })
}

/// `σ(x) = 1 / (1 + e^(−x))`.
pub fn sigmoid<T: Real>(tape: &mut Tape<'_, T>, x: Var) -> Result<Var> {
    let y: Vec<T> = tape
        .value(x)
        .iter()
        .map(|&v| T::one() / (T::one() + (-v).exp()))
        .collect();
    let out = y.clone();
    let shape = tape.shape(x).to_vec();
    tape.push_op(y, &shape, &[x], || {
        Box::new(move |_: &Nodes<'_, T>, dy: Vec<T>| {
            Ok(vec![(
                x,
                dy.iter()
                    .zip(&out)
                    .map(|(&g, &s)| g * s * (T::one() - s))
                    .collect(),
            )])
        })
    })
}

/// Elementwise `a · b` of same-shaped tensors.
pub fn mul<T: Real>(tape: &mut Tape<'_, T>, a: Var, b: Var) -> Result<Var> {
    if tape.shape(a) != tape.shape(b) {
        return Err(Error::shape(
            "mul",
            "b",
            format!("{:?}", tape.shape(a)),
            format!("{:?}", tape.shape(b)),
        ));
    }
    let prod = |u: &[T], v: &[T]| -> Vec<T> { u.iter().zip(v).map(|(&p, &q)| p * q).collect() };
    let y = prod(tape.value(a), tape.value(b));
    let shape = tape.shape(a).to_vec();
    tape.push_op(y, &shape, &[a, b], || {
        Box::new(move |nodes: &Nodes<'_, T>, dy: Vec<T>| {
            let mut grads = Vec::new();
            if nodes.requires_grad(a) {
                grads.push((a, prod(&dy, nodes.value(b))));
            }
            if nodes.requires_grad(b) {
                grads.push((b, prod(&dy, nodes.value(a))));
            }
            Ok(grads)
        })
    })
}

/// Per-sample 1×1 conv to one channel: `s[n, p] = Σ_k head[n, k]·h[n, k, p] + head[n, K]`
/// for `h [N,K,H,W]` and `head [N, K+1]` (DPNet's predicted Conv5 weights and bias).
pub fn dynamic_conv<T: Real>(tape: &mut Tape<'_, T>, h: Var, head: Var) -> Result<Var> {
    let hs = tape.shape(h).to_vec();
    if hs.len() != 4 || tape.shape(head) != [hs[0], hs[1] + 1] {
        return Err(Error::shape(
            "dynamic_conv",
            "h / head",
            "h [N,K,H,W] and head [N,K+1]",
            format!("{hs:?} / {:?}", tape.shape(head)),
        ));
    }
    let (n, k, hw) = (hs[0], hs[1], hs[2] * hs[3]);
    let (hv, wv) = (tape.value(h), tape.value(head));
    let mut s = vec![T::zero(); n * hw];
    for i in 0..n {
        let w = &wv[i * (k + 1)..(i + 1) * (k + 1)];
        let out = &mut s[i * hw..(i + 1) * hw];
        out.fill(w[k]);
        for (j, &wj) in w[..k].iter().enumerate() {
            let plane = &hv[(i * k + j) * hw..][..hw];
            out.iter_mut().zip(plane).for_each(|(o, &v)| *o += wj * v);
        }
    }
    tape.push_op(s, &[n, 1, hs[2], hs[3]], &[h, head], || {
        Box::new(move |nodes: &Nodes<'_, T>, ds: Vec<T>| {
            let (hv, wv) = (nodes.value(h), nodes.value(head));
            let mut grads = Vec::new();
            if nodes.requires_grad(h) {
                let mut dh = vec![T::zero(); n * k * hw];
                for i in 0..n {
                    for j in 0..k {
                        let w = wv[i * (k + 1) + j];
                        let d = &mut dh[(i * k + j) * hw..][..hw];
                        d.iter_mut()
                            .zip(&ds[i * hw..(i + 1) * hw])
                            .for_each(|(d, &g)| *d = w * g);
                    }
                }
                grads.push((h, dh));
            }
            if nodes.requires_grad(head) {
                let mut dw = vec![T::zero(); n * (k + 1)];
                for i in 0..n {
                    let g = &ds[i * hw..(i + 1) * hw];
                    for j in 0..k {
                        let plane = &hv[(i * k + j) * hw..][..hw];
                        dw[i * (k + 1) + j] = plane.iter().zip(g).map(|(&a, &b)| a * b).sum();
                    }
                    dw[i * (k + 1) + k] = g.iter().copied().sum();
                }
                grads.push((head, dw));
            }
            Ok(grads)
        })
    })
}

/// `a[n, ch, y, x] = s[n, 0, y/B, x/B] · c[n, ch]` for `s [N,1,⌈H/B⌉,⌈W/B⌉]`, `c [N,C]`:
/// the gate's argument, with each spatial value spread over its B×B block.
pub fn outer<T: Real>(
    tape: &mut Tape<'_, T>,
    s: Var,
    c: Var,
    block: usize,
    h: usize,
    w: usize,
) -> Result<Var> {
    let (ss, cs) = (tape.shape(s).to_vec(), tape.shape(c).to_vec());
    let (sh, sw) = (h.div_ceil(block.max(1)), w.div_ceil(block.max(1)));
    if block == 0 || cs.len() != 2 || ss != [cs[0], 1, sh, sw] {
        return Err(Error::shape(
            "outer",
            "s / c",
            format!("s [N,1,{sh},{sw}] and c [N,C]"),
            format!("{ss:?} / {cs:?}"),
        ));
    }
    let (n, ch) = (cs[0], cs[1]);
    let at = move |y: usize, x: usize| (y / block) * sw + x / block;
    let (sv, cv) = (tape.value(s), tape.value(c));
    let mut a = vec![T::zero(); n * ch * h * w];
    for i in 0..n {
        for k in 0..ch {
            for y in 0..h {
                for x in 0..w {
                    a[((i * ch + k) * h + y) * w + x] = sv[i * sh * sw + at(y, x)] * cv[i * ch + k];
                }
            }
        }
    }
    tape.push_op(a, &[n, ch, h, w], &[s, c], || {
        Box::new(move |nodes: &Nodes<'_, T>, da: Vec<T>| {
            let (sv, cv) = (nodes.value(s), nodes.value(c));
            let (mut ds, mut dc) = (vec![T::zero(); n * sh * sw], vec![T::zero(); n * ch]);
            for i in 0..n {
                for k in 0..ch {
                    for y in 0..h {
                        for x in 0..w {
                            let g = da[((i * ch + k) * h + y) * w + x];
                            ds[i * sh * sw + at(y, x)] += g * cv[i * ch + k];
                            dc[i * ch + k] += g * sv[i * sh * sw + at(y, x)];
                        }
                    }
                }
            }
            Ok([(s, ds), (c, dc)]
                .into_iter()
                .filter(|(v, _)| nodes.requires_grad(*v))
                .collect())
        })
    })
}
