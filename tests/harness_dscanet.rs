//! Every DSCANet kernel (kernels/pool.cu, conv1x1.cu, dynconv.cu, fc.cu, sanet.cu), f32,
//! run on the CPU by sparta-harness with the wrappers' own launch shapes and compared
//! with the f64 CPU reference on random inputs and odd shapes; the traffic pin of the
//! global mean pool and a report of the block pool's traffic.
//!
//! Kernels that add with float atomics from several blocks (conv1x1 weight grad, the
//! dynconv / SANet sums) legitimately depend on the order of the blocks, so they run
//! under each schedule separately and every result is held to the tolerance.

mod harness_support;

use harness_support::{dims, rounded, uniform};
use sparta::ops::conv1x1::{
    self, conv1x1_bias_launch, conv1x1_tile_launch, conv1x1_weight_launch, relu_mask_launch,
    Conv1x1Shape,
};
use sparta::ops::dynconv::{
    self, dynconv_bias_launch, dynconv_forward_launch, dynconv_input_launch, dynconv_weight_launch,
    DynConvShape,
};
use sparta::ops::fc::{self, fc_forward_launch, fc_input_launch, fc_params_launch, FcShape};
use sparta::ops::pool::{self, pool_backward_launch, pool_forward_launch, PoolShape};
use sparta::ops::sanet::{sanet_conv5_launch, sanet_tile_launch, SanetShape};
use sparta::ops::LaunchDims;
use sparta_harness::{Arg, Buf, Harness, LaunchReport, SCHEDULES};

/// Relative tolerance of f32 against the f64 reference.
const TOL: f64 = 1e-5;

/// Random f32 values and the same values in f64 (what the reference sees).
fn random(len: usize, seed: u64) -> (Vec<f32>, Vec<f64>) {
    rounded::<f32>(&uniform(len, -1.0, 1.0, seed))
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

/// Runs a kernel whose result depends on the order of its float atomics under every
/// schedule, each from `init` (buffer, contents), and checks each `(buffer, reference)`.
fn launch_each_schedule(
    h: &mut Harness,
    kernel: &str,
    d: LaunchDims,
    args: &[Arg],
    init: &[(Buf, &[f32])],
    check: &[(Buf, &[f64])],
) {
    for schedule in SCHEDULES {
        for (b, data) in init {
            h.write(*b, data);
        }
        h.launch_with(kernel, dims(d), args, schedule)
            .unwrap_or_else(|e| panic!("{kernel} {schedule:?}: {e}"));
        for (b, want) in check {
            assert_close(&format!("{kernel} {schedule:?}"), &h.read::<f32>(*b), want);
        }
    }
}

fn i32_arg(v: usize) -> Arg {
    Arg::I32(i32::try_from(v).unwrap())
}

fn i64_arg(v: usize) -> Arg {
    Arg::I64(i64::try_from(v).unwrap())
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

fn pool_args(shape: &PoolShape, a: Buf, b: Buf, len: usize) -> [Arg; 6] {
    [
        Arg::Buf(a),
        Arg::Buf(b),
        i64_arg(len),
        i32_arg(shape.h),
        i32_arg(shape.w),
        i32_arg(shape.block),
    ]
}

fn run_pool_forward(shape: &PoolShape, x: &[f32]) -> (Vec<f32>, LaunchReport) {
    let mut h = Harness::new();
    let xb = h.input("x", x);
    let yb = h.output::<f32>("y", shape.out_len());
    let args = pool_args(shape, xb, yb, shape.out_len());
    let report = h
        .launch("pool_forward_f32", dims(pool_forward_launch(shape)), &args)
        .unwrap();
    (h.read::<f32>(yb), report)
}

#[test]
fn pool_kernels_match_cpu_reference() {
    for (i, sd) in POOL_SHAPES.iter().enumerate() {
        let shape = pool_shape(sd);
        let (x, x64) = random(shape.in_len(), 10 + i as u64);
        let mut y = vec![0.0; shape.out_len()];
        pool::cpu::pool_forward(&shape, &x64, &mut y).unwrap();
        let (got, _) = run_pool_forward(&shape, &x);
        assert_close(&format!("pool_forward_f32 {sd:?}"), &got, &y);

        let (dy, dy64) = random(shape.out_len(), 20 + i as u64);
        let (dx0, mut dx) = random(shape.in_len(), 30 + i as u64);
        pool::cpu::pool_backward(&shape, &dy64, &mut dx).unwrap();
        let mut h = Harness::new();
        let dyb = h.input("dy", &dy);
        let dxb = h.input("dx", &dx0);
        let args = pool_args(&shape, dyb, dxb, shape.in_len());
        h.launch(
            "pool_backward_f32",
            dims(pool_backward_launch(&shape)),
            &args,
        )
        .unwrap();
        assert_close(
            &format!("pool_backward_f32 {sd:?}"),
            &h.read::<f32>(dxb),
            &dx,
        );
    }
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

#[test]
fn conv1x1_kernels_match_cpu_reference() {
    for (i, &(n, cin, cout, pixels)) in CONV_SHAPES.iter().enumerate() {
        let shape = Conv1x1Shape::new(n, cin, cout, pixels).unwrap();
        let seed = 100 + 10 * i as u64;
        let (x, x64) = random(shape.x_len(), seed);
        let (w, w64) = random(shape.w_len(), seed + 1);
        let (b, b64) = random(cout, seed + 2);
        let (dy, dy64) = random(shape.y_len(), seed + 3);
        let sd = (n, cin, cout, pixels);

        let mut y = vec![0.0; shape.y_len()];
        conv1x1::cpu::conv1x1_forward(&shape, &x64, &w64, &b64, &mut y).unwrap();
        let mut h = Harness::new();
        let xb = h.input("x", &x);
        let wb = h.input("w", &w);
        let bb = h.input("b", &b);
        let yb = h.output::<f32>("y", shape.y_len());
        for relu in [0, 1] {
            let args = [
                Arg::Buf(xb),
                Arg::Buf(wb),
                Arg::Buf(bb),
                Arg::Buf(yb),
                i32_arg(cin),
                i32_arg(cout),
                i32_arg(pixels),
                Arg::I32(relu),
            ];
            let d = conv1x1_tile_launch(cout, pixels, n);
            h.launch("conv1x1_forward_f32", dims(d), &args).unwrap();
            let want: Vec<f64> = if relu == 0 {
                y.clone()
            } else {
                y.iter().map(|&v| v.max(0.0)).collect()
            };
            let got = h.read::<f32>(yb);
            assert_close(
                &format!("conv1x1_forward_f32 {sd:?} relu {relu}"),
                &got,
                &want,
            );
        }

        let (dx0, mut dx) = random(shape.x_len(), seed + 4);
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
        let dyb = h.input("dy", &dy);
        let dxb = h.input("dx", &dx0);
        let dwb = h.input("dw", &dw0);
        let dbb = h.input("db", &db0);
        let args = [
            Arg::Buf(dyb),
            Arg::Buf(wb),
            Arg::Buf(dxb),
            i32_arg(cin),
            i32_arg(cout),
            i32_arg(pixels),
        ];
        let d = conv1x1_tile_launch(cin, pixels, n);
        h.launch("conv1x1_backward_input_f32", dims(d), &args)
            .unwrap();
        assert_close(
            &format!("conv1x1_backward_input_f32 {sd:?}"),
            &h.read::<f32>(dxb),
            &dx,
        );

        let args = [
            Arg::Buf(xb),
            Arg::Buf(dyb),
            Arg::Buf(dwb),
            i32_arg(n),
            i32_arg(cin),
            i32_arg(cout),
            i32_arg(pixels),
        ];
        launch_each_schedule(
            &mut h,
            "conv1x1_backward_weight_f32",
            conv1x1_weight_launch(&shape),
            &args,
            &[(dwb, &dw0)],
            &[(dwb, &dw)],
        );

        let args = [
            Arg::Buf(dyb),
            Arg::Buf(dbb),
            i32_arg(n),
            i32_arg(cout),
            i32_arg(pixels),
        ];
        h.launch(
            "conv1x1_backward_bias_f32",
            dims(conv1x1_bias_launch(&shape)),
            &args,
        )
        .unwrap();
        assert_close(
            &format!("conv1x1_backward_bias_f32 {sd:?}"),
            &h.read::<f32>(dbb),
            &db,
        );
    }
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
        let mut h = Harness::new();
        let hb = h.input("h", &hv);
        let dhb = h.input("dh", &dh0);
        let args = [Arg::Buf(hb), Arg::Buf(dhb), i64_arg(len)];
        h.launch("relu_mask_f32", dims(relu_mask_launch(len)), &args)
            .unwrap();
        assert_close(&format!("relu_mask_f32 {len}"), &h.read::<f32>(dhb), &want);
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
        let mut h = Harness::new();
        let xb = h.input("x", &x);
        let wb = h.input("w", &w);
        let bb = h.input("b", &b);
        let yb = h.output::<f32>("y", n * out);
        for relu in [0, 1] {
            let args = [
                Arg::Buf(xb),
                Arg::Buf(wb),
                Arg::Buf(bb),
                Arg::Buf(yb),
                i32_arg(n),
                i32_arg(inp),
                i32_arg(out),
                Arg::I32(relu),
            ];
            h.launch("fc_forward_f32", dims(fc_forward_launch(&shape)), &args)
                .unwrap();
            let want: Vec<f64> = if relu == 0 {
                y.clone()
            } else {
                y.iter().map(|&v| v.max(0.0)).collect()
            };
            let got = h.read::<f32>(yb);
            assert_close(&format!("fc_forward_f32 {sd:?} relu {relu}"), &got, &want);
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
        let dyb = h.input("dy", &dy);
        let dxb = h.input("dx", &dx0);
        let dwb = h.input("dw", &dw0);
        let dbb = h.input("db", &db0);
        let args = [
            Arg::Buf(dyb),
            Arg::Buf(wb),
            Arg::Buf(dxb),
            i32_arg(n),
            i32_arg(inp),
            i32_arg(out),
        ];
        h.launch(
            "fc_backward_input_f32",
            dims(fc_input_launch(&shape)),
            &args,
        )
        .unwrap();
        assert_close(
            &format!("fc_backward_input_f32 {sd:?}"),
            &h.read::<f32>(dxb),
            &dx,
        );
        let args = [
            Arg::Buf(xb),
            Arg::Buf(dyb),
            Arg::Buf(dwb),
            Arg::Buf(dbb),
            i32_arg(n),
            i32_arg(inp),
            i32_arg(out),
        ];
        h.launch(
            "fc_backward_params_f32",
            dims(fc_params_launch(&shape)),
            &args,
        )
        .unwrap();
        let what = format!("fc_backward_params_f32 {sd:?}");
        assert_close(&format!("{what} dw"), &h.read::<f32>(dwb), &dw);
        assert_close(&format!("{what} db"), &h.read::<f32>(dbb), &db);
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

        let mut hh = Harness::new();
        let hb = hh.input("h", &hv);
        let wb = hh.input("w", &w);
        let bb = hh.input("b", &b);
        let dsb = hh.input("ds", &ds);
        let sb = hh.output::<f32>("s", shape.s_len());
        let dhb = hh.input("dh", &dh0);
        let dwb = hh.input("dw", &dw0);
        let dbb = hh.input("db", &db0);
        let (ni, ki, pi, ldi) = (i32_arg(n), i32_arg(k), i32_arg(pixels), i32_arg(ld));
        let args = [
            Arg::Buf(hb),
            Arg::Buf(wb),
            ldi,
            Arg::Buf(bb),
            ldi,
            Arg::Buf(sb),
            ni,
            ki,
            pi,
        ];
        hh.launch(
            "dynconv_forward_f32",
            dims(dynconv_forward_launch(&shape)),
            &args,
        )
        .unwrap();
        assert_close(
            &format!("dynconv_forward_f32 {sd:?}"),
            &hh.read::<f32>(sb),
            &s,
        );

        let args = [Arg::Buf(wb), ldi, Arg::Buf(dsb), Arg::Buf(dhb), ni, ki, pi];
        hh.launch(
            "dynconv_backward_input_f32",
            dims(dynconv_input_launch(&shape)),
            &args,
        )
        .unwrap();
        assert_close(
            &format!("dynconv_backward_input_f32 {sd:?}"),
            &hh.read::<f32>(dhb),
            &dh,
        );

        let args = [Arg::Buf(hb), Arg::Buf(dsb), Arg::Buf(dwb), ldi, ni, ki, pi];
        launch_each_schedule(
            &mut hh,
            "dynconv_backward_weight_f32",
            dynconv_weight_launch(&shape),
            &args,
            &[(dwb, &dw0)],
            &[(dwb, &dw)],
        );
        let args = [Arg::Buf(dsb), Arg::Buf(dbb), ldi, pi];
        launch_each_schedule(
            &mut hh,
            "dynconv_backward_bias_f32",
            dynconv_bias_launch(&shape),
            &args,
            &[(dbb, &db0)],
            &[(dbb, &db)],
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
/// reference, then the pool, dynamic conv and their gradients on h.
#[test]
fn sanet_kernels_match_cpu_reference() {
    for (i, &(n, c, co, pixels, ld)) in SANET_SHAPES.iter().enumerate() {
        let shape = SanetShape::new(n, c, co, pixels).unwrap();
        let sd = (n, c, co, pixels, ld);
        let seed = 500 + 10 * i as u64;
        let (xs, xs64) = random(shape.xs_len(), seed);
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
        let (q0, q064) = random(n * co, seed + 7);
        let q: Vec<f64> = q064.iter().zip(&mean).map(|(a, b)| a + b).collect();
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

        let mut h = Harness::new();
        let xsb = h.input("xs", &xs);
        let w3b = h.input("w3", &w3);
        let b3b = h.input("b3", &b3);
        let w5b = h.input("w5", &w5);
        let b5b = h.input("b5", &b5);
        let dsb = h.input("ds", &ds);
        let dqb = h.input("dq", &dq);
        let qb = h.input("q", &q0);
        let sb = h.output::<f32>("s", n * pixels);
        let dw5b = h.input("dw5", &dw50);
        let dhb = h.output::<f32>("dh", shape.h_len());
        let (ci, coi, pi, ldi) = (i32_arg(c), i32_arg(co), i32_arg(pixels), i32_arg(ld));
        let conv3_args = [Arg::Buf(xsb), Arg::Buf(w3b), Arg::Buf(b3b)];

        let mut args = conv3_args.to_vec();
        args.extend([Arg::Buf(qb), ci, coi, pi]);
        launch_each_schedule(
            &mut h,
            "sanet_pool_f32",
            sanet_tile_launch(&shape),
            &args,
            &[(qb, &q0)],
            &[(qb, &q)],
        );

        let mut args = conv3_args.to_vec();
        args.extend([
            Arg::Buf(w5b),
            ldi,
            Arg::Buf(b5b),
            ldi,
            Arg::Buf(sb),
            ci,
            coi,
            pi,
        ]);
        h.launch("sanet_conv5_f32", dims(sanet_conv5_launch(&shape)), &args)
            .unwrap();
        assert_close(&format!("sanet_conv5_f32 {sd:?}"), &h.read::<f32>(sb), &s);

        let mut args = conv3_args.to_vec();
        args.extend([Arg::Buf(dsb), Arg::Buf(dw5b), ldi, ci, coi, pi]);
        launch_each_schedule(
            &mut h,
            "sanet_dw5_f32",
            sanet_tile_launch(&shape),
            &args,
            &[(dw5b, &dw50)],
            &[(dw5b, &dw5)],
        );

        let mut args = conv3_args.to_vec();
        args.extend([
            Arg::Buf(w5b),
            ldi,
            Arg::Buf(dsb),
            Arg::Buf(dqb),
            Arg::Buf(dhb),
            ci,
            coi,
            pi,
        ]);
        h.launch("sanet_dh_f32", dims(sanet_tile_launch(&shape)), &args)
            .unwrap();
        assert_close(&format!("sanet_dh_f32 {sd:?}"), &h.read::<f32>(dhb), &dh);
    }
}
