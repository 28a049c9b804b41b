//! The training-step kernels (kernels/batchnorm.cu, cross_entropy.cu, sgd.cu, pgd.cu,
//! augment.cu, normalize.cu, add.cu, pointwise.cu), f32, run on the CPU by sparta-harness through the
//! CUDA wrappers themselves (on the harness device: their launch shapes, argument lists
//! and launch sequences) and compared with the f64 CPU reference (the tape ops
//! themselves) on random inputs and odd shapes; the traffic pins of the element-wise
//! kernels; the wrappers' shape checks.
//!
//! Every buffer a wrapper overwrites is poisoned before each launch and must be fully
//! written; the harness demands bit-identical results under three thread schedules (the
//! wrappers mark every launch here `Determinism::BitExact`).

mod harness_support;

use harness_support::device::{HarnessBuffer, HarnessDevice};
use harness_support::{assert_matches, download, rounded, uniform};
use rand::rngs::StdRng;
use rand::SeedableRng;
use sparta::attack::pgd::{self, argmax_rows, step_direction, Goal, PgdConfig};
use sparta::autograd::{Tape, Var};
use sparta::data::augment::{self, crop_flip_draws, crop_flip_params, AugmentKernels};
use sparta::ops::add::{self as add_op, cuda as add_cuda};
use sparta::ops::batchnorm::{self, batch_norm, cuda as bn_cuda, BnShape, BnStats};
use sparta::ops::loss::cuda::CrossEntropyOut;
use sparta::ops::loss::{self, cross_entropy, cuda as loss_cuda, Reduction};
use sparta::ops::normalize::{self, cuda as normalize_cuda};
use sparta::ops::pgd::{cpu as pgd_cpu, cuda as pgd_cuda};
use sparta::optim::cuda as optim_cuda;
use sparta::optim::sgd::{SgdKernels, SgdStep};
use sparta::{Error, KernelDevice};
use sparta_harness::LaunchReport;

/// A leaf of the f64 reference tape.
fn leaf(tape: &mut Tape<'_, f64>, shape: &[usize], value: Vec<f64>, requires_grad: bool) -> Var {
    tape.leaf(shape, value, requires_grad).unwrap()
}

/// Random f32 values in `[lo, hi)` and the same values in f64 (what the reference sees).
fn random(len: usize, lo: f64, hi: f64, seed: u64) -> (Vec<f32>, Vec<f64>) {
    rounded::<f32>(&uniform(len, lo, hi, seed))
}

/// The device's launch reports so far, after checking that the wrappers launched exactly
/// `kernels`, in that order.
fn launched(dev: &HarnessDevice, kernels: &[&str]) -> Vec<LaunchReport> {
    let reports = dev.reports();
    let names: Vec<&str> = reports.iter().map(|r| r.kernel.as_str()).collect();
    assert_eq!(names, kernels, "launch sequence");
    reports
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

/// `result` is a shape error about `what` (a typed error, not a panic), and the wrapper
/// launched nothing: its checks run before its first launch.
fn assert_rejected(dev: &HarnessDevice, result: sparta::Result<()>, what: &str) {
    match result {
        Err(Error::Shape { what: got, .. }) if got == what => {}
        other => panic!("expected a shape error about `{what}`, got {other:?}"),
    }
    assert_eq!(
        dev.take_launched(),
        Vec::<String>::new(),
        "rejected `{what}`"
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
    let xv = leaf(&mut tape, &xs, x.to_vec(), true);
    let g = leaf(&mut tape, &[shape.c], gamma.to_vec(), true);
    let b = leaf(&mut tape, &[shape.c], beta.to_vec(), true);
    // Training blends the running statistics with momentum 1 from zero: they come out
    // as the batch's own mean and unbiased variance.
    let (mut batch_mean, mut batch_var) = (vec![0.0; shape.c], vec![0.0; shape.c]);
    let (running_mean, running_var) =
        running.map_or((vec![], vec![]), |(m, v)| (m.to_vec(), v.to_vec()));
    let stats = match running {
        None => BnStats::Batch {
            running_mean: &mut batch_mean,
            running_var: &mut batch_var,
            momentum: 1.0,
        },
        Some(_) => BnStats::Running {
            mean: &running_mean,
            var: &running_var,
        },
    };
    let y = batch_norm(&mut tape, xv, g, b, stats, BN_EPS).unwrap();
    let yv = tape.value(y).to_vec();
    tape.backward_with(y, dy.to_vec()).unwrap();
    BnReference {
        y: yv,
        mean_var_unbiased: running.is_none().then_some((batch_mean, batch_var)),
        dx: tape.grad(xv).unwrap().to_vec(),
        dgamma: tape.grad(g).unwrap().to_vec(),
        dbeta: tape.grad(b).unwrap().to_vec(),
    }
}

/// A training step's four wrappers in order: statistics (and the running update),
/// forward with the batch statistics, the parameter-gradient sums, the input gradient.
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
        batchnorm::cpu::update_running(&mut rmean64, &mean64, BN_MOMENTUM);
        batchnorm::cpu::update_running(&mut rvar64, &var_unbiased64, BN_MOMENTUM);
        let sd = (n, c, hw);
        let eps = BN_EPS as f32;

        let dev = HarnessDevice::new();
        let xb = dev.upload("x", &x).unwrap();
        let gb = dev.upload("gamma", &gamma).unwrap();
        let bb = dev.upload("beta", &beta).unwrap();
        let dyb = dev.upload("dy", &dy).unwrap();
        // updated in place, so not poisoned: the kernel reads them first
        let mut rmeanb = dev.upload("running_mean", &rmean).unwrap();
        let mut rvarb = dev.upload("running_var", &rvar).unwrap();
        let mut meanb = dev.alloc_scratch::<f32>("mean", c).unwrap();
        let mut varb = dev.alloc_scratch::<f32>("var", c).unwrap();
        let mut yb = dev.alloc_scratch::<f32>("y", len).unwrap();
        let mut sdyb = dev.alloc_scratch::<f32>("sum_dy", c).unwrap();
        let mut sdyxb = dev.alloc_scratch::<f32>("sum_dy_xhat", c).unwrap();
        let mut dxb = dev.alloc_scratch::<f32>("dx", len).unwrap();
        bn_cuda::batchnorm_stats(
            &dev,
            &shape,
            &dev.view(&xb),
            &mut dev.view_mut(&mut meanb),
            &mut dev.view_mut(&mut varb),
            &mut dev.view_mut(&mut rmeanb),
            &mut dev.view_mut(&mut rvarb),
            BN_MOMENTUM as f32,
        )
        .unwrap();
        bn_cuda::batchnorm_forward(
            &dev,
            &shape,
            &dev.view(&xb),
            &dev.view(&meanb),
            &dev.view(&varb),
            &dev.view(&gb),
            &dev.view(&bb),
            &mut dev.view_mut(&mut yb),
            eps,
        )
        .unwrap();
        bn_cuda::batchnorm_grad_sums(
            &dev,
            &shape,
            &dev.view(&xb),
            &dev.view(&dyb),
            &dev.view(&meanb),
            &dev.view(&varb),
            &mut dev.view_mut(&mut sdyb),
            &mut dev.view_mut(&mut sdyxb),
            eps,
        )
        .unwrap();
        bn_cuda::batchnorm_backward_input_train(
            &dev,
            &shape,
            &dev.view(&xb),
            &dev.view(&dyb),
            &dev.view(&meanb),
            &dev.view(&varb),
            &dev.view(&gb),
            &dev.view(&sdyb),
            &dev.view(&sdyxb),
            &mut dev.view_mut(&mut dxb),
            eps,
        )
        .unwrap();
        launched(
            &dev,
            &[
                "batchnorm_stats_f32",
                "batchnorm_forward_f32",
                "batchnorm_grad_sums_f32",
                "batchnorm_backward_input_train_f32",
            ],
        );

        let what = format!("batchnorm_stats_f32 {sd:?}");
        assert_matches(&format!("{what} mean"), &download(&dev, &meanb), &mean64);
        let m = (n * hw) as f64;
        let bessel = if m > 1.0 { m / (m - 1.0) } else { 1.0 };
        let var64: Vec<f64> = var_unbiased64.iter().map(|v| v / bessel).collect();
        assert_matches(&format!("{what} var"), &download(&dev, &varb), &var64);
        assert_matches(
            &format!("{what} running mean"),
            &download(&dev, &rmeanb),
            &rmean64,
        );
        assert_matches(
            &format!("{what} running var"),
            &download(&dev, &rvarb),
            &rvar64,
        );
        assert_matches(
            &format!("batchnorm_forward_f32 train {sd:?}"),
            &download(&dev, &yb),
            &want.y,
        );
        let what = format!("batchnorm_grad_sums_f32 {sd:?}");
        assert_matches(
            &format!("{what} dbeta"),
            &download(&dev, &sdyb),
            &want.dbeta,
        );
        assert_matches(
            &format!("{what} dgamma"),
            &download(&dev, &sdyxb),
            &want.dgamma,
        );
        assert_matches(
            &format!("batchnorm_backward_input_train_f32 {sd:?}"),
            &download(&dev, &dxb),
            &want.dx,
        );
    }
}

/// Evaluation mode (running statistics): forward, the input gradient PGD uses and the
/// parameter-gradient sums; on a ResNet-like shape whose x, y, dy, dx are each moved
/// once, coalesced.
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
        let eps = BN_EPS as f32;

        let dev = HarnessDevice::new();
        let xb = dev.upload("x", &x).unwrap();
        let meanb = dev.upload("mean", &mean).unwrap();
        let varb = dev.upload("var", &var).unwrap();
        let gb = dev.upload("gamma", &gamma).unwrap();
        let bb = dev.upload("beta", &beta).unwrap();
        let dyb = dev.upload("dy", &dy).unwrap();
        let mut yb = dev.alloc_scratch::<f32>("y", len).unwrap();
        let mut dxb = dev.alloc_scratch::<f32>("dx", len).unwrap();
        let mut sdyb = dev.alloc_scratch::<f32>("sum_dy", c).unwrap();
        let mut sdyxb = dev.alloc_scratch::<f32>("sum_dy_xhat", c).unwrap();
        bn_cuda::batchnorm_forward(
            &dev,
            &shape,
            &dev.view(&xb),
            &dev.view(&meanb),
            &dev.view(&varb),
            &dev.view(&gb),
            &dev.view(&bb),
            &mut dev.view_mut(&mut yb),
            eps,
        )
        .unwrap();
        bn_cuda::batchnorm_backward_input_eval(
            &dev,
            &shape,
            &dev.view(&dyb),
            &dev.view(&varb),
            &dev.view(&gb),
            &mut dev.view_mut(&mut dxb),
            eps,
        )
        .unwrap();
        bn_cuda::batchnorm_grad_sums(
            &dev,
            &shape,
            &dev.view(&xb),
            &dev.view(&dyb),
            &dev.view(&meanb),
            &dev.view(&varb),
            &mut dev.view_mut(&mut sdyb),
            &mut dev.view_mut(&mut sdyxb),
            eps,
        )
        .unwrap();
        let reports = launched(
            &dev,
            &[
                "batchnorm_forward_f32",
                "batchnorm_backward_input_eval_f32",
                "batchnorm_grad_sums_f32",
            ],
        );

        assert_matches(
            &format!("batchnorm_forward_f32 eval {sd:?}"),
            &download(&dev, &yb),
            &want.y,
        );
        assert_matches(
            &format!("batchnorm_backward_input_eval_f32 {sd:?}"),
            &download(&dev, &dxb),
            &want.dx,
        );
        let what = format!("batchnorm_grad_sums_f32 eval {sd:?}");
        assert_matches(
            &format!("{what} dbeta"),
            &download(&dev, &sdyb),
            &want.dbeta,
        );
        assert_matches(
            &format!("{what} dgamma"),
            &download(&dev, &sdyxb),
            &want.dgamma,
        );
        if len.is_multiple_of(8) {
            pin_once(&reports[0], "x", false, len);
            pin_once(&reports[0], "y", true, len);
            pin_once(&reports[1], "dy", false, len);
            pin_once(&reports[1], "dx", true, len);
        }
    }
}

/// The training-mode element-wise kernels move x, dy, y, dx once, coalesced.
#[test]
fn batchnorm_training_elementwise_kernels_move_each_tensor_once() {
    let shape = BnShape::new(2, 64, 64).unwrap();
    let (len, c) = (shape.len(), shape.c);
    let dev = HarnessDevice::new();
    let xb = dev.upload("x", &random(len, -1.0, 1.0, 1).0).unwrap();
    let dyb = dev.upload("dy", &random(len, -1.0, 1.0, 2).0).unwrap();
    let per_channel = |name: &str, seed| dev.upload(name, &random(c, 0.5, 1.0, seed).0).unwrap();
    let mean = per_channel("mean", 3);
    let var = per_channel("var", 4);
    let gamma = per_channel("gamma", 5);
    let sum_dy = per_channel("sum_dy", 6);
    let sum_dy_xhat = per_channel("sum_dy_xhat", 7);
    let mut dxb = dev.alloc_scratch::<f32>("dx", len).unwrap();
    bn_cuda::batchnorm_backward_input_train(
        &dev,
        &shape,
        &dev.view(&xb),
        &dev.view(&dyb),
        &dev.view(&mean),
        &dev.view(&var),
        &dev.view(&gamma),
        &dev.view(&sum_dy),
        &dev.view(&sum_dy_xhat),
        &mut dev.view_mut(&mut dxb),
        BN_EPS as f32,
    )
    .unwrap();
    let reports = launched(&dev, &["batchnorm_backward_input_train_f32"]);
    pin_once(&reports[0], "x", false, len);
    pin_once(&reports[0], "dy", false, len);
    pin_once(&reports[0], "dx", true, len);
}

/// Wrong lengths, a size of zero (the fields are public; a per-channel kernel would
/// launch one block for C = 0) and an element count that overflows are shape errors.
#[test]
fn batchnorm_wrappers_reject_wrong_shapes() {
    let shape = BnShape::new(2, 3, 5).unwrap();
    let dev = HarnessDevice::new();
    let x = dev.alloc_zeros::<f32>("x", shape.len()).unwrap();
    let per_channel = dev.alloc_zeros::<f32>("per_channel", shape.c).unwrap();
    let mut y_short = dev.alloc_zeros::<f32>("y", shape.len() - 1).unwrap();
    let forward = |shape: &BnShape, y: &mut HarnessBuffer<f32>| {
        let v = dev.view(&per_channel);
        bn_cuda::batchnorm_forward(
            &dev,
            shape,
            &dev.view(&x),
            &v,
            &v,
            &v,
            &v,
            &mut dev.view_mut(y),
            1e-5,
        )
    };
    assert_rejected(&dev, forward(&shape, &mut y_short), "y");
    let mut y = dev.alloc_zeros::<f32>("y", shape.len()).unwrap();
    assert_rejected(&dev, forward(&BnShape { c: 0, ..shape }, &mut y), "shape");
    let huge = BnShape {
        n: 1 << 40,
        c: 1 << 40,
        hw: 1,
    };
    assert_rejected(&dev, forward(&huge, &mut y), "n·h·w");
    let huge = BnShape {
        n: 1,
        hw: 1 << 30,
        ..huge
    };
    assert_rejected(&dev, forward(&huge, &mut y), "n·c·h·w");

    let mut stats: [HarnessBuffer<f32>; 4] =
        std::array::from_fn(|_| dev.alloc_zeros::<f32>("stat", shape.c).unwrap());
    let [mean, var, running_mean, running_var] = &mut stats;
    let mut var_long = dev.alloc_zeros::<f32>("var", shape.c + 1).unwrap();
    let r = bn_cuda::batchnorm_stats(
        &dev,
        &shape,
        &dev.view(&x),
        &mut dev.view_mut(mean),
        &mut dev.view_mut(&mut var_long),
        &mut dev.view_mut(running_mean),
        &mut dev.view_mut(running_var),
        0.1,
    );
    assert_rejected(&dev, r, "var");
    let r = bn_cuda::batchnorm_backward_input_eval(
        &dev,
        &shape,
        &dev.view(&x),
        &dev.view(var),
        &dev.view(&per_channel),
        &mut dev.view_mut(&mut y_short),
        1e-5,
    );
    assert_rejected(&dev, r, "dx");
}

// ---- cross-entropy ----

/// (N, K): one class, K < 32, K > 32 and not a multiple of the warp, N not a multiple of
/// the rows per block, N > the reduce block (several rows per thread).
const CE_SHAPES: &[(usize, usize)] = &[(1, 1), (3, 10), (9, 33), (17, 100), (300, 7)];

/// What the cross-entropy wrapper wrote.
struct CeResult {
    loss: Vec<f32>,
    dlogits: Vec<f32>,
    correct: Vec<i32>,
    loss_total: f32,
    correct_total: i32,
}

/// Runs the cross-entropy wrapper (both kernels) on fresh, poisoned outputs.
fn run_cross_entropy(
    n: usize,
    k: usize,
    logits: &[f32],
    labels: &[i32],
    reduction: Reduction,
) -> CeResult {
    let dev = HarnessDevice::new();
    let zb = dev.upload("logits", logits).unwrap();
    let lb = dev.upload("labels", labels).unwrap();
    let mut lossb = dev.alloc_scratch::<f32>("loss", n).unwrap();
    let mut dzb = dev.alloc_scratch::<f32>("dlogits", n * k).unwrap();
    let mut cb = dev.alloc_scratch::<i32>("correct", n).unwrap();
    let mut totalb = dev.alloc_scratch::<f32>("loss_total", 1).unwrap();
    let mut hitsb = dev.alloc_scratch::<i32>("correct_total", 1).unwrap();
    loss_cuda::cross_entropy(
        &dev,
        n,
        k,
        &dev.view(&zb),
        &dev.view(&lb),
        reduction,
        CrossEntropyOut {
            loss: &mut dev.view_mut(&mut lossb),
            dlogits: &mut dev.view_mut(&mut dzb),
            correct: &mut dev.view_mut(&mut cb),
            loss_total: &mut dev.view_mut(&mut totalb),
            correct_total: &mut dev.view_mut(&mut hitsb),
        },
    )
    .unwrap();
    launched(
        &dev,
        &["cross_entropy_rows_f32", "cross_entropy_reduce_f32"],
    );
    CeResult {
        loss: download(&dev, &lossb),
        dlogits: download(&dev, &dzb),
        correct: download(&dev, &cb),
        loss_total: download(&dev, &totalb)[0],
        correct_total: download(&dev, &hitsb)[0],
    }
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
            let zv = leaf(&mut tape, &[n, k], z64.clone(), true);
            let l = cross_entropy(&mut tape, zv, &labels, reduction).unwrap();
            let want_total = tape.value(l)[0];
            tape.backward(l).unwrap();
            let got = run_cross_entropy(n, k, &z, &labels_i32, reduction);
            let what = format!("cross_entropy_rows_f32 ({n}, {k}) {reduction:?}");
            assert_matches(&format!("{what} loss"), &got.loss, &losses64);
            assert_matches(
                &format!("{what} dlogits"),
                &got.dlogits,
                tape.grad(zv).unwrap(),
            );
            assert_eq!(got.correct, want_hits, "{what} correct");
            let what = format!("cross_entropy_reduce_f32 ({n}, {k}) {reduction:?}");
            assert_matches(&what, &[got.loss_total], &[want_total]);
            assert_eq!(
                got.correct_total,
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
        let got = run_cross_entropy(rows.len(), k, &z, &labels, Reduction::Sum);
        let want: Vec<i32> = best.iter().map(|&b| i32::from(b == label)).collect();
        assert_eq!(got.correct, want, "label {label}, CPU argmax {best:?}");
        assert_eq!(got.correct_total, want.iter().sum::<i32>());
    }
}

/// Every output is checked before the first launch: a wrong total (written only by the
/// second kernel) stops the rows kernel too.
#[test]
fn cross_entropy_wrapper_rejects_wrong_lengths_before_either_launch() {
    let (n, k) = (3, 4);
    let dev = HarnessDevice::new();
    let zb = dev.alloc_zeros::<f32>("logits", n * k).unwrap();
    let lb = dev.alloc_zeros::<i32>("labels", n).unwrap();
    let short_labels = dev.alloc_zeros::<i32>("labels", n - 1).unwrap();
    let mut lossb = dev.alloc_zeros::<f32>("loss", n).unwrap();
    let mut dzb = dev.alloc_zeros::<f32>("dlogits", n * k).unwrap();
    let mut cb = dev.alloc_zeros::<i32>("correct", n).unwrap();
    let mut totalb = dev.alloc_zeros::<f32>("loss_total", 1).unwrap();
    let mut hits_long = dev.alloc_zeros::<i32>("correct_total", 2).unwrap();
    let mut hitsb = dev.alloc_zeros::<i32>("correct_total", 1).unwrap();
    let mut run = |labels: &HarnessBuffer<i32>, hits: &mut HarnessBuffer<i32>| {
        loss_cuda::cross_entropy(
            &dev,
            n,
            k,
            &dev.view(&zb),
            &dev.view(labels),
            Reduction::Mean,
            CrossEntropyOut {
                loss: &mut dev.view_mut(&mut lossb),
                dlogits: &mut dev.view_mut(&mut dzb),
                correct: &mut dev.view_mut(&mut cb),
                loss_total: &mut dev.view_mut(&mut totalb),
                correct_total: &mut dev.view_mut(hits),
            },
        )
    };
    assert_rejected(&dev, run(&lb, &mut hits_long), "correct total");
    assert_rejected(&dev, run(&short_labels, &mut hitsb), "labels");
}

// ---- SGD ----

/// Parameter tensors of odd sizes (a bias of 1, a 3×3 kernel, …) laid out in one flat
/// buffer, as a model keeps them for the one-launch update.
const SGD_TENSORS: &[usize] = &[1, 9, 64, 3, 577, 10];

/// Runs the SGD wrapper over `p`, `g`, `v` (updated in place); returns the device with
/// its launch report, and the new `p` and `v`.
fn run_sgd(
    p: &[f32],
    g: &[f32],
    v: &[f32],
    (lr, momentum, weight_decay): (f32, f32, f32),
) -> (HarnessDevice, Vec<f32>, Vec<f32>) {
    let dev = HarnessDevice::new();
    let mut pb = dev.upload("p", p).unwrap();
    let gb = dev.upload("g", g).unwrap();
    let mut vb = dev.upload("v", v).unwrap();
    optim_cuda::sgd_update(
        &dev,
        &mut dev.view_mut(&mut pb),
        &dev.view(&gb),
        &mut dev.view_mut(&mut vb),
        lr,
        momentum,
        weight_decay,
    )
    .unwrap();
    let (p, v) = (download(&dev, &pb), download(&dev, &vb));
    (dev, p, v)
}

#[test]
fn sgd_one_launch_over_a_flat_buffer_matches_per_tensor_updates() {
    let len: usize = SGD_TENSORS.iter().sum();
    let (p, p64) = random(len, -1.0, 1.0, 500);
    let (g, g64) = random(len, -1.0, 1.0, 501);
    let (v, v64) = random(len, -1.0, 1.0, 502);
    let (lr, momentum, weight_decay) = (0.1f32, 0.9f32, 5e-4f32);
    let step = SgdStep {
        lr,
        momentum,
        weight_decay,
    };
    let (mut want_p, mut want_v) = (Vec::new(), Vec::new());
    let mut offset = 0;
    for &size in SGD_TENSORS {
        let range = offset..offset + size;
        let (mut p, mut v) = (p64[range.clone()].to_vec(), v64[range.clone()].to_vec());
        f64::sgd_update(&(), &mut p, &&g64[range], &mut v, &step).unwrap();
        want_p.extend(p);
        want_v.extend(v);
        offset += size;
    }

    let (dev, got_p, got_v) = run_sgd(&p, &g, &v, (lr, momentum, weight_decay));
    launched(&dev, &["sgd_update_f32"]);
    assert_matches("sgd_update_f32 p", &got_p, &want_p);
    assert_matches("sgd_update_f32 v", &got_v, &want_v);
}

#[test]
fn sgd_moves_each_buffer_once_coalesced() {
    for len in [4096, 64 * 3 * 3 * 64 + 64] {
        let [p, g, v] = [1, 2, 3].map(|seed| random(len, -1.0, 1.0, seed).0);
        let (dev, _, _) = run_sgd(&p, &g, &v, (0.1, 0.9, 5e-4));
        let reports = launched(&dev, &["sgd_update_f32"]);
        for (buffer, store) in [
            ("p", false),
            ("g", false),
            ("v", false),
            ("p", true),
            ("v", true),
        ] {
            pin_once(&reports[0], buffer, store, len);
        }
    }
}

#[test]
fn sgd_wrapper_rejects_wrong_lengths() {
    let dev = HarnessDevice::new();
    let mut p = dev.alloc_zeros::<f32>("p", 10).unwrap();
    let g = dev.alloc_zeros::<f32>("g", 10).unwrap();
    let mut v_short = dev.alloc_zeros::<f32>("v", 9).unwrap();
    let r = optim_cuda::sgd_update(
        &dev,
        &mut dev.view_mut(&mut p),
        &dev.view(&g),
        &mut dev.view_mut(&mut v_short),
        0.1,
        0.9,
        0.0,
    );
    assert_rejected(&dev, r, "velocity");
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
            let mut want = pgd_cpu::random_start(&x0, &noise, eps);

            let dev = HarnessDevice::new();
            let mut startb = dev.alloc_scratch::<f32>("start", len).unwrap();
            let x0b = dev.upload("x0", &x0).unwrap();
            let nb = dev.upload("noise", &noise).unwrap();
            pgd_cuda::pgd_random_start(
                &dev,
                eps,
                &mut dev.view_mut(&mut startb),
                &dev.view(&x0b),
                &dev.view(&nb),
            )
            .unwrap();
            let x_start = download(&dev, &startb);
            assert_eq!(x_start, want, "pgd_random_start_f32 len {len} {goal:?}");

            // the step updates x in place: an input buffer (not poisoned), holding the
            // start
            let mut xb = dev.upload("x", &x_start).unwrap();
            for k in 0..3 {
                let (_, g) = pgd_inputs(len, seed + 2 + k);
                pgd_cpu::step(&mut want, &g, &x0, step_direction(&config), eps);
                let gb = dev.upload("grad", &g).unwrap();
                pgd_cuda::pgd_step(
                    &dev,
                    step_direction(&config),
                    eps,
                    &mut dev.view_mut(&mut xb),
                    &dev.view(&gb),
                    &dev.view(&x0b),
                )
                .unwrap();
                let got = download(&dev, &xb);
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
            let reports = launched(
                &dev,
                &[
                    "pgd_random_start_f32",
                    "pgd_step_f32",
                    "pgd_step_f32",
                    "pgd_step_f32",
                ],
            );
            if len % 8 == 0 {
                pin_once(&reports[0], "x0", false, len);
                pin_once(&reports[0], "noise", false, len);
                pin_once(&reports[0], "start", true, len);
                for report in &reports[1..] {
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

#[test]
fn pgd_wrappers_reject_wrong_lengths() {
    let dev = HarnessDevice::new();
    let mut x = dev.alloc_zeros::<f32>("x", 6).unwrap();
    let x0_short = dev.alloc_zeros::<f32>("x0", 5).unwrap();
    let g = dev.alloc_zeros::<f32>("grad", 6).unwrap();
    let r = pgd_cuda::pgd_step(
        &dev,
        -1.0,
        0.1,
        &mut dev.view_mut(&mut x),
        &dev.view(&g),
        &dev.view(&x0_short),
    );
    assert_rejected(&dev, r, "x0");
    let noise_long = dev.alloc_zeros::<f32>("noise", 7).unwrap();
    let r = pgd_cuda::pgd_random_start(
        &dev,
        0.1,
        &mut dev.view_mut(&mut x),
        &dev.view(&g),
        &dev.view(&noise_long),
    );
    assert_rejected(&dev, r, "noise");
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
        let draws = crop_flip_draws(n, &mut StdRng::seed_from_u64(seed));
        let want = f32::crop_flip(&(), shape, &&x[..], &draws).unwrap();

        let dev = HarnessDevice::new();
        let srcb = dev.upload("src", &x).unwrap();
        let mut dstb = dev.alloc_scratch::<f32>("dst", len).unwrap();
        let pb = dev.upload("params", &crop_flip_params(&draws)).unwrap();
        augment::cuda::crop_flip_batch(
            &dev,
            shape,
            &dev.view(&srcb),
            &mut dev.view_mut(&mut dstb),
            &dev.view(&pb),
        )
        .unwrap();
        let reports = launched(&dev, &["augment_crop_flip_f32"]);
        assert_eq!(
            download(&dev, &dstb),
            want,
            "augment_crop_flip_f32 {shape:?}"
        );
        if len % 8 == 0 {
            pin_once(&reports[0], "dst", true, len);
        }
        if n >= 16 {
            assert!(draws.iter().any(|t| t.flip) && draws.iter().any(|t| !t.flip));
        }
    }
}

#[test]
fn augment_wrapper_rejects_wrong_lengths_and_overflowing_shapes() {
    let shape = [2, 3, 4, 5];
    let len = 2 * 3 * 4 * 5;
    let dev = HarnessDevice::new();
    let src = dev.alloc_zeros::<f32>("src", len).unwrap();
    let mut dst = dev.alloc_zeros::<f32>("dst", len).unwrap();
    let params_short = dev.alloc_zeros::<i32>("params", 5).unwrap();
    let mut run = |shape| {
        augment::cuda::crop_flip_batch(
            &dev,
            shape,
            &dev.view(&src),
            &mut dev.view_mut(&mut dst),
            &dev.view(&params_short),
        )
    };
    assert_rejected(&dev, run(shape), "params");
    assert_rejected(&dev, run([1 << 40, 1 << 40, 1, 1]), "n·c·h·w");
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
        let xv = leaf(&mut tape, &shape, x64, true);
        let mean64 = mean.iter().map(|&m| f64::from(m)).collect();
        let stdev64 = stdev.iter().map(|&s| f64::from(s)).collect();
        let (mv, sv) = (
            leaf(&mut tape, &[c], mean64, false),
            leaf(&mut tape, &[c], stdev64, false),
        );
        let y = normalize::normalize(&mut tape, xv, mv, sv).unwrap();
        let want_y = tape.value(y).to_vec();
        tape.backward_with(y, dy64).unwrap();

        let dev = HarnessDevice::new();
        let xb = dev.upload("x", &x).unwrap();
        let mb = dev.upload("mean", &mean).unwrap();
        let sb = dev.upload("stdev", &stdev).unwrap();
        let dyb = dev.upload("dy", &dy).unwrap();
        let mut yb = dev.alloc_scratch::<f32>("y", len).unwrap();
        let mut dxb = dev.alloc_scratch::<f32>("dx", len).unwrap();
        normalize_cuda::normalize_forward(
            &dev,
            c,
            hw,
            &dev.view(&xb),
            &dev.view(&mb),
            &dev.view(&sb),
            &mut dev.view_mut(&mut yb),
        )
        .unwrap();
        normalize_cuda::normalize_backward(
            &dev,
            c,
            hw,
            &dev.view(&dyb),
            &dev.view(&sb),
            &mut dev.view_mut(&mut dxb),
        )
        .unwrap();
        let reports = launched(&dev, &["normalize_forward_f32", "normalize_backward_f32"]);
        assert_matches(
            &format!("normalize_forward_f32 {shape:?}"),
            &download(&dev, &yb),
            &want_y,
        );
        assert_matches(
            &format!("normalize_backward_f32 {shape:?}"),
            &download(&dev, &dxb),
            tape.grad(xv).unwrap(),
        );
        if len % 8 == 0 {
            pin_once(&reports[0], "x", false, len);
            pin_once(&reports[0], "y", true, len);
            pin_once(&reports[1], "dy", false, len);
            pin_once(&reports[1], "dx", true, len);
        }
    }
}

#[test]
fn normalize_wrappers_reject_partial_images_and_wrong_lengths() {
    let (c, hw) = (3, 4);
    let dev = HarnessDevice::new();
    let x = dev.alloc_zeros::<f32>("x", 2 * c * hw + 1).unwrap();
    let stats = dev.alloc_zeros::<f32>("stats", c).unwrap();
    let mut y = dev.alloc_zeros::<f32>("y", 2 * c * hw + 1).unwrap();
    let r = normalize_cuda::normalize_forward(
        &dev,
        c,
        hw,
        &dev.view(&x),
        &dev.view(&stats),
        &dev.view(&stats),
        &mut dev.view_mut(&mut y),
    );
    assert_rejected(&dev, r, "x");
    let dy = dev.alloc_zeros::<f32>("dy", 2 * c * hw).unwrap();
    let std_short = dev.alloc_zeros::<f32>("stdev", c - 1).unwrap();
    let mut dx = dev.alloc_zeros::<f32>("dx", 2 * c * hw).unwrap();
    let r = normalize_cuda::normalize_backward(
        &dev,
        c,
        hw,
        &dev.view(&dy),
        &dev.view(&std_short),
        &mut dev.view_mut(&mut dx),
    );
    assert_rejected(&dev, r, "std");
}

#[test]
fn add_kernel_matches_the_tape_op() {
    for (i, len) in [1usize, 3 * 5 * 7, 2 * 64 * 8 * 8].into_iter().enumerate() {
        let seed = 900 + 10 * i as u64;
        let (a, a64) = random(len, -1.0, 1.0, seed);
        let (b, b64) = random(len, -1.0, 1.0, seed + 1);
        let mut tape = Tape::<f64>::new();
        let av = leaf(&mut tape, &[len], a64, false);
        let bv = leaf(&mut tape, &[len], b64, false);
        let y = add_op::add(&mut tape, av, bv).unwrap();

        let dev = HarnessDevice::new();
        let ab = dev.upload("a", &a).unwrap();
        let bb = dev.upload("b", &b).unwrap();
        let mut yb = dev.alloc_scratch::<f32>("y", len).unwrap();
        add_cuda::add_forward(
            &dev,
            &dev.view(&ab),
            &dev.view(&bb),
            &mut dev.view_mut(&mut yb),
        )
        .unwrap();
        let reports = launched(&dev, &["add_forward_f32"]);
        assert_matches(
            &format!("add_forward_f32 len {len}"),
            &download(&dev, &yb),
            tape.value(y),
        );
        if len % 8 == 0 {
            pin_once(&reports[0], "a", false, len);
            pin_once(&reports[0], "b", false, len);
            pin_once(&reports[0], "y", true, len);
        }
    }
}

#[test]
fn add_wrapper_rejects_wrong_lengths() {
    let dev = HarnessDevice::new();
    let a = dev.alloc_zeros::<f32>("a", 8).unwrap();
    let b_short = dev.alloc_zeros::<f32>("b", 7).unwrap();
    let mut y = dev.alloc_zeros::<f32>("y", 8).unwrap();
    let r = add_cuda::add_forward(
        &dev,
        &dev.view(&a),
        &dev.view(&b_short),
        &mut dev.view_mut(&mut y),
    );
    assert_rejected(&dev, r, "b");
}

// ---- pointwise (the smooth baseline activations) ----

/// Every smooth activation, forward and backward, against the f64 tape op: inputs over
/// [−8, 8] (both branches of ELU and Softplus, GELU's and SiLU's tails), lengths that do
/// and do not fill a block, each tensor moved once.
#[test]
fn pointwise_kernels_match_the_tape_op_and_move_each_tensor_once() {
    use sparta::ops::pointwise::{cuda as pointwise_cuda, tape::pointwise, Pointwise};
    let kinds = [
        Pointwise::Elu,
        Pointwise::Gelu,
        Pointwise::Silu,
        Pointwise::Softplus,
    ];
    for (k, kind) in kinds.into_iter().enumerate() {
        for (i, len) in [1usize, 255, 1024, 3001].into_iter().enumerate() {
            let seed = 40 + 10 * k as u64 + i as u64;
            let (x, x64) = random(len, -8.0, 8.0, seed);
            let (dy, dy64) = random(len, -1.0, 1.0, seed + 100);
            let mut tape = Tape::<f64>::new();
            let xv = leaf(&mut tape, &[len], x64, true);
            let y = pointwise(&mut tape, xv, kind).unwrap();
            tape.backward_with(y, dy64).unwrap();
            let what = |t: &str| format!("pointwise {kind:?} len {len} {t}");

            let dev = HarnessDevice::new();
            let xb = dev.upload("x", &x).unwrap();
            let dyb = dev.upload("dy", &dy).unwrap();
            let mut yb = dev.alloc_scratch::<f32>("y", len).unwrap();
            let mut dxb = dev.alloc_scratch::<f32>("dx", len).unwrap();
            pointwise_cuda::pointwise_forward(
                &dev,
                kind,
                &dev.view(&xb),
                &mut dev.view_mut(&mut yb),
            )
            .unwrap();
            pointwise_cuda::pointwise_backward(
                &dev,
                kind,
                &dev.view(&xb),
                &dev.view(&dyb),
                &mut dev.view_mut(&mut dxb),
            )
            .unwrap();
            let reports = launched(&dev, &["pointwise_forward_f32", "pointwise_backward_f32"]);
            assert_matches(&what("y"), &download(&dev, &yb), tape.value(y));
            assert_matches(&what("dx"), &download(&dev, &dxb), tape.grad(xv).unwrap());
            if len % 8 == 0 {
                pin_once(&reports[0], "x", false, len);
                pin_once(&reports[0], "y", true, len);
                pin_once(&reports[1], "dy", false, len);
                pin_once(&reports[1], "dx", true, len);
            }
        }
    }
}

#[test]
fn pointwise_wrappers_reject_wrong_lengths() {
    use sparta::ops::pointwise::{cuda as pointwise_cuda, Pointwise};
    let dev = HarnessDevice::new();
    let x = dev.alloc_zeros::<f32>("x", 8).unwrap();
    let mut y_short = dev.alloc_zeros::<f32>("y", 7).unwrap();
    let r = pointwise_cuda::pointwise_forward(
        &dev,
        Pointwise::Gelu,
        &dev.view(&x),
        &mut dev.view_mut(&mut y_short),
    );
    assert_rejected(&dev, r, "y");
}
