//! The training-step kernels (kernels/batchnorm.cu, …), f32, run on the CPU by
//! sparta-harness with the wrappers' own launch shapes and compared with the f64 CPU
//! reference (the tape ops themselves) on random inputs and odd shapes; the traffic pins
//! of the element-wise kernels.

mod harness_support;

use harness_support::{dims, rounded, uniform};
use rand::rngs::StdRng;
use rand::SeedableRng;
use sparta::attack::pgd::{self, argmax_rows, step_direction, Goal, PgdConfig};
use sparta::attack::pgd_launch;
use sparta::autograd::Tape;
use sparta::data::augment::{crop_flip_batch, crop_flip_draws, crop_flip_launch, crop_flip_params};
use sparta::ops::add::{self as add_op, add_launch};
use sparta::ops::batchnorm::{
    self, batch_norm, batchnorm_channel_launch, batchnorm_elementwise_launch, BnMode, BnShape,
};
use sparta::ops::loss::{
    self, cross_entropy, cross_entropy_reduce_launch, cross_entropy_rows_launch, Reduction,
};
use sparta::ops::normalize::{self, normalize_launch};
use sparta::optim::{sgd_launch, Sgd};
use sparta::tensor::Tensor;
use sparta_harness::{Arg, Buf, Harness, LaunchReport};

/// Relative tolerance of f32 against the f64 reference.
const TOL: f64 = 1e-5;

/// Random f32 values in `[lo, hi)` and the same values in f64 (what the reference sees).
fn random(len: usize, lo: f64, hi: f64, seed: u64) -> (Vec<f32>, Vec<f64>) {
    rounded::<f32>(&uniform(len, lo, hi, seed))
}

/// `|got − want| ≤ TOL · max_j |want_j|` for every element: scale-aware, since a sum
/// that cancels to near zero carries the rounding of its large terms. NaN never passes.
fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(f64::MIN_POSITIVE, |m, w| m.max(w.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let within = (f64::from(g) - w).abs() <= TOL * scale; // false for NaN
        assert!(
            within,
            "{what}[{i}]: {g} vs reference {w} (tolerance {TOL} × {scale})"
        );
    }
}

fn i32_arg(v: usize) -> Arg {
    Arg::I32(i32::try_from(v).unwrap())
}

fn i64_arg(v: usize) -> Arg {
    Arg::I64(i64::try_from(v).unwrap())
}

/// `buffer` moved exactly once: sectors requested equal `ceil(bytes / 32)` and every
/// element accessed once.
fn pin_once(report: &LaunchReport, buffer: &str, store: bool, elements: usize) {
    let b = report.buffer(buffer);
    let (ratio, count) = if store {
        (b.store_ratio(), b.stores)
    } else {
        (b.load_ratio(), b.loads)
    };
    assert!(
        ratio == 1.0,
        "{}: `{buffer}` requested {ratio:.3} × its size\n{report}",
        report.kernel
    );
    assert_eq!(
        count, elements as u64,
        "{}: `{buffer}` accesses",
        report.kernel
    );
}

// ---- batch norm ----

const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

/// (N, C, H·W): H·W = 1 ([N, C] inputs), N = 1, a single sample and pixel (M = 1, no
/// Bessel factor), C = 3, M larger than the block (several elements per thread) and not
/// a multiple of it.
const BN_SHAPES: &[(usize, usize, usize)] =
    &[(2, 3, 35), (5, 20, 1), (1, 3, 1), (1, 2, 300), (3, 4, 97)];

/// The f64 tape op on `x`: output, batch statistics (train) and the gradients of
/// `Σ y·dy` for x, γ, β.
struct BnReference {
    y: Vec<f64>,
    mean_var_unbiased: Option<(Vec<f64>, Vec<f64>)>,
    dx: Vec<f64>,
    dgamma: Vec<f64>,
    dbeta: Vec<f64>,
}

fn bn_reference(
    shape: &BnShape,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    dy: &[f64],
    running: Option<(&[f64], &[f64])>,
) -> BnReference {
    let mut tape = Tape::<f64>::new();
    let xs = [shape.n, shape.c, shape.hw];
    let xv = tape.leaf(Tensor::new(&xs, x.to_vec()).unwrap(), true);
    let g = tape.leaf(Tensor::new(&[shape.c], gamma.to_vec()).unwrap(), true);
    let b = tape.leaf(Tensor::new(&[shape.c], beta.to_vec()).unwrap(), true);
    let mode = match running {
        None => BnMode::Train,
        Some((mean, var)) => BnMode::Eval { mean, var },
    };
    let (y, stats) = batch_norm(&mut tape, xv, g, b, mode, BN_EPS).unwrap();
    let yv = tape.value(y).data().to_vec();
    tape.backward_with(y, dy.to_vec()).unwrap();
    BnReference {
        y: yv,
        mean_var_unbiased: stats.map(|s| (s.mean, s.var_unbiased)),
        dx: tape.grad(xv).unwrap().to_vec(),
        dgamma: tape.grad(g).unwrap().to_vec(),
        dbeta: tape.grad(b).unwrap().to_vec(),
    }
}

fn bn_shape_args(shape: &BnShape) -> [Arg; 3] {
    [i32_arg(shape.n), i32_arg(shape.c), i32_arg(shape.hw)]
}

#[test]
fn batchnorm_training_kernels_match_the_tape_op() {
    for (i, &(n, c, hw)) in BN_SHAPES.iter().enumerate() {
        let shape = BnShape::new(n, c, hw).unwrap();
        let len = shape.len();
        let seed = 100 + 10 * i as u64;
        // an offset mean, as activations have, so the two-pass variance matters
        let (x, x64) = random(len, -1.0, 3.0, seed);
        let (gamma, gamma64) = random(c, 0.5, 1.5, seed + 1);
        let (beta, beta64) = random(c, -1.0, 1.0, seed + 2);
        let (dy, dy64) = random(len, -1.0, 1.0, seed + 3);
        let (rmean, mut rmean64) = random(c, -1.0, 1.0, seed + 4);
        let (rvar, mut rvar64) = random(c, 0.5, 2.0, seed + 5);
        let want = bn_reference(&shape, &x64, &gamma64, &beta64, &dy64, None);
        let (mean64, var_unbiased64) = want.mean_var_unbiased.clone().unwrap();
        let momentum = BN_MOMENTUM;
        batchnorm::cpu::update_running(&mut rmean64, &mean64, momentum);
        batchnorm::cpu::update_running(&mut rvar64, &var_unbiased64, momentum);
        let sd = (n, c, hw);

        let mut h = Harness::new();
        let xb = h.input("x", &x);
        let gb = h.input("gamma", &gamma);
        let bb = h.input("beta", &beta);
        let dyb = h.input("dy", &dy);
        let meanb = h.output::<f32>("mean", c);
        let varb = h.output::<f32>("var", c);
        let rmeanb = h.input("running_mean", &rmean);
        let rvarb = h.input("running_var", &rvar);
        let mut args = vec![
            Arg::Buf(xb),
            Arg::Buf(meanb),
            Arg::Buf(varb),
            Arg::Buf(rmeanb),
            Arg::Buf(rvarb),
        ];
        args.extend(bn_shape_args(&shape));
        args.push(Arg::F32(momentum as f32));
        h.launch(
            "batchnorm_stats_f32",
            dims(batchnorm_channel_launch(&shape)),
            &args,
        )
        .unwrap();
        let what = format!("batchnorm_stats_f32 {sd:?}");
        assert_close(&format!("{what} mean"), &h.read::<f32>(meanb), &mean64);
        let m = (n * hw) as f64;
        let bessel = if m > 1.0 { m / (m - 1.0) } else { 1.0 };
        let var64: Vec<f64> = var_unbiased64.iter().map(|v| v / bessel).collect();
        assert_close(&format!("{what} var"), &h.read::<f32>(varb), &var64);
        assert_close(
            &format!("{what} running mean"),
            &h.read::<f32>(rmeanb),
            &rmean64,
        );
        assert_close(
            &format!("{what} running var"),
            &h.read::<f32>(rvarb),
            &rvar64,
        );

        let yb = h.output::<f32>("y", len);
        let args = [
            Arg::Buf(xb),
            Arg::Buf(meanb),
            Arg::Buf(varb),
            Arg::Buf(gb),
            Arg::Buf(bb),
            Arg::Buf(yb),
            i64_arg(len),
            i32_arg(c),
            i32_arg(hw),
            Arg::F32(BN_EPS as f32),
        ];
        h.launch(
            "batchnorm_forward_f32",
            dims(batchnorm_elementwise_launch(&shape)),
            &args,
        )
        .unwrap();
        assert_close(
            &format!("batchnorm_forward_f32 train {sd:?}"),
            &h.read::<f32>(yb),
            &want.y,
        );

        let sdyb = h.output::<f32>("sum_dy", c);
        let sdyxb = h.output::<f32>("sum_dy_xhat", c);
        let mut args = vec![
            Arg::Buf(xb),
            Arg::Buf(dyb),
            Arg::Buf(meanb),
            Arg::Buf(varb),
            Arg::Buf(sdyb),
            Arg::Buf(sdyxb),
        ];
        args.extend(bn_shape_args(&shape));
        args.push(Arg::F32(BN_EPS as f32));
        h.launch(
            "batchnorm_grad_sums_f32",
            dims(batchnorm_channel_launch(&shape)),
            &args,
        )
        .unwrap();
        let what = format!("batchnorm_grad_sums_f32 {sd:?}");
        assert_close(&format!("{what} dbeta"), &h.read::<f32>(sdyb), &want.dbeta);
        assert_close(
            &format!("{what} dgamma"),
            &h.read::<f32>(sdyxb),
            &want.dgamma,
        );

        let dxb = h.output::<f32>("dx", len);
        let mut args = vec![
            Arg::Buf(xb),
            Arg::Buf(dyb),
            Arg::Buf(meanb),
            Arg::Buf(varb),
            Arg::Buf(gb),
            Arg::Buf(sdyb),
            Arg::Buf(sdyxb),
            Arg::Buf(dxb),
            i64_arg(len),
        ];
        args.extend(bn_shape_args(&shape));
        args.push(Arg::F32(BN_EPS as f32));
        h.launch(
            "batchnorm_backward_input_train_f32",
            dims(batchnorm_elementwise_launch(&shape)),
            &args,
        )
        .unwrap();
        assert_close(
            &format!("batchnorm_backward_input_train_f32 {sd:?}"),
            &h.read::<f32>(dxb),
            &want.dx,
        );
    }
}

/// Evaluation mode (running statistics): forward and the input gradient PGD uses; on a
/// ResNet-like shape whose x, y, dy, dx are each moved once, coalesced.
#[test]
fn batchnorm_eval_kernels_match_the_tape_op_and_move_each_tensor_once() {
    let shapes = BN_SHAPES.iter().copied().chain([(2, 64, 64)]);
    for (i, (n, c, hw)) in shapes.enumerate() {
        let shape = BnShape::new(n, c, hw).unwrap();
        let len = shape.len();
        let seed = 200 + 10 * i as u64;
        let (x, x64) = random(len, -1.0, 3.0, seed);
        let (mean, mean64) = random(c, -1.0, 1.0, seed + 1);
        let (var, var64) = random(c, 0.1, 2.0, seed + 2);
        let (gamma, gamma64) = random(c, 0.5, 1.5, seed + 3);
        let (beta, beta64) = random(c, -1.0, 1.0, seed + 4);
        let (dy, dy64) = random(len, -1.0, 1.0, seed + 5);
        let running = Some((mean64.as_slice(), var64.as_slice()));
        let want = bn_reference(&shape, &x64, &gamma64, &beta64, &dy64, running);
        let sd = (n, c, hw);

        let mut h = Harness::new();
        let xb = h.input("x", &x);
        let meanb = h.input("mean", &mean);
        let varb = h.input("var", &var);
        let gb = h.input("gamma", &gamma);
        let bb = h.input("beta", &beta);
        let dyb = h.input("dy", &dy);
        let yb = h.output::<f32>("y", len);
        let dxb = h.output::<f32>("dx", len);
        let launch = dims(batchnorm_elementwise_launch(&shape));
        let eps = Arg::F32(BN_EPS as f32);
        let args = [
            Arg::Buf(xb),
            Arg::Buf(meanb),
            Arg::Buf(varb),
            Arg::Buf(gb),
            Arg::Buf(bb),
            Arg::Buf(yb),
            i64_arg(len),
            i32_arg(c),
            i32_arg(hw),
            eps,
        ];
        let forward = h.launch("batchnorm_forward_f32", launch, &args).unwrap();
        let what = format!("batchnorm_forward_f32 eval {sd:?}");
        assert_close(&what, &h.read::<f32>(yb), &want.y);
        let args = [
            Arg::Buf(dyb),
            Arg::Buf(varb),
            Arg::Buf(gb),
            Arg::Buf(dxb),
            i64_arg(len),
            i32_arg(c),
            i32_arg(hw),
            eps,
        ];
        let backward = h
            .launch("batchnorm_backward_input_eval_f32", launch, &args)
            .unwrap();
        let what = format!("batchnorm_backward_input_eval_f32 {sd:?}");
        assert_close(&what, &h.read::<f32>(dxb), &want.dx);
        if len % 8 == 0 {
            pin_once(&forward, "x", false, len);
            pin_once(&forward, "y", true, len);
            pin_once(&backward, "dy", false, len);
            pin_once(&backward, "dx", true, len);
        }
    }
}

/// The training-mode element-wise kernels move x, dy, y, dx once, coalesced.
#[test]
fn batchnorm_training_elementwise_kernels_move_each_tensor_once() {
    let shape = BnShape::new(2, 64, 64).unwrap();
    let (len, c) = (shape.len(), shape.c);
    let mut h = Harness::new();
    let xb = h.input("x", &random(len, -1.0, 1.0, 1).0);
    let dyb = h.input("dy", &random(len, -1.0, 1.0, 2).0);
    let per_channel: Vec<Buf> = ["mean", "var", "gamma", "sum_dy", "sum_dy_xhat"]
        .iter()
        .enumerate()
        .map(|(i, name)| h.input(name, &random(c, 0.5, 1.0, 3 + i as u64).0))
        .collect();
    let dxb = h.output::<f32>("dx", len);
    let mut args = vec![Arg::Buf(xb), Arg::Buf(dyb)];
    args.extend(per_channel.iter().map(|&b| Arg::Buf(b)));
    args.push(Arg::Buf(dxb));
    args.push(i64_arg(len));
    args.extend(bn_shape_args(&shape));
    args.push(Arg::F32(BN_EPS as f32));
    let report = h
        .launch(
            "batchnorm_backward_input_train_f32",
            dims(batchnorm_elementwise_launch(&shape)),
            &args,
        )
        .unwrap();
    pin_once(&report, "x", false, len);
    pin_once(&report, "dy", false, len);
    pin_once(&report, "dx", true, len);
}

// ---- cross-entropy ----

/// (N, K): one class, K < 32, K > 32 and not a multiple of the warp, N not a multiple of
/// the rows per block, N > the reduce block (several rows per thread).
const CE_SHAPES: &[(usize, usize)] = &[(1, 1), (3, 10), (9, 33), (17, 100), (300, 7)];

/// Runs both cross-entropy kernels; returns (loss, dlogits, correct, loss_total,
/// correct_total).
fn run_cross_entropy(
    n: usize,
    k: usize,
    logits: &[f32],
    labels: &[i32],
    scale: f32,
) -> (Vec<f32>, Vec<f32>, Vec<i32>, f32, i32) {
    let mut h = Harness::new();
    let zb = h.input("logits", logits);
    let lb = h.input("labels", labels);
    let lossb = h.output::<f32>("loss", n);
    let dzb = h.output::<f32>("dlogits", n * k);
    let cb = h.output::<i32>("correct", n);
    let args = [
        Arg::Buf(zb),
        Arg::Buf(lb),
        Arg::Buf(lossb),
        Arg::Buf(dzb),
        Arg::Buf(cb),
        i32_arg(n),
        i32_arg(k),
        Arg::F32(scale),
    ];
    h.launch(
        "cross_entropy_rows_f32",
        dims(cross_entropy_rows_launch(n)),
        &args,
    )
    .unwrap();
    let totalb = h.output::<f32>("loss_total", 1);
    let hitsb = h.output::<i32>("correct_total", 1);
    let args = [
        Arg::Buf(lossb),
        Arg::Buf(cb),
        Arg::Buf(totalb),
        Arg::Buf(hitsb),
        i32_arg(n),
        Arg::F32(scale),
    ];
    h.launch(
        "cross_entropy_reduce_f32",
        dims(cross_entropy_reduce_launch()),
        &args,
    )
    .unwrap();
    (
        h.read::<f32>(lossb),
        h.read::<f32>(dzb),
        h.read::<i32>(cb),
        h.read::<f32>(totalb)[0],
        h.read::<i32>(hitsb)[0],
    )
}

/// Labels in `0..k`, about a third of them the row's argmax so that `correct` is mixed.
fn labels_for(logits: &[f32], n: usize, k: usize, seed: u64) -> Vec<usize> {
    let best = argmax_rows(logits, k);
    let draws = uniform(2 * n, 0.0, 1.0, seed);
    (0..n)
        .map(|i| {
            if draws[2 * i] < 0.35 {
                best[i]
            } else {
                ((draws[2 * i + 1] * k as f64) as usize).min(k - 1)
            }
        })
        .collect()
}

#[test]
fn cross_entropy_kernels_match_the_tape_op() {
    for (i, &(n, k)) in CE_SHAPES.iter().enumerate() {
        let seed = 400 + 10 * i as u64;
        let (z, z64) = random(n * k, -4.0, 4.0, seed);
        let labels = labels_for(&z, n, k, seed + 1);
        let labels_i32: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
        let (_, losses64) = loss::softmax_losses(&z64, k, &labels);
        let want_hits: Vec<i32> = argmax_rows(&z, k)
            .iter()
            .zip(&labels)
            .map(|(b, l)| i32::from(b == l))
            .collect();
        for reduction in [Reduction::Mean, Reduction::Sum] {
            let mut tape = Tape::<f64>::new();
            let zv = tape.leaf(Tensor::new(&[n, k], z64.clone()).unwrap(), true);
            let l = cross_entropy(&mut tape, zv, &labels, reduction).unwrap();
            let want_total = tape.value(l).data()[0];
            tape.backward(l).unwrap();
            let scale = match reduction {
                Reduction::Mean => 1.0 / n as f32,
                Reduction::Sum => 1.0,
            };
            let (got_loss, got_dz, got_hits, got_total, got_correct) =
                run_cross_entropy(n, k, &z, &labels_i32, scale);
            let what = format!("cross_entropy_rows_f32 ({n}, {k}) {reduction:?}");
            assert_close(&format!("{what} loss"), &got_loss, &losses64);
            assert_close(&format!("{what} dlogits"), &got_dz, tape.grad(zv).unwrap());
            assert_eq!(got_hits, want_hits, "{what} correct");
            let what = format!("cross_entropy_reduce_f32 ({n}, {k}) {reduction:?}");
            assert_close(&what, &[got_total], &[want_total]);
            assert_eq!(
                got_correct,
                want_hits.iter().sum::<i32>(),
                "{what} correct total"
            );
        }
    }
}

/// The accuracy count breaks ties as the CPU does: the first largest logit wins, −0 ties
/// +0, NaN never wins except that a NaN first logit keeps index 0.
#[test]
fn cross_entropy_argmax_breaks_ties_as_the_cpu() {
    let nan = f32::NAN;
    let rows: &[[f32; 5]] = &[
        [1.0, 3.0, 3.0, 2.0, 3.0],
        [-0.0, 0.0, -1.0, -2.0, -3.0],
        [0.0, -0.0, -1.0, -2.0, -3.0],
        [nan, 5.0, 1.0, 2.0, 3.0],
        [1.0, nan, 4.0, nan, 4.0],
        [nan, nan, nan, nan, nan],
        [f32::NEG_INFINITY; 5],
        [2.0, 2.0, 2.0, 2.0, 2.0],
    ];
    let k = 5;
    let z: Vec<f32> = rows.iter().flatten().copied().collect();
    let best = argmax_rows(&z, k);
    for label in 0..k {
        let labels = vec![label as i32; rows.len()];
        let (_, _, hits, _, total) = run_cross_entropy(rows.len(), k, &z, &labels, 1.0);
        let want: Vec<i32> = best.iter().map(|&b| i32::from(b == label)).collect();
        assert_eq!(hits, want, "label {label}, CPU argmax {best:?}");
        assert_eq!(total, want.iter().sum::<i32>());
    }
}

// ---- SGD ----

/// Parameter tensors of odd sizes (a bias of 1, a 3×3 kernel, …) laid out in one flat
/// buffer, as a model keeps them for the one-launch update.
const SGD_TENSORS: &[usize] = &[1, 9, 64, 3, 577, 10];

#[test]
fn sgd_one_launch_over_a_flat_buffer_matches_per_tensor_updates() {
    let len: usize = SGD_TENSORS.iter().sum();
    let (p, p64) = random(len, -1.0, 1.0, 500);
    let (g, g64) = random(len, -1.0, 1.0, 501);
    let (v, v64) = random(len, -1.0, 1.0, 502);
    let (lr, momentum, weight_decay) = (0.1f32, 0.9f32, 5e-4f32);
    let mut sgd = Sgd::new(
        f64::from(momentum),
        f64::from(weight_decay),
        SGD_TENSORS.to_vec(),
    );
    let mut want_p = p64.clone();
    let mut offset = 0;
    for (i, &size) in SGD_TENSORS.iter().enumerate() {
        sgd.velocity[i].copy_from_slice(&v64[offset..offset + size]);
        let range = offset..offset + size;
        sgd.update(i, &mut want_p[range.clone()], &g64[range], f64::from(lr))
            .unwrap();
        offset += size;
    }
    let want_v: Vec<f64> = sgd.velocity.concat();

    let mut h = Harness::new();
    let pb = h.input("p", &p);
    let gb = h.input("g", &g);
    let vb = h.input("v", &v);
    let args = [
        Arg::Buf(pb),
        Arg::Buf(gb),
        Arg::Buf(vb),
        i64_arg(len),
        Arg::F32(lr),
        Arg::F32(momentum),
        Arg::F32(weight_decay),
    ];
    h.launch("sgd_update_f32", dims(sgd_launch(len)), &args)
        .unwrap();
    assert_close("sgd_update_f32 p", &h.read::<f32>(pb), &want_p);
    assert_close("sgd_update_f32 v", &h.read::<f32>(vb), &want_v);
}

#[test]
fn sgd_moves_each_buffer_once_coalesced() {
    for len in [4096, 64 * 3 * 3 * 64 + 64] {
        let mut h = Harness::new();
        let pb = h.input("p", &random(len, -1.0, 1.0, 1).0);
        let gb = h.input("g", &random(len, -1.0, 1.0, 2).0);
        let vb = h.input("v", &random(len, -1.0, 1.0, 3).0);
        let args = [
            Arg::Buf(pb),
            Arg::Buf(gb),
            Arg::Buf(vb),
            i64_arg(len),
            Arg::F32(0.1),
            Arg::F32(0.9),
            Arg::F32(5e-4),
        ];
        let report = h
            .launch("sgd_update_f32", dims(sgd_launch(len)), &args)
            .unwrap();
        for (buffer, store) in [
            ("p", false),
            ("g", false),
            ("v", false),
            ("p", true),
            ("v", true),
        ] {
            pin_once(&report, buffer, store, len);
        }
    }
}

// ---- PGD step and projection ----

/// Clean images with pixels at and near 0 and 1 (so the [0, 1] clip binds) and a
/// gradient with exact zeros, a NaN and both signs.
fn pgd_inputs(len: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut x0 = random(len, -0.2, 1.2, seed).0;
    x0.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    let mut g = random(len, -1.0, 1.0, seed + 1).0;
    for (i, v) in g.iter_mut().enumerate() {
        if i % 5 == 0 {
            *v = 0.0;
        }
    }
    if len > 3 {
        g[3] = f32::NAN;
        g[2] = -0.0;
    }
    (x0, g)
}

/// Random start then three steps with fresh gradients, for both goals, against
/// `pgd::random_start` and `pgd::step` bit for bit; lengths 1, an odd image batch and a
/// multiple of the sector for the traffic pins.
#[test]
fn pgd_kernels_match_the_cpu_attack_bit_for_bit() {
    for (i, len) in [1usize, 2 * 3 * 5 * 7, 4096].into_iter().enumerate() {
        for goal in [Goal::Targeted, Goal::Untargeted] {
            let config = PgdConfig {
                goal,
                step: 2.0 / 255.0,
                ..PgdConfig::paper(3)
            };
            let eps = config.epsilon;
            let seed = 600 + 10 * i as u64;
            let (x0, _) = pgd_inputs(len, seed);
            let noise = pgd::random_start_noise(&mut StdRng::seed_from_u64(seed), len, eps);
            let mut want = pgd::random_start(&x0, &noise, eps);

            let mut h = Harness::new();
            let startb = h.output::<f32>("start", len);
            let x0b = h.input("x0", &x0);
            let nb = h.input("noise", &noise);
            let args = [
                Arg::Buf(startb),
                Arg::Buf(x0b),
                Arg::Buf(nb),
                i64_arg(len),
                Arg::F32(eps),
            ];
            let start = h
                .launch("pgd_random_start_f32", dims(pgd_launch(len)), &args)
                .unwrap();
            let what = format!("pgd_random_start_f32 len {len} {goal:?}");
            let x_start = h.read::<f32>(startb);
            assert_eq!(x_start, want, "{what}");

            // the step updates x in place: an input buffer, holding the start
            let xb = h.input("x", &x_start);
            let gb = h.input("grad", &vec![0.0f32; len]);
            let mut steps = Vec::new();
            for k in 0..3 {
                let (_, g) = pgd_inputs(len, seed + 2 + k);
                pgd::step(&mut want, &g, &x0, step_direction(&config), eps);
                h.write(gb, &g);
                let args = [
                    Arg::Buf(xb),
                    Arg::Buf(gb),
                    Arg::Buf(x0b),
                    i64_arg(len),
                    Arg::F32(step_direction(&config)),
                    Arg::F32(eps),
                ];
                steps.push(
                    h.launch("pgd_step_f32", dims(pgd_launch(len)), &args)
                        .unwrap(),
                );
                let got = h.read::<f32>(xb);
                let what = format!("pgd_step_f32 len {len} {goal:?} step {k}");
                assert_eq!(got, want, "{what}");
                assert!(
                    got.iter()
                        .zip(&x0)
                        .all(|(&v, &o)| (0.0..=1.0).contains(&v)
                            && (v - o).abs() <= eps * (1.0 + 1e-6)),
                    "{what}: left the ball or the box"
                );
            }
            if len % 8 == 0 {
                pin_once(&start, "x0", false, len);
                pin_once(&start, "noise", false, len);
                pin_once(&start, "start", true, len);
                for report in &steps {
                    for (buffer, store) in
                        [("x", false), ("grad", false), ("x0", false), ("x", true)]
                    {
                        pin_once(report, buffer, store, len);
                    }
                }
            }
        }
    }
}

// ---- augmentation ----

/// [N, C, H, W]: one 1×1 image (every offset crops to padding), images smaller than the
/// padding, odd sizes, enough images that every offset and both flips occur.
const AUGMENT_SHAPES: &[[usize; 4]] = &[[1, 1, 1, 1], [16, 3, 5, 7], [40, 1, 3, 2], [2, 3, 32, 32]];

#[test]
fn augment_kernel_equals_crop_flip_batch_for_the_same_seed() {
    for (i, &shape) in AUGMENT_SHAPES.iter().enumerate() {
        let [n, c, h, w] = shape;
        let len = n * c * h * w;
        let seed = 700 + i as u64;
        let x = random(len, 0.0, 1.0, seed).0;
        let mut want = x.clone();
        crop_flip_batch(&mut want, shape, &mut StdRng::seed_from_u64(seed)).unwrap();
        let draws = crop_flip_draws(n, &mut StdRng::seed_from_u64(seed));

        let mut hs = Harness::new();
        let srcb = hs.input("src", &x);
        let dstb = hs.output::<f32>("dst", len);
        let pb = hs.input("params", &crop_flip_params(&draws));
        let args = [
            Arg::Buf(srcb),
            Arg::Buf(dstb),
            Arg::Buf(pb),
            i32_arg(n),
            i32_arg(c),
            i32_arg(h),
            i32_arg(w),
        ];
        let report = hs
            .launch("augment_crop_flip_f32", dims(crop_flip_launch(len)), &args)
            .unwrap();
        assert_eq!(
            hs.read::<f32>(dstb),
            want,
            "augment_crop_flip_f32 {shape:?}"
        );
        if len % 8 == 0 {
            pin_once(&report, "dst", true, len);
        }
        if n >= 16 {
            assert!(draws.iter().any(|t| t.flip) && draws.iter().any(|t| !t.flip));
        }
    }
}

// ---- input normalization and the residual add ----

/// [N, C, H, W]: one pixel, C = 3 (the datasets' RGB), odd planes, a traffic shape.
const NORMALIZE_SHAPES: &[[usize; 4]] = &[[1, 1, 1, 1], [2, 3, 5, 7], [3, 3, 1, 1], [2, 3, 32, 32]];

#[test]
fn normalize_kernels_match_the_tape_op() {
    for (i, &shape) in NORMALIZE_SHAPES.iter().enumerate() {
        let [n, c, h, w] = shape;
        let (len, hw) = (n * c * h * w, h * w);
        let seed = 800 + 10 * i as u64;
        let (x, x64) = random(len, 0.0, 1.0, seed);
        let (dy, dy64) = random(len, -1.0, 1.0, seed + 1);
        let mean = random(c, 0.3, 0.6, seed + 2).0;
        let stdev = random(c, 0.15, 0.35, seed + 3).0;
        let mut tape = Tape::<f64>::new();
        let xv = tape.leaf(Tensor::new(&shape, x64).unwrap(), true);
        let y = normalize::normalize(&mut tape, xv, &mean, &stdev).unwrap();
        let want_y = tape.value(y).data().to_vec();
        tape.backward_with(y, dy64).unwrap();

        let mut h = Harness::new();
        let xb = h.input("x", &x);
        let mb = h.input("mean", &mean);
        let sb = h.input("stdev", &stdev);
        let dyb = h.input("dy", &dy);
        let yb = h.output::<f32>("y", len);
        let dxb = h.output::<f32>("dx", len);
        let launch = dims(normalize_launch(len));
        let args = [
            Arg::Buf(xb),
            Arg::Buf(mb),
            Arg::Buf(sb),
            Arg::Buf(yb),
            i64_arg(len),
            i32_arg(c),
            i32_arg(hw),
        ];
        let forward = h.launch("normalize_forward_f32", launch, &args).unwrap();
        assert_close(
            &format!("normalize_forward_f32 {shape:?}"),
            &h.read::<f32>(yb),
            &want_y,
        );
        let args = [
            Arg::Buf(dyb),
            Arg::Buf(sb),
            Arg::Buf(dxb),
            i64_arg(len),
            i32_arg(c),
            i32_arg(hw),
        ];
        let backward = h.launch("normalize_backward_f32", launch, &args).unwrap();
        assert_close(
            &format!("normalize_backward_f32 {shape:?}"),
            &h.read::<f32>(dxb),
            tape.grad(xv).unwrap(),
        );
        if len % 8 == 0 {
            pin_once(&forward, "x", false, len);
            pin_once(&forward, "y", true, len);
            pin_once(&backward, "dy", false, len);
            pin_once(&backward, "dx", true, len);
        }
    }
}

#[test]
fn add_kernel_matches_the_tape_op() {
    for (i, len) in [1usize, 3 * 5 * 7, 2 * 64 * 8 * 8].into_iter().enumerate() {
        let seed = 900 + 10 * i as u64;
        let (a, a64) = random(len, -1.0, 1.0, seed);
        let (b, b64) = random(len, -1.0, 1.0, seed + 1);
        let mut tape = Tape::<f64>::new();
        let av = tape.leaf(Tensor::new(&[len], a64).unwrap(), false);
        let bv = tape.leaf(Tensor::new(&[len], b64).unwrap(), false);
        let y = add_op::add(&mut tape, av, bv).unwrap();

        let mut h = Harness::new();
        let ab = h.input("a", &a);
        let bb = h.input("b", &b);
        let yb = h.output::<f32>("y", len);
        let args = [Arg::Buf(ab), Arg::Buf(bb), Arg::Buf(yb), i64_arg(len)];
        let report = h
            .launch("add_forward_f32", dims(add_launch(len)), &args)
            .unwrap();
        assert_close(
            &format!("add_forward_f32 len {len}"),
            &h.read::<f32>(yb),
            tape.value(y).data(),
        );
        if len % 8 == 0 {
            pin_once(&report, "a", false, len);
            pin_once(&report, "b", false, len);
            pin_once(&report, "y", true, len);
        }
    }
}
