//! DSCANet's CUDA wrappers against the f64 CPU reference: on the CPU kernel harness
//! always (small shapes), and on a GPU in the `gpu_*` tests (large shapes too; ignored
//! unless run with `--ignored`). f32 results must be within 1e-5 of the reference,
//! relative to the reference's largest magnitude (sums of many terms make per-element
//! relative error meaningless near zero).

mod gpu_support;
mod harness_support;

use gpu_support::gpu;
use harness_support::device::HarnessDevice;
use harness_support::{assert_matches, download, scratch, upload_f32};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::ops::conv1x1::{cpu as conv_cpu, cuda as conv_cuda, Conv1x1Shape};
use sparta::ops::dynconv::{cpu as dyn_cpu, cuda as dyn_cuda, DynConvShape};
use sparta::ops::fc::{cpu as fc_cpu, cuda as fc_cuda, FcShape};
use sparta::ops::pool::{cpu as pool_cpu, cuda as pool_cuda, PoolShape};
use sparta::ops::sanet::{cpu as sanet_cpu, cuda as sanet_cuda, Conv5Source, SanetShape};
use sparta::KernelDevice;

fn random(rng: &mut StdRng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn check_pool<D: KernelDevice>(dev: &D, shapes: &[PoolShape]) {
    let mut rng = StdRng::seed_from_u64(1);
    for &shape in shapes {
        let x = random(&mut rng, shape.in_len());
        let mut want = vec![0.0; shape.out_len()];
        pool_cpu::pool_forward(&shape, &x, &mut want).unwrap();
        let x_d = upload_f32(dev, "x", &x);
        let mut y_d = scratch(dev, "y", shape.out_len());
        pool_cuda::pool_forward(dev, &shape, &dev.view(&x_d), &mut dev.view_mut(&mut y_d)).unwrap();
        assert_matches("pool y", &download(dev, &y_d), &want);

        let dy = random(&mut rng, shape.out_len());
        let dx0 = random(&mut rng, shape.in_len());
        let mut want = dx0.clone();
        pool_cpu::pool_backward(&shape, &dy, &mut want).unwrap();
        let mut dx_d = upload_f32(dev, "dx0", &dx0);
        pool_cuda::pool_backward(
            dev,
            &shape,
            &dev.view(&upload_f32(dev, "dy", &dy)),
            &mut dev.view_mut(&mut dx_d),
        )
        .unwrap();
        assert_matches("pool dx", &download(dev, &dx_d), &want);
    }
}

fn check_conv1x1<D: KernelDevice>(dev: &D, shapes: &[Conv1x1Shape]) {
    let mut rng = StdRng::seed_from_u64(2);
    for &shape in shapes {
        let (x, w, b) = (
            random(&mut rng, shape.x_len()),
            random(&mut rng, shape.w_len()),
            random(&mut rng, shape.cout),
        );
        let mut y = vec![0.0; shape.y_len()];
        conv_cpu::conv1x1_forward(&shape, &x, &w, &b, &mut y).unwrap();
        let (x_d, w_d, b_d) = (
            upload_f32(dev, "x", &x),
            upload_f32(dev, "w", &w),
            upload_f32(dev, "b", &b),
        );
        let mut y_d = scratch(dev, "y", shape.y_len());
        for relu in [false, true] {
            conv_cuda::conv1x1_forward(
                dev,
                &shape,
                &dev.view(&x_d),
                &dev.view(&w_d),
                &dev.view(&b_d),
                &mut dev.view_mut(&mut y_d),
                relu,
            )
            .unwrap();
            let want: Vec<f64> = y
                .iter()
                .map(|&v| if relu { v.max(0.0) } else { v })
                .collect();
            assert_matches("conv1x1 y", &download(dev, &y_d), &want);
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
        let (mut dx_d, mut dw_d, mut db_d) = (
            upload_f32(dev, "dx0", &dx0),
            upload_f32(dev, "dw0", &dw0),
            upload_f32(dev, "db0", &db0),
        );
        conv_cuda::conv1x1_backward(
            dev,
            &shape,
            &dev.view(&x_d),
            &dev.view(&w_d),
            &dev.view(&upload_f32(dev, "dy", &dy)),
            Some(&mut dev.view_mut(&mut dx_d)),
            Some(&mut dev.view_mut(&mut dw_d)),
            Some(&mut dev.view_mut(&mut db_d)),
        )
        .unwrap();
        assert_matches("conv1x1 dx", &download(dev, &dx_d), &dx);
        assert_matches("conv1x1 dw", &download(dev, &dw_d), &dw);
        assert_matches("conv1x1 db", &download(dev, &db_d), &db);

        let h = random(&mut rng, shape.y_len());
        let dh0 = random(&mut rng, shape.y_len());
        let want: Vec<f64> = h
            .iter()
            .zip(&dh0)
            .map(|(&h, &d)| if h > 0.0 { d } else { 0.0 })
            .collect();
        let mut dh_d = upload_f32(dev, "dh0", &dh0);
        conv_cuda::relu_mask(
            dev,
            &dev.view(&upload_f32(dev, "h", &h)),
            &mut dev.view_mut(&mut dh_d),
        )
        .unwrap();
        assert_matches("relu mask", &download(dev, &dh_d), &want);
    }
}

fn check_fc<D: KernelDevice>(dev: &D, shapes: &[FcShape]) {
    let mut rng = StdRng::seed_from_u64(3);
    for &shape in shapes {
        let FcShape { n, inp, out } = shape;
        let (x, w, b) = (
            random(&mut rng, n * inp),
            random(&mut rng, out * inp),
            random(&mut rng, out),
        );
        let mut y = vec![0.0; n * out];
        fc_cpu::fc_forward(&shape, &x, &w, &b, &mut y).unwrap();
        let (x_d, w_d, b_d) = (
            upload_f32(dev, "x", &x),
            upload_f32(dev, "w", &w),
            upload_f32(dev, "b", &b),
        );
        let mut y_d = scratch(dev, "y", n * out);
        for relu in [false, true] {
            fc_cuda::fc_forward(
                dev,
                &shape,
                &dev.view(&x_d),
                &dev.view(&w_d),
                &dev.view(&b_d),
                &mut dev.view_mut(&mut y_d),
                relu,
            )
            .unwrap();
            let want: Vec<f64> = y
                .iter()
                .map(|&v| if relu { v.max(0.0) } else { v })
                .collect();
            assert_matches("fc y", &download(dev, &y_d), &want);
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
        let (mut dx_d, mut dw_d, mut db_d) = (
            upload_f32(dev, "dx0", &dx0),
            upload_f32(dev, "dw0", &dw0),
            upload_f32(dev, "db0", &db0),
        );
        fc_cuda::fc_backward(
            dev,
            &shape,
            &dev.view(&x_d),
            &dev.view(&w_d),
            &dev.view(&upload_f32(dev, "dy", &dy)),
            Some(&mut dev.view_mut(&mut dx_d)),
            Some((&mut dev.view_mut(&mut dw_d), &mut dev.view_mut(&mut db_d))),
        )
        .unwrap();
        assert_matches("fc dx", &download(dev, &dx_d), &dx);
        assert_matches("fc dw", &download(dev, &dw_d), &dw);
        assert_matches("fc db", &download(dev, &db_d), &db);
    }
}

fn check_dynconv<D: KernelDevice>(dev: &D, shape: DynConvShape) {
    let mut rng = StdRng::seed_from_u64(4);
    let (n, k, p) = (shape.n, shape.k, shape.pixels);
    let h = random(&mut rng, shape.h_len());
    // DPNet layout: rows of k + 1, bias last.
    let d = random(&mut rng, n * (k + 1));
    let w: Vec<f64> = d.chunks(k + 1).flat_map(|r| r[..k].to_vec()).collect();
    let b: Vec<f64> = d.chunks(k + 1).map(|r| r[k]).collect();
    let mut s = vec![0.0; n * p];
    dyn_cpu::dynconv_forward(&shape, &h, &w, &b, &mut s).unwrap();
    let (h_d, d_d) = (upload_f32(dev, "h", &h), upload_f32(dev, "d", &d));
    let mut s_d = scratch(dev, "s", n * p);
    let d_view = dev.view(&d_d);
    let bias_rows = dev.slice(&d_view, k..d.len()).unwrap();
    dyn_cuda::dynconv_forward(
        dev,
        &shape,
        &dev.view(&h_d),
        &d_view,
        k + 1,
        &bias_rows,
        k + 1,
        &mut dev.view_mut(&mut s_d),
    )
    .unwrap();
    assert_matches("dynconv s", &download(dev, &s_d), &s);

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
    let ds_d = upload_f32(dev, "ds", &ds);
    let mut dh_d = dev.alloc_zeros::<f32>("dh", h.len()).unwrap();
    dyn_cuda::dynconv_backward_input(
        dev,
        &shape,
        &dev.view(&d_d),
        k + 1,
        &dev.view(&ds_d),
        &mut dev.view_mut(&mut dh_d),
    )
    .unwrap();
    assert_matches("dynconv dh", &download(dev, &dh_d), &dh);
    let mut dd_d = dev.alloc_zeros::<f32>("dd", n * (k + 1)).unwrap();
    dyn_cuda::dynconv_backward_weight(
        dev,
        &shape,
        &dev.view(&h_d),
        &dev.view(&ds_d),
        &mut dev.view_mut(&mut dd_d),
        k + 1,
    )
    .unwrap();
    {
        let mut dd_view = dev.view_mut(&mut dd_d);
        let mut db_rows = dev.slice_mut(&mut dd_view, k..n * (k + 1)).unwrap();
        dyn_cuda::dynconv_backward_bias(dev, &shape, &dev.view(&ds_d), &mut db_rows, k + 1)
            .unwrap();
    }
    let want: Vec<f64> = dw
        .chunks(k)
        .zip(&db)
        .flat_map(|(r, &b)| r.iter().copied().chain(std::iter::once(b)))
        .collect();
    assert_matches("dynconv dw, db", &download(dev, &dd_d), &want);

    // Broadcast weights (ld = 0): the gradient sums over the batch.
    let mut dw_d = dev.alloc_zeros::<f32>("dw", k).unwrap();
    dyn_cuda::dynconv_backward_weight(
        dev,
        &shape,
        &dev.view(&h_d),
        &dev.view(&ds_d),
        &mut dev.view_mut(&mut dw_d),
        0,
    )
    .unwrap();
    let summed: Vec<f64> = (0..k)
        .map(|j| (0..n).map(|i| dw[i * k + j]).sum())
        .collect();
    assert_matches("dynconv dw (ld 0)", &download(dev, &dw_d), &summed);
}

fn check_sanet<D: KernelDevice>(dev: &D, shapes: &[SanetShape]) {
    let mut rng = StdRng::seed_from_u64(5);
    for &shape in shapes {
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
        let (xs_d, w3_d, b3_d) = (
            upload_f32(dev, "xs", &xs),
            upload_f32(dev, "w3", &w3),
            upload_f32(dev, "b3", &b3),
        );
        let mut q_d = dev.alloc_zeros::<f32>("q", n * co).unwrap();
        sanet_cuda::sanet_pool(
            dev,
            &shape,
            &dev.view(&xs_d),
            &dev.view(&w3_d),
            &dev.view(&b3_d),
            &mut dev.view_mut(&mut q_d),
        )
        .unwrap();
        assert_matches("sanet q", &download(dev, &q_d), &out.q);

        let (w5_d, b5_d) = (
            upload_f32(dev, "w5", &out.w5),
            upload_f32(dev, "b5", &out.b5),
        );
        let mut s_d = scratch(dev, "s", n * p);
        sanet_cuda::sanet_conv5(
            dev,
            &shape,
            &dev.view(&xs_d),
            &dev.view(&w3_d),
            &dev.view(&b3_d),
            &dev.view(&w5_d),
            co,
            &dev.view(&b5_d),
            1,
            &mut dev.view_mut(&mut s_d),
        )
        .unwrap();
        assert_matches("sanet s", &download(dev, &s_d), &out.s);

        let ds = random(&mut rng, n * p);
        let dq = random(&mut rng, n * co);
        let mut dw5 = vec![0.0; n * co];
        let dyn_shape = DynConvShape::new(n, co, p).unwrap();
        dyn_cpu::dynconv_backward(&dyn_shape, &h, &out.w5, &ds, None, Some(&mut dw5), None)
            .unwrap();
        let ds_d = upload_f32(dev, "ds", &ds);
        let mut dw5_d = dev.alloc_zeros::<f32>("dw5", n * co).unwrap();
        sanet_cuda::sanet_dw5(
            dev,
            &shape,
            &dev.view(&xs_d),
            &dev.view(&w3_d),
            &dev.view(&b3_d),
            &dev.view(&ds_d),
            &mut dev.view_mut(&mut dw5_d),
            co,
        )
        .unwrap();
        assert_matches("sanet dw5", &download(dev, &dw5_d), &dw5);

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
        let mut dh_d = scratch(dev, "dh", shape.h_len());
        sanet_cuda::sanet_dh(
            dev,
            &shape,
            &dev.view(&xs_d),
            &dev.view(&w3_d),
            &dev.view(&b3_d),
            &dev.view(&w5_d),
            co,
            &dev.view(&ds_d),
            &dev.view(&upload_f32(dev, "dq", &dq)),
            &mut dev.view_mut(&mut dh_d),
        )
        .unwrap();
        // Where |h| is within f32 rounding of 0 the two ReLU decisions may differ.
        let got: Vec<f32> = download(dev, &dh_d)
            .into_iter()
            .zip(&h)
            .zip(&want)
            .map(|((g, &hv), &w)| if hv.abs() < 1e-4 { w as f32 } else { g })
            .collect();
        assert_matches("sanet dh", &got, &want);
    }
}

#[test]
fn pool_forward_and_backward_match_cpu() {
    let small = [
        PoolShape::new(6, 5, 7, 2).unwrap(),
        PoolShape::new(4, 9, 9, 4).unwrap(),
        PoolShape::global(3, 1, 1).unwrap(),
        PoolShape::global(5, 6, 7).unwrap(),
    ];
    check_pool(&HarnessDevice::new(), &small);
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_pool_forward_and_backward_match_cpu() {
    let small = [
        PoolShape::new(6, 5, 7, 2).unwrap(),
        PoolShape::new(4, 9, 9, 4).unwrap(),
        PoolShape::global(3, 1, 1).unwrap(),
        PoolShape::global(5, 6, 7).unwrap(),
    ];
    let gpu = gpu();
    let mut shapes = small.to_vec();
    shapes.push(PoolShape::global(10, 32, 32).unwrap());
    check_pool(&gpu, &shapes);
}

#[test]
fn conv1x1_forward_and_backward_match_cpu() {
    let small = [Conv1x1Shape::new(3, 5, 7, 19).unwrap()];
    check_conv1x1(&HarnessDevice::new(), &small);
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_conv1x1_forward_and_backward_match_cpu() {
    let small = [Conv1x1Shape::new(3, 5, 7, 19).unwrap()];
    let gpu = gpu();
    let mut shapes = small.to_vec();
    shapes.push(Conv1x1Shape::new(40, 64, 64, 64).unwrap());
    shapes.push(Conv1x1Shape::new(1, 300, 256, 1).unwrap());
    check_conv1x1(&gpu, &shapes);
}

#[test]
fn fc_forward_and_backward_match_cpu() {
    let small = [FcShape::new(5, 3, 7).unwrap()];
    check_fc(&HarnessDevice::new(), &small);
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_fc_forward_and_backward_match_cpu() {
    let small = [FcShape::new(5, 3, 7).unwrap()];
    let gpu = gpu();
    check_fc(&gpu, &[small[0], FcShape::new(128, 300, 257).unwrap()]);
}

#[test]
fn dynconv_forward_and_backward_match_cpu() {
    let shape = DynConvShape::new(3, 20, 37).unwrap();
    check_dynconv(&HarnessDevice::new(), shape);
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_dynconv_forward_and_backward_match_cpu() {
    let shape = DynConvShape::new(3, 20, 37).unwrap();
    let gpu = gpu();
    check_dynconv(&gpu, shape);
}

#[test]
fn fused_sanet_kernels_match_cpu() {
    let small = [SanetShape::new(3, 5, 7, 37).unwrap()];
    check_sanet(&HarnessDevice::new(), &small);
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_fused_sanet_kernels_match_cpu() {
    let small = [SanetShape::new(3, 5, 7, 37).unwrap()];
    let gpu = gpu();
    let mut shapes = small.to_vec();
    shapes.push(SanetShape::new(4, 64, 64, 1024).unwrap());
    shapes.push(SanetShape::new(2, 300, 256, 1).unwrap());
    check_sanet(&gpu, &shapes);
}
