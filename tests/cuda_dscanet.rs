//! DSCANet's CUDA kernels against the f64 CPU reference; each test skips with a message
//! when no GPU is present. f32 results must be within 1e-5 of the reference, relative to
//! the reference's largest magnitude (sums of many terms make per-element relative error
//! meaningless near zero).

use std::sync::Arc;

use cudarc::driver::CudaSlice;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::ops::conv1x1::{cpu as conv_cpu, cuda as conv_cuda, Conv1x1Shape};
use sparta::ops::dynconv::{cpu as dyn_cpu, cuda as dyn_cuda, DynConvShape};
use sparta::ops::fc::{cpu as fc_cpu, cuda as fc_cuda, FcShape};
use sparta::ops::pool::{cpu as pool_cpu, cuda as pool_cuda, PoolShape};
use sparta::ops::sanet::{cpu as sanet_cpu, cuda as sanet_cuda, Conv5Source, SanetShape};
use sparta::Gpu;

fn random(rng: &mut StdRng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
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

#[test]
fn pool_forward_and_backward_match_cpu() {
    let Some(gpu) = Gpu::for_tests("pool_forward_and_backward_match_cpu") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(1);
    for shape in [
        PoolShape::new(6, 5, 7, 2).unwrap(),
        PoolShape::new(4, 9, 9, 4).unwrap(),
        PoolShape::global(10, 32, 32).unwrap(),
        PoolShape::global(3, 1, 1).unwrap(),
    ] {
        let x = random(&mut rng, shape.in_len());
        let mut want = vec![0.0; shape.out_len()];
        pool_cpu::pool_forward(&shape, &x, &mut want).unwrap();
        let x_d = up(&gpu, &x);
        let mut y_d = gpu.stream().alloc_zeros::<f32>(shape.out_len()).unwrap();
        pool_cuda::pool_forward(&gpu, &shape, &x_d.as_view(), &mut y_d.as_view_mut()).unwrap();
        assert_matches("pool y", &down(&gpu, &y_d), &want);

        let dy = random(&mut rng, shape.out_len());
        let dx0 = random(&mut rng, shape.in_len());
        let mut want = dx0.clone();
        pool_cpu::pool_backward(&shape, &dy, &mut want).unwrap();
        let mut dx_d = up(&gpu, &dx0);
        pool_cuda::pool_backward(
            &gpu,
            &shape,
            &up(&gpu, &dy).as_view(),
            &mut dx_d.as_view_mut(),
        )
        .unwrap();
        assert_matches("pool dx", &down(&gpu, &dx_d), &want);
    }
}

#[test]
fn conv1x1_forward_and_backward_match_cpu() {
    let Some(gpu) = Gpu::for_tests("conv1x1_forward_and_backward_match_cpu") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(2);
    for shape in [
        Conv1x1Shape::new(3, 5, 7, 19).unwrap(),
        Conv1x1Shape::new(40, 64, 64, 64).unwrap(),
        Conv1x1Shape::new(1, 300, 256, 1).unwrap(),
    ] {
        let (x, w, b) = (
            random(&mut rng, shape.x_len()),
            random(&mut rng, shape.w_len()),
            random(&mut rng, shape.cout),
        );
        let mut y = vec![0.0; shape.y_len()];
        conv_cpu::conv1x1_forward(&shape, &x, &w, &b, &mut y).unwrap();
        let (x_d, w_d, b_d) = (up(&gpu, &x), up(&gpu, &w), up(&gpu, &b));
        let mut y_d = gpu.stream().alloc_zeros::<f32>(shape.y_len()).unwrap();
        for relu in [false, true] {
            conv_cuda::conv1x1_forward(
                &gpu,
                &shape,
                &x_d.as_view(),
                &w_d.as_view(),
                &b_d.as_view(),
                &mut y_d.as_view_mut(),
                relu,
            )
            .unwrap();
            let want: Vec<f64> = y
                .iter()
                .map(|&v| if relu { v.max(0.0) } else { v })
                .collect();
            assert_matches("conv1x1 y", &down(&gpu, &y_d), &want);
        }

        let dy = random(&mut rng, shape.y_len());
        let (dx0, dw0, db0) = (
            random(&mut rng, shape.x_len()),
            random(&mut rng, shape.w_len()),
            random(&mut rng, shape.cout),
        );
        let (mut dx, mut dw, mut db) = (dx0.clone(), dw0.clone(), db0.clone());
        conv_cpu::conv1x1_backward(
            &shape,
            &x,
            &w,
            &dy,
            Some(&mut dx),
            Some(&mut dw),
            Some(&mut db),
        )
        .unwrap();
        let (mut dx_d, mut dw_d, mut db_d) = (up(&gpu, &dx0), up(&gpu, &dw0), up(&gpu, &db0));
        conv_cuda::conv1x1_backward(
            &gpu,
            &shape,
            &x_d.as_view(),
            &w_d.as_view(),
            &up(&gpu, &dy).as_view(),
            Some(&mut dx_d.as_view_mut()),
            Some(&mut dw_d.as_view_mut()),
            Some(&mut db_d.as_view_mut()),
        )
        .unwrap();
        assert_matches("conv1x1 dx", &down(&gpu, &dx_d), &dx);
        assert_matches("conv1x1 dw", &down(&gpu, &dw_d), &dw);
        assert_matches("conv1x1 db", &down(&gpu, &db_d), &db);

        let h = random(&mut rng, shape.y_len());
        let dh0 = random(&mut rng, shape.y_len());
        let want: Vec<f64> = h
            .iter()
            .zip(&dh0)
            .map(|(&h, &d)| if h > 0.0 { d } else { 0.0 })
            .collect();
        let mut dh_d = up(&gpu, &dh0);
        conv_cuda::relu_mask(&gpu, &up(&gpu, &h).as_view(), &mut dh_d.as_view_mut()).unwrap();
        assert_matches("relu mask", &down(&gpu, &dh_d), &want);
    }
}

#[test]
fn fc_forward_and_backward_match_cpu() {
    let Some(gpu) = Gpu::for_tests("fc_forward_and_backward_match_cpu") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(3);
    for shape in [
        FcShape::new(5, 3, 7).unwrap(),
        FcShape::new(128, 300, 257).unwrap(),
    ] {
        let FcShape { n, inp, out } = shape;
        let (x, w, b) = (
            random(&mut rng, n * inp),
            random(&mut rng, out * inp),
            random(&mut rng, out),
        );
        let mut y = vec![0.0; n * out];
        fc_cpu::fc_forward(&shape, &x, &w, &b, &mut y).unwrap();
        let (x_d, w_d, b_d) = (up(&gpu, &x), up(&gpu, &w), up(&gpu, &b));
        let mut y_d = gpu.stream().alloc_zeros::<f32>(n * out).unwrap();
        for relu in [false, true] {
            fc_cuda::fc_forward(
                &gpu,
                &shape,
                &x_d.as_view(),
                &w_d.as_view(),
                &b_d.as_view(),
                &mut y_d.as_view_mut(),
                relu,
            )
            .unwrap();
            let want: Vec<f64> = y
                .iter()
                .map(|&v| if relu { v.max(0.0) } else { v })
                .collect();
            assert_matches("fc y", &down(&gpu, &y_d), &want);
        }
        let dy = random(&mut rng, n * out);
        let (dx0, dw0, db0) = (
            random(&mut rng, n * inp),
            random(&mut rng, out * inp),
            random(&mut rng, out),
        );
        let (mut dx, mut dw, mut db) = (dx0.clone(), dw0.clone(), db0.clone());
        fc_cpu::fc_backward(
            &shape,
            &x,
            &w,
            &dy,
            Some(&mut dx),
            Some(&mut dw),
            Some(&mut db),
        )
        .unwrap();
        let (mut dx_d, mut dw_d, mut db_d) = (up(&gpu, &dx0), up(&gpu, &dw0), up(&gpu, &db0));
        fc_cuda::fc_backward(
            &gpu,
            &shape,
            &x_d.as_view(),
            &w_d.as_view(),
            &up(&gpu, &dy).as_view(),
            Some(&mut dx_d.as_view_mut()),
            Some((&mut dw_d.as_view_mut(), &mut db_d.as_view_mut())),
        )
        .unwrap();
        assert_matches("fc dx", &down(&gpu, &dx_d), &dx);
        assert_matches("fc dw", &down(&gpu, &dw_d), &dw);
        assert_matches("fc db", &down(&gpu, &db_d), &db);
    }
}

#[test]
fn dynconv_forward_and_backward_match_cpu() {
    let Some(gpu) = Gpu::for_tests("dynconv_forward_and_backward_match_cpu") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(4);
    let shape = DynConvShape::new(3, 20, 37).unwrap();
    let (n, k, p) = (shape.n, shape.k, shape.pixels);
    let h = random(&mut rng, shape.h_len());
    // DPNet layout: rows of k + 1, bias last.
    let d = random(&mut rng, n * (k + 1));
    let w: Vec<f64> = d.chunks(k + 1).flat_map(|r| r[..k].to_vec()).collect();
    let b: Vec<f64> = d.chunks(k + 1).map(|r| r[k]).collect();
    let mut s = vec![0.0; n * p];
    dyn_cpu::dynconv_forward(&shape, &h, &w, &b, &mut s).unwrap();
    let (h_d, d_d) = (up(&gpu, &h), up(&gpu, &d));
    let mut s_d = gpu.stream().alloc_zeros::<f32>(n * p).unwrap();
    dyn_cuda::dynconv_forward(
        &gpu,
        &shape,
        &h_d.as_view(),
        &d_d.as_view(),
        k + 1,
        &d_d.slice(k..),
        k + 1,
        &mut s_d.as_view_mut(),
    )
    .unwrap();
    assert_matches("dynconv s", &down(&gpu, &s_d), &s);

    let ds = random(&mut rng, n * p);
    let (mut dh, mut dw, mut db) = (vec![0.0; h.len()], vec![0.0; n * k], vec![0.0; n]);
    dyn_cpu::dynconv_backward(
        &shape,
        &h,
        &w,
        &ds,
        Some(&mut dh),
        Some(&mut dw),
        Some(&mut db),
    )
    .unwrap();
    let ds_d = up(&gpu, &ds);
    let mut dh_d = gpu.stream().alloc_zeros::<f32>(h.len()).unwrap();
    dyn_cuda::dynconv_backward_input(
        &gpu,
        &shape,
        &d_d.as_view(),
        k + 1,
        &ds_d.as_view(),
        &mut dh_d.as_view_mut(),
    )
    .unwrap();
    assert_matches("dynconv dh", &down(&gpu, &dh_d), &dh);
    let mut dd_d = gpu.stream().alloc_zeros::<f32>(n * (k + 1)).unwrap();
    dyn_cuda::dynconv_backward_weight(
        &gpu,
        &shape,
        &h_d.as_view(),
        &ds_d.as_view(),
        &mut dd_d.as_view_mut(),
        k + 1,
    )
    .unwrap();
    dyn_cuda::dynconv_backward_bias(
        &gpu,
        &shape,
        &ds_d.as_view(),
        &mut dd_d.slice_mut(k..),
        k + 1,
    )
    .unwrap();
    let want: Vec<f64> = dw
        .chunks(k)
        .zip(&db)
        .flat_map(|(r, &b)| r.iter().copied().chain(std::iter::once(b)))
        .collect();
    assert_matches("dynconv dw, db", &down(&gpu, &dd_d), &want);

    // Broadcast weights (ld = 0): the gradient sums over the batch.
    let mut dw_d = gpu.stream().alloc_zeros::<f32>(k).unwrap();
    dyn_cuda::dynconv_backward_weight(
        &gpu,
        &shape,
        &h_d.as_view(),
        &ds_d.as_view(),
        &mut dw_d.as_view_mut(),
        0,
    )
    .unwrap();
    let summed: Vec<f64> = (0..k)
        .map(|j| (0..n).map(|i| dw[i * k + j]).sum())
        .collect();
    assert_matches("dynconv dw (ld 0)", &down(&gpu, &dw_d), &summed);
}

#[test]
fn fused_sanet_kernels_match_cpu() {
    let Some(gpu) = Gpu::for_tests("fused_sanet_kernels_match_cpu") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(5);
    for shape in [
        SanetShape::new(3, 5, 7, 37).unwrap(),
        SanetShape::new(4, 64, 64, 1024).unwrap(),
        SanetShape::new(2, 300, 256, 1).unwrap(),
    ] {
        let SanetShape {
            n,
            c,
            co,
            pixels: p,
        } = shape;
        let xs = random(&mut rng, shape.xs_len());
        let (w3, b3) = (random(&mut rng, co * c), random(&mut rng, co));
        let (w4, b4) = (random(&mut rng, (co + 1) * co), random(&mut rng, co + 1));
        let src = Conv5Source::Predicted { w4: &w4, b4: &b4 };
        let (out, h) = sanet_cpu::sanet_forward_unfused(&shape, &xs, &w3, &b3, &src).unwrap();
        let (xs_d, w3_d, b3_d) = (up(&gpu, &xs), up(&gpu, &w3), up(&gpu, &b3));
        let mut q_d = gpu.stream().alloc_zeros::<f32>(n * co).unwrap();
        sanet_cuda::sanet_pool(
            &gpu,
            &shape,
            &xs_d.as_view(),
            &w3_d.as_view(),
            &b3_d.as_view(),
            &mut q_d.as_view_mut(),
        )
        .unwrap();
        assert_matches("sanet q", &down(&gpu, &q_d), &out.q);

        let (w5_d, b5_d) = (up(&gpu, &out.w5), up(&gpu, &out.b5));
        let mut s_d = gpu.stream().alloc_zeros::<f32>(n * p).unwrap();
        sanet_cuda::sanet_conv5(
            &gpu,
            &shape,
            &xs_d.as_view(),
            &w3_d.as_view(),
            &b3_d.as_view(),
            &w5_d.as_view(),
            co,
            &b5_d.as_view(),
            1,
            &mut s_d.as_view_mut(),
        )
        .unwrap();
        assert_matches("sanet s", &down(&gpu, &s_d), &out.s);

        let ds = random(&mut rng, n * p);
        let dq = random(&mut rng, n * co);
        let mut dw5 = vec![0.0; n * co];
        let dyn_shape = DynConvShape::new(n, co, p).unwrap();
        dyn_cpu::dynconv_backward(&dyn_shape, &h, &out.w5, &ds, None, Some(&mut dw5), None)
            .unwrap();
        let ds_d = up(&gpu, &ds);
        let mut dw5_d = gpu.stream().alloc_zeros::<f32>(n * co).unwrap();
        sanet_cuda::sanet_dw5(
            &gpu,
            &shape,
            &xs_d.as_view(),
            &w3_d.as_view(),
            &b3_d.as_view(),
            &ds_d.as_view(),
            &mut dw5_d.as_view_mut(),
            co,
        )
        .unwrap();
        assert_matches("sanet dw5", &down(&gpu, &dw5_d), &dw5);

        let want: Vec<f64> = (0..shape.h_len())
            .map(|i| {
                let (row, px) = (i / p, i % p);
                let ni = row / co;
                if h[i] > 0.0 {
                    out.w5[row] * ds[ni * p + px] + dq[row] / p as f64
                } else {
                    0.0
                }
            })
            .collect();
        let mut dh_d = gpu.stream().alloc_zeros::<f32>(shape.h_len()).unwrap();
        sanet_cuda::sanet_dh(
            &gpu,
            &shape,
            &xs_d.as_view(),
            &w3_d.as_view(),
            &b3_d.as_view(),
            &w5_d.as_view(),
            co,
            &ds_d.as_view(),
            &up(&gpu, &dq).as_view(),
            &mut dh_d.as_view_mut(),
        )
        .unwrap();
        // Where |h| is within f32 rounding of 0 the two ReLU decisions may differ.
        let got: Vec<f32> = down(&gpu, &dh_d)
            .into_iter()
            .zip(&h)
            .zip(&want)
            .map(|((g, &hv), &w)| if hv.abs() < 1e-4 { w as f32 } else { g })
            .collect();
        assert_matches("sanet dh", &got, &want);
    }
}
