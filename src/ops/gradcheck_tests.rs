//! Every op's backward against f64 finite differences, and conv2d's values against a
//! direct loop.

use crate::autograd::gradcheck::{check, random, Input};
use crate::autograd::Tape;
use crate::ops::batchnorm::relu::batch_norm_relu;
use crate::ops::batchnorm::{batch_norm, BnStats};
use crate::ops::loss::{cross_entropy, Reduction};
use crate::ops::pointwise::{tape::pointwise, Pointwise};
use crate::ops::{add, conv2d, fc, normalize, pool, relu};

fn direct_conv(x: &Input, w: &Input, stride: usize, pad: usize) -> Vec<f64> {
    let (xs, ws) = (&x.0, &w.0);
    let (n, ci, h, wd, co, k) = (xs[0], xs[1], xs[2], xs[3], ws[0], ws[2]);
    let ho = (h + 2 * pad - k) / stride + 1;
    let wo = (wd + 2 * pad - k) / stride + 1;
    let mut y = vec![0.0; n * co * ho * wo];
    for s in 0..n {
        for o in 0..co {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = 0.0;
                    for c in 0..ci {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * stride + ky) as isize - pad as isize;
                                let ix = (ox * stride + kx) as isize - pad as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    acc += x.1[((s * ci + c) * h + iy as usize) * wd + ix as usize]
                                        * w.1[((o * ci + c) * k + ky) * k + kx];
                                }
                            }
                        }
                    }
                    y[((s * co + o) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    y
}

const CONV_CASES: [(usize, usize, usize); 4] = [(3, 1, 1), (3, 2, 1), (1, 1, 0), (1, 2, 0)];

/// Image widths: short rows, and rows longer than the 16-element steps the CPU conv's
/// im2col and col2im copy them in (a full step plus a remainder).
const CONV_WIDTHS: [usize; 2] = [6, 21];

#[test]
fn conv2d_values_match_direct_loop() {
    for ((k, stride, pad), width) in CONV_CASES
        .into_iter()
        .flat_map(|c| CONV_WIDTHS.map(|w| (c, w)))
    {
        let x = random(&[2, 3, 5, width], 1);
        let w = random(&[4, 3, k, k], 2);
        let mut tape = Tape::<f64>::new();
        let xv = tape.leaf(&x.0, x.1.clone(), false).unwrap();
        let wv = tape.leaf(&w.0, w.1.clone(), false).unwrap();
        let y = conv2d::conv2d(&mut tape, xv, wv, stride, pad).unwrap();
        let want = direct_conv(&x, &w, stride, pad);
        for (a, b) in tape.value(y).iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-12,
                "k{k} s{stride} w{width}: {a} vs {b}"
            );
        }
        assert_eq!(tape.value(y).len(), want.len());
    }
}

#[test]
fn conv2d_gradients() {
    for ((k, stride, pad), width) in CONV_CASES
        .into_iter()
        .flat_map(|c| CONV_WIDTHS.map(|w| (c, w)))
    {
        let inputs = [
            (random(&[2, 3, 5, width], 3), true),
            (random(&[4, 3, k, k], 4), true),
        ];
        check(&inputs, |t, v| conv2d::conv2d(t, v[0], v[1], stride, pad));
    }
}

#[test]
fn conv2d_input_gradient_only() {
    let inputs = [
        (random(&[1, 2, 4, 4], 5), true),
        (random(&[3, 2, 3, 3], 6), false),
    ];
    check(&inputs, |t, v| conv2d::conv2d(t, v[0], v[1], 1, 1));
}

#[test]
fn batch_norm_train_gradients() {
    let inputs = [
        (random(&[3, 2, 2, 3], 7), true),
        (random(&[2], 8), true),
        (random(&[2], 9), true),
    ];
    check(&inputs, |t, v| {
        let (mut mean, mut var) = (vec![0.0; 2], vec![1.0; 2]);
        let stats = BnStats::Batch {
            running_mean: &mut mean,
            running_var: &mut var,
            momentum: 0.1,
        };
        batch_norm(t, v[0], v[1], v[2], stats, 1e-5)
    });
}

#[test]
fn batch_norm_eval_gradients() {
    let (mean, var) = (vec![0.1, -0.2], vec![0.5, 1.5]);
    let inputs = [
        (random(&[2, 2, 3, 1], 10), true),
        (random(&[2], 11), true),
        (random(&[2], 12), true),
    ];
    check(&inputs, |t, v| {
        let stats = BnStats::Running {
            mean: &mean,
            var: &var,
        };
        batch_norm(t, v[0], v[1], v[2], stats, 1e-5)
    });
}

/// The fused batch norm + ReLU in both modes, with and without parameter gradients (in
/// evaluation mode without them the host's one-pass backward runs); its values are
/// held to the pair's bits in `ops/batchnorm/relu.rs`.
#[test]
fn batch_norm_relu_gradients() {
    for (train, params) in [(true, true), (false, true), (false, false)] {
        let inputs = [
            (random(&[3, 2, 2, 3], 30), true),
            (random(&[2], 31), params),
            (random(&[2], 32), params),
        ];
        check(&inputs, |t, v| {
            let (mut mean, mut var) = (vec![0.1, -0.2], vec![0.5, 1.5]);
            let stats = match train {
                true => BnStats::Batch {
                    running_mean: &mut mean,
                    running_var: &mut var,
                    momentum: 0.1,
                },
                false => BnStats::Running {
                    mean: &mean,
                    var: &var,
                },
            };
            batch_norm_relu(t, v[0], v[1], v[2], stats, 1e-5)
        });
    }
}

#[test]
fn batch_norm_train_normalizes_and_updates_the_unbiased_running_variance() {
    let mut tape = Tape::<f64>::new();
    let x = tape
        .leaf(&[4, 1, 1, 1], vec![1.0, 2.0, 3.0, 6.0], false)
        .unwrap();
    let g = tape.leaf(&[1], vec![1.0], false).unwrap();
    let b = tape.leaf(&[1], vec![0.0], false).unwrap();
    let (mut mean, mut var) = (vec![1.0], vec![2.0]);
    let stats = BnStats::Batch {
        running_mean: &mut mean,
        running_var: &mut var,
        momentum: 0.5,
    };
    let y = batch_norm(&mut tape, x, g, b, stats, 0.0).unwrap();
    // The running statistics move halfway to the batch's mean 3 and unbiased var 14/3.
    assert_eq!(mean, vec![2.0]);
    assert!((var[0] - (2.0 + 14.0 / 3.0) / 2.0).abs() < 1e-12, "{var:?}");
    let y = tape.value(y);
    let (m, v) = (
        y.iter().sum::<f64>() / 4.0,
        y.iter().map(|a| a * a).sum::<f64>() / 4.0,
    );
    assert!(
        m.abs() < 1e-12 && (v - 1.0).abs() < 1e-12,
        "mean {m}, var {v}"
    );
}

#[test]
fn pointwise_gradients() {
    for kind in Pointwise::ALL.into_iter().filter(|&k| k != Pointwise::Relu) {
        let inputs = [(random(&[2, 3, 4, 5], 19), true)];
        check(&inputs, |t, v| {
            // Through a sum with itself, so dy is not all ones.
            let y = pointwise(t, v[0], kind)?;
            let y2 = add::add(t, y, v[0])?;
            pointwise(t, y2, kind)
        });
    }
}

#[test]
fn relu_add_pool_gradients() {
    let inputs = [
        (random(&[2, 3, 4, 4], 13), true),
        (random(&[2, 3, 4, 4], 14), true),
    ];
    check(&inputs, |t, v| {
        let s = add::add(t, v[0], v[1])?;
        let r = relu::relu(t, s)?;
        let p = pool::avg_pool(t, r, 2)?;
        pool::global_avg_pool(t, p)
    });
}

#[test]
fn linear_and_cross_entropy_gradients() {
    let labels = [2, 0, 1];
    for reduction in [Reduction::Mean, Reduction::Sum] {
        let inputs = [
            (random(&[3, 5], 15), true),
            (random(&[4, 5], 16), true),
            (random(&[4], 17), true),
        ];
        check(&inputs, |t, v| {
            let z = fc::linear(t, v[0], v[1], v[2])?;
            cross_entropy(t, z, &labels, reduction)
        });
    }
}

#[test]
fn normalize_gradient() {
    let inputs = [(random(&[2, 2, 2, 2], 18), true)];
    check(&inputs, |t, v| {
        let mean = t.leaf(&[2], vec![0.3, 0.5], false)?;
        let std = t.leaf(&[2], vec![0.2, 0.7], false)?;
        normalize::normalize(t, v[0], mean, std)
    });
}

#[test]
fn shape_errors_are_typed() {
    let mut tape = Tape::<f64>::new();
    let (xs, x) = random(&[1, 3, 4, 4], 1);
    let x = tape.leaf(&xs, x, false).unwrap();
    let (ws, w) = random(&[2, 2, 3, 3], 2);
    let w = tape.leaf(&ws, w, false).unwrap();
    let err = conv2d::conv2d(&mut tape, x, w, 1, 1).unwrap_err();
    assert!(err.to_string().contains("[1, 3, 4, 4]"), "{err}");
    let (zs, z) = random(&[2, 3], 3);
    let z = tape.leaf(&zs, z, false).unwrap();
    assert!(cross_entropy(&mut tape, z, &[0, 3], Reduction::Mean).is_err());
}

#[test]
fn primitive_gradients() {
    use crate::ops::primitive::{bias_channels, dynamic_conv, mul, outer, reshape, sigmoid};
    let inputs = [(random(&[2, 3, 2, 2], 20), true), (random(&[3], 21), true)];
    check(&inputs, |t, v| {
        let b = bias_channels(t, v[0], v[1])?;
        let s = sigmoid(t, b)?;
        let m = mul(t, s, v[0])?;
        reshape(t, m, &[2, 12])
    });
    let inputs = [
        (random(&[2, 3, 2, 3], 22), true),
        (random(&[2, 4], 23), true),
    ];
    check(&inputs, |t, v| dynamic_conv(t, v[0], v[1]));
    for (block, h, w) in [(1usize, 2usize, 3usize), (2, 4, 4), (2, 3, 5)] {
        let (sh, sw) = (h.div_ceil(block), w.div_ceil(block));
        let inputs = [
            (random(&[2, 1, sh, sw], 24), true),
            (random(&[2, 3], 25), true),
        ];
        check(&inputs, |t, v| outer(t, v[0], v[1], block, h, w));
    }
}
