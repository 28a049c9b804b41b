//! The SPARTA gate and ReLU: values, finite-difference gradients (f64), f32 against
//! f64, shape errors, determinism, and the CUDA wrappers against the CPU (on the CPU
//! kernel harness always; on a GPU in the `gpu_*` tests, ignored without `--ignored`).

mod gpu_support;
mod harness_support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::ops::gate::{self, cpu, GateShape};
use sparta::{Device, Error};

/// Small shapes that hit the edge cases: C = 3, H·W = 1, N = 1, and H, W that are not
/// multiples of B (nor of the 32-pixel warp, nor of the kernels' channel groups).
const ODD_SHAPES: &[(usize, usize, usize, usize, usize)] = &[
    (2, 3, 5, 7, 1),
    (2, 3, 5, 7, 2),
    (1, 3, 5, 7, 4),
    (2, 4, 1, 1, 1),
    (1, 5, 6, 6, 4),
    (3, 2, 9, 3, 2),
    (1, 1, 3, 2, 4),
];

fn shape_of(&(n, c, h, w, b): &(usize, usize, usize, usize, usize)) -> GateShape {
    GateShape::new(n, c, h, w, b).unwrap()
}

fn uniform(rng: &mut StdRng, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// x with |x| ≥ 0.05: finite differences never straddle the kink at 0.
fn away_from_zero(rng: &mut StdRng, len: usize) -> Vec<f64> {
    (0..len)
        .map(|_| {
            let v: f64 = rng.random_range(0.05..2.0);
            if rng.random::<bool>() {
                v
            } else {
                -v
            }
        })
        .collect()
}

struct Inputs {
    x: Vec<f64>,
    s: Vec<f64>,
    c: Vec<f64>,
    dy: Vec<f64>,
}

fn inputs(shape: &GateShape, seed: u64) -> Inputs {
    let mut rng = StdRng::seed_from_u64(seed);
    Inputs {
        x: away_from_zero(&mut rng, shape.x_len()),
        s: uniform(&mut rng, shape.s_len(), -3.0, 3.0),
        c: uniform(&mut rng, shape.c_len(), -3.0, 3.0),
        dy: uniform(&mut rng, shape.x_len(), -1.0, 1.0),
    }
}

/// Element-wise `|got − want| ≤ rtol · max(|want|, floor · max|want|)`. `floor` = 0 is
/// plain relative error; sums that can cancel use a floor relative to the largest
/// entry. Written so that NaN (in either) fails.
fn close(got: &[f64], want: &[f64], rtol: f64, floor: f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("lengths {} vs {}", got.len(), want.len()));
    }
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = rtol * w.abs().max(floor * scale);
        let within = (g - w).abs() <= tol; // false for NaN
        if !within {
            return Err(format!("[{i}]: got {g:e}, want {w:e} (tol {tol:e})"));
        }
    }
    Ok(())
}

fn assert_close(what: &str, got: &[f64], want: &[f64], rtol: f64, floor: f64) {
    if let Err(e) = close(got, want, rtol, floor) {
        panic!("{what}: {e}");
    }
}

fn forward64(shape: &GateShape, x: &[f64], s: &[f64], c: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; shape.x_len()];
    cpu::gate_forward(shape, x, s, c, &mut y).unwrap();
    y
}

fn backward64(shape: &GateShape, i: &Inputs) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; shape.x_len()];
    let mut ds = vec![0.0; shape.s_len()];
    let mut dc = vec![0.0; shape.c_len()];
    cpu::gate_backward(shape, &i.x, &i.s, &i.c, &i.dy, &mut dx, &mut ds, &mut dc).unwrap();
    (dx, ds, dc)
}

/// L = Σ dy · y, the loss whose gradient the backward returns.
fn loss(shape: &GateShape, i: &Inputs, x: &[f64], s: &[f64], c: &[f64]) -> f64 {
    let y = forward64(shape, x, s, c);
    y.iter().zip(&i.dy).map(|(y, d)| y * d).sum()
}

/// Central differences of L in each coordinate of `which` (0 = x, 1 = s, 2 = c).
fn finite_differences(shape: &GateShape, i: &Inputs, which: usize) -> Vec<f64> {
    const H: f64 = 1e-5;
    let base = [&i.x, &i.s, &i.c];
    (0..base[which].len())
        .map(|k| {
            let eval = |delta: f64| {
                let mut v: Vec<Vec<f64>> = base.iter().map(|b| b.to_vec()).collect();
                v[which][k] += delta;
                loss(shape, i, &v[0], &v[1], &v[2])
            };
            (eval(H) - eval(-H)) / (2.0 * H)
        })
        .collect()
}

#[test]
fn backward_matches_finite_differences() {
    for (k, dims) in ODD_SHAPES.iter().enumerate() {
        let shape = shape_of(dims);
        let i = inputs(&shape, 10 + k as u64);
        let (dx, ds, dc) = backward64(&shape, &i);
        let what = |name: &str| format!("{name} at {dims:?}");
        // x is away from 0, so the direct term is the whole derivative in x with s, c fixed.
        assert_close(
            &what("dx"),
            &dx,
            &finite_differences(&shape, &i, 0),
            1e-6,
            1e-3,
        );
        assert_close(
            &what("ds"),
            &ds,
            &finite_differences(&shape, &i, 1),
            1e-6,
            1e-3,
        );
        assert_close(
            &what("dc"),
            &dc,
            &finite_differences(&shape, &i, 2),
            1e-6,
            1e-3,
        );
    }
}

#[test]
fn forward_values_by_hand() {
    // N = 1, C = 2, H = 3, W = 1, B = 2: rows 0, 1 read s[0], row 2 reads s[1].
    let shape = GateShape::new(1, 2, 3, 1, 2).unwrap();
    let (x, s, c) = ([1.0, -2.0, 3.0, 0.0, 4.0, 5.0], [0.5, -1.0], [2.0, -1.0]);
    let y = forward64(&shape, &x, &s, &c);
    let sig = |a: f64| 1.0 / (1.0 + (-a).exp());
    let want = [
        sig(1.0),
        0.0,
        3.0 * sig(-2.0),
        0.0,
        4.0 * sig(-0.5),
        5.0 * sig(1.0),
    ];
    assert_close("y", &y, &want, 1e-15, 0.0);
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&v| v as f32).collect()
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&v| v as f64).collect()
}

/// Inputs rounded to f32, so f64 and f32 see the same numbers.
fn rounded(i: &Inputs) -> Inputs {
    let r = |v: &[f64]| to_f64(&to_f32(v));
    Inputs {
        x: r(&i.x),
        s: r(&i.s),
        c: r(&i.c),
        dy: r(&i.dy),
    }
}

#[test]
fn f32_matches_f64() {
    // The odd shapes run serially; (4, 64, 16, 16) is big enough to run on rayon; 4×4
    // planes (one vector each) have loops of their own.
    let shapes = ODD_SHAPES.iter().copied().chain([
        (4, 64, 16, 16, 1),
        (4, 64, 15, 13, 2),
        (3, 7, 4, 4, 1),
        (40, 33, 4, 4, 1),
    ]);
    for (k, dims) in shapes.enumerate() {
        let shape = shape_of(&dims);
        let i = rounded(&inputs(&shape, 100 + k as u64));
        let (x, s, c, dy) = (to_f32(&i.x), to_f32(&i.s), to_f32(&i.c), to_f32(&i.dy));
        let mut y = vec![0.0f32; shape.x_len()];
        cpu::gate_forward(&shape, &x, &s, &c, &mut y).unwrap();
        let y64 = forward64(&shape, &i.x, &i.s, &i.c);
        assert_close(&format!("y at {dims:?}"), &to_f64(&y), &y64, 1e-5, 0.0);

        let mut dx = vec![0.0f32; shape.x_len()];
        let mut ds = vec![0.0f32; shape.s_len()];
        let mut dc = vec![0.0f32; shape.c_len()];
        cpu::gate_backward(&shape, &x, &s, &c, &dy, &mut dx, &mut ds, &mut dc).unwrap();
        let (dx64, ds64, dc64) = backward64(&shape, &i);
        assert_close(&format!("dx at {dims:?}"), &to_f64(&dx), &dx64, 1e-5, 0.0);
        assert_close(&format!("ds at {dims:?}"), &to_f64(&ds), &ds64, 1e-5, 0.1);
        assert_close(&format!("dc at {dims:?}"), &to_f64(&dc), &dc64, 1e-5, 0.1);
    }
}

#[test]
fn sigmoid_f32_matches_f64() {
    // y = 1 · σ(a), dx = 1 · σ(a) and ds = c·σ(a)·σ(−a) over sweeps of a = s·c: the f32
    // sigmoid against f64's exp. Sample 0 stays within |a| ≤ 87.02, where CPUs with FMA
    // evaluate σ from the factors (`product.rs`, `avx512.rs`: e^(±a) normal up to
    // 2^126 = e^87.34); sample 1 reaches 120, which sends it to the clamping loops. With
    // c ≠ 1 the loops' rounded factor −log2(e)·c shows too: its relative error times |a|
    // is the exp's, up to 7e-6 at |a| = 87.
    let points = 4801;
    let sweep = |reach: f64| (0..points).map(move |k| reach * (2.0 * k as f64 / 4800.0 - 1.0));
    let sweep: Vec<f64> = sweep(87.0)
        .chain(sweep(120.0))
        .map(|v| v + 0.0123)
        .collect();
    let shape = GateShape::new(2, 1, 1, points, 1).unwrap();
    let sigmoid = |a: f64| 1.0 / (1.0 + (-a).exp());
    for cv in [1.0, -0.7, 2.9] {
        let s = to_f64(&to_f32(&sweep.iter().map(|a| a / cv).collect::<Vec<_>>()));
        let c = to_f64(&to_f32(&[cv, cv]));
        let x = vec![1.0; sweep.len()];
        let (x32, s32, c32) = (to_f32(&x), to_f32(&s), to_f32(&c));
        let mut y = vec![0.0f32; sweep.len()];
        cpu::gate_forward(&shape, &x32, &s32, &c32, &mut y).unwrap();
        let want = forward64(&shape, &x, &s, &c);
        let (mut dx, mut ds, mut dc) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()], [0.0f32; 2]);
        cpu::gate_backward(&shape, &x32, &s32, &c32, &x32, &mut dx, &mut ds, &mut dc).unwrap();
        let want_ds: Vec<f64> = s
            .iter()
            .map(|&s| c[0] * sigmoid(s * c[0]) * sigmoid(-s * c[0]))
            .collect();
        // Below σ ≈ 1e-38 f32 has only subnormals; compare there to their spacing.
        for (what, got, want) in [("y", &y, &want), ("dx", &dx, &want), ("ds", &ds, &want_ds)] {
            for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
                let tol = 1e-5 * w.abs() + 2.0 * f32::from_bits(1) as f64;
                assert!(
                    (g as f64 - w).abs() <= tol,
                    "{what}[{k}]: at s = {}, c = {}: {g:e}, want {w:e}",
                    s[k],
                    c[0]
                );
            }
        }
    }
}

/// CI runs this file once per vector tier (`SPARTA_CPU_VECTORS`): each run must really
/// have taken the tier it names, where the CPU has it.
#[test]
fn loops_take_the_tier_the_environment_names() {
    let tier = cpu::vector_tier();
    let asked = std::env::var("SPARTA_CPU_VECTORS").ok();
    #[cfg(target_arch = "x86_64")]
    let has_avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    let has_avx2 = false;
    match asked.as_deref() {
        Some("baseline") => assert_eq!(tier, "baseline"),
        Some("avx2") if has_avx2 => assert_eq!(tier, "avx2"),
        _ => eprintln!("gate CPU loops: {tier}"),
    }
}

#[test]
fn unfused_peer_equals_fused() {
    let shape = GateShape::new(3, 5, 7, 6, 2).unwrap();
    let i = inputs(&shape, 7);
    let fused = forward64(&shape, &i.x, &i.s, &i.c);
    let mut r = vec![0.0; shape.x_len()];
    let mut g = vec![0.0; shape.x_len()];
    let mut y = vec![0.0; shape.x_len()];
    cpu::gate_forward_unfused(&shape, &i.x, &i.s, &i.c, &mut r, &mut g, &mut y).unwrap();
    assert_eq!(y, fused);
    let (x, s, c) = (to_f32(&i.x), to_f32(&i.s), to_f32(&i.c));
    let mut fused32 = vec![0.0f32; shape.x_len()];
    cpu::gate_forward(&shape, &x, &s, &c, &mut fused32).unwrap();
    let (mut r, mut g, mut y) = (
        vec![0.0f32; x.len()],
        vec![0.0f32; x.len()],
        vec![0.0f32; x.len()],
    );
    cpu::gate_forward_unfused(&shape, &x, &s, &c, &mut r, &mut g, &mut y).unwrap();
    // f32 rounds in a different order: the fused loop divides r by 1 + e, the peer
    // multiplies r by the stored 1/(1 + e), so they may differ in the last bits.
    for (k, (&u, &f)) in y.iter().zip(&fused32).enumerate() {
        assert!(
            (u - f).abs() <= 2.0 * f32::EPSILON * f.abs(),
            "y[{k}]: unfused {u:e}, fused {f:e}"
        );
    }
}

#[test]
fn backward_is_deterministic_and_independent_of_splitting() {
    // Sample 2 of a batch big enough for rayon must equal the same sample alone (serial).
    let big = GateShape::new(4, 64, 16, 16, 2).unwrap();
    let i = inputs(&big, 3);
    let (dx, ds, dc) = backward64(&big, &i);
    assert_eq!(backward64(&big, &i), (dx.clone(), ds.clone(), dc.clone()));
    let one = GateShape { n: 1, ..big };
    let pick = |v: &[f64], len: usize| v[2 * len..3 * len].to_vec();
    let single = Inputs {
        x: pick(&i.x, one.x_len()),
        s: pick(&i.s, one.s_len()),
        c: pick(&i.c, one.c_len()),
        dy: pick(&i.dy, one.x_len()),
    };
    let (dx1, ds1, dc1) = backward64(&one, &single);
    assert_eq!(dx1, pick(&dx, one.x_len()));
    assert_eq!(ds1, pick(&ds, one.s_len()));
    assert_eq!(dc1, pick(&dc, one.c_len()));
}

#[test]
fn relu_values_and_gradients() {
    let x = [-2.0, -0.0, 0.0, 1e-30, 3.0, f64::NAN];
    let mut y = [7.0; 6];
    cpu::relu_forward(&x, &mut y).unwrap();
    assert_eq!(&y[..5], &[0.0, 0.0, 0.0, 1e-30, 3.0]);
    assert!(y[5].is_nan(), "ReLU propagates NaN");
    let dy = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let mut dx = [7.0; 6];
    cpu::relu_backward(&x, &dy, &mut dx).unwrap();
    // [x > 0]: zero gradient at 0 (and at NaN).
    assert_eq!(dx, [0.0, 0.0, 0.0, 4.0, 5.0, 0.0]);
    // The gate uses [x >= 0]: at x = 0 the direct term is dy·g.
    let shape = GateShape::new(1, 1, 1, 1, 1).unwrap();
    let (mut gdx, mut ds, mut dc) = ([0.0], [0.0], [0.0]);
    cpu::gate_backward(
        &shape,
        &[0.0],
        &[0.0],
        &[1.0],
        &[2.0],
        &mut gdx,
        &mut ds,
        &mut dc,
    )
    .unwrap();
    assert_eq!(gdx, [1.0]);
}

#[test]
fn relu_large_runs_in_pieces() {
    let mut rng = StdRng::seed_from_u64(5);
    let x: Vec<f32> = (0..100_003).map(|_| rng.random_range(-1.0..1.0)).collect();
    let dy: Vec<f32> = (0..x.len()).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut y = vec![0.0f32; x.len()];
    let mut dx = vec![0.0f32; x.len()];
    cpu::relu_forward(&x, &mut y).unwrap();
    cpu::relu_backward(&x, &dy, &mut dx).unwrap();
    for k in 0..x.len() {
        assert_eq!(y[k], x[k].max(0.0));
        assert_eq!(dx[k], if x[k] > 0.0 { dy[k] } else { 0.0 });
    }
}

#[test]
fn gate_propagates_nan() {
    let shape = GateShape::new(1, 1, 1, 2, 1).unwrap();
    let y = forward64(&shape, &[f64::NAN, 1.0], &[0.0, f64::NAN], &[1.0]);
    assert!(y[0].is_nan() && y[1].is_nan());
    let mut y32 = [0.0f32; 2];
    cpu::gate_forward(&shape, &[f32::NAN, 1.0], &[0.0, f32::NAN], &[1.0], &mut y32).unwrap();
    assert!(y32[0].is_nan() && y32[1].is_nan());
    // NaN in c, in a plane of a full vector and a tail, forward and backward.
    let shape = GateShape::new(1, 2, 1, 17, 1).unwrap();
    let x = vec![1.0f32; shape.x_len()];
    let s = vec![0.5f32; shape.s_len()];
    let mut y = vec![0.0f32; shape.x_len()];
    cpu::gate_forward(&shape, &x, &s, &[1.0, f32::NAN], &mut y).unwrap();
    assert!(y[..17].iter().all(|v| v.is_finite()) && y[17..].iter().all(|v| v.is_nan()));
    let (mut dx, mut ds, mut dc) = (vec![0.0f32; x.len()], vec![0.0f32; 17], [0.0f32; 2]);
    cpu::gate_backward(
        &shape,
        &x,
        &s,
        &[1.0, f32::NAN],
        &x,
        &mut dx,
        &mut ds,
        &mut dc,
    )
    .unwrap();
    assert!(dx[17..].iter().all(|v| v.is_nan()) && dc[1].is_nan());
    assert!(ds.iter().all(|v| v.is_nan()));
    // NaN in x: dX is 0 there ([x ≥ 0] is false), but dA is NaN, so the pixel's ds and
    // the channel's dc are NaN and nothing else is; in a full vector, in a tail, and in
    // a 4×4 plane (one vector, loops of its own), in f32 as in f64.
    for (hw, at) in [(17, 3), (17, 16), (16, 5)] {
        let shape = GateShape::new(1, 2, 1, hw, 1).unwrap();
        let mut x = vec![1.0f64; shape.x_len()];
        x[hw + at] = f64::NAN;
        let s = vec![0.5f64; hw];
        let (dy, c) = (vec![1.0f64; x.len()], [1.0, -2.0]);
        let (dx64, ds64, dc64) = backward64(
            &shape,
            &Inputs {
                x: x.clone(),
                s: s.clone(),
                c: c.to_vec(),
                dy: dy.clone(),
            },
        );
        let (mut dx, mut ds, mut dc) = (vec![0.0f32; x.len()], vec![0.0f32; hw], [0.0f32; 2]);
        let (x, s, c, dy) = (to_f32(&x), to_f32(&s), to_f32(&c), to_f32(&dy));
        cpu::gate_backward(&shape, &x, &s, &c, &dy, &mut dx, &mut ds, &mut dc).unwrap();
        for (got, want) in [
            (to_f64(&dx), dx64),
            (to_f64(&ds), ds64),
            (to_f64(&dc), dc64),
        ] {
            let nans = |v: &[f64]| v.iter().map(|v| v.is_nan()).collect::<Vec<_>>();
            assert_eq!(
                nans(&got),
                nans(&want),
                "NaN at x[{}], {hw} pixels",
                hw + at
            );
        }
        assert_eq!(dx[hw + at], 0.0);
        assert!(ds[at].is_nan() && dc[1].is_nan() && !dc[0].is_nan());
    }
}

#[test]
fn gate_of_infinite_products() {
    // s = ±∞ gives σ = 1 or 0 (and sends the sample to the clamping loops); ∞ · 0 is NaN.
    let shape = GateShape::new(1, 3, 1, 2, 1).unwrap();
    let (x, s, c) = (
        [2.0f32; 6],
        [f32::INFINITY, f32::NEG_INFINITY],
        [1.0f32, -1.0, 0.0],
    );
    let mut y = [0.0f32; 6];
    cpu::gate_forward(&shape, &x, &s, &c, &mut y).unwrap();
    assert_eq!(y[..4], [2.0, 0.0, 0.0, 2.0]);
    assert!(y[4].is_nan() && y[5].is_nan());
}

#[test]
fn comparisons_fail_on_nan() {
    assert!(close(&[f64::NAN], &[1.0], 1e-5, 0.0).is_err());
    assert!(close(&[1.0], &[f64::NAN], 1e-5, 0.0).is_err());
    assert!(close(&[1.0, 2.0], &[1.0, 2.0 + 1e-3], 1e-5, 0.0).is_err());
    assert!(close(&[1.0, 2.0], &[1.0, 2.0], 1e-5, 0.0).is_ok());
}

fn is_shape_error(r: sparta::Result<()>, what: &str) -> bool {
    matches!(r, Err(Error::Shape { what: w, .. }) if w == what)
}

#[test]
fn shape_errors_are_errors() {
    assert!(GateShape::new(0, 1, 1, 1, 1).is_err());
    assert!(GateShape::new(1, 1, 1, 1, 0).is_err());
    let shape = GateShape::new(2, 3, 4, 5, 2).unwrap();
    let (x, s, c) = (vec![0.0f32; 120], vec![0.0f32; 12], vec![0.0f32; 6]);
    let mut y = vec![0.0f32; 120];
    assert!(cpu::gate_forward(&shape, &x, &s, &c, &mut y).is_ok());
    assert!(is_shape_error(
        cpu::gate_forward(&shape, &x[1..], &s, &c, &mut y),
        "x"
    ));
    assert!(is_shape_error(
        cpu::gate_forward(&shape, &x, &s[1..], &c, &mut y),
        "s"
    ));
    assert!(is_shape_error(
        cpu::gate_forward(&shape, &x, &s, &c[1..], &mut y),
        "c"
    ));
    assert!(is_shape_error(
        cpu::gate_forward(&shape, &x, &s, &c, &mut y[1..]),
        "y"
    ));
    let (mut dx, mut ds, mut dc) = (vec![0.0f32; 120], vec![0.0f32; 12], vec![0.0f32; 6]);
    let r = cpu::gate_backward(&shape, &x, &s, &c, &x, &mut dx, &mut ds[1..], &mut dc);
    assert!(is_shape_error(r, "ds"));
    let r = cpu::gate_backward(&shape, &x, &s, &c, &x[1..], &mut dx, &mut ds, &mut dc);
    assert!(is_shape_error(r, "dy"));
    // The fields are public: a hand-built shape with block 0 is an error, not a panic.
    let bad = GateShape { block: 0, ..shape };
    assert!(cpu::gate_forward(&bad, &x, &s, &c, &mut y).is_err());
    let message = cpu::gate_forward(&shape, &x, &s[1..], &c, &mut y)
        .unwrap_err()
        .to_string();
    assert!(message.contains("[2, 2, 3]"), "{message}");
    assert!(cpu::relu_forward(&x, &mut y[1..]).is_err());
    assert!(cpu::relu_backward(&x, &x[1..], &mut dx).is_err());
}

#[test]
fn host_api_on_cpu_matches_cpu_functions() {
    let shape = GateShape::new(2, 3, 5, 7, 2).unwrap();
    let i = rounded(&inputs(&shape, 9));
    let (x, s, c, dy) = (to_f32(&i.x), to_f32(&i.s), to_f32(&i.c), to_f32(&i.dy));
    let mut y = vec![0.0f32; x.len()];
    let mut y_ref = vec![0.0f32; x.len()];
    gate::forward(&Device::Cpu, &shape, &x, &s, &c, &mut y).unwrap();
    cpu::gate_forward(&shape, &x, &s, &c, &mut y_ref).unwrap();
    assert_eq!(y, y_ref);
    let (mut dx, mut ds, mut dc) = (
        vec![0.0f32; x.len()],
        vec![0.0f32; s.len()],
        vec![0.0f32; c.len()],
    );
    gate::backward(
        &Device::Cpu,
        &shape,
        &x,
        &s,
        &c,
        &dy,
        &mut dx,
        &mut ds,
        &mut dc,
    )
    .unwrap();
    let (dx64, ds64, dc64) = backward64(&shape, &i);
    assert_close("dx", &to_f64(&dx), &dx64, 1e-5, 0.0);
    assert_close("ds", &to_f64(&ds), &ds64, 1e-5, 0.1);
    assert_close("dc", &to_f64(&dc), &dc64, 1e-5, 0.1);
}

#[test]
fn launch_shapes_cover_every_channel_and_pixel() {
    for dims in ODD_SHAPES
        .iter()
        .chain(&[(128, 64, 32, 32, 1), (128, 512, 4, 4, 1)])
    {
        let shape = shape_of(dims);
        let d = gate::gate_launch(&shape);
        let (px, cy) = (d.block.0 as usize, d.block.1 as usize);
        assert_eq!(px * cy, gate::GATE_THREADS as usize, "{dims:?}");
        assert!(px.is_power_of_two() && px >= 32, "{dims:?}");
        assert!(
            px >= (shape.h * shape.w).min(256),
            "{dims:?}: pixels left to loop"
        );
        let groups = gate::gate_channel_groups(&shape);
        assert!(groups * cy * gate::GATE_CPT >= shape.c, "{dims:?}");
        assert!(
            (groups - 1) * cy * gate::GATE_CPT < shape.c,
            "{dims:?}: an empty group"
        );
        assert_eq!(d.grid.0 as usize, shape.n * groups);
    }
}

/// The CUDA wrappers against the f64 CPU reference for every kernel and dtype: on the
/// CPU kernel harness always (odd shapes), on a GPU in the `gpu_*` tests (plus large
/// shapes; ignored unless run with `--ignored`, see tests/gpu_support).
mod cuda {
    use super::*;
    use gpu_support::gpu;
    use half::{bf16, f16};
    use harness_support::device::HarnessDevice;
    use sparta::ops::{relu, KernelFloat};
    use sparta::KernelDevice;

    fn store<T: KernelFloat>(v: &[f64]) -> Vec<T> {
        v.iter().map(|&v| T::of_f64(v)).collect()
    }

    fn load<T: KernelFloat>(v: &[T]) -> Vec<f64> {
        v.iter().map(|v| v.as_f64()).collect()
    }

    /// Every gate and ReLU wrapper on `dev` against the f64 reference at `shapes`.
    fn check_dtype<D: KernelDevice, T: KernelFloat>(
        dev: &D,
        shapes: &[(usize, usize, usize, usize, usize)],
        rtol: f64,
    ) {
        for (k, dims) in shapes.iter().enumerate() {
            let shape = shape_of(dims);
            let raw = inputs(&shape, 1000 + k as u64);
            let (x, s, c, dy) = (
                store::<T>(&raw.x),
                store::<T>(&raw.s),
                store::<T>(&raw.c),
                store::<T>(&raw.dy),
            );
            // The reference sees the same, storage-rounded numbers.
            let i = Inputs {
                x: load(&x),
                s: load(&s),
                c: load(&c),
                dy: load(&dy),
            };
            let what = |name: &str| format!("{name} {} at {dims:?}", T::SUFFIX);
            let x_d = dev.upload("x", &x).unwrap();
            let s_d = dev.upload("s", &s).unwrap();
            let c_d = dev.upload("c", &c).unwrap();
            let dy_d = dev.upload("dy", &dy).unwrap();
            let (x_v, s_v, c_v, dy_v) = (
                dev.view(&x_d),
                dev.view(&s_d),
                dev.view(&c_d),
                dev.view(&dy_d),
            );
            let alloc = |name: &str, len: usize| dev.alloc_scratch::<T>(name, len).unwrap();
            let down = |b: &D::Buffer<T>| load(&dev.download(&dev.view(b)).unwrap());

            let mut y_d = alloc("y", shape.x_len());
            gate::cuda::gate_forward(dev, &shape, &x_v, &s_v, &c_v, &mut dev.view_mut(&mut y_d))
                .unwrap();
            let y64 = forward64(&shape, &i.x, &i.s, &i.c);
            assert_close(&what("y"), &down(&y_d), &y64, rtol, 0.0);

            let (mut r_d, mut g_d, mut yu_d) = (
                alloc("relu_out", shape.x_len()),
                alloc("gate", shape.x_len()),
                alloc("y", shape.x_len()),
            );
            gate::cuda::gate_forward_unfused(
                dev,
                &shape,
                &x_v,
                &s_v,
                &c_v,
                &mut dev.view_mut(&mut r_d),
                &mut dev.view_mut(&mut g_d),
                &mut dev.view_mut(&mut yu_d),
            )
            .unwrap();
            // The unfused peer rounds the gate map to T before multiplying.
            assert_close(&what("unfused y"), &down(&yu_d), &y64, 2.0 * rtol, 0.0);

            let backward = || {
                let (mut dx_d, mut ds_d, mut dc_d) = (
                    alloc("dx", shape.x_len()),
                    alloc("ds", shape.s_len()),
                    alloc("dc", shape.c_len()),
                );
                gate::cuda::gate_backward(
                    dev,
                    &shape,
                    &x_v,
                    &s_v,
                    &c_v,
                    &dy_v,
                    &mut dev.view_mut(&mut dx_d),
                    &mut dev.view_mut(&mut ds_d),
                    &mut dev.view_mut(&mut dc_d),
                )
                .unwrap();
                (down(&dx_d), down(&ds_d), down(&dc_d))
            };
            let (dx, ds, dc) = backward();
            let (dx64, ds64, dc64) = backward64(&shape, &i);
            assert_close(&what("dx"), &dx, &dx64, rtol, 0.0);
            assert_close(&what("ds"), &ds, &ds64, rtol, 0.1);
            assert_close(&what("dc"), &dc, &dc64, rtol, 0.1);

            let mut ry_d = alloc("y", shape.x_len());
            relu::cuda::relu_forward(dev, &x_v, &mut dev.view_mut(&mut ry_d)).unwrap();
            let mut ry = vec![0.0; shape.x_len()];
            cpu::relu_forward(&i.x, &mut ry).unwrap();
            assert_eq!(down(&ry_d), ry, "{}", what("relu y"));
            let mut rdx_d = alloc("dx", shape.x_len());
            relu::cuda::relu_backward(dev, &x_v, &dy_v, &mut dev.view_mut(&mut rdx_d)).unwrap();
            let mut rdx = vec![0.0; shape.x_len()];
            cpu::relu_backward(&i.x, &i.dy, &mut rdx).unwrap();
            assert_eq!(down(&rdx_d), rdx, "{}", what("relu dx"));

            // Same inputs, same bits: the backward has no atomics.
            let (_, ds2, dc2) = backward();
            assert_eq!(ds2, ds);
            assert_eq!(dc2, dc);
        }
    }

    /// The f32-map gate (`gate_{forward,backward}_f32map_<T>`, then `gate_backward_ds_f32`):
    /// x, dy, y, dx stored as `T` (f16 / bf16), s, c, ds, dc as f32. y and dx are held to
    /// `T`'s tolerance against f64; ds and dc see only exact inputs and the f32 kernel's
    /// arithmetic in its order, so they must equal, bit for bit, what `gate_backward_f32`
    /// gives on the same values widened to f32.
    fn check_f32_maps<D: KernelDevice, T: KernelFloat>(
        dev: &D,
        shapes: &[(usize, usize, usize, usize, usize)],
    ) where
        f32: sparta::ops::GateMapFloat<T>,
    {
        for (k, dims) in shapes.iter().enumerate() {
            let shape = shape_of(dims);
            let raw = inputs(&shape, 3000 + k as u64);
            let (x, dy) = (store::<T>(&raw.x), store::<T>(&raw.dy));
            let (s, c) = (store::<f32>(&raw.s), store::<f32>(&raw.c));
            let i = Inputs {
                x: load(&x),
                s: load(&s),
                c: load(&c),
                dy: load(&dy),
            };
            let what = |name: &str| format!("{name} f32 maps, {} at {dims:?}", T::SUFFIX);
            let (x_d, dy_d) = (dev.upload("x", &x).unwrap(), dev.upload("dy", &dy).unwrap());
            let (s_d, c_d) = (dev.upload("s", &s).unwrap(), dev.upload("c", &c).unwrap());
            let (x_v, s_v, c_v) = (dev.view(&x_d), dev.view(&s_d), dev.view(&c_d));
            let mut y_d = dev.alloc_scratch::<T>("y", shape.x_len()).unwrap();
            let mut dx_d = dev.alloc_scratch::<T>("dx", shape.x_len()).unwrap();
            let mut ds_d = dev.alloc_scratch::<f32>("ds", shape.s_len()).unwrap();
            let mut dc_d = dev.alloc_scratch::<f32>("dc", shape.c_len()).unwrap();
            gate::cuda::gate_forward(dev, &shape, &x_v, &s_v, &c_v, &mut dev.view_mut(&mut y_d))
                .unwrap();
            gate::cuda::gate_backward(
                dev,
                &shape,
                &x_v,
                &s_v,
                &c_v,
                &dev.view(&dy_d),
                &mut dev.view_mut(&mut dx_d),
                &mut dev.view_mut(&mut ds_d),
                &mut dev.view_mut(&mut dc_d),
            )
            .unwrap();
            let y = load(&dev.download(&dev.view(&y_d)).unwrap());
            assert_close(
                &what("y"),
                &y,
                &forward64(&shape, &i.x, &i.s, &i.c),
                1e-2,
                0.0,
            );
            let (dx64, _, _) = backward64(&shape, &i);
            let dx = load(&dev.download(&dev.view(&dx_d)).unwrap());
            assert_close(&what("dx"), &dx, &dx64, 1e-2, 0.0);
            let (x32, dy32) = (store::<f32>(&i.x), store::<f32>(&i.dy));
            let (x32_d, dy32_d) = (
                dev.upload("x", &x32).unwrap(),
                dev.upload("dy", &dy32).unwrap(),
            );
            let mut dx32_d = dev.alloc_scratch::<f32>("dx", shape.x_len()).unwrap();
            let mut ds32_d = dev.alloc_scratch::<f32>("ds", shape.s_len()).unwrap();
            let mut dc32_d = dev.alloc_scratch::<f32>("dc", shape.c_len()).unwrap();
            gate::cuda::gate_backward(
                dev,
                &shape,
                &dev.view(&x32_d),
                &s_v,
                &c_v,
                &dev.view(&dy32_d),
                &mut dev.view_mut(&mut dx32_d),
                &mut dev.view_mut(&mut ds32_d),
                &mut dev.view_mut(&mut dc32_d),
            )
            .unwrap();
            let down = |b: &D::Buffer<f32>| dev.download(&dev.view(b)).unwrap();
            assert_eq!(down(&ds_d), down(&ds32_d), "{}", what("ds"));
            assert_eq!(down(&dc_d), down(&dc32_d), "{}", what("dc"));
        }
    }

    #[test]
    fn harness_f32_maps_match_cpu() {
        check_f32_maps::<_, f16>(&HarnessDevice::new(), ODD_SHAPES);
        check_f32_maps::<_, bf16>(&HarnessDevice::new(), ODD_SHAPES);
    }

    #[test]
    #[ignore = "needs a GPU"]
    fn gpu_f32_maps_match_cpu() {
        let gpu = gpu();
        check_f32_maps::<_, f16>(&gpu, &gpu_shapes());
        check_f32_maps::<_, bf16>(&gpu, &gpu_shapes());
    }

    /// The odd shapes, plus on a GPU two large ones.
    fn gpu_shapes() -> Vec<(usize, usize, usize, usize, usize)> {
        let mut shapes = ODD_SHAPES.to_vec();
        shapes.extend([(4, 64, 32, 32, 1), (3, 40, 4, 4, 1)]);
        shapes
    }

    #[test]
    fn harness_f32_matches_cpu() {
        check_dtype::<_, f32>(&HarnessDevice::new(), ODD_SHAPES, 1e-5);
    }

    #[test]
    fn harness_f16_matches_cpu() {
        check_dtype::<_, f16>(&HarnessDevice::new(), ODD_SHAPES, 1e-2);
    }

    #[test]
    fn harness_bf16_matches_cpu() {
        check_dtype::<_, bf16>(&HarnessDevice::new(), ODD_SHAPES, 1e-2);
    }

    #[test]
    #[ignore = "needs a GPU"]
    fn gpu_f32_matches_cpu() {
        let gpu = gpu();
        check_dtype::<_, f32>(&gpu, &gpu_shapes(), 1e-5);
    }

    #[test]
    #[ignore = "needs a GPU"]
    fn gpu_f16_matches_cpu() {
        let gpu = gpu();
        check_dtype::<_, f16>(&gpu, &gpu_shapes(), 1e-2);
    }

    #[test]
    #[ignore = "needs a GPU"]
    fn gpu_bf16_matches_cpu() {
        let gpu = gpu();
        check_dtype::<_, bf16>(&gpu, &gpu_shapes(), 1e-2);
    }

    #[test]
    #[ignore = "needs a GPU"]
    fn gpu_host_api_matches_cpu() {
        let gpu = gpu();
        let device = Device::Cuda(gpu);
        let shape = GateShape::new(2, 3, 5, 7, 2).unwrap();
        let i = rounded(&inputs(&shape, 21));
        let (x, s, c, dy) = (to_f32(&i.x), to_f32(&i.s), to_f32(&i.c), to_f32(&i.dy));
        let mut y = vec![0.0f32; x.len()];
        gate::forward(&device, &shape, &x, &s, &c, &mut y).unwrap();
        assert_close(
            "y",
            &to_f64(&y),
            &forward64(&shape, &i.x, &i.s, &i.c),
            1e-5,
            0.0,
        );
        let (mut dx, mut ds, mut dc) = (
            vec![0.0f32; x.len()],
            vec![0.0f32; s.len()],
            vec![0.0f32; c.len()],
        );
        gate::backward(&device, &shape, &x, &s, &c, &dy, &mut dx, &mut ds, &mut dc).unwrap();
        let (dx64, ds64, dc64) = backward64(&shape, &i);
        assert_close("dx", &to_f64(&dx), &dx64, 1e-5, 0.0);
        assert_close("ds", &to_f64(&ds), &ds64, 1e-5, 0.1);
        assert_close("dc", &to_f64(&dc), &dc64, 1e-5, 0.1);
        let mut ry = vec![0.0f32; x.len()];
        relu::forward(&device, &x, &mut ry).unwrap();
        let mut rdx = vec![0.0f32; x.len()];
        relu::backward(&device, &x, &dy, &mut rdx).unwrap();
        for k in 0..x.len() {
            assert_eq!(ry[k], x[k].max(0.0));
            assert_eq!(rdx[k], if x[k] > 0.0 { dy[k] } else { 0.0 });
        }
    }
}
