//! The training-step wrappers (batch norm, cross-entropy, SGD, PGD, augmentation,
//! normalization, the residual add, the pointwise activations) against the f64 CPU reference: on the CPU kernel
//! harness always (the small cases), on a GPU in the `gpu_*` tests (all cases,
//! ResNet-sized ones too; ignored unless run with `--ignored`). f32 results must be within
//! 1e-5 of the reference, relative to the reference's largest magnitude; PGD and the
//! augmentation must be bit-exact.

mod gpu_support;
mod harness_support;

use gpu_support::gpu;
use harness_support::device::HarnessDevice;
use harness_support::{assert_matches, download, scratch, upload_f32};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::attack::pgd::{self, argmax_rows, step_direction, Goal, PgdConfig};
use sparta::autograd::{Tape, Var};
use sparta::data::augment::{self, crop_flip_draws, crop_flip_params, AugmentKernels};
use sparta::ops::add::{self as add_op, cuda as add_cuda};
use sparta::ops::batchnorm::{self, batch_norm, cuda as bn_cuda, BnShape, BnStats};
use sparta::ops::loss::{self, cross_entropy, cuda as loss_cuda, Reduction};
use sparta::ops::normalize::{self, cuda as normalize_cuda};
use sparta::ops::pgd::{cpu as pgd_cpu, cuda as pgd_cuda};
use sparta::optim::cuda as optim_cuda;
use sparta::optim::sgd::{SgdKernels, SgdStep};
use sparta::KernelDevice;

/// A leaf of the f64 reference tape.
fn leaf(tape: &mut Tape<'_, f64>, shape: &[usize], value: Vec<f64>, requires_grad: bool) -> Var {
    tape.leaf(shape, value, requires_grad).unwrap()
}

fn random(rng: &mut StdRng, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..len)
        .map(|_| f64::from(rng.random_range(lo..hi) as f32))
        .collect()
}

const BN_EPS: f64 = 1e-5;

/// (N, C, H·W); the harness runs the first [`BN_HARNESS_CASES`].
const BN_CASES: &[(usize, usize, usize)] = &[(5, 20, 1), (1, 3, 1), (8, 16, 64), (4, 64, 1024)];
const BN_HARNESS_CASES: usize = 3;

#[test]
fn batchnorm_train_and_eval_match_cpu() {
    check_batchnorm(&HarnessDevice::new(), &BN_CASES[..BN_HARNESS_CASES]);
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_batchnorm_train_and_eval_match_cpu() {
    let gpu = gpu();
    check_batchnorm(&gpu, BN_CASES);
}

fn check_batchnorm<D: KernelDevice>(dev: &D, cases: &[(usize, usize, usize)]) {
    let mut rng = StdRng::seed_from_u64(7);
    for &(n, c, hw) in cases {
        let shape = BnShape::new(n, c, hw).unwrap();
        let len = shape.len();
        let x = random(&mut rng, len, -1.0, 3.0);
        let gamma = random(&mut rng, c, 0.5, 1.5);
        let beta = random(&mut rng, c, -1.0, 1.0);
        let dy = random(&mut rng, len, -1.0, 1.0);
        let running_mean = random(&mut rng, c, -1.0, 1.0);
        let running_var = random(&mut rng, c, 0.5, 2.0);
        for train in [true, false] {
            let mut tape = Tape::<f64>::new();
            let xv = leaf(&mut tape, &[n, c, hw], x.clone(), true);
            let gv = leaf(&mut tape, &[c], gamma.clone(), true);
            let bv = leaf(&mut tape, &[c], beta.clone(), true);
            // Training blends the running statistics with momentum 1 from zero: they
            // come out as the batch's mean and unbiased variance.
            let (mut batch_mean, mut batch_var) = (vec![0.0; c], vec![0.0; c]);
            let stats = if train {
                BnStats::Batch {
                    running_mean: &mut batch_mean,
                    running_var: &mut batch_var,
                    momentum: 1.0,
                }
            } else {
                BnStats::Running {
                    mean: &running_mean,
                    var: &running_var,
                }
            };
            let y = batch_norm(&mut tape, xv, gv, bv, stats, BN_EPS).unwrap();
            let want_y = tape.value(y).to_vec();
            tape.backward_with(y, dy.clone()).unwrap();

            let x_d = upload_f32(dev, "x", &x);
            let g_d = upload_f32(dev, "gamma", &gamma);
            let b_d = upload_f32(dev, "beta", &beta);
            let dy_d = upload_f32(dev, "dy", &dy);
            let mut rmean_d = upload_f32(dev, "running_mean", &running_mean);
            let mut rvar_d = upload_f32(dev, "running_var", &running_var);
            let mut mean_d = scratch(dev, "mean", c);
            let mut var_d = scratch(dev, "var", c);
            let mut y_d = scratch(dev, "y", len);
            let mut dx_d = scratch(dev, "dx", len);
            let eps = BN_EPS as f32;
            if train {
                bn_cuda::batchnorm_stats(
                    dev,
                    &shape,
                    &dev.view(&x_d),
                    &mut dev.view_mut(&mut mean_d),
                    &mut dev.view_mut(&mut var_d),
                    &mut dev.view_mut(&mut rmean_d),
                    &mut dev.view_mut(&mut rvar_d),
                    0.1,
                )
                .unwrap();
                let (mut want_rm, mut want_rv) = (running_mean.clone(), running_var.clone());
                batchnorm::cpu::update_running(&mut want_rm, &batch_mean, 0.1);
                batchnorm::cpu::update_running(&mut want_rv, &batch_var, 0.1);
                assert_matches("running mean", &download(dev, &rmean_d), &want_rm);
                assert_matches("running var", &download(dev, &rvar_d), &want_rv);
            }
            let (stat_mean, stat_var) = if train {
                (&mean_d, &var_d)
            } else {
                (&rmean_d, &rvar_d)
            };
            bn_cuda::batchnorm_forward(
                dev,
                &shape,
                &dev.view(&x_d),
                &dev.view(stat_mean),
                &dev.view(stat_var),
                &dev.view(&g_d),
                &dev.view(&b_d),
                &mut dev.view_mut(&mut y_d),
                eps,
            )
            .unwrap();
            assert_matches("y", &download(dev, &y_d), &want_y);
            let mut sdy_d = scratch(dev, "sum_dy", c);
            let mut sdyx_d = scratch(dev, "sum_dy_xhat", c);
            bn_cuda::batchnorm_grad_sums(
                dev,
                &shape,
                &dev.view(&x_d),
                &dev.view(&dy_d),
                &dev.view(stat_mean),
                &dev.view(stat_var),
                &mut dev.view_mut(&mut sdy_d),
                &mut dev.view_mut(&mut sdyx_d),
                eps,
            )
            .unwrap();
            assert_matches("dbeta", &download(dev, &sdy_d), tape.grad(bv).unwrap());
            assert_matches("dgamma", &download(dev, &sdyx_d), tape.grad(gv).unwrap());
            if train {
                bn_cuda::batchnorm_backward_input_train(
                    dev,
                    &shape,
                    &dev.view(&x_d),
                    &dev.view(&dy_d),
                    &dev.view(&mean_d),
                    &dev.view(&var_d),
                    &dev.view(&g_d),
                    &dev.view(&sdy_d),
                    &dev.view(&sdyx_d),
                    &mut dev.view_mut(&mut dx_d),
                    eps,
                )
                .unwrap();
            } else {
                bn_cuda::batchnorm_backward_input_eval(
                    dev,
                    &shape,
                    &dev.view(&dy_d),
                    &dev.view(&rvar_d),
                    &dev.view(&g_d),
                    &mut dev.view_mut(&mut dx_d),
                    eps,
                )
                .unwrap();
            }
            assert_matches("dx", &download(dev, &dx_d), tape.grad(xv).unwrap());
        }
    }
}

/// (N, K); the harness runs the first [`CE_HARNESS_CASES`].
const CE_CASES: &[(usize, usize)] = &[(1, 1), (37, 200), (128, 10), (1000, 3)];
const CE_HARNESS_CASES: usize = 2;

#[test]
fn cross_entropy_matches_cpu() {
    check_cross_entropy(&HarnessDevice::new(), &CE_CASES[..CE_HARNESS_CASES]);
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_cross_entropy_matches_cpu() {
    let gpu = gpu();
    check_cross_entropy(&gpu, CE_CASES);
}

fn check_cross_entropy<D: KernelDevice>(dev: &D, cases: &[(usize, usize)]) {
    let mut rng = StdRng::seed_from_u64(8);
    for &(n, k) in cases {
        let z = random(&mut rng, n * k, -5.0, 5.0);
        let labels: Vec<usize> = (0..n).map(|_| rng.random_range(0..k)).collect();
        let labels_i32: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
        let z32: Vec<f32> = z.iter().map(|&v| v as f32).collect();
        let want_correct: Vec<i32> = argmax_rows(&z32, k)
            .iter()
            .zip(&labels)
            .map(|(b, l)| i32::from(b == l))
            .collect();
        let (_, want_loss) = loss::softmax_losses(&z, k, &labels);
        for reduction in [Reduction::Mean, Reduction::Sum] {
            let mut tape = Tape::<f64>::new();
            let zv = leaf(&mut tape, &[n, k], z.clone(), true);
            let l = cross_entropy(&mut tape, zv, &labels, reduction).unwrap();
            let want_total = tape.value(l)[0];
            tape.backward(l).unwrap();

            let z_d = upload_f32(dev, "logits", &z);
            let labels_d = dev.upload("labels", &labels_i32).unwrap();
            let mut loss_d = scratch(dev, "loss", n);
            let mut dz_d = scratch(dev, "dlogits", n * k);
            let mut correct_d = dev.alloc_scratch::<i32>("correct", n).unwrap();
            let mut total_d = scratch(dev, "loss_total", 1);
            let mut hits_d = dev.alloc_scratch::<i32>("correct_total", 1).unwrap();
            loss_cuda::cross_entropy(
                dev,
                n,
                k,
                &dev.view(&z_d),
                &dev.view(&labels_d),
                reduction,
                loss_cuda::CrossEntropyOut {
                    loss: &mut dev.view_mut(&mut loss_d),
                    dlogits: &mut dev.view_mut(&mut dz_d),
                    correct: &mut dev.view_mut(&mut correct_d),
                    loss_total: &mut dev.view_mut(&mut total_d),
                    correct_total: &mut dev.view_mut(&mut hits_d),
                },
            )
            .unwrap();
            assert_matches("loss", &download(dev, &loss_d), &want_loss);
            assert_matches("dlogits", &download(dev, &dz_d), tape.grad(zv).unwrap());
            assert_matches("loss total", &download(dev, &total_d), &[want_total]);
            assert_eq!(download(dev, &correct_d), want_correct);
            assert_eq!(download(dev, &hits_d)[0], want_correct.iter().sum::<i32>());
        }
    }
}

/// Tensors of a model in one flat buffer: a few small odd ones (the harness), and
/// ResNet-like ones (conv weights, BN vectors) with an odd tail.
const SGD_SMALL: &[usize] = &[27, 4, 4, 7];
const SGD_RESNET: &[usize] = &[
    64 * 3 * 3 * 3,
    64,
    64,
    128 * 64 * 3 * 3,
    128,
    10 * 512,
    10,
    7,
];

#[test]
fn sgd_update_of_a_flat_buffer_matches_cpu() {
    check_sgd(&HarnessDevice::new(), SGD_SMALL);
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_sgd_update_of_a_flat_buffer_matches_cpu() {
    let gpu = gpu();
    check_sgd(&gpu, SGD_RESNET);
}

fn check_sgd<D: KernelDevice>(dev: &D, sizes: &[usize]) {
    let mut rng = StdRng::seed_from_u64(9);
    let len: usize = sizes.iter().sum();
    let p = random(&mut rng, len, -1.0, 1.0);
    let g = random(&mut rng, len, -1.0, 1.0);
    let v = random(&mut rng, len, -1.0, 1.0);
    let (lr, momentum, weight_decay) = (0.05f32, 0.9f32, 5e-4f32);
    let step = SgdStep {
        lr,
        momentum,
        weight_decay,
    };
    let (mut want_p, mut want_v) = (Vec::new(), Vec::new());
    let mut offset = 0;
    for &size in sizes {
        let range = offset..offset + size;
        let (mut p, mut v) = (p[range.clone()].to_vec(), v[range.clone()].to_vec());
        f64::sgd_update(&(), &mut p, &&g[range], &mut v, &step).unwrap();
        want_p.extend(p);
        want_v.extend(v);
        offset += size;
    }
    let mut p_d = upload_f32(dev, "p", &p);
    let g_d = upload_f32(dev, "g", &g);
    let mut v_d = upload_f32(dev, "v", &v);
    optim_cuda::sgd_update(
        dev,
        &mut dev.view_mut(&mut p_d),
        &dev.view(&g_d),
        &mut dev.view_mut(&mut v_d),
        lr,
        momentum,
        weight_decay,
    )
    .unwrap();
    assert_matches("p", &download(dev, &p_d), &want_p);
    assert_matches("v", &download(dev, &v_d), &want_v);
}

#[test]
fn pgd_random_start_and_steps_match_cpu_bit_for_bit() {
    check_pgd(&HarnessDevice::new(), 2 * 3 * 8 * 8 + 5, 3);
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_pgd_random_start_and_steps_match_cpu_bit_for_bit() {
    let gpu = gpu();
    check_pgd(&gpu, 64 * 3 * 32 * 32 + 5, 10);
}

fn check_pgd<D: KernelDevice>(dev: &D, len: usize, iterations: usize) {
    let mut rng = StdRng::seed_from_u64(10);
    for goal in [Goal::Targeted, Goal::Untargeted] {
        let config = PgdConfig {
            goal,
            ..PgdConfig::paper(iterations)
        };
        let eps = config.epsilon;
        let x0: Vec<f32> = (0..len)
            .map(|_| rng.random_range(-0.2f32..1.2).clamp(0.0, 1.0))
            .collect();
        let noise = pgd::random_start_noise(&mut rng, len, eps);
        let mut want = pgd_cpu::random_start(&x0, &noise, eps);
        let x0_d = dev.upload("x0", &x0).unwrap();
        let noise_d = dev.upload("noise", &noise).unwrap();
        // zeros, not scratch: the steps then update it in place
        let mut x_d = dev.alloc_zeros::<f32>("x", len).unwrap();
        pgd_cuda::pgd_random_start(
            dev,
            eps,
            &mut dev.view_mut(&mut x_d),
            &dev.view(&x0_d),
            &dev.view(&noise_d),
        )
        .unwrap();
        assert!(download(dev, &x_d) == want, "random start {goal:?}");
        for k in 0..config.iterations {
            let g: Vec<f32> = (0..len)
                .map(|i| {
                    if i % 7 == 0 {
                        0.0
                    } else {
                        rng.random_range(-1.0f32..1.0)
                    }
                })
                .collect();
            pgd_cpu::step(&mut want, &g, &x0, step_direction(&config), eps);
            let g_d = dev.upload("grad", &g).unwrap();
            pgd_cuda::pgd_step(
                dev,
                step_direction(&config),
                eps,
                &mut dev.view_mut(&mut x_d),
                &dev.view(&g_d),
                &dev.view(&x0_d),
            )
            .unwrap();
            assert!(download(dev, &x_d) == want, "step {k} {goal:?}");
        }
    }
}

/// (seed, [N, C, H, W]); the harness runs the first [`AUGMENT_HARNESS_CASES`].
const AUGMENT_CASES: &[(u64, [usize; 4])] = &[
    (12, [7, 3, 5, 9]),
    (13, [3, 1, 1, 1]),
    (11, [128, 3, 32, 32]),
];
const AUGMENT_HARNESS_CASES: usize = 2;

#[test]
fn augment_crop_flip_equals_host_batch_for_the_same_seed() {
    check_augment(
        &HarnessDevice::new(),
        &AUGMENT_CASES[..AUGMENT_HARNESS_CASES],
    );
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_augment_crop_flip_equals_host_batch_for_the_same_seed() {
    let gpu = gpu();
    check_augment(&gpu, AUGMENT_CASES);
}

fn check_augment<D: KernelDevice>(dev: &D, cases: &[(u64, [usize; 4])]) {
    for &(seed, shape) in cases {
        let [n, c, h, w] = shape;
        let len = n * c * h * w;
        let mut rng = StdRng::seed_from_u64(seed);
        let x: Vec<f32> = (0..len).map(|_| rng.random_range(0.0f32..1.0)).collect();
        let draws = crop_flip_draws(n, &mut StdRng::seed_from_u64(seed));
        let want = f32::crop_flip(&(), shape, &&x[..], &draws).unwrap();
        let params = crop_flip_params(&draws);
        let src_d = dev.upload("src", &x).unwrap();
        let params_d = dev.upload("params", &params).unwrap();
        let mut dst_d = scratch(dev, "dst", len);
        augment::cuda::crop_flip_batch(
            dev,
            shape,
            &dev.view(&src_d),
            &mut dev.view_mut(&mut dst_d),
            &dev.view(&params_d),
        )
        .unwrap();
        assert!(download(dev, &dst_d) == want, "{shape:?}");
    }
}

/// [N, C, H, W]; the harness runs the first [`NORMALIZE_HARNESS_CASES`].
const NORMALIZE_CASES: &[[usize; 4]] = &[[3, 3, 5, 7], [1, 1, 1, 1], [128, 3, 32, 32]];
const NORMALIZE_HARNESS_CASES: usize = 2;

#[test]
fn normalize_and_add_match_cpu() {
    check_normalize_and_add(
        &HarnessDevice::new(),
        &NORMALIZE_CASES[..NORMALIZE_HARNESS_CASES],
    );
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_normalize_and_add_match_cpu() {
    let gpu = gpu();
    check_normalize_and_add(&gpu, NORMALIZE_CASES);
}

fn check_normalize_and_add<D: KernelDevice>(dev: &D, shapes: &[[usize; 4]]) {
    let mut rng = StdRng::seed_from_u64(14);
    for &shape in shapes {
        let [n, c, h, w] = shape;
        let len = n * c * h * w;
        let x = random(&mut rng, len, 0.0, 1.0);
        let dy = random(&mut rng, len, -1.0, 1.0);
        let mean: Vec<f32> = (0..c).map(|_| rng.random_range(0.3f32..0.6)).collect();
        let stdev: Vec<f32> = (0..c).map(|_| rng.random_range(0.15f32..0.35)).collect();
        let mut tape = Tape::<f64>::new();
        let xv = leaf(&mut tape, &shape, x.clone(), true);
        let mean64 = mean.iter().map(|&m| f64::from(m)).collect();
        let stdev64 = stdev.iter().map(|&s| f64::from(s)).collect();
        let mv = leaf(&mut tape, &[c], mean64, false);
        let sv = leaf(&mut tape, &[c], stdev64, false);
        let y = normalize::normalize(&mut tape, xv, mv, sv).unwrap();
        let want_y = tape.value(y).to_vec();
        tape.backward_with(y, dy.clone()).unwrap();

        let x_d = upload_f32(dev, "x", &x);
        let dy_d = upload_f32(dev, "dy", &dy);
        let mean_d = dev.upload("mean", &mean).unwrap();
        let std_d = dev.upload("stdev", &stdev).unwrap();
        let mut y_d = scratch(dev, "y", len);
        let mut dx_d = scratch(dev, "dx", len);
        normalize_cuda::normalize_forward(
            dev,
            c,
            h * w,
            &dev.view(&x_d),
            &dev.view(&mean_d),
            &dev.view(&std_d),
            &mut dev.view_mut(&mut y_d),
        )
        .unwrap();
        assert_matches("normalize y", &download(dev, &y_d), &want_y);
        normalize_cuda::normalize_backward(
            dev,
            c,
            h * w,
            &dev.view(&dy_d),
            &dev.view(&std_d),
            &mut dev.view_mut(&mut dx_d),
        )
        .unwrap();
        assert_matches(
            "normalize dx",
            &download(dev, &dx_d),
            tape.grad(xv).unwrap(),
        );

        let mut tape = Tape::<f64>::new();
        let av = leaf(&mut tape, &[len], x.clone(), false);
        let bv = leaf(&mut tape, &[len], dy.clone(), false);
        let sum = add_op::add(&mut tape, av, bv).unwrap();
        let mut sum_d = scratch(dev, "sum", len);
        add_cuda::add_forward(
            dev,
            &dev.view(&x_d),
            &dev.view(&dy_d),
            &mut dev.view_mut(&mut sum_d),
        )
        .unwrap();
        assert_matches("add", &download(dev, &sum_d), tape.value(sum));
    }
}

#[test]
fn pointwise_activations_match_cpu() {
    check_pointwise(&HarnessDevice::new(), &[1, 300]);
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_pointwise_activations_match_cpu() {
    let gpu = gpu();
    check_pointwise(&gpu, &[1, 300, 128 * 64 * 32 * 32]);
}

fn check_pointwise<D: KernelDevice>(dev: &D, lens: &[usize]) {
    use sparta::ops::pointwise::{cpu as pointwise_cpu, cuda as pointwise_cuda, Pointwise};
    let mut rng = StdRng::seed_from_u64(13);
    for kind in Pointwise::ALL {
        for &len in lens {
            let x = random(&mut rng, len, -10.0, 10.0);
            let dy = random(&mut rng, len, -1.0, 1.0);
            let (mut y, mut dx) = (vec![0.0; len], vec![0.0; len]);
            pointwise_cpu::forward(kind, &x, &mut y).unwrap();
            pointwise_cpu::backward(kind, &x, &dy, &mut dx).unwrap();
            let (xb, dyb) = (upload_f32(dev, "x", &x), upload_f32(dev, "dy", &dy));
            let (mut yb, mut dxb) = (scratch(dev, "y", len), scratch(dev, "dx", len));
            pointwise_cuda::pointwise_forward(
                dev,
                kind,
                &dev.view(&xb),
                &mut dev.view_mut(&mut yb),
            )
            .unwrap();
            pointwise_cuda::pointwise_backward(
                dev,
                kind,
                &dev.view(&xb),
                &dev.view(&dyb),
                &mut dev.view_mut(&mut dxb),
            )
            .unwrap();
            assert_matches(&format!("{kind:?} y, len {len}"), &download(dev, &yb), &y);
            assert_matches(
                &format!("{kind:?} dx, len {len}"),
                &download(dev, &dxb),
                &dx,
            );
        }
    }
}
