//! The implicit-GEMM convolution wrappers, and `cuda::conv2d` (cuDNN on a GPU that has
//! it, else those kernels), against the f64 CPU reference: on the CPU kernel harness
//! always (the odd cases), on a GPU in the `gpu_*` tests (ResNet-18's convolutions
//! too; ignored unless run with `--ignored`). f32 results must be within 1e-5 of
//! the reference, relative to the reference's largest magnitude.

mod gpu_support;
mod harness_support;

use gpu_support::gpu;
use harness_support::device::HarnessDevice;
use harness_support::{assert_matches, download, upload_f32};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::ops::conv2d::{conv2d_weight_split, cpu, cuda, ConvGeom, ConvPass};
use sparta::{Error, KernelDevice};

/// Random values rounded to f32, as f64 (what both the GPU and the reference see).
fn random(rng: &mut StdRng, len: usize) -> Vec<f64> {
    (0..len)
        .map(|_| f64::from(rng.random_range(-1.0f32..1.0)))
        .collect()
}

/// (N, C, H, W, K, kernel, stride, pad).
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

/// The cases the harness runs too: odd sizes.
const ODD_CASES: usize = 3;

/// Odd sizes, then ResNet-18's convolutions at a
/// small batch (stem, group 1 with a many-way split weight gradient, a stride-2 3×3, the
/// 1×1 stride-2 shortcut, group 4 with an unsplit weight gradient).
const CASES: &[Case] = &[
    (2, 17, 5, 7, 33, 3, 1, 1),
    (1, 3, 1, 1, 5, 3, 1, 1),
    (2, 20, 5, 7, 9, 1, 2, 0),
    (8, 3, 32, 32, 64, 3, 1, 1),
    (8, 64, 32, 32, 64, 3, 1, 1),
    (4, 128, 16, 16, 256, 3, 2, 1),
    (8, 64, 32, 32, 128, 1, 2, 0),
    (4, 512, 4, 4, 512, 3, 1, 1),
];

#[test]
fn conv2d_kernels_match_cpu() {
    check_conv2d(&HarnessDevice::new(), &CASES[..ODD_CASES]);
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_conv2d_kernels_match_cpu() {
    let gpu = gpu();
    check_conv2d(&gpu, CASES);
}

/// A case's geometry, random x, w and dy, and the CPU reference's y, dx and dw.
struct CaseData {
    g: ConvGeom,
    x: Vec<f64>,
    wt: Vec<f64>,
    dy: Vec<f64>,
    y: Vec<f64>,
    dx: Vec<f64>,
    dw: Vec<f64>,
}

fn case_data(rng: &mut StdRng, &(n, c_in, h, w, c_out, k, stride, pad): &Case) -> CaseData {
    let g = ConvGeom {
        n,
        c_in,
        h,
        w,
        c_out,
        k,
        stride,
        pad,
    };
    let (x_len, w_len, y_len) = g.lens();
    let (x, wt, dy) = (random(rng, x_len), random(rng, w_len), random(rng, y_len));
    let y = cpu::forward(&g, &x, &wt);
    let (dx, dw) = cpu::backward(&g, &x, &wt, &dy, true, true);
    CaseData {
        g,
        x,
        wt,
        dy,
        y,
        dx: dx.expect("asked for dx"),
        dw: dw.expect("asked for dw"),
    }
}

fn check_conv2d<D: KernelDevice>(dev: &D, cases: &[Case]) {
    let mut rng = StdRng::seed_from_u64(7);
    for case in cases {
        let CaseData {
            g,
            x,
            wt,
            dy,
            y,
            dx,
            dw,
        } = case_data(&mut rng, case);
        let (x_len, w_len, y_len) = g.lens();
        let (x_d, w_d, dy_d) = (
            upload_f32(dev, "x", &x),
            upload_f32(dev, "wt", &wt),
            upload_f32(dev, "dy", &dy),
        );

        // Outputs start from garbage: every kernel overwrites.
        let mut y_d = upload_f32(dev, "y", &random(&mut rng, y_len));
        cuda::conv2d_forward(
            dev,
            &g,
            &dev.view(&x_d),
            &dev.view(&w_d),
            &mut dev.view_mut(&mut y_d),
        )
        .unwrap();
        assert_matches(&format!("y {g:?}"), &download(dev, &y_d), &y);

        let mut dx_d = upload_f32(dev, "dx", &random(&mut rng, x_len));
        cuda::conv2d_backward_input(
            dev,
            &g,
            &dev.view(&dy_d),
            &dev.view(&w_d),
            &mut dev.view_mut(&mut dx_d),
        )
        .unwrap();
        assert_matches(&format!("dx {g:?}"), &download(dev, &dx_d), &dx);

        let mut dw_d = upload_f32(dev, "dw", &random(&mut rng, w_len));
        let mut weight_grad = || {
            cuda::conv2d_backward_weight(
                dev,
                &g,
                &dev.view(&x_d),
                &dev.view(&dy_d),
                &mut dev.view_mut(&mut dw_d),
            )
            .unwrap();
            download(dev, &dw_d)
        };
        let first = weight_grad();
        let split = conv2d_weight_split(&g);
        assert_matches(&format!("dw {g:?} {split:?}"), &first, &dw);
        let again = weight_grad();
        assert!(
            first
                .iter()
                .zip(&again)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "dw {g:?}: two runs differ"
        );
    }
}

#[test]
fn conv2d_dispatch_matches_cpu() {
    check_dispatch(&HarnessDevice::new(), &CASES[..ODD_CASES]);
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_conv2d_dispatch_matches_cpu() {
    let gpu = gpu();
    check_dispatch(&gpu, CASES);
}

/// `cuda::conv2d` for the three passes, twice each (the second from the algorithm
/// cache on a GPU, and bit-identical: the backward algorithms are deterministic).
fn check_dispatch<D: KernelDevice>(dev: &D, cases: &[Case]) {
    let mut rng = StdRng::seed_from_u64(8);
    for case in cases {
        let CaseData {
            g,
            x,
            wt,
            dy,
            y,
            dx,
            dw,
        } = case_data(&mut rng, case);
        let (x_len, w_len, y_len) = g.lens();
        let (x_d, w_d, dy_d) = (
            upload_f32(dev, "x", &x),
            upload_f32(dev, "wt", &wt),
            upload_f32(dev, "dy", &dy),
        );
        let passes = [
            (ConvPass::Forward, &x_d, &w_d, y_len, y),
            (ConvPass::BackwardData, &dy_d, &w_d, x_len, dx),
            (ConvPass::BackwardFilter, &x_d, &dy_d, w_len, dw),
        ];
        for (pass, a, b, len, want) in passes {
            let mut out = upload_f32(dev, "out", &random(&mut rng, len));
            let mut run = || {
                cuda::conv2d(
                    dev,
                    pass,
                    &g,
                    &dev.view(a),
                    &dev.view(b),
                    &mut dev.view_mut(&mut out),
                )
                .unwrap();
                download(dev, &out)
            };
            let first = run();
            assert_matches(&format!("{pass:?} {g:?}"), &first, &want);
            let again = run();
            assert!(
                first
                    .iter()
                    .zip(&again)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{pass:?} {g:?}: two runs differ"
            );
        }
    }
}

#[test]
fn conv2d_wrappers_reject_wrong_lengths_and_geometry() {
    check_rejects(&HarnessDevice::new());
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_conv2d_wrappers_reject_wrong_lengths_and_geometry() {
    let gpu = gpu();
    check_rejects(&gpu);
}

fn check_rejects<D: KernelDevice>(dev: &D) {
    let g = ConvGeom {
        n: 1,
        c_in: 2,
        h: 4,
        w: 4,
        c_out: 3,
        k: 3,
        stride: 1,
        pad: 1,
    };
    let (x_len, w_len, y_len) = g.lens();
    let x = dev.alloc_zeros::<f32>("x", x_len).unwrap();
    let w = dev.alloc_zeros::<f32>("w", w_len).unwrap();
    let mut y_short = dev.alloc_zeros::<f32>("y", y_len - 1).unwrap();
    let err = cuda::conv2d_forward(
        dev,
        &g,
        &dev.view(&x),
        &dev.view(&w),
        &mut dev.view_mut(&mut y_short),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Shape { what, .. } if what == "y"),
        "{err}"
    );
    let too_big = ConvGeom { k: 7, ..g };
    let mut dx = dev.alloc_zeros::<f32>("dx", x_len).unwrap();
    let err = cuda::conv2d_backward_input(
        dev,
        &too_big,
        &dev.view(&y_short),
        &dev.view(&w),
        &mut dev.view_mut(&mut dx),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Shape { what, .. } if what == "geometry"),
        "{err}"
    );
    let err = cuda::conv2d(
        dev,
        ConvPass::Forward,
        &g,
        &dev.view(&x),
        &dev.view(&w),
        &mut dev.view_mut(&mut y_short),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Shape { what, .. } if what == "output"),
        "{err}"
    );
}
