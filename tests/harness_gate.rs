//! Every kernel of kernels/gate.cu and kernels/relu.cu, in every storage type, run on
//! the CPU by sparta-harness with the wrappers' own launch shapes and compared with the
//! f64 CPU reference on odd shapes; the traffic pins of the bandwidth-bound kernels; and
//! planted bugs (harness/mutants/) that the harness must catch.

mod harness_support;

use half::{bf16, f16};
use harness_support::{
    assert_close, check_close, dims, rounded, tolerance, uniform, widen, Storage,
};
use sparta::ops::gate::{
    cpu, gate_backward_scratch_len, gate_channel_groups, gate_ds_launch, gate_launch,
    gate_mul_launch, GateShape,
};
use sparta::ops::relu::{self, relu_launch};
use sparta_harness::{Arg, Harness, HarnessError, LaunchReport};

/// Odd shapes (N, C, H, W, B): C < 32, H·W = 1, N = 1, sizes that are not multiples of
/// the warp, of the block or of B, more pixels than a block has threads, W = 1.
const SHAPES: &[(usize, usize, usize, usize, usize)] = &[
    (1, 3, 1, 1, 1),
    (2, 5, 7, 7, 1),
    (3, 37, 5, 3, 2),
    (1, 17, 20, 19, 3),
    (2, 9, 33, 1, 1),
    (2, 70, 4, 4, 1),
    (1, 40, 6, 6, 4),
];

fn shape(&(n, c, h, w, b): &(usize, usize, usize, usize, usize)) -> GateShape {
    GateShape::new(n, c, h, w, b).unwrap()
}

fn i32s(shape: &GateShape) -> [Arg; 5] {
    [
        Arg::I32(shape.n as i32),
        Arg::I32(shape.c as i32),
        Arg::I32(shape.h as i32),
        Arg::I32(shape.w as i32),
        Arg::I32(shape.block as i32),
    ]
}

/// Inputs of one gate problem, rounded to T, with the f64 values the reference sees.
struct Problem<T> {
    x: (Vec<T>, Vec<f64>),
    s: (Vec<T>, Vec<f64>),
    c: (Vec<T>, Vec<f64>),
    dy: (Vec<T>, Vec<f64>),
}

fn problem<T: Storage>(shape: &GateShape, seed: u64) -> Problem<T> {
    Problem {
        x: rounded(&uniform(shape.x_len(), -2.0, 2.0, seed)),
        s: rounded(&uniform(shape.s_len(), -3.0, 3.0, seed + 1)),
        c: rounded(&uniform(shape.c_len(), -3.0, 3.0, seed + 2)),
        dy: rounded(&uniform(shape.x_len(), -1.0, 1.0, seed + 3)),
    }
}

/// Runs gate_forward_<T> (or a mutant of it, `prefix`) and returns y and the report.
fn run_forward<T: Storage>(
    prefix: &str,
    shape: &GateShape,
    p: &Problem<T>,
) -> Result<(Vec<f64>, LaunchReport), HarnessError> {
    let mut h = Harness::new();
    let x = h.input("x", &p.x.0);
    let s = h.input("s", &p.s.0);
    let c = h.input("c", &p.c.0);
    let y = h.output::<T>("y", shape.x_len());
    let mut args = vec![Arg::Buf(x), Arg::Buf(s), Arg::Buf(c), Arg::Buf(y)];
    args.extend(i32s(shape));
    let name = format!("{prefix}gate_forward_{}", T::SUFFIX);
    let report = h.launch(&name, dims(gate_launch(shape)), &args)?;
    Ok((widen(&h.read::<T>(y)), report))
}

struct Backward {
    dx: Vec<f64>,
    ds: Vec<f64>,
    dc: Vec<f64>,
    report: LaunchReport,
}

/// Runs gate_backward_<T> then gate_backward_ds_<T>, as the CUDA wrapper does.
fn run_backward<T: Storage>(
    prefix: &str,
    shape: &GateShape,
    p: &Problem<T>,
) -> Result<Backward, HarnessError> {
    let mut h = Harness::new();
    let x = h.input("x", &p.x.0);
    let s = h.input("s", &p.s.0);
    let c = h.input("c", &p.c.0);
    let dy = h.input("dy", &p.dy.0);
    let dx = h.output::<T>("dx", shape.x_len());
    let partial = h.output::<f32>("ds_partial", gate_backward_scratch_len(shape));
    let dc = h.output::<T>("dc", shape.c_len());
    let ds = h.output::<T>("ds", shape.s_len());
    let mut args = vec![
        Arg::Buf(x),
        Arg::Buf(s),
        Arg::Buf(c),
        Arg::Buf(dy),
        Arg::Buf(dx),
        Arg::Buf(partial),
        Arg::Buf(dc),
    ];
    args.extend(i32s(shape));
    let sfx = T::SUFFIX;
    let report = h.launch(
        &format!("{prefix}gate_backward_{sfx}"),
        dims(gate_launch(shape)),
        &args,
    )?;
    let groups = gate_channel_groups(shape) as i32;
    let ds_args = [
        Arg::Buf(partial),
        Arg::Buf(ds),
        Arg::I32(shape.n as i32),
        Arg::I32(groups),
        Arg::I32(shape.h as i32),
        Arg::I32(shape.w as i32),
        Arg::I32(shape.block as i32),
    ];
    h.launch(
        &format!("gate_backward_ds_{sfx}"),
        dims(gate_ds_launch(shape)),
        &ds_args,
    )?;
    Ok(Backward {
        dx: widen(&h.read::<T>(dx)),
        ds: widen(&h.read::<T>(ds)),
        dc: widen(&h.read::<T>(dc)),
        report,
    })
}

fn reference_forward(shape: &GateShape, p: &Problem<impl Storage>) -> Vec<f64> {
    let mut y = vec![0.0; shape.x_len()];
    cpu::gate_forward(shape, &p.x.1, &p.s.1, &p.c.1, &mut y).unwrap();
    y
}

fn reference_backward(shape: &GateShape, p: &Problem<impl Storage>) -> [Vec<f64>; 3] {
    let mut dx = vec![0.0; shape.x_len()];
    let mut ds = vec![0.0; shape.s_len()];
    let mut dc = vec![0.0; shape.c_len()];
    cpu::gate_backward(
        shape, &p.x.1, &p.s.1, &p.c.1, &p.dy.1, &mut dx, &mut ds, &mut dc,
    )
    .unwrap();
    [dx, ds, dc]
}

fn forward_matches<T: Storage>() {
    for (i, dims) in SHAPES.iter().enumerate() {
        let shape = shape(dims);
        let p = problem::<T>(&shape, 10 * i as u64);
        let (y, _) = run_forward::<T>("", &shape, &p).unwrap();
        let what = format!("gate_forward_{} {dims:?} y", T::SUFFIX);
        assert_close(&what, &y, &reference_forward(&shape, &p), tolerance::<T>());
    }
}

fn backward_matches<T: Storage>() {
    for (i, dims) in SHAPES.iter().enumerate() {
        let shape = shape(dims);
        let p = problem::<T>(&shape, 100 + 10 * i as u64);
        let got = run_backward::<T>("", &shape, &p).unwrap();
        let [dx, ds, dc] = reference_backward(&shape, &p);
        let tol = tolerance::<T>();
        let what = |t: &str| format!("gate_backward_{} {dims:?} {t}", T::SUFFIX);
        assert_close(&what("dx"), &got.dx, &dx, tol);
        assert_close(&what("ds"), &got.ds, &ds, tol);
        assert_close(&what("dc"), &got.dc, &dc, tol);
    }
}

/// gate_unfused_sigmoid_<T> gives σ(s ⊗ c); gate_unfused_mul_<T> multiplies it with the
/// ReLU output: together with relu_forward they reproduce the reference's unfused pass.
fn unfused_matches<T: Storage>() {
    for (i, sd) in SHAPES.iter().enumerate() {
        let shape = shape(sd);
        let p = problem::<T>(&shape, 200 + 10 * i as u64);
        let len = shape.x_len();
        let mut r = vec![0.0; len];
        let mut g = vec![0.0; len];
        let mut y = vec![0.0; len];
        cpu::gate_forward_unfused(&shape, &p.x.1, &p.s.1, &p.c.1, &mut r, &mut g, &mut y).unwrap();

        let mut h = Harness::new();
        let s = h.input("s", &p.s.0);
        let c = h.input("c", &p.c.0);
        let gb = h.output::<T>("g", len);
        let mut args = vec![Arg::Buf(s), Arg::Buf(c), Arg::Buf(gb)];
        args.extend(i32s(&shape));
        let sfx = T::SUFFIX;
        h.launch(
            &format!("gate_unfused_sigmoid_{sfx}"),
            dims(gate_launch(&shape)),
            &args,
        )
        .unwrap();
        let g_got = widen(&h.read::<T>(gb));
        let tol = tolerance::<T>();
        assert_close(
            &format!("gate_unfused_sigmoid_{sfx} {sd:?}"),
            &g_got,
            &g,
            tol,
        );

        // The multiply on inputs rounded to T, against their exact product.
        let (a, a64) = rounded::<T>(&r);
        let (b, b64) = rounded::<T>(&g);
        let ab = h.input("a", &a);
        let bb = h.input("b", &b);
        let yb = h.output::<T>("y", len);
        let args = [
            Arg::Buf(ab),
            Arg::Buf(bb),
            Arg::Buf(yb),
            Arg::I64(len as i64),
        ];
        h.launch(
            &format!("gate_unfused_mul_{sfx}"),
            dims(gate_mul_launch(len)),
            &args,
        )
        .unwrap();
        let want: Vec<f64> = a64.iter().zip(&b64).map(|(a, b)| a * b).collect();
        let got = widen(&h.read::<T>(yb));
        assert_close(&format!("gate_unfused_mul_{sfx} {sd:?}"), &got, &want, tol);
    }
}

/// Odd lengths: 1, below a warp, not a multiple of the block, more than one block's
/// ILP span.
const RELU_LENS: &[usize] = &[1, 31, 257, 1000, 5 * 1024 + 3];

fn relu_matches<T: Storage>() {
    for (i, &len) in RELU_LENS.iter().enumerate() {
        let mut xv = uniform(len, -2.0, 2.0, 300 + i as u64);
        xv[0] = 0.0; // the convention at exactly 0
        let (x, x64) = rounded::<T>(&xv);
        let (dy, dy64) = rounded::<T>(&uniform(len, -1.0, 1.0, 400 + i as u64));
        let mut y = vec![0.0; len];
        let mut dx = vec![0.0; len];
        relu::cpu::relu_forward(&x64, &mut y).unwrap();
        relu::cpu::relu_backward(&x64, &dy64, &mut dx).unwrap();

        let mut h = Harness::new();
        let xb = h.input("x", &x);
        let dyb = h.input("dy", &dy);
        let yb = h.output::<T>("y", len);
        let dxb = h.output::<T>("dx", len);
        let sfx = T::SUFFIX;
        let d = dims(relu_launch(len));
        let n = Arg::I64(len as i64);
        h.launch(
            &format!("relu_forward_{sfx}"),
            d,
            &[Arg::Buf(xb), Arg::Buf(yb), n],
        )
        .unwrap();
        h.launch(
            &format!("relu_backward_{sfx}"),
            d,
            &[Arg::Buf(xb), Arg::Buf(dyb), Arg::Buf(dxb), n],
        )
        .unwrap();
        // ReLU only selects: exact in every type.
        assert_close(
            &format!("relu_forward_{sfx} {len}"),
            &widen(&h.read::<T>(yb)),
            &y,
            0.0,
        );
        let got = widen(&h.read::<T>(dxb));
        assert_close(&format!("relu_backward_{sfx} {len}"), &got, &dx, 0.0);
    }
}

#[test]
fn gate_forward_matches_cpu_reference() {
    forward_matches::<f32>();
    forward_matches::<f16>();
    forward_matches::<bf16>();
}

#[test]
fn gate_backward_matches_cpu_reference() {
    backward_matches::<f32>();
    backward_matches::<f16>();
    backward_matches::<bf16>();
}

#[test]
fn gate_unfused_kernels_match_cpu_reference() {
    unfused_matches::<f32>();
    unfused_matches::<f16>();
    unfused_matches::<bf16>();
}

#[test]
fn relu_kernels_match_cpu_reference() {
    relu_matches::<f32>();
    relu_matches::<f16>();
    relu_matches::<bf16>();
}

// ---- traffic: each large tensor requested once, coalesced ----

/// Shapes of the traffic pins: ResNet-like planes (4×4, 8×8, 16×16, 32×32).
const TRAFFIC_SHAPES: &[(usize, usize, usize, usize, usize)] = &[
    (2, 64, 4, 4, 1),
    (2, 64, 8, 8, 1),
    (1, 32, 16, 16, 1),
    (1, 16, 32, 32, 1),
];

/// Sectors requested within 3 % of `ceil(bytes / 32)`, and every element loaded (or
/// stored) exactly once.
fn pin_once(report: &LaunchReport, buffer: &str, store: bool, elements: usize) {
    let b = report.buffer(buffer);
    let (ratio, count) = if store {
        (b.store_ratio(), b.stores)
    } else {
        (b.load_ratio(), b.loads)
    };
    assert!(
        (1.0..=1.03).contains(&ratio),
        "{}: `{buffer}` requested {ratio:.3} × its size\n{report}",
        report.kernel
    );
    assert_eq!(
        count, elements as u64,
        "{}: `{buffer}` accesses",
        report.kernel
    );
}

fn traffic_pins<T: Storage>() {
    for (i, d) in TRAFFIC_SHAPES.iter().enumerate() {
        let shape = shape(d);
        let p = problem::<T>(&shape, 500 + i as u64);
        let len = shape.x_len();
        let (_, fwd) = run_forward::<T>("", &shape, &p).unwrap();
        pin_once(&fwd, "x", false, len);
        pin_once(&fwd, "y", true, len);
        let bwd = run_backward::<T>("", &shape, &p).unwrap().report;
        pin_once(&bwd, "x", false, len);
        pin_once(&bwd, "dy", false, len);
        pin_once(&bwd, "dx", true, len);
        println!("{d:?} {}\n{fwd}{bwd}", T::SUFFIX);
    }
    for len in [4096usize, 5 * 1024 + 3] {
        let (x, _) = rounded::<T>(&uniform(len, -1.0, 1.0, 7));
        let mut h = Harness::new();
        let xb = h.input("x", &x);
        let dyb = h.input("dy", &x);
        let yb = h.output::<T>("y", len);
        let dxb = h.output::<T>("dx", len);
        let d = dims(relu_launch(len));
        let n = Arg::I64(len as i64);
        let sfx = T::SUFFIX;
        let fwd = h
            .launch(
                &format!("relu_forward_{sfx}"),
                d,
                &[Arg::Buf(xb), Arg::Buf(yb), n],
            )
            .unwrap();
        let bwd = h
            .launch(
                &format!("relu_backward_{sfx}"),
                d,
                &[Arg::Buf(xb), Arg::Buf(dyb), Arg::Buf(dxb), n],
            )
            .unwrap();
        pin_once(&fwd, "x", false, len);
        pin_once(&fwd, "y", true, len);
        pin_once(&bwd, "x", false, len);
        pin_once(&bwd, "dy", false, len);
        pin_once(&bwd, "dx", true, len);
        println!("relu {len} {sfx}\n{fwd}{bwd}");
    }
}

#[test]
fn bandwidth_bound_kernels_move_each_large_tensor_once_coalesced() {
    traffic_pins::<f32>();
    traffic_pins::<f16>();
    traffic_pins::<bf16>();
}

// ---- planted bugs: mutants of the real kernels (harness/mutants/) must be caught ----

/// A mutant is caught when its launch fails or its result differs from the reference.
fn caught(result: Result<Result<(), String>, HarnessError>) -> String {
    match result {
        Err(e) => e.to_string(),
        Ok(Err(mismatch)) => mismatch,
        Ok(Ok(())) => panic!("the planted bug went unnoticed"),
    }
}

#[test]
fn caught_removed_syncthreads_in_gate_backward() {
    // 5×5 pixels: blocks of (32, 8), so the ds partials go through shared memory.
    let shape = GateShape::new(2, 20, 5, 5, 1).unwrap();
    let p = problem::<f32>(&shape, 42);
    let [_, ds, _] = reference_backward(&shape, &p);
    assert!(run_backward::<f32>("", &shape, &p).is_ok());
    let why = caught(
        run_backward::<f32>("gate_backward_no_ds_sync__", &shape, &p)
            .map(|b| check_close("ds", &b.ds, &ds, 1e-5)),
    );
    println!("caught: {why}");
}

#[test]
fn caught_off_by_one_in_relu_tail() {
    let len = 1000;
    let x = vec![1.0f32; len];
    let mut h = Harness::new();
    let xb = h.input("x", &x);
    let yb = h.output::<f32>("y", len);
    let args = [Arg::Buf(xb), Arg::Buf(yb), Arg::I64(len as i64)];
    let d = dims(relu_launch(len));
    h.launch("relu_forward_f32", d, &args).unwrap();
    let err = h
        .launch("relu_forward_tail_off_by_one__relu_forward_f32", d, &args)
        .unwrap_err();
    assert!(
        matches!(&err, HarnessError::OutOfBounds { detail, .. } if detail.contains("write of buffer `y` at element 1000")),
        "{err}"
    );
}

#[test]
fn caught_wrong_shuffle_offset_in_gate_backward() {
    let shape = GateShape::new(1, 8, 8, 8, 1).unwrap();
    let p = problem::<f32>(&shape, 43);
    let [_, _, dc] = reference_backward(&shape, &p);
    let why = caught(
        run_backward::<f32>("gate_backward_shuffle_offset__", &shape, &p)
            .map(|b| check_close("dc", &b.dc, &dc, 1e-5)),
    );
    println!("caught: {why}");
}

#[test]
fn caught_missing_bounds_check_in_gate_forward() {
    // C = 5 is not a multiple of the block's channel group: the last group overruns.
    let shape = GateShape::new(1, 5, 4, 4, 1).unwrap();
    let p = problem::<f32>(&shape, 44);
    assert!(run_forward::<f32>("", &shape, &p).is_ok());
    let err = run_forward::<f32>("gate_forward_no_channel_guard__", &shape, &p).unwrap_err();
    assert!(matches!(err, HarnessError::OutOfBounds { .. }), "{err}");
}
