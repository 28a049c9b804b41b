//! The training-step CUDA kernels (kernels/batchnorm.cu, …) against the f64 CPU
//! reference; each test skips with a message when no GPU is present. f32 results must be
//! within 1e-5 of the reference, relative to the reference's largest magnitude.

use std::sync::Arc;

use cudarc::driver::CudaSlice;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::attack::cuda as attack_cuda;
use sparta::attack::pgd::{self, argmax_rows, step_direction, Goal, PgdConfig};
use sparta::autograd::Tape;
use sparta::data::augment::{self, crop_flip_draws, crop_flip_params};
use sparta::ops::add::{self as add_op, cuda as add_cuda};
use sparta::ops::batchnorm::{self, batch_norm, cuda as bn_cuda, BnMode, BnShape};
use sparta::ops::loss::{self, cross_entropy, cuda as loss_cuda, Reduction};
use sparta::ops::normalize::{self, cuda as normalize_cuda};
use sparta::optim::{cuda as optim_cuda, Sgd};
use sparta::tensor::Tensor;
use sparta::Gpu;

fn random(rng: &mut StdRng, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..len)
        .map(|_| f64::from(rng.random_range(lo..hi) as f32))
        .collect()
}

fn up(gpu: &Arc<Gpu>, v: &[f64]) -> CudaSlice<f32> {
    let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    gpu.stream().clone_htod(&f).unwrap()
}

fn down(gpu: &Arc<Gpu>, d: &CudaSlice<f32>) -> Vec<f32> {
    gpu.stream().clone_dtoh(d).unwrap()
}

fn assert_matches(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(err <= 1e-5 * scale, "{what}[{i}]: GPU {g} vs CPU {w}");
    }
}

const BN_EPS: f64 = 1e-5;

#[test]
fn batchnorm_train_and_eval_match_cpu() {
    let Some(gpu) = Gpu::for_tests("batchnorm_train_and_eval_match_cpu") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(7);
    for (n, c, hw) in [(8, 16, 64), (5, 20, 1), (1, 3, 1), (4, 64, 1024)] {
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
            let xv = tape.leaf(Tensor::new(&[n, c, hw], x.clone()).unwrap(), true);
            let gv = tape.leaf(Tensor::new(&[c], gamma.clone()).unwrap(), true);
            let bv = tape.leaf(Tensor::new(&[c], beta.clone()).unwrap(), true);
            let mode = if train {
                BnMode::Train
            } else {
                BnMode::Eval {
                    mean: &running_mean,
                    var: &running_var,
                }
            };
            let (y, stats) = batch_norm(&mut tape, xv, gv, bv, mode, BN_EPS).unwrap();
            let want_y = tape.value(y).data().to_vec();
            tape.backward_with(y, dy.clone()).unwrap();

            let x_d = up(&gpu, &x);
            let g_d = up(&gpu, &gamma);
            let b_d = up(&gpu, &beta);
            let dy_d = up(&gpu, &dy);
            let mut rmean_d = up(&gpu, &running_mean);
            let mut rvar_d = up(&gpu, &running_var);
            let mut mean_d = gpu.stream().alloc_zeros::<f32>(c).unwrap();
            let mut var_d = gpu.stream().alloc_zeros::<f32>(c).unwrap();
            let mut y_d = gpu.stream().alloc_zeros::<f32>(len).unwrap();
            let mut dx_d = gpu.stream().alloc_zeros::<f32>(len).unwrap();
            let eps = BN_EPS as f32;
            if train {
                bn_cuda::batchnorm_stats(
                    &gpu,
                    &shape,
                    &x_d.as_view(),
                    &mut mean_d.as_view_mut(),
                    &mut var_d.as_view_mut(),
                    &mut rmean_d.as_view_mut(),
                    &mut rvar_d.as_view_mut(),
                    0.1,
                )
                .unwrap();
                let stats = stats.as_ref().unwrap();
                let (mut want_rm, mut want_rv) = (running_mean.clone(), running_var.clone());
                batchnorm::cpu::update_running(&mut want_rm, &stats.mean, 0.1);
                batchnorm::cpu::update_running(&mut want_rv, &stats.var_unbiased, 0.1);
                assert_matches("running mean", &down(&gpu, &rmean_d), &want_rm);
                assert_matches("running var", &down(&gpu, &rvar_d), &want_rv);
            }
            let (stat_mean, stat_var) = if train {
                (&mean_d, &var_d)
            } else {
                (&rmean_d, &rvar_d)
            };
            bn_cuda::batchnorm_forward(
                &gpu,
                &shape,
                &x_d.as_view(),
                &stat_mean.as_view(),
                &stat_var.as_view(),
                &g_d.as_view(),
                &b_d.as_view(),
                &mut y_d.as_view_mut(),
                eps,
            )
            .unwrap();
            assert_matches("y", &down(&gpu, &y_d), &want_y);
            let mut sdy_d = gpu.stream().alloc_zeros::<f32>(c).unwrap();
            let mut sdyx_d = gpu.stream().alloc_zeros::<f32>(c).unwrap();
            bn_cuda::batchnorm_grad_sums(
                &gpu,
                &shape,
                &x_d.as_view(),
                &dy_d.as_view(),
                &stat_mean.as_view(),
                &stat_var.as_view(),
                &mut sdy_d.as_view_mut(),
                &mut sdyx_d.as_view_mut(),
                eps,
            )
            .unwrap();
            assert_matches("dbeta", &down(&gpu, &sdy_d), tape.grad(bv).unwrap());
            assert_matches("dgamma", &down(&gpu, &sdyx_d), tape.grad(gv).unwrap());
            if train {
                bn_cuda::batchnorm_backward_input_train(
                    &gpu,
                    &shape,
                    &x_d.as_view(),
                    &dy_d.as_view(),
                    &mean_d.as_view(),
                    &var_d.as_view(),
                    &g_d.as_view(),
                    &sdy_d.as_view(),
                    &sdyx_d.as_view(),
                    &mut dx_d.as_view_mut(),
                    eps,
                )
                .unwrap();
            } else {
                bn_cuda::batchnorm_backward_input_eval(
                    &gpu,
                    &shape,
                    &dy_d.as_view(),
                    &rvar_d.as_view(),
                    &g_d.as_view(),
                    &mut dx_d.as_view_mut(),
                    eps,
                )
                .unwrap();
            }
            assert_matches("dx", &down(&gpu, &dx_d), tape.grad(xv).unwrap());
        }
    }
}

#[test]
fn cross_entropy_matches_cpu() {
    let Some(gpu) = Gpu::for_tests("cross_entropy_matches_cpu") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(8);
    for (n, k) in [(128, 10), (1, 1), (37, 200), (1000, 3)] {
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
            let zv = tape.leaf(Tensor::new(&[n, k], z.clone()).unwrap(), true);
            let l = cross_entropy(&mut tape, zv, &labels, reduction).unwrap();
            let want_total = tape.value(l).data()[0];
            tape.backward(l).unwrap();

            let stream = gpu.stream();
            let z_d = up(&gpu, &z);
            let labels_d = stream.clone_htod(&labels_i32).unwrap();
            let mut loss_d = stream.alloc_zeros::<f32>(n).unwrap();
            let mut dz_d = stream.alloc_zeros::<f32>(n * k).unwrap();
            let mut correct_d = stream.alloc_zeros::<i32>(n).unwrap();
            let mut total_d = stream.alloc_zeros::<f32>(1).unwrap();
            let mut hits_d = stream.alloc_zeros::<i32>(1).unwrap();
            loss_cuda::cross_entropy(
                &gpu,
                n,
                k,
                &z_d.as_view(),
                &labels_d.as_view(),
                reduction,
                loss_cuda::CrossEntropyOut {
                    loss: &mut loss_d.as_view_mut(),
                    dlogits: &mut dz_d.as_view_mut(),
                    correct: &mut correct_d.as_view_mut(),
                    loss_total: &mut total_d.as_view_mut(),
                    correct_total: &mut hits_d.as_view_mut(),
                },
            )
            .unwrap();
            assert_matches("loss", &down(&gpu, &loss_d), &want_loss);
            assert_matches("dlogits", &down(&gpu, &dz_d), tape.grad(zv).unwrap());
            assert_matches("loss total", &down(&gpu, &total_d), &[want_total]);
            assert_eq!(stream.clone_dtoh(&correct_d).unwrap(), want_correct);
            assert_eq!(
                stream.clone_dtoh(&hits_d).unwrap()[0],
                want_correct.iter().sum::<i32>()
            );
        }
    }
}

#[test]
fn sgd_update_of_a_flat_buffer_matches_cpu() {
    let Some(gpu) = Gpu::for_tests("sgd_update_of_a_flat_buffer_matches_cpu") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(9);
    // ResNet-like tensors (conv weights, BN vectors) in one flat buffer, and an odd tail
    let sizes = [
        64 * 3 * 3 * 3,
        64,
        64,
        128 * 64 * 3 * 3,
        128,
        10 * 512,
        10,
        7,
    ];
    let len: usize = sizes.iter().sum();
    let p = random(&mut rng, len, -1.0, 1.0);
    let g = random(&mut rng, len, -1.0, 1.0);
    let v = random(&mut rng, len, -1.0, 1.0);
    let (lr, momentum, weight_decay) = (0.05f32, 0.9f32, 5e-4f32);
    let mut sgd = Sgd::new(f64::from(momentum), f64::from(weight_decay), sizes);
    let mut want_p = p.clone();
    let mut offset = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let range = offset..offset + size;
        sgd.velocity[i].copy_from_slice(&v[range.clone()]);
        sgd.update(i, &mut want_p[range.clone()], &g[range], f64::from(lr))
            .unwrap();
        offset += size;
    }
    let mut p_d = up(&gpu, &p);
    let g_d = up(&gpu, &g);
    let mut v_d = up(&gpu, &v);
    optim_cuda::sgd_update(
        &gpu,
        &mut p_d.as_view_mut(),
        &g_d.as_view(),
        &mut v_d.as_view_mut(),
        lr,
        momentum,
        weight_decay,
    )
    .unwrap();
    assert_matches("p", &down(&gpu, &p_d), &want_p);
    assert_matches("v", &down(&gpu, &v_d), &sgd.velocity.concat());
}

#[test]
fn pgd_random_start_and_steps_match_cpu_bit_for_bit() {
    let Some(gpu) = Gpu::for_tests("pgd_random_start_and_steps_match_cpu_bit_for_bit") else {
        return;
    };
    let len = 64 * 3 * 32 * 32 + 5;
    let mut rng = StdRng::seed_from_u64(10);
    for goal in [Goal::Targeted, Goal::Untargeted] {
        let config = PgdConfig {
            goal,
            ..PgdConfig::paper(10)
        };
        let eps = config.epsilon;
        let x0: Vec<f32> = (0..len)
            .map(|_| rng.random_range(-0.2f32..1.2).clamp(0.0, 1.0))
            .collect();
        let noise = pgd::random_start_noise(&mut rng, len, eps);
        let mut want = pgd::random_start(&x0, &noise, eps);
        let stream = gpu.stream();
        let x0_d = stream.clone_htod(&x0).unwrap();
        let noise_d = stream.clone_htod(&noise).unwrap();
        let mut x_d = stream.alloc_zeros::<f32>(len).unwrap();
        attack_cuda::pgd_random_start(
            &gpu,
            eps,
            &mut x_d.as_view_mut(),
            &x0_d.as_view(),
            &noise_d.as_view(),
        )
        .unwrap();
        assert!(down(&gpu, &x_d) == want, "random start {goal:?}");
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
            pgd::step(&mut want, &g, &x0, step_direction(&config), eps);
            let g_d = stream.clone_htod(&g).unwrap();
            attack_cuda::pgd_step(
                &gpu,
                &config,
                &mut x_d.as_view_mut(),
                &g_d.as_view(),
                &x0_d.as_view(),
            )
            .unwrap();
            assert!(down(&gpu, &x_d) == want, "step {k} {goal:?}");
        }
    }
}

#[test]
fn augment_crop_flip_equals_host_batch_for_the_same_seed() {
    let Some(gpu) = Gpu::for_tests("augment_crop_flip_equals_host_batch_for_the_same_seed") else {
        return;
    };
    for (seed, shape) in [
        (11, [128, 3, 32, 32]),
        (12, [7, 3, 5, 9]),
        (13, [3, 1, 1, 1]),
    ] {
        let [n, c, h, w] = shape;
        let len = n * c * h * w;
        let mut rng = StdRng::seed_from_u64(seed);
        let x: Vec<f32> = (0..len).map(|_| rng.random_range(0.0f32..1.0)).collect();
        let mut want = x.clone();
        augment::crop_flip_batch(&mut want, shape, &mut StdRng::seed_from_u64(seed)).unwrap();
        let params = crop_flip_params(&crop_flip_draws(n, &mut StdRng::seed_from_u64(seed)));
        let stream = gpu.stream();
        let src_d = stream.clone_htod(&x).unwrap();
        let params_d = stream.clone_htod(&params).unwrap();
        let mut dst_d = stream.alloc_zeros::<f32>(len).unwrap();
        augment::cuda::crop_flip_batch(
            &gpu,
            shape,
            &src_d.as_view(),
            &mut dst_d.as_view_mut(),
            &params_d.as_view(),
        )
        .unwrap();
        assert!(down(&gpu, &dst_d) == want, "{shape:?}");
    }
}

#[test]
fn normalize_and_add_match_cpu() {
    let Some(gpu) = Gpu::for_tests("normalize_and_add_match_cpu") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(14);
    for shape in [[128, 3, 32, 32], [3, 3, 5, 7], [1, 1, 1, 1]] {
        let [n, c, h, w] = shape;
        let len = n * c * h * w;
        let x = random(&mut rng, len, 0.0, 1.0);
        let dy = random(&mut rng, len, -1.0, 1.0);
        let mean: Vec<f32> = (0..c).map(|_| rng.random_range(0.3f32..0.6)).collect();
        let stdev: Vec<f32> = (0..c).map(|_| rng.random_range(0.15f32..0.35)).collect();
        let mut tape = Tape::<f64>::new();
        let xv = tape.leaf(Tensor::new(&shape, x.clone()).unwrap(), true);
        let y = normalize::normalize(&mut tape, xv, &mean, &stdev).unwrap();
        let want_y = tape.value(y).data().to_vec();
        tape.backward_with(y, dy.clone()).unwrap();

        let stream = gpu.stream();
        let x_d = up(&gpu, &x);
        let dy_d = up(&gpu, &dy);
        let mean_d = stream.clone_htod(&mean).unwrap();
        let std_d = stream.clone_htod(&stdev).unwrap();
        let mut y_d = stream.alloc_zeros::<f32>(len).unwrap();
        let mut dx_d = stream.alloc_zeros::<f32>(len).unwrap();
        normalize_cuda::normalize_forward(
            &gpu,
            c,
            h * w,
            &x_d.as_view(),
            &mean_d.as_view(),
            &std_d.as_view(),
            &mut y_d.as_view_mut(),
        )
        .unwrap();
        assert_matches("normalize y", &down(&gpu, &y_d), &want_y);
        normalize_cuda::normalize_backward(
            &gpu,
            c,
            h * w,
            &dy_d.as_view(),
            &std_d.as_view(),
            &mut dx_d.as_view_mut(),
        )
        .unwrap();
        assert_matches("normalize dx", &down(&gpu, &dx_d), tape.grad(xv).unwrap());

        let mut tape = Tape::<f64>::new();
        let av = tape.leaf(Tensor::new(&[len], x.clone()).unwrap(), false);
        let bv = tape.leaf(Tensor::new(&[len], dy.clone()).unwrap(), false);
        let sum = add_op::add(&mut tape, av, bv).unwrap();
        let mut sum_d = stream.alloc_zeros::<f32>(len).unwrap();
        add_cuda::add_forward(
            &gpu,
            &x_d.as_view(),
            &dy_d.as_view(),
            &mut sum_d.as_view_mut(),
        )
        .unwrap();
        assert_matches("add", &down(&gpu, &sum_d), tape.value(sum).data());
    }
}
