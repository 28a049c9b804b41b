//! The implicit-GEMM convolution kernels (kernels/conv2d.cu), f32, run on the CPU by
//! sparta-harness through the CUDA wrappers themselves (on the harness device: their
//! launch shapes, argument lists and split-K sequence) and compared with the f64 CPU
//! reference (`conv2d::cpu::forward` / `backward` on the same f32-rounded inputs).
//!
//! Shapes cover ResNet's convolutions (3×3 pad 1 stride 1 and 2, 1×1 pad 0 stride 1 and
//! 2, the 3-channel stem) and odd ones: N = 1, 1×1 images with padding, 5×7 images,
//! channel counts that are not multiples of the 64-wide tile, reductions that are not
//! multiples of the 8-deep slice, and weight gradients with one and with several
//! split-K chunks. Every output buffer is poisoned before each launch and must be fully
//! written (dx too where no tap reaches a pixel); `Harness::launch` demands bit-identical
//! results under three thread schedules.

mod harness_support;

use harness_support::device::HarnessDevice;
use harness_support::{rounded, uniform};
use sparta::ops::conv2d::{
    self, conv2d_weight_scratch_len, conv2d_weight_split, ConvGeom, CONV2D_TILE,
};
use sparta::KernelDevice;
use sparta_harness::HarnessError;

/// Relative tolerance of f32 against the f64 reference.
const TOL: f64 = 1e-5;

/// Random f32 values and the same values in f64 (what the reference sees).
fn random(len: usize, seed: u64) -> (Vec<f32>, Vec<f64>) {
    rounded::<f32>(&uniform(len, -1.0, 1.0, seed))
}

/// The first element with `|got − want| > TOL · max_j |want_j|`, described: scale-aware,
/// since a sum that cancels to near zero carries the rounding of its large terms. NaN
/// never passes.
fn mismatch(what: &str, got: &[f32], want: &[f64]) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{what}: {} values, want {}", got.len(), want.len()));
    }
    let scale = want.iter().fold(f64::MIN_POSITIVE, |m, w| m.max(w.abs()));
    got.iter().zip(want).enumerate().find_map(|(i, (&g, &w))| {
        let within = (f64::from(g) - w).abs() <= TOL * scale; // false for NaN
        (!within).then(|| format!("{what}[{i}]: {g} vs reference {w} (tolerance {TOL} × {scale})"))
    })
}

fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    if let Some(e) = mismatch(what, got, want) {
        panic!("{e}");
    }
}

/// (N, C, H, W, K, kernel, stride, pad).
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

const CASES: &[Case] = &[
    // 3×3 s1 p1; pixels (70), K (33) and the reduction (17·9 = 153) all have tails.
    (2, 17, 5, 7, 33, 3, 1, 1),
    // 3×3 s2 p1 on an odd image, two K tiles (70 > 64).
    (2, 5, 7, 9, 70, 3, 2, 1),
    // 1×1 s2 p0: odd input rows / columns get no tap (dx = 0 there).
    (2, 20, 5, 7, 9, 1, 2, 0),
    // ResNet shortcut shape: 1×1 s2 p0 on an even image.
    (2, 16, 8, 8, 32, 1, 2, 0),
    // The stem: C = 3, 3×3 s1 p1, 64 channels; its weight gradient splits (512 pixels).
    (2, 3, 16, 16, 64, 3, 1, 1),
    // N = 1 on a 1×1 image with padding: only the centre tap touches it.
    (1, 3, 1, 1, 5, 3, 1, 1),
    (1, 4, 1, 1, 6, 3, 2, 1),
    // 1×1 s1: two row tiles of c·r·s (70) in the weight gradient, K = 3.
    (1, 70, 5, 7, 3, 1, 1, 0),
    // Several pixel tiles in every kernel and three weight-gradient splits (768 pixels).
    (3, 8, 16, 16, 8, 3, 1, 1),
    // 3×3 s2 without padding on a 9×8 image.
    (2, 3, 9, 8, 4, 3, 2, 0),
];

fn geom(&(n, c_in, h, w, c_out, k, stride, pad): &Case) -> ConvGeom {
    ConvGeom {
        n,
        c_in,
        h,
        w,
        c_out,
        k,
        stride,
        pad,
    }
}

/// The kernels' geometry arguments `N, C, H, W, K, R, stride, pad, P, Q`.
/// Runs the conv2d_forward wrapper (with `mutant` in place of conv2d_forward_f32 if
/// given) and returns y.
fn run_forward(
    mutant: Option<&str>,
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
) -> Result<Vec<f32>, HarnessError> {
    let dev = HarnessDevice::maybe_mutant(mutant, "conv2d_forward_f32");
    let xb = dev.upload("x", x).unwrap();
    let wb = dev.upload("w", w).unwrap();
    let mut yb = dev.alloc_scratch::<f32>("y", g.lens().2).unwrap();
    let r = conv2d::cuda::conv2d_forward(
        &dev,
        g,
        &dev.view(&xb),
        &dev.view(&wb),
        &mut dev.view_mut(&mut yb),
    );
    dev.harness_result(r)?;
    Ok(dev.download(&dev.view(&yb)).unwrap())
}

/// Runs the conv2d_backward_input wrapper (with `mutant` in place of
/// conv2d_backward_input_f32 if given) and returns dx.
fn run_backward_input(
    mutant: Option<&str>,
    g: &ConvGeom,
    dy: &[f32],
    w: &[f32],
) -> Result<Vec<f32>, HarnessError> {
    let dev = HarnessDevice::maybe_mutant(mutant, "conv2d_backward_input_f32");
    let dyb = dev.upload("dy", dy).unwrap();
    let wb = dev.upload("w", w).unwrap();
    let mut dxb = dev.alloc_scratch::<f32>("dx", g.lens().0).unwrap();
    let r = conv2d::cuda::conv2d_backward_input(
        &dev,
        g,
        &dev.view(&dyb),
        &dev.view(&wb),
        &mut dev.view_mut(&mut dxb),
    );
    dev.harness_result(r)?;
    Ok(dev.download(&dev.view(&dxb)).unwrap())
}

#[test]
fn conv2d_forward_matches_cpu_reference() {
    for (i, case) in CASES.iter().enumerate() {
        let g = geom(case);
        let (x_len, w_len, _) = g.lens();
        let (x, x64) = random(x_len, 10 * i as u64);
        let (w, w64) = random(w_len, 10 * i as u64 + 1);
        let want = conv2d::cpu::forward(&g, &x64, &w64);
        let got = run_forward(None, &g, &x, &w)
            .unwrap_or_else(|e| panic!("conv2d_forward_f32 {case:?}: {e}"));
        assert_close(&format!("conv2d_forward_f32 {case:?}"), &got, &want);
    }
}

#[test]
fn conv2d_backward_input_matches_cpu_reference() {
    for (i, case) in CASES.iter().enumerate() {
        let g = geom(case);
        let (x_len, w_len, y_len) = g.lens();
        let (_, x64) = random(x_len, 10 * i as u64 + 2);
        let (w, w64) = random(w_len, 10 * i as u64 + 3);
        let (dy, dy64) = random(y_len, 10 * i as u64 + 4);
        let (want, _) = conv2d::cpu::backward(&g, &x64, &w64, &dy64, true, false);
        let got = run_backward_input(None, &g, &dy, &w)
            .unwrap_or_else(|e| panic!("conv2d_backward_input_f32 {case:?}: {e}"));
        assert_close(
            &format!("conv2d_backward_input_f32 {case:?}"),
            &got,
            &want.unwrap(),
        );
    }
}

/// Both paths of the weight gradient: one chunk written straight into dw, and split-K
/// chunks into a partial buffer summed by `conv2d_backward_weight_reduce_f32`.
#[test]
fn conv2d_backward_weight_matches_cpu_reference() {
    let mut split_counts = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let g = geom(case);
        let (x_len, w_len, y_len) = g.lens();
        let (x, x64) = random(x_len, 10 * i as u64 + 5);
        let (_, w64) = random(w_len, 10 * i as u64 + 6);
        let (dy, dy64) = random(y_len, 10 * i as u64 + 7);
        let (_, want) = conv2d::cpu::backward(&g, &x64, &w64, &dy64, false, true);
        let want = want.unwrap();
        let split = conv2d_weight_split(&g);
        split_counts.push(split.splits);
        let dev = HarnessDevice::new();
        let xb = dev.upload("x", &x).unwrap();
        let dyb = dev.upload("dy", &dy).unwrap();
        let mut dwb = dev.alloc_scratch::<f32>("dw", w_len).unwrap();
        conv2d::cuda::conv2d_backward_weight(
            &dev,
            &g,
            &dev.view(&xb),
            &dev.view(&dyb),
            &mut dev.view_mut(&mut dwb),
        )
        .unwrap_or_else(|e| panic!("conv2d_backward_weight {case:?}: {e}"));
        let reports = dev.reports();
        let launched: Vec<&str> = reports.iter().map(|r| r.kernel.as_str()).collect();
        if split.splits == 1 {
            assert_eq!(conv2d_weight_scratch_len(&g), 0);
            assert_eq!(launched, ["conv2d_backward_weight_f32"]);
        } else {
            assert_eq!(conv2d_weight_scratch_len(&g), split.splits * w_len);
            assert_eq!(
                launched,
                [
                    "conv2d_backward_weight_f32",
                    "conv2d_backward_weight_reduce_f32"
                ]
            );
            // The partials: every one of splits · dw length written, then read once.
            assert_eq!(
                reports[0].buffer("dw_partial").bytes,
                4 * (split.splits * w_len) as u64
            );
            assert_eq!(
                reports[1].buffer("dw_partial").loads,
                (split.splits * w_len) as u64
            );
        }
        assert_close(
            &format!("conv2d_backward_weight {case:?} ({split:?})"),
            &dev.download(&dev.view(&dwb)).unwrap(),
            &want,
        );
    }
    assert!(
        split_counts.contains(&1) && split_counts.iter().any(|&s| s > 2),
        "the cases must run the weight gradient both unsplit and split: {split_counts:?}"
    );
}

/// The cases reach past one tile where the tiling has a boundary to get wrong.
#[test]
fn cases_span_several_tiles() {
    let t = CONV2D_TILE;
    let gs: Vec<ConvGeom> = CASES.iter().map(geom).collect();
    assert!(gs.iter().any(|g| g.c_out > t), "no case with two K tiles");
    assert!(
        gs.iter().any(|g| g.patch() > t),
        "no case with two c·r·s tiles"
    );
    assert!(
        gs.iter().any(|g| g.n * g.h_out() * g.w_out() > 2 * t),
        "no case with three pixel tiles"
    );
}

// ---- planted bugs: mutants of kernels/conv2d.cu (harness/mutants/) must be caught ----

/// A mutant is caught when its launch fails or its result differs from the reference.
fn caught(result: Result<Vec<f32>, HarnessError>, want: &[f64]) -> String {
    match result {
        Err(e) => e.to_string(),
        Ok(got) => mismatch("mutant", &got, want).expect("the planted bug went unnoticed"),
    }
}

#[test]
fn caught_removed_slice_barrier() {
    let g = geom(&CASES[0]);
    let (x_len, w_len, _) = g.lens();
    let (x, x64) = random(x_len, 900);
    let (w, w64) = random(w_len, 901);
    let want = conv2d::cpu::forward(&g, &x64, &w64);
    let why = caught(run_forward(Some("conv2d_no_slice_sync"), &g, &x, &w), &want);
    println!("caught: {why}");
}

#[test]
fn caught_wrong_tap_direction_in_input_grad() {
    let g = geom(&CASES[1]); // stride 2: the residue classes
    let (x_len, w_len, y_len) = g.lens();
    let (_, x64) = random(x_len, 902);
    let (w, w64) = random(w_len, 903);
    let (dy, dy64) = random(y_len, 904);
    let (want, _) = conv2d::cpu::backward(&g, &x64, &w64, &dy64, true, false);
    let why = caught(
        run_backward_input(Some("conv2d_input_tap_sign"), &g, &dy, &w),
        &want.unwrap(),
    );
    println!("caught: {why}");
}
