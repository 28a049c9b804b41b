//! The implicit-GEMM convolution kernels on the GPU against the f64 CPU reference; each
//! test skips with a message when no GPU is present. f32 results must be within 1e-5 of
//! the reference, relative to the reference's largest magnitude.

use std::sync::Arc;

use cudarc::driver::CudaSlice;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::ops::conv2d::{conv2d_weight_split, cpu, cuda, ConvGeom};
use sparta::{Error, Gpu};

/// Random values rounded to f32, as f64 (what both the GPU and the reference see).
fn random(rng: &mut StdRng, len: usize) -> Vec<f64> {
    (0..len)
        .map(|_| f64::from(rng.random_range(-1.0f32..1.0)))
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
        let err = (f64::from(g) - w).abs();
        assert!(err <= 1e-5 * scale, "{what}[{i}]: GPU {g} vs CPU {w}");
    }
}

/// (N, C, H, W, K, kernel, stride, pad).
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

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
    let Some(gpu) = Gpu::for_tests("conv2d_kernels_match_cpu") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(7);
    for &(n, c_in, h, w, c_out, k, stride, pad) in CASES {
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
        let (x, wt, dy) = (
            random(&mut rng, x_len),
            random(&mut rng, w_len),
            random(&mut rng, y_len),
        );
        let y = cpu::forward(&g, &x, &wt);
        let (dx, dw) = cpu::backward(&g, &x, &wt, &dy, true, true);
        let (x_d, w_d, dy_d) = (up(&gpu, &x), up(&gpu, &wt), up(&gpu, &dy));

        // Outputs start from garbage: every kernel overwrites.
        let mut y_d = up(&gpu, &random(&mut rng, y_len));
        cuda::conv2d_forward(
            &gpu,
            &g,
            &x_d.as_view(),
            &w_d.as_view(),
            &mut y_d.as_view_mut(),
        )
        .unwrap();
        assert_matches(&format!("y {g:?}"), &down(&gpu, &y_d), &y);

        let mut dx_d = up(&gpu, &random(&mut rng, x_len));
        cuda::conv2d_backward_input(
            &gpu,
            &g,
            &dy_d.as_view(),
            &w_d.as_view(),
            &mut dx_d.as_view_mut(),
        )
        .unwrap();
        assert_matches(&format!("dx {g:?}"), &down(&gpu, &dx_d), &dx.unwrap());

        let mut dw_d = up(&gpu, &random(&mut rng, w_len));
        let mut weight_grad = || {
            cuda::conv2d_backward_weight(
                &gpu,
                &g,
                &x_d.as_view(),
                &dy_d.as_view(),
                &mut dw_d.as_view_mut(),
            )
            .unwrap();
            down(&gpu, &dw_d)
        };
        let first = weight_grad();
        let split = conv2d_weight_split(&g);
        assert_matches(&format!("dw {g:?} {split:?}"), &first, &dw.unwrap());
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
fn conv2d_wrappers_reject_wrong_lengths_and_geometry() {
    let Some(gpu) = Gpu::for_tests("conv2d_wrappers_reject_wrong_lengths_and_geometry") else {
        return;
    };
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
    let stream = gpu.stream();
    let x = stream.alloc_zeros::<f32>(x_len).unwrap();
    let w = stream.alloc_zeros::<f32>(w_len).unwrap();
    let mut y_short = stream.alloc_zeros::<f32>(y_len - 1).unwrap();
    let err = cuda::conv2d_forward(
        &gpu,
        &g,
        &x.as_view(),
        &w.as_view(),
        &mut y_short.as_view_mut(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Shape { what, .. } if what == "y"),
        "{err}"
    );
    let too_big = ConvGeom { k: 7, ..g };
    let mut dx = stream.alloc_zeros::<f32>(x_len).unwrap();
    let err = cuda::conv2d_backward_input(
        &gpu,
        &too_big,
        &y_short.as_view(),
        &w.as_view(),
        &mut dx.as_view_mut(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Shape { what, .. } if what == "geometry"),
        "{err}"
    );
}
