//! Every kernel of kernels/gate.cu and kernels/relu.cu, in every storage type, run on
//! the CPU by sparta-harness through the CUDA wrappers themselves (on the harness
//! device) and compared with the f64 CPU reference on odd shapes, with the sequence of
//! kernels each wrapper launches; the traffic pins of the bandwidth-bound kernels; and
//! planted bugs (harness/mutants/) that the harness must catch.

mod harness_support;

use half::{bf16, f16};
use harness_support::device::{HarnessBuffer, HarnessDevice};
use harness_support::{assert_close, check_close, rounded, tolerance, uniform, widen, Storage};
use sparta::ops::gate::{self, cpu, GateShape};
use sparta::ops::{relu, GateMapFloat};
use sparta::KernelDevice;
use sparta_harness::{HarnessError, LaunchReport};

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

fn kernels_launched(dev: &HarnessDevice) -> Vec<String> {
    dev.reports().into_iter().map(|r| r.kernel).collect()
}

/// Runs the gate_forward wrapper (with `mutant` in place of gate_forward_<T> if given)
/// and returns y and the report.
fn run_forward<T: Storage>(
    mutant: Option<&str>,
    shape: &GateShape,
    p: &Problem<T>,
) -> Result<(Vec<f64>, LaunchReport), HarnessError> {
    let kernel = format!("gate_forward_{}", T::SUFFIX);
    let dev = HarnessDevice::maybe_mutant(mutant, &kernel);
    let x = dev.upload("x", &p.x.0).unwrap();
    let s = dev.upload("s", &p.s.0).unwrap();
    let c = dev.upload("c", &p.c.0).unwrap();
    let mut y = dev.alloc_scratch::<T>("y", shape.x_len()).unwrap();
    let r = gate::cuda::gate_forward(
        &dev,
        shape,
        &dev.view(&x),
        &dev.view(&s),
        &dev.view(&c),
        &mut dev.view_mut(&mut y),
    );
    dev.harness_result(r)?;
    let report = dev.reports().remove(0);
    assert_eq!(report.kernel, kernel);
    Ok((widen(&dev.download(&dev.view(&y)).unwrap()), report))
}

struct Backward {
    dx: Vec<f64>,
    ds: Vec<f64>,
    dc: Vec<f64>,
    report: LaunchReport,
}

/// Runs the gate_backward wrapper: gate_backward_<T> (or `mutant` in its place) then
/// gate_backward_ds_<T>.
fn run_backward<T: Storage>(
    mutant: Option<&str>,
    shape: &GateShape,
    p: &Problem<T>,
) -> Result<Backward, HarnessError> {
    let sfx = T::SUFFIX;
    let kernel = format!("gate_backward_{sfx}");
    let dev = HarnessDevice::maybe_mutant(mutant, &kernel);
    let x = dev.upload("x", &p.x.0).unwrap();
    let s = dev.upload("s", &p.s.0).unwrap();
    let c = dev.upload("c", &p.c.0).unwrap();
    let dy = dev.upload("dy", &p.dy.0).unwrap();
    let mut dx = dev.alloc_scratch::<T>("dx", shape.x_len()).unwrap();
    let mut ds = dev.alloc_scratch::<T>("ds", shape.s_len()).unwrap();
    let mut dc = dev.alloc_scratch::<T>("dc", shape.c_len()).unwrap();
    let r = gate::cuda::gate_backward(
        &dev,
        shape,
        &dev.view(&x),
        &dev.view(&s),
        &dev.view(&c),
        &dev.view(&dy),
        &mut dev.view_mut(&mut dx),
        &mut dev.view_mut(&mut ds),
        &mut dev.view_mut(&mut dc),
    );
    dev.harness_result(r)?;
    let mut reports = dev.reports();
    let launched: Vec<&str> = reports.iter().map(|r| r.kernel.as_str()).collect();
    let expected = mutant.map_or(kernel.clone(), |m| format!("{m}__{kernel}"));
    assert_eq!(launched, [expected, format!("gate_backward_ds_{sfx}")]);
    let down = |b: &HarnessBuffer<T>| widen(&dev.download(&dev.view(b)).unwrap());
    Ok(Backward {
        dx: down(&dx),
        ds: down(&ds),
        dc: down(&dc),
        report: reports.remove(0),
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
        let (y, _) = run_forward::<T>(None, &shape, &p).unwrap();
        let what = format!("gate_forward_{} {dims:?} y", T::SUFFIX);
        assert_close(&what, &y, &reference_forward(&shape, &p), tolerance::<T>());
    }
}

fn backward_matches<T: Storage>() {
    for (i, dims) in SHAPES.iter().enumerate() {
        let shape = shape(dims);
        let p = problem::<T>(&shape, 100 + 10 * i as u64);
        let got = run_backward::<T>(None, &shape, &p).unwrap();
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

        let dev = HarnessDevice::new();
        let x_d = dev.upload("x", &p.x.0).unwrap();
        let s_d = dev.upload("s", &p.s.0).unwrap();
        let c_d = dev.upload("c", &p.c.0).unwrap();
        let mut r_d = dev.alloc_scratch::<T>("relu_out", len).unwrap();
        let mut g_d = dev.alloc_scratch::<T>("g", len).unwrap();
        let mut y_d = dev.alloc_scratch::<T>("y", len).unwrap();
        gate::cuda::gate_forward_unfused(
            &dev,
            &shape,
            &dev.view(&x_d),
            &dev.view(&s_d),
            &dev.view(&c_d),
            &mut dev.view_mut(&mut r_d),
            &mut dev.view_mut(&mut g_d),
            &mut dev.view_mut(&mut y_d),
        )
        .unwrap();
        let sfx = T::SUFFIX;
        assert_eq!(
            kernels_launched(&dev),
            [
                format!("relu_forward_{sfx}"),
                format!("gate_unfused_sigmoid_{sfx}"),
                format!("gate_unfused_mul_{sfx}"),
            ]
        );
        let down = |b: &HarnessBuffer<T>| widen(&dev.download(&dev.view(b)).unwrap());
        let tol = tolerance::<T>();
        assert_close(&format!("relu_forward_{sfx} {sd:?}"), &down(&r_d), &r, 0.0);
        assert_close(
            &format!("gate_unfused_sigmoid_{sfx} {sd:?}"),
            &down(&g_d),
            &g,
            tol,
        );

        // The multiply against the exact product of the two maps it read.
        let want: Vec<f64> = down(&r_d)
            .iter()
            .zip(down(&g_d))
            .map(|(a, b)| a * b)
            .collect();
        assert_close(
            &format!("gate_unfused_mul_{sfx} {sd:?}"),
            &down(&y_d),
            &want,
            tol,
        );
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

        let (fwd, bwd) = run_relu::<T>(None, &x, &dy).unwrap();
        // ReLU only selects: exact in every type.
        let sfx = T::SUFFIX;
        assert_close(&format!("relu_forward_{sfx} {len}"), &fwd.0, &y, 0.0);
        assert_close(&format!("relu_backward_{sfx} {len}"), &bwd.0, &dx, 0.0);
    }
}

/// Runs the relu_forward and relu_backward wrappers (with `mutant` in place of
/// relu_forward_<T> if given): `(y, report)`, `(dx, report)`.
#[allow(clippy::type_complexity)]
fn run_relu<T: Storage>(
    mutant: Option<&str>,
    x: &[T],
    dy: &[T],
) -> Result<((Vec<f64>, LaunchReport), (Vec<f64>, LaunchReport)), HarnessError> {
    let sfx = T::SUFFIX;
    let dev = HarnessDevice::maybe_mutant(mutant, &format!("relu_forward_{sfx}"));
    let x_d = dev.upload("x", x).unwrap();
    let dy_d = dev.upload("dy", dy).unwrap();
    let mut y_d = dev.alloc_scratch::<T>("y", x.len()).unwrap();
    let mut dx_d = dev.alloc_scratch::<T>("dx", x.len()).unwrap();
    let r = relu::cuda::relu_forward(&dev, &dev.view(&x_d), &mut dev.view_mut(&mut y_d));
    dev.harness_result(r)?;
    let r = relu::cuda::relu_backward(
        &dev,
        &dev.view(&x_d),
        &dev.view(&dy_d),
        &mut dev.view_mut(&mut dx_d),
    );
    dev.harness_result(r)?;
    let mut reports = dev.reports();
    let launched: Vec<&str> = reports.iter().map(|r| r.kernel.as_str()).collect();
    assert_eq!(
        launched,
        [
            format!("relu_forward_{sfx}"),
            format!("relu_backward_{sfx}")
        ]
    );
    let down = |b: &HarnessBuffer<T>| widen(&dev.download(&dev.view(b)).unwrap());
    let bwd = (down(&dx_d), reports.remove(1));
    Ok(((down(&y_d), reports.remove(0)), bwd))
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

/// gate_forward_f32map_<T> and gate_backward_f32map_<T> (then gate_backward_ds_f32):
/// activations x, dy, y, dx stored as T, maps s, c, ds, dc as f32. The maps' gradients
/// see only exact inputs and f32 arithmetic, so they are held to f32's tolerance; y and
/// dx to T's.
fn f32_maps_match<T: Storage>()
where
    f32: GateMapFloat<T>,
{
    let sfx = T::SUFFIX;
    for (i, dims) in SHAPES.iter().enumerate() {
        let shape = shape(dims);
        let seed = 500 + 10 * i as u64;
        let (s32, s64) = rounded::<f32>(&uniform(shape.s_len(), -3.0, 3.0, seed + 1));
        let (c32, c64) = rounded::<f32>(&uniform(shape.c_len(), -3.0, 3.0, seed + 2));
        // The maps' T side stays empty: the kernels read s32 and c32, the reference the f64.
        let p = Problem::<T> {
            x: rounded(&uniform(shape.x_len(), -2.0, 2.0, seed)),
            s: (Vec::new(), s64),
            c: (Vec::new(), c64),
            dy: rounded(&uniform(shape.x_len(), -1.0, 1.0, seed + 3)),
        };
        let dev = HarnessDevice::new();
        let x = dev.upload("x", &p.x.0).unwrap();
        let dy = dev.upload("dy", &p.dy.0).unwrap();
        let s = dev.upload("s", &s32).unwrap();
        let c = dev.upload("c", &c32).unwrap();
        let mut y = dev.alloc_scratch::<T>("y", shape.x_len()).unwrap();
        let mut dx = dev.alloc_scratch::<T>("dx", shape.x_len()).unwrap();
        let mut ds = dev.alloc_scratch::<f32>("ds", shape.s_len()).unwrap();
        let mut dc = dev.alloc_scratch::<f32>("dc", shape.c_len()).unwrap();
        let (x_v, s_v, c_v) = (dev.view(&x), dev.view(&s), dev.view(&c));
        gate::cuda::gate_forward(&dev, &shape, &x_v, &s_v, &c_v, &mut dev.view_mut(&mut y))
            .unwrap();
        gate::cuda::gate_backward(
            &dev,
            &shape,
            &x_v,
            &s_v,
            &c_v,
            &dev.view(&dy),
            &mut dev.view_mut(&mut dx),
            &mut dev.view_mut(&mut ds),
            &mut dev.view_mut(&mut dc),
        )
        .unwrap();
        assert_eq!(
            kernels_launched(&dev),
            [
                format!("gate_forward_f32map_{sfx}"),
                format!("gate_backward_f32map_{sfx}"),
                "gate_backward_ds_f32".to_string()
            ]
        );
        let what = |t: &str| format!("gate f32 maps, {sfx} activations {dims:?} {t}");
        let tol = tolerance::<T>();
        let down = |b: &HarnessBuffer<T>| widen(&dev.download(&dev.view(b)).unwrap());
        let down32 = |b: &HarnessBuffer<f32>| widen(&dev.download(&dev.view(b)).unwrap());
        assert_close(&what("y"), &down(&y), &reference_forward(&shape, &p), tol);
        let [dx64, ds64, dc64] = reference_backward(&shape, &p);
        assert_close(&what("dx"), &down(&dx), &dx64, tol);
        assert_close(&what("ds"), &down32(&ds), &ds64, tolerance::<f32>());
        assert_close(&what("dc"), &down32(&dc), &dc64, tolerance::<f32>());
    }
}

#[test]
fn gate_with_f32_maps_matches_cpu_reference() {
    f32_maps_match::<f16>();
    f32_maps_match::<bf16>();
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
        let (_, fwd) = run_forward::<T>(None, &shape, &p).unwrap();
        pin_once(&fwd, "x", false, len);
        pin_once(&fwd, "y", true, len);
        let bwd = run_backward::<T>(None, &shape, &p).unwrap().report;
        pin_once(&bwd, "x", false, len);
        pin_once(&bwd, "dy", false, len);
        pin_once(&bwd, "dx", true, len);
        println!("{d:?} {}\n{fwd}{bwd}", T::SUFFIX);
    }
    for len in [4096usize, 5 * 1024 + 3] {
        let (x, _) = rounded::<T>(&uniform(len, -1.0, 1.0, 7));
        let ((_, fwd), (_, bwd)) = run_relu::<T>(None, &x, &x).unwrap();
        let sfx = T::SUFFIX;
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
    assert!(run_backward::<f32>(None, &shape, &p).is_ok());
    let why = caught(
        run_backward::<f32>(Some("gate_backward_no_ds_sync"), &shape, &p)
            .map(|b| check_close("ds", &b.ds, &ds, 1e-5)),
    );
    println!("caught: {why}");
}

#[test]
fn caught_off_by_one_in_relu_tail() {
    let x = vec![1.0f32; 1000];
    assert!(run_relu::<f32>(None, &x, &x).is_ok());
    let err = run_relu::<f32>(Some("relu_forward_tail_off_by_one"), &x, &x).unwrap_err();
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
        run_backward::<f32>(Some("gate_backward_shuffle_offset"), &shape, &p)
            .map(|b| check_close("dc", &b.dc, &dc, 1e-5)),
    );
    println!("caught: {why}");
}

#[test]
fn caught_missing_bounds_check_in_gate_forward() {
    // C = 5 is not a multiple of the block's channel group: the last group overruns.
    let shape = GateShape::new(1, 5, 4, 4, 1).unwrap();
    let p = problem::<f32>(&shape, 44);
    assert!(run_forward::<f32>(None, &shape, &p).is_ok());
    let err = run_forward::<f32>(Some("gate_forward_no_channel_guard"), &shape, &p).unwrap_err();
    assert!(matches!(err, HarnessError::OutOfBounds { .. }), "{err}");
}
