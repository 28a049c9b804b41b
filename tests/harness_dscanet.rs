//! Every DSCANet kernel (kernels/pool.cu, conv1x1.cu, dynconv.cu, fc.cu, sanet.cu), f32,
//! and those that read or write an activation-sized tensor (pool, conv1x1, sanet) also
//! with that tensor stored as f16 and bf16, run on the CPU by sparta-harness through the CUDA wrappers themselves (on the harness
//! device), compared with the f64 CPU reference on random inputs and odd shapes, with
//! the kernels each wrapper launches; the traffic pin of the global mean pool and a
//! report of the block pool's traffic.
//!
//! Kernels that add with float atomics from several blocks (conv1x1 weight grad, the
//! dynconv / SANet sums) legitimately depend on the order of the blocks: their wrappers
//! say so (`Determinism::FloatAtomics`), and the harness device requires their three
//! schedules to agree within a tolerance instead of bitwise; the result is held to the
//! reference's tolerance.

mod harness_support;

use half::{bf16, f16};
use harness_support::device::{HarnessBuffer, HarnessDevice};
use harness_support::{rounded, tolerance, uniform, widen, Storage};
use sparta::ops::conv1x1::{self, Conv1x1Shape};
use sparta::ops::dynconv::{self, DynConvShape};
use sparta::ops::fc::{self, FcShape};
use sparta::ops::pool::{self, PoolShape};
use sparta::ops::sanet::{self, SanetShape};
use sparta::KernelDevice;
use sparta_harness::LaunchReport;

/// Relative tolerance of f32 against the f64 reference.
const TOL: f64 = 1e-5;

/// Random f32 values and the same values in f64 (what the reference sees).
fn random(len: usize, seed: u64) -> (Vec<f32>, Vec<f64>) {
    random_as::<f32>(len, seed)
}

/// Random values stored as T and the same values in f64.
fn random_as<T: Storage>(len: usize, seed: u64) -> (Vec<T>, Vec<f64>) {
    rounded::<T>(&uniform(len, -1.0, 1.0, seed))
}

/// `|got − want| ≤ TOL · max_j |want_j|` for every element: scale-aware, since a sum
/// that cancels to near zero carries the rounding of its large terms. NaN never passes.
fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_close_within(what, &widen(got), want, TOL);
}

/// [`assert_close`] at tolerance `tol` (a result stored as f16 / bf16).
fn assert_close_within(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(f64::MIN_POSITIVE, |m, w| m.max(w.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let within = (g - w).abs() <= tol * scale; // false for NaN
        assert!(
            within,
            "{what}[{i}]: {g} vs reference {w} (tolerance {tol} × {scale})"
        );
    }
}

fn read(dev: &HarnessDevice, b: &HarnessBuffer<f32>) -> Vec<f32> {
    dev.download(&dev.view(b)).unwrap()
}

fn read_wide<T: Storage>(dev: &HarnessDevice, b: &HarnessBuffer<T>) -> Vec<f64> {
    widen(&dev.download(&dev.view(b)).unwrap())
}

/// Asserts the kernels launched since the last call, in order.
fn assert_launched<S: AsRef<str>>(dev: &HarnessDevice, kernels: &[S]) {
    let want: Vec<&str> = kernels.iter().map(AsRef::as_ref).collect();
    assert_eq!(dev.take_launched(), want);
}

// ---- pool ----

/// (planes, H, W, B); B = 0 means the global mean pool (B ≥ max(H, W)). H·W = 1, a
/// single plane, planes of more pixels than a warp has lanes, B = 1, 2, 4, H and W not
/// multiples of B.
const POOL_SHAPES: &[(usize, usize, usize, usize)] = &[
    (1, 1, 1, 0),
    (3, 5, 7, 0),
    (2, 33, 9, 0),
    (1, 6, 5, 1),
    (3, 7, 5, 2),
    (2, 9, 10, 4),
    (5, 4, 4, 2),
    (2, 1, 1, 4),
];

fn pool_shape(&(planes, h, w, b): &(usize, usize, usize, usize)) -> PoolShape {
    if b == 0 {
        PoolShape::global(planes, h, w).unwrap()
    } else {
        PoolShape::new(planes, h, w, b).unwrap()
    }
}

fn run_pool_forward<T: Storage>(shape: &PoolShape, x: &[T]) -> (Vec<f32>, LaunchReport) {
    let dev = HarnessDevice::new();
    let xb = dev.upload("x", x).unwrap();
    let mut y = dev.alloc_scratch::<f32>("y", shape.out_len()).unwrap();
    pool::cuda::pool_forward(&dev, shape, &dev.view(&xb), &mut dev.view_mut(&mut y)).unwrap();
    let mut reports = dev.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].kernel, format!("pool_forward_{}", T::SUFFIX));
    (read(&dev, &y), reports.remove(0))
}

/// x (forward) and dx (backward) stored as T; the pooled side is f32, so the forward is
/// exact-input f32 arithmetic (f32's tolerance) and only dx is rounded to T.
fn pool_kernels_match<T: Storage>() {
    let sfx = T::SUFFIX;
    for (i, sd) in POOL_SHAPES.iter().enumerate() {
        let shape = pool_shape(sd);
        let (x, x64) = random_as::<T>(shape.in_len(), 10 + i as u64);
        let mut y = vec![0.0; shape.out_len()];
        pool::cpu::pool_forward(&shape, &x64, &mut y).unwrap();
        let (got, _) = run_pool_forward(&shape, &x);
        assert_close(&format!("pool_forward_{sfx} {sd:?}"), &got, &y);

        let (dy, dy64) = random(shape.out_len(), 20 + i as u64);
        let (dx0, mut dx) = random_as::<T>(shape.in_len(), 30 + i as u64);
        pool::cpu::pool_backward(&shape, &dy64, &mut dx).unwrap();
        let dev = HarnessDevice::new();
        let dyb = dev.upload("dy", &dy).unwrap();
        let mut dxb = dev.upload("dx", &dx0).unwrap();
        pool::cuda::pool_backward(&dev, &shape, &dev.view(&dyb), &mut dev.view_mut(&mut dxb))
            .unwrap();
        let kernel = format!("pool_backward_{sfx}");
        assert_launched(&dev, &[&kernel]);
        let what = format!("{kernel} {sd:?}");
        assert_close_within(&what, &read_wide(&dev, &dxb), &dx, tolerance::<T>());
    }
}

#[test]
fn pool_kernels_match_cpu_reference() {
    pool_kernels_match::<f32>();
    pool_kernels_match::<f16>();
    pool_kernels_match::<bf16>();
}

/// The global mean pool reads x once, coalesced: sectors requested within 3 % of
/// `ceil(bytes / 32)` and one load per element. ResNet-like planes (4×4, 8×8, 16×16).
#[test]
fn global_mean_pool_reads_x_once_coalesced() {
    for (planes, side) in [(128, 4), (64, 8), (16, 16)] {
        let shape = PoolShape::global(planes, side, side).unwrap();
        let (x, _) = random(shape.in_len(), 7);
        let (_, report) = run_pool_forward(&shape, &x);
        let b = report.buffer("x");
        assert!(
            (1.0..=1.03).contains(&b.load_ratio()),
            "global pool {planes}×{side}×{side}: x requested {:.3} × its size\n{report}",
            b.load_ratio()
        );
        assert_eq!(b.loads, shape.in_len() as u64, "global pool x loads");
        println!("global pool {planes}×{side}×{side}\n{report}");
    }
}

/// Reported, not pinned: with B > 1 a warp's lanes read B-wide row segments of one
/// block, so its loads span B rows (run with `--nocapture`).
#[test]
fn block_pool_traffic_report() {
    for (planes, side, b) in [(64, 8, 2), (16, 16, 2), (16, 16, 4), (4, 32, 4)] {
        let shape = PoolShape::new(planes, side, side, b).unwrap();
        let (x, _) = random(shape.in_len(), 8);
        let (_, report) = run_pool_forward(&shape, &x);
        let t = report.buffer("x");
        assert_eq!(t.loads, shape.in_len() as u64, "block pool x loads");
        println!(
            "block pool {planes}×{side}×{side} B={b}: x {} sectors ({:.3} × min)\n{report}",
            t.load_sectors,
            t.load_ratio()
        );
    }
}

// ---- conv1x1 ----

/// (N, Cin, Cout, pixels): C < 32, one pixel, N = 1, Cout < Cin, sizes not multiples of
/// the 16×16 tile, N > 1 (the weight gradient splits the samples over z-blocks).
const CONV_SHAPES: &[(usize, usize, usize, usize)] = &[
    (1, 3, 5, 1),
    (2, 37, 19, 17),
    (3, 5, 40, 33),
    (1, 16, 16, 16),
    (4, 20, 3, 7),
];

/// x and dx stored as T; w, b, y and the parameter gradients are f32 from exact inputs
/// (f32's tolerance), dx is rounded to T once.
fn conv1x1_kernels_match<T: Storage>() {
    let sfx = T::SUFFIX;
    for (i, &(n, cin, cout, pixels)) in CONV_SHAPES.iter().enumerate() {
        let shape = Conv1x1Shape::new(n, cin, cout, pixels).unwrap();
        let seed = 100 + 10 * i as u64;
        let (x, x64) = random_as::<T>(shape.x_len(), seed);
        let (w, w64) = random(shape.w_len(), seed + 1);
        let (b, b64) = random(cout, seed + 2);
        let (dy, dy64) = random(shape.y_len(), seed + 3);
        let sd = (n, cin, cout, pixels);

        let mut y = vec![0.0; shape.y_len()];
        conv1x1::cpu::conv1x1_forward(&shape, &x64, &w64, &b64, &mut y).unwrap();
        let dev = HarnessDevice::new();
        let xb = dev.upload("x", &x).unwrap();
        let wb = dev.upload("w", &w).unwrap();
        let bb = dev.upload("b", &b).unwrap();
        let mut yb = dev.alloc_scratch::<f32>("y", shape.y_len()).unwrap();
        for relu in [false, true] {
            conv1x1::cuda::conv1x1_forward(
                &dev,
                &shape,
                &dev.view(&xb),
                &dev.view(&wb),
                &dev.view(&bb),
                &mut dev.view_mut(&mut yb),
                relu,
            )
            .unwrap();
            assert_launched(&dev, &[format!("conv1x1_forward_{sfx}")]);
            let want: Vec<f64> = y
                .iter()
                .map(|&v| if relu { v.max(0.0) } else { v })
                .collect();
            let what = format!("conv1x1_forward_{sfx} {sd:?} relu {relu}");
            assert_close(&what, &read(&dev, &yb), &want);
        }

        let (dx0, mut dx) = random_as::<T>(shape.x_len(), seed + 4);
        let (dw0, mut dw) = random(shape.w_len(), seed + 5);
        let (db0, mut db) = random(cout, seed + 6);
        conv1x1::cpu::conv1x1_backward(
            &shape,
            &x64,
            &w64,
            &dy64,
            Some(&mut dx),
            Some(&mut dw),
            Some(&mut db),
        )
        .unwrap();
        let dyb = dev.upload("dy", &dy).unwrap();
        let mut dxb = dev.upload("dx", &dx0).unwrap();
        let mut dwb = dev.upload("dw", &dw0).unwrap();
        let mut dbb = dev.upload("db", &db0).unwrap();
        conv1x1::cuda::conv1x1_backward(
            &dev,
            &shape,
            &dev.view(&xb),
            &dev.view(&wb),
            &dev.view(&dyb),
            Some(&mut dev.view_mut(&mut dxb)),
            Some(&mut dev.view_mut(&mut dwb)),
            Some(&mut dev.view_mut(&mut dbb)),
        )
        .unwrap();
        assert_launched(
            &dev,
            &[
                format!("conv1x1_backward_input_{sfx}"),
                format!("conv1x1_backward_weight_{sfx}"),
                "conv1x1_backward_bias_f32".to_string(),
            ],
        );
        let what = format!("conv1x1_backward_{sfx} {sd:?}");
        let dx_got = read_wide(&dev, &dxb);
        assert_close_within(&format!("{what} dx"), &dx_got, &dx, tolerance::<T>());
        assert_close(&format!("{what} dw"), &read(&dev, &dwb), &dw);
        assert_close(&format!("{what} db"), &read(&dev, &dbb), &db);
    }
}

#[test]
fn conv1x1_kernels_match_cpu_reference() {
    conv1x1_kernels_match::<f32>();
    conv1x1_kernels_match::<f16>();
    conv1x1_kernels_match::<bf16>();
}

#[test]
fn relu_mask_matches_cpu_reference() {
    for (i, len) in [1usize, 31, 257, 1000].into_iter().enumerate() {
        let (mut hv, _) = random(len, 200 + i as u64);
        hv[0] = 0.0; // masked: the ReLU's gradient at exactly 0 is 0
        let (dh0, _) = random(len, 210 + i as u64);
        let want: Vec<f64> = hv
            .iter()
            .zip(&dh0)
            .map(|(&h, &d)| if h > 0.0 { f64::from(d) } else { 0.0 })
            .collect();
        let dev = HarnessDevice::new();
        let hb = dev.upload("h", &hv).unwrap();
        let mut dhb = dev.upload("dh", &dh0).unwrap();
        conv1x1::cuda::relu_mask(&dev, &dev.view(&hb), &mut dev.view_mut(&mut dhb)).unwrap();
        assert_launched(&dev, &["relu_mask_f32"]);
        assert_close(&format!("relu_mask_f32 {len}"), &read(&dev, &dhb), &want);
    }
}

// ---- fc ----

/// (N, in, out): all ones, C < 32, in and out not multiples of the warp or the block.
const FC_SHAPES: &[(usize, usize, usize)] = &[(1, 1, 1), (3, 37, 5), (2, 70, 33), (5, 3, 10)];

#[test]
fn fc_kernels_match_cpu_reference() {
    for (i, &(n, inp, out)) in FC_SHAPES.iter().enumerate() {
        let shape = FcShape::new(n, inp, out).unwrap();
        let seed = 300 + 10 * i as u64;
        let (x, x64) = random(n * inp, seed);
        let (w, w64) = random(out * inp, seed + 1);
        let (b, b64) = random(out, seed + 2);
        let (dy, dy64) = random(n * out, seed + 3);
        let sd = (n, inp, out);

        let mut y = vec![0.0; n * out];
        fc::cpu::fc_forward(&shape, &x64, &w64, &b64, &mut y).unwrap();
        let dev = HarnessDevice::new();
        let xb = dev.upload("x", &x).unwrap();
        let wb = dev.upload("w", &w).unwrap();
        let bb = dev.upload("b", &b).unwrap();
        let mut yb = dev.alloc_scratch::<f32>("y", n * out).unwrap();
        for relu in [false, true] {
            fc::cuda::fc_forward(
                &dev,
                &shape,
                &dev.view(&xb),
                &dev.view(&wb),
                &dev.view(&bb),
                &mut dev.view_mut(&mut yb),
                relu,
            )
            .unwrap();
            assert_launched(&dev, &["fc_forward_f32"]);
            let want: Vec<f64> = y
                .iter()
                .map(|&v| if relu { v.max(0.0) } else { v })
                .collect();
            let what = format!("fc_forward_f32 {sd:?} relu {relu}");
            assert_close(&what, &read(&dev, &yb), &want);
        }

        let (dx0, mut dx) = random(n * inp, seed + 4);
        let (dw0, mut dw) = random(out * inp, seed + 5);
        let (db0, mut db) = random(out, seed + 6);
        fc::cpu::fc_backward(
            &shape,
            &x64,
            &w64,
            &dy64,
            Some(&mut dx),
            Some(&mut dw),
            Some(&mut db),
        )
        .unwrap();
        let dyb = dev.upload("dy", &dy).unwrap();
        let mut dxb = dev.upload("dx", &dx0).unwrap();
        let mut dwb = dev.upload("dw", &dw0).unwrap();
        let mut dbb = dev.upload("db", &db0).unwrap();
        fc::cuda::fc_backward(
            &dev,
            &shape,
            &dev.view(&xb),
            &dev.view(&wb),
            &dev.view(&dyb),
            Some(&mut dev.view_mut(&mut dxb)),
            Some((&mut dev.view_mut(&mut dwb), &mut dev.view_mut(&mut dbb))),
        )
        .unwrap();
        assert_launched(&dev, &["fc_backward_input_f32", "fc_backward_params_f32"]);
        let what = format!("fc_backward_f32 {sd:?}");
        assert_close(&format!("{what} dx"), &read(&dev, &dxb), &dx);
        assert_close(&format!("{what} dw"), &read(&dev, &dwb), &dw);
        assert_close(&format!("{what} db"), &read(&dev, &dbb), &db);
    }
}

// ---- dynconv and the fused SANet kernels ----

/// Per-sample rows of `row_len` values in a strided buffer: row n at `n·ld`. `ld = 0` is
/// one row broadcast to every sample. Returns the buffer and the dense `[n, row_len]`
/// rows the reference sees.
fn strided_rows(n: usize, row_len: usize, ld: usize, seed: u64) -> (Vec<f32>, Vec<f64>) {
    let len = if ld == 0 {
        row_len
    } else {
        (n - 1) * ld + row_len
    };
    let (buf, buf64) = random(len, seed);
    let dense = (0..n)
        .flat_map(|s| buf64[s * ld..s * ld + row_len].to_vec())
        .collect();
    (buf, dense)
}

/// `dense[n, row_len]` summed into a strided buffer (`ld = 0` sums over samples).
fn add_strided(buf: &mut [f64], dense: &[f64], row_len: usize, ld: usize) {
    for (s, row) in dense.chunks(row_len).enumerate() {
        for (k, v) in row.iter().enumerate() {
            buf[s * ld + k] += v;
        }
    }
}

/// (N, K, pixels) and the weight row stride: DPNet rows (K + 1), broadcast (0), dense.
const DYNCONV_SHAPES: &[(usize, usize, usize, usize)] = &[
    (1, 1, 1, 1),
    (2, 5, 17, 6),
    (3, 19, 70, 0),
    (1, 3, 300, 3),
    (4, 2, 33, 0),
];

#[test]
fn dynconv_kernels_match_cpu_reference() {
    for (i, &(n, k, pixels, ld)) in DYNCONV_SHAPES.iter().enumerate() {
        let shape = DynConvShape::new(n, k, pixels).unwrap();
        let seed = 400 + 10 * i as u64;
        let sd = (n, k, pixels, ld);
        let (hv, h64) = random(shape.h_len(), seed);
        let (w, w64) = strided_rows(n, k, ld, seed + 1);
        let (b, b64) = strided_rows(n, 1, ld, seed + 2);
        let (ds, ds64) = random(shape.s_len(), seed + 3);

        let mut s = vec![0.0; shape.s_len()];
        dynconv::cpu::dynconv_forward(&shape, &h64, &w64, &b64, &mut s).unwrap();
        let (dh0, mut dh) = random(shape.h_len(), seed + 4);
        let mut dw_dense = vec![0.0; n * k];
        let mut db_dense = vec![0.0; n];
        dynconv::cpu::dynconv_backward(
            &shape,
            &h64,
            &w64,
            &ds64,
            Some(&mut dh),
            Some(&mut dw_dense),
            Some(&mut db_dense),
        )
        .unwrap();
        let (dw0, mut dw) = random(w.len(), seed + 5);
        let (db0, mut db) = random(b.len(), seed + 6);
        add_strided(&mut dw, &dw_dense, k, ld);
        add_strided(&mut db, &db_dense, 1, ld);

        let dev = HarnessDevice::new();
        let hb = dev.upload("h", &hv).unwrap();
        let wb = dev.upload("w", &w).unwrap();
        let bb = dev.upload("b", &b).unwrap();
        let dsb = dev.upload("ds", &ds).unwrap();
        let mut sb = dev.alloc_scratch::<f32>("s", shape.s_len()).unwrap();
        let mut dhb = dev.upload("dh", &dh0).unwrap();
        let mut dwb = dev.upload("dw", &dw0).unwrap();
        let mut dbb = dev.upload("db", &db0).unwrap();
        let (h_view, wv, bv, dsv) = (dev.view(&hb), dev.view(&wb), dev.view(&bb), dev.view(&dsb));
        dynconv::cuda::dynconv_forward(
            &dev,
            &shape,
            &h_view,
            &wv,
            ld,
            &bv,
            ld,
            &mut dev.view_mut(&mut sb),
        )
        .unwrap();
        assert_close(&format!("dynconv_forward_f32 {sd:?}"), &read(&dev, &sb), &s);
        dynconv::cuda::dynconv_backward_input(
            &dev,
            &shape,
            &wv,
            ld,
            &dsv,
            &mut dev.view_mut(&mut dhb),
        )
        .unwrap();
        assert_close(
            &format!("dynconv_backward_input_f32 {sd:?}"),
            &read(&dev, &dhb),
            &dh,
        );
        dynconv::cuda::dynconv_backward_weight(
            &dev,
            &shape,
            &h_view,
            &dsv,
            &mut dev.view_mut(&mut dwb),
            ld,
        )
        .unwrap();
        assert_close(
            &format!("dynconv_backward_weight_f32 {sd:?}"),
            &read(&dev, &dwb),
            &dw,
        );
        dynconv::cuda::dynconv_backward_bias(&dev, &shape, &dsv, &mut dev.view_mut(&mut dbb), ld)
            .unwrap();
        assert_close(
            &format!("dynconv_backward_bias_f32 {sd:?}"),
            &read(&dev, &dbb),
            &db,
        );
        assert_launched(
            &dev,
            &[
                "dynconv_forward_f32",
                "dynconv_backward_input_f32",
                "dynconv_backward_weight_f32",
                "dynconv_backward_bias_f32",
            ],
        );
    }
}

/// (N, C, Co, pixels) and Conv5's row stride: Co < C, C < 32, one pixel, sizes not
/// multiples of the 16×16 tile, more than one Co tile, DPNet rows (Co + 1) or broadcast.
const SANET_SHAPES: &[(usize, usize, usize, usize, usize)] = &[
    (1, 3, 2, 1, 3),
    (2, 37, 19, 17, 20),
    (1, 5, 20, 40, 0),
    (3, 8, 4, 9, 5),
];

/// The fused kernels against the unfused reference: h = ReLU(Conv3(xs)) from the conv1x1
/// reference, then the pool, dynamic conv and their gradients on h. xs is stored as T;
/// every output is f32 from exact inputs, held to f32's tolerance.
fn sanet_kernels_match<T: Storage>() {
    let sfx = T::SUFFIX;
    for (i, &(n, c, co, pixels, ld)) in SANET_SHAPES.iter().enumerate() {
        let shape = SanetShape::new(n, c, co, pixels).unwrap();
        let sd = (n, c, co, pixels, ld);
        let seed = 500 + 10 * i as u64;
        let (xs, xs64) = random_as::<T>(shape.xs_len(), seed);
        let (w3, w364) = random(co * c, seed + 1);
        let (b3, b364) = random(co, seed + 2);
        let (w5, w564) = strided_rows(n, co, ld, seed + 3);
        let (b5, b564) = strided_rows(n, 1, ld, seed + 4);
        let (ds, ds64) = random(n * pixels, seed + 5);
        let (dq, dq64) = random(n * co, seed + 6);

        let conv3 = Conv1x1Shape::new(n, c, co, pixels).unwrap();
        let mut hv = vec![0.0; shape.h_len()];
        conv1x1::cpu::conv1x1_forward(&conv3, &xs64, &w364, &b364, &mut hv).unwrap();
        hv.iter_mut().for_each(|v| *v = v.max(0.0));
        let plane = PoolShape::global(n * co, 1, pixels).unwrap();
        let mut mean = vec![0.0; n * co];
        pool::cpu::pool_forward(&plane, &hv, &mut mean).unwrap();
        // Random contents the wrapper must overwrite.
        let (q0, _) = random(n * co, seed + 7);
        let dyn_shape = DynConvShape::new(n, co, pixels).unwrap();
        let mut s = vec![0.0; n * pixels];
        dynconv::cpu::dynconv_forward(&dyn_shape, &hv, &w564, &b564, &mut s).unwrap();
        let mut dw5_dense = vec![0.0; n * co];
        dynconv::cpu::dynconv_backward(
            &dyn_shape,
            &hv,
            &w564,
            &ds64,
            None,
            Some(&mut dw5_dense),
            None,
        )
        .unwrap();
        let (dw50, mut dw5) = random(w5.len(), seed + 8);
        add_strided(&mut dw5, &dw5_dense, co, ld);
        // dh = h > 0 ? w5·ds + dq / P : 0 (the pool's and Conv5's gradients through ReLU).
        let dh: Vec<f64> = (0..shape.h_len())
            .map(|idx| {
                let (row, p) = (idx / pixels, idx % pixels);
                let (s_n, o) = (row / co, row % co);
                if hv[idx] > 0.0 {
                    w564[s_n * co + o] * ds64[s_n * pixels + p] + dq64[row] / pixels as f64
                } else {
                    0.0
                }
            })
            .collect();

        let dev = HarnessDevice::new();
        let up = |name: &str, v: &[f32]| dev.upload(name, v).unwrap();
        let xsb = dev.upload("xs", &xs).unwrap();
        let (w3b, b3b) = (up("w3", &w3), up("b3", &b3));
        let (w5b, b5b, dsb, dqb) = (up("w5", &w5), up("b5", &b5), up("ds", &ds), up("dq", &dq));
        let (xsv, w3v, b3v) = (dev.view(&xsb), dev.view(&w3b), dev.view(&b3b));
        let (w5v, b5v, dsv, dqv) = (
            dev.view(&w5b),
            dev.view(&b5b),
            dev.view(&dsb),
            dev.view(&dqb),
        );
        // q is overwritten: the wrapper zeroes it before the kernel adds into it.
        let mut qb = up("q", &q0);
        sanet::cuda::sanet_pool(&dev, &shape, &xsv, &w3v, &b3v, &mut dev.view_mut(&mut qb))
            .unwrap();
        assert_close(&format!("sanet_pool_{sfx} {sd:?}"), &read(&dev, &qb), &mean);

        let mut sb = dev.alloc_scratch::<f32>("s", n * pixels).unwrap();
        sanet::cuda::sanet_conv5(
            &dev,
            &shape,
            &xsv,
            &w3v,
            &b3v,
            &w5v,
            ld,
            &b5v,
            ld,
            &mut dev.view_mut(&mut sb),
        )
        .unwrap();
        assert_close(&format!("sanet_conv5_{sfx} {sd:?}"), &read(&dev, &sb), &s);

        let mut dw5b = up("dw5", &dw50);
        sanet::cuda::sanet_dw5(
            &dev,
            &shape,
            &xsv,
            &w3v,
            &b3v,
            &dsv,
            &mut dev.view_mut(&mut dw5b),
            ld,
        )
        .unwrap();
        assert_close(&format!("sanet_dw5_{sfx} {sd:?}"), &read(&dev, &dw5b), &dw5);

        let mut dhb = dev.alloc_scratch::<f32>("dh", shape.h_len()).unwrap();
        sanet::cuda::sanet_dh(
            &dev,
            &shape,
            &xsv,
            &w3v,
            &b3v,
            &w5v,
            ld,
            &dsv,
            &dqv,
            &mut dev.view_mut(&mut dhb),
        )
        .unwrap();
        assert_close(&format!("sanet_dh_{sfx} {sd:?}"), &read(&dev, &dhb), &dh);
        let kernels = ["sanet_pool", "sanet_conv5", "sanet_dw5", "sanet_dh"];
        assert_launched(&dev, &kernels.map(|k| format!("{k}_{sfx}")));
    }
}

#[test]
fn sanet_kernels_match_cpu_reference() {
    sanet_kernels_match::<f32>();
    sanet_kernels_match::<f16>();
    sanet_kernels_match::<bf16>();
}
