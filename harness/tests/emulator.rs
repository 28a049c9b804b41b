//! The emulator itself, checked with the harness's own kernels (test_kernels/checks.cu)
//! against plain Rust, and its error detection with broken copies (broken/).

use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta_harness::{kernels, Arg, Dims, Harness, HarnessError, Schedule};

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn dims_1d(grid: u32, block: u32, shared_bytes: u32) -> Dims {
    Dims {
        grid: (grid, 1, 1),
        block: (block, 1, 1),
        shared_bytes,
    }
}

fn close(got: f32, want: f64, tol: f64) -> bool {
    (got as f64 - want).abs() <= tol * (1.0 + want.abs())
}

#[test]
fn block_sum_with_shared_memory_and_barriers() {
    for n in [1usize, 255, 256, 1000] {
        let x = random(n, n as u64);
        let blocks = n.div_ceil(256);
        let mut h = Harness::new();
        let xb = h.input("x", &x);
        let out = h.output::<f32>("out", blocks);
        let args = [Arg::Buf(xb), Arg::Buf(out), Arg::I32(n as i32)];
        h.launch("check_block_sum_f32", dims_1d(blocks as u32, 256, 0), &args)
            .unwrap();
        let got = h.read::<f32>(out);
        for (b, g) in got.iter().enumerate() {
            let want: f64 = x[b * 256..n.min(b * 256 + 256)]
                .iter()
                .map(|&v| v as f64)
                .sum();
            assert!(close(*g, want, 1e-5), "n {n} block {b}: {g} vs {want}");
        }
    }
}

#[test]
fn warp_sum_scan_and_shuffles() {
    let n = 128;
    let x = random(n, 7);
    let mut h = Harness::new();
    let xb = h.input("x", &x);
    let sums = h.output::<f32>("sums", n / 32);
    let scan = h.output::<f32>("scan", n);
    let bcast = h.output::<f32>("bcast", n);
    let down = h.output::<f32>("down", n);
    let d = dims_1d(2, 64, 0);
    let n_arg = Arg::I32(n as i32);
    h.launch(
        "check_warp_sum_f32",
        d,
        &[Arg::Buf(xb), Arg::Buf(sums), n_arg],
    )
    .unwrap();
    h.launch(
        "check_warp_scan_f32",
        d,
        &[Arg::Buf(xb), Arg::Buf(scan), n_arg],
    )
    .unwrap();
    h.launch(
        "check_shfl_f32",
        d,
        &[Arg::Buf(xb), Arg::Buf(bcast), Arg::Buf(down), n_arg],
    )
    .unwrap();
    let (sums, scan, bcast, down) = (
        h.read::<f32>(sums),
        h.read::<f32>(scan),
        h.read::<f32>(bcast),
        h.read::<f32>(down),
    );
    for w in 0..n / 32 {
        let lanes = &x[w * 32..w * 32 + 32];
        let want: f64 = lanes.iter().map(|&v| v as f64).sum();
        assert!(
            close(sums[w], want, 1e-5),
            "warp {w}: {} vs {want}",
            sums[w]
        );
        let mut acc = 0.0f64;
        for l in 0..32 {
            acc += lanes[l] as f64;
            let i = w * 32 + l;
            assert!(close(scan[i], acc, 1e-5), "scan {i}");
            assert_eq!(bcast[i], lanes[31], "bcast {i}");
            // Lanes whose source would leave the warp keep their own value.
            assert_eq!(
                down[i],
                lanes[if l + 3 < 32 { l + 3 } else { l }],
                "down {i}"
            );
        }
    }
}

#[test]
fn votes() {
    let n = 96;
    let mut x = random(n, 3);
    x[32..64].iter_mut().for_each(|v| *v = v.abs() + 0.5); // warp 1: all positive
    x[64..96].iter_mut().for_each(|v| *v = -v.abs() - 0.5); // warp 2: none
    let mut h = Harness::new();
    let xb = h.input("x", &x);
    let count = h.output::<i32>("count", 3);
    let any = h.output::<i32>("any", 3);
    let all = h.output::<i32>("all", 3);
    let args = [
        Arg::Buf(xb),
        Arg::Buf(count),
        Arg::Buf(any),
        Arg::Buf(all),
        Arg::I32(n as i32),
    ];
    h.launch("check_votes", dims_1d(1, 96, 0), &args).unwrap();
    let c0 = x[..32].iter().filter(|&&v| v > 0.0).count() as i32;
    assert_eq!(h.read::<i32>(count), vec![c0, 32, 0]);
    assert_eq!(h.read::<i32>(any), vec![(c0 > 0) as i32, 1, 0]);
    assert_eq!(h.read::<i32>(all), vec![(c0 == 32) as i32, 1, 0]);
}

#[test]
fn global_atomics() {
    let n = 1000;
    let mut rng = StdRng::seed_from_u64(11);
    let x: Vec<i32> = (0..n).map(|_| rng.random_range(-2..12)).collect();
    let bins = 8;
    let mut h = Harness::new();
    let xb = h.input("x", &x);
    let hist = h.input("hist", &vec![0i32; bins]);
    let args = [
        Arg::Buf(xb),
        Arg::Buf(hist),
        Arg::I32(n),
        Arg::I32(bins as i32),
    ];
    let report = h
        .launch("check_histogram", dims_1d(3, 64, 0), &args)
        .unwrap();
    let mut want = vec![0i32; bins];
    x.iter()
        .for_each(|&v| want[v.clamp(0, bins as i32 - 1) as usize] += 1);
    assert_eq!(h.read::<i32>(hist), want);
    assert_eq!(report.buffer("hist").atomics, n as u64);
}

#[test]
fn dynamic_shared_memory() {
    let n = 100;
    let x = random(n, 5);
    let mut h = Harness::new();
    let xb = h.input("x", &x);
    let y = h.output::<f32>("y", n);
    let args = [Arg::Buf(xb), Arg::Buf(y), Arg::I32(n as i32)];
    h.launch("check_reverse_block_f32", dims_1d(2, 64, 64 * 4), &args)
        .unwrap();
    let got = h.read::<f32>(y);
    for (j, &g) in got.iter().enumerate() {
        let (b, t) = (j / 64, j % 64);
        let src = b * 64 + (63 - t);
        let want = if src < n { x[src] } else { 0.0 };
        assert_eq!(g, want, "y[{j}]");
    }
}

#[test]
fn static_shared_memory_is_poisoned_for_every_block() {
    let mut h = Harness::new();
    let out = h.output::<f32>("out", 3 * 64);
    h.launch(
        "check_shared_poison_f32",
        dims_1d(3, 64, 0),
        &[Arg::Buf(out)],
    )
    .unwrap();
    assert!(h.read::<f32>(out).iter().all(|v| v.is_nan()));
}

#[test]
fn half_and_bfloat16_conversions_round_to_nearest_even() {
    let mut rng = StdRng::seed_from_u64(13);
    let mut x: Vec<f32> = vec![
        0.0,
        -0.0,
        1.0,
        65504.0,
        65519.99,
        65520.0,
        1e-8,
        2.98e-8,
        5.96e-8,
        6.1e-5,
        6.0e-5,
        f32::INFINITY,
        -f32::INFINITY,
        f32::MAX,
        f32::MIN_POSITIVE,
        1.0 + 1.0 / 2048.0,
        1.0 + 3.0 / 2048.0,
        1.0 + 1.0 / 256.0,
        1.0 + 3.0 / 256.0,
    ];
    while x.len() < 5 * 37 {
        let bits: u32 = rng.random();
        let v = f32::from_bits(bits);
        if v.is_finite() {
            x.push(v);
        }
        x.push(rng.random_range(-70000.0f32..70000.0) * rng.random_range(0.0f32..1.0).powi(8));
    }
    x.truncate(5 * 37);
    let (rows, cols) = (5usize, 37usize);
    let mut h = Harness::new();
    let xb = h.input("x", &x);
    let hb = h.output::<f16>("h", rows * cols);
    let bb = h.output::<bf16>("b", rows * cols);
    let back = h.output::<f32>("back", 2 * rows * cols);
    let args = [
        Arg::Buf(xb),
        Arg::Buf(hb),
        Arg::Buf(bb),
        Arg::Buf(back),
        Arg::I32(rows as i32),
        Arg::I32(cols as i32),
    ];
    let dims = Dims {
        grid: (3, 2, 1),
        block: (16, 4, 1),
        shared_bytes: 0,
    };
    h.launch("check_convert_2d", dims, &args).unwrap();
    let (hs, bs, back) = (h.read::<f16>(hb), h.read::<bf16>(bb), h.read::<f32>(back));
    for (i, &v) in x.iter().enumerate() {
        assert_eq!(hs[i].to_bits(), f16::from_f32(v).to_bits(), "f16 of {v:e}");
        assert_eq!(
            bs[i].to_bits(),
            bf16::from_f32(v).to_bits(),
            "bf16 of {v:e}"
        );
        assert_eq!(
            back[2 * i].to_bits(),
            hs[i].to_f32().to_bits(),
            "f16 back {v:e}"
        );
        assert_eq!(
            back[2 * i + 1].to_bits(),
            bs[i].to_f32().to_bits(),
            "bf16 back"
        );
    }
}

#[test]
fn nan_conversions_stay_nan() {
    let x = vec![f32::NAN, -f32::NAN];
    let mut h = Harness::new();
    let xb = h.input("x", &x);
    let hb = h.output::<f16>("h", 2);
    let bb = h.output::<bf16>("b", 2);
    let back = h.output::<f32>("back", 4);
    let args = [
        Arg::Buf(xb),
        Arg::Buf(hb),
        Arg::Buf(bb),
        Arg::Buf(back),
        Arg::I32(1),
        Arg::I32(2),
    ];
    h.launch("check_convert_2d", dims_1d(1, 32, 0), &args)
        .unwrap();
    assert!(h.read::<f16>(hb).iter().all(|v| v.is_nan()));
    assert!(h.read::<bf16>(bb).iter().all(|v| v.is_nan()));
    assert!(h.read::<f32>(back).iter().all(|v| v.is_nan()));
}

#[test]
fn traffic_counts_coalesced_and_strided_warps() {
    let n = 1000usize;
    for stride in [1usize, 2, 8, 32] {
        let x = random(n * stride, 1);
        let mut h = Harness::new();
        let xb = h.input("x", &x);
        let y = h.output::<f32>("y", n);
        let args = [
            Arg::Buf(xb),
            Arg::Buf(y),
            Arg::F32(1.5),
            Arg::I32(n as i32),
            Arg::I32(stride as i32),
        ];
        let r = h
            .launch(
                "check_gather_f32",
                dims_1d(n.div_ceil(128) as u32, 128, 0),
                &args,
            )
            .unwrap();
        // Each warp reads 32 floats `stride` apart: ceil(32·4·stride / 32) sectors up
        // to one per lane.
        let per_warp = (4 * stride).min(32) as u64;
        let warps = n.div_ceil(32) as u64;
        let tail = (n % 32) as u64; // last warp: 8 active lanes
        let want = (warps - 1) * per_warp + (tail * 4 * stride as u64).div_ceil(32).min(tail);
        assert_eq!(r.buffer("x").load_sectors, want, "stride {stride}");
        assert_eq!(r.buffer("y").store_sectors, (n as u64 * 4).div_ceil(32));
        assert_eq!(r.buffer("y").store_ratio(), 1.0);
        assert_eq!(r.buffer("x").loads, n as u64);
    }
}

#[test]
fn every_output_element_must_be_written() {
    let mut h = Harness::new();
    let xb = h.input("x", &random(64, 2));
    let y = h.output::<f32>("y", 64);
    let args = [
        Arg::Buf(xb),
        Arg::Buf(y),
        Arg::F32(1.0),
        Arg::I32(63),
        Arg::I32(1),
    ];
    let err = h
        .launch("check_gather_f32", dims_1d(1, 64, 0), &args)
        .unwrap_err();
    assert_eq!(
        err,
        HarnessError::Unwritten {
            kernel: "check_gather_f32".into(),
            buffer: "y".into(),
            count: 1,
            first: 63
        }
    );
    // The unwritten element holds the poison, NaN.
    assert!(h.read::<f32>(y)[63].is_nan());
}

#[test]
fn arguments_are_checked_against_the_kernel_signature() {
    let mut h = Harness::new();
    let xb = h.input("x", &[1i32; 4]);
    let y = h.output::<f32>("y", 4);
    let d = dims_1d(1, 32, 0);
    let e = |r: Result<_, HarnessError>| r.unwrap_err().to_string();
    assert!(e(h.launch("no_such_kernel", d, &[])).contains("no kernel named"));
    let wrong_dtype = [
        Arg::Buf(xb),
        Arg::Buf(y),
        Arg::F32(1.0),
        Arg::I32(4),
        Arg::I32(1),
    ];
    assert!(e(h.launch("check_gather_f32", d, &wrong_dtype)).contains("takes f32 elements"));
    let wrong_scalar = [
        Arg::Buf(y),
        Arg::Buf(y),
        Arg::F64(1.0),
        Arg::I32(4),
        Arg::I32(1),
    ];
    assert!(e(h.launch("check_gather_f32", d, &wrong_scalar)).contains("`a` is f32"));
    assert!(e(h.launch("check_gather_f32", d, &[Arg::Buf(y)])).contains("1 arguments for 5"));
}

#[test]
fn registry_lists_parameters() {
    let k = kernels()
        .into_iter()
        .find(|k| k.name == "check_gather_f32")
        .unwrap();
    assert_eq!(
        (k.dir.as_str(), k.module.as_str()),
        ("test_kernels", "checks")
    );
    let params = k.params.unwrap();
    let names: Vec<_> = params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["x", "y", "a", "n", "stride"]);
    assert!(params[0].buffer && params[0].is_const && params[0].dtype == "f32");
    assert!(params[1].buffer && !params[1].is_const);
    assert!(!params[3].buffer && params[3].dtype == "i32");
}

// ---- planted bugs in copies of the check kernels: each must be caught ----

fn block_sum_args(h: &mut Harness, n: usize) -> ([Arg; 3], Vec<f32>, sparta_harness::Buf) {
    let x = random(n, 21);
    let xb = h.input("x", &x);
    let out = h.output::<f32>("out", n.div_ceil(256));
    ([Arg::Buf(xb), Arg::Buf(out), Arg::I32(n as i32)], x, out)
}

#[test]
fn caught_missing_syncthreads() {
    let mut h = Harness::new();
    let (args, x, out) = block_sum_args(&mut h, 512);
    let d = dims_1d(2, 256, 0);
    // Reverse order happens to run the tree in dependency order (high threads first) and
    // gets the right sum; forward order reads partial sums before they are complete.
    let err = h
        .launch("broken_block_sum_no_sync_f32", d, &args)
        .unwrap_err();
    assert!(
        matches!(err, HarnessError::ScheduleDependent { .. }),
        "{err}"
    );
    h.launch_with("broken_block_sum_no_sync_f32", d, &args, Schedule::Forward)
        .unwrap();
    let got = h.read::<f32>(out);
    let want: f64 = x[..256].iter().map(|&v| v as f64).sum();
    assert!(!close(got[0], want, 1e-5), "{} vs {want}", got[0]);
}

#[test]
fn caught_divergent_syncthreads() {
    let mut h = Harness::new();
    let (args, _, _) = block_sum_args(&mut h, 300);
    let err = h
        .launch(
            "broken_block_sum_divergent_sync_f32",
            dims_1d(2, 256, 0),
            &args,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            HarnessError::Barrier { .. } | HarnessError::Deadlock { .. }
        ),
        "{err}"
    );
}

#[test]
fn caught_wrong_shuffle_offset() {
    let n = 64;
    let x = random(n, 4);
    let mut h = Harness::new();
    let xb = h.input("x", &x);
    let out = h.output::<f32>("out", 2);
    let args = [Arg::Buf(xb), Arg::Buf(out), Arg::I32(n as i32)];
    h.launch("broken_warp_sum_offset_f32", dims_1d(1, 64, 0), &args)
        .unwrap();
    let got = h.read::<f32>(out);
    let want: f64 = x[..32].iter().map(|&v| v as f64).sum();
    assert!(!close(got[0], want, 1e-5), "wrong offset went unnoticed");
}

#[test]
fn caught_missing_bounds_check() {
    let n = 100;
    let mut h = Harness::new();
    let xb = h.input("x", &random(n, 9));
    let y = h.output::<f32>("y", n);
    let args = [
        Arg::Buf(xb),
        Arg::Buf(y),
        Arg::F32(1.0),
        Arg::I32(n as i32),
        Arg::I32(1),
    ];
    let err = h
        .launch("broken_gather_no_guard_f32", dims_1d(1, 128, 0), &args)
        .unwrap_err();
    let HarnessError::OutOfBounds { detail, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        detail.contains("buffer `x` at element 100 (length 100)"),
        "{detail}"
    );
    assert!(
        detail.contains("thread (100,0,0) of block (0,0,0)"),
        "{detail}"
    );
}

#[test]
fn caught_dynamic_shared_overflow() {
    let n = 64;
    let mut h = Harness::new();
    let xb = h.input("x", &random(n, 9));
    let y = h.output::<f32>("y", n);
    let args = [Arg::Buf(xb), Arg::Buf(y), Arg::I32(n as i32)];
    let err = h
        .launch(
            "broken_reverse_block_overflow_f32",
            dims_1d(1, 64, 64 * 4),
            &args,
        )
        .unwrap_err();
    assert!(matches!(err, HarnessError::SharedBounds { .. }), "{err}");
}

fn view(buf: sparta_harness::Buf, offset: usize, len: usize) -> Arg {
    Arg::View { buf, offset, len }
}

#[test]
fn views_confine_a_kernel_to_their_range() {
    let x = random(100, 3);
    let mut h = Harness::new();
    let xb = h.input("x", &x);
    let y = h.output::<f32>("y", 64);
    h.write(y, &[7.0f32; 64]);
    let gather = |n: usize| [Arg::F32(1.5), Arg::I32(n as i32), Arg::I32(1)];
    // y[16 .. 48] = 1.5 · x[10 .. 42]; only the view is poisoned and must be written.
    let mut args = vec![view(xb, 10, 32), view(y, 16, 32)];
    args.extend(gather(32));
    h.launch("check_gather_f32", dims_1d(1, 64, 0), &args)
        .unwrap();
    let got = h.read::<f32>(y);
    for (i, &g) in got.iter().enumerate() {
        let want = if (16..48).contains(&i) {
            1.5 * x[i - 6]
        } else {
            7.0
        };
        assert_eq!(g, want, "y[{i}]");
    }
    // One element past the views: out of bounds although the buffers go on.
    let mut args = vec![view(xb, 10, 32), view(y, 16, 32)];
    args.extend(gather(33));
    let err = h
        .launch("check_gather_f32", dims_1d(1, 64, 0), &args)
        .unwrap_err();
    assert!(
        matches!(&err, HarnessError::OutOfBounds { detail, .. } if detail.contains("read of buffer `x` at element 32 (length 32)")),
        "{err}"
    );
    // A view that leaves its buffer is refused before the launch.
    let mut args = vec![view(xb, 90, 32), view(y, 16, 32)];
    args.extend(gather(32));
    let err = h
        .launch("check_gather_f32", dims_1d(1, 64, 0), &args)
        .unwrap_err();
    assert!(matches!(err, HarnessError::Arguments { .. }), "{err}");
    // Part of an output left unwritten inside the view is caught.
    let mut args = vec![view(xb, 10, 32), view(y, 16, 32)];
    args.extend(gather(31));
    let err = h
        .launch("check_gather_f32", dims_1d(1, 64, 0), &args)
        .unwrap_err();
    assert!(
        matches!(
            err,
            HarnessError::Unwritten {
                count: 1,
                first: 31,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn view_traffic_counts_sectors_at_the_buffer_alignment() {
    let mut h = Harness::new();
    let xb = h.input("x", &random(64, 4));
    let y = h.output::<f32>("y", 32);
    for (offset, sectors) in [(0usize, 4u64), (4, 5), (8, 4)] {
        let args = [
            view(xb, offset, 32),
            Arg::Buf(y),
            Arg::F32(1.0),
            Arg::I32(32),
            Arg::I32(1),
        ];
        let r = h
            .launch("check_gather_f32", dims_1d(1, 32, 0), &args)
            .unwrap();
        assert_eq!(r.buffer("x").bytes, 128);
        assert_eq!(r.buffer("x").load_sectors, sectors, "offset {offset}");
    }
}

#[test]
fn float_atomics_pass_within_a_tolerance_but_not_bitwise() {
    let n = 1000;
    let x = random(n, 5);
    let mut h = Harness::new();
    let xb = h.input("x", &x);
    let total = h.input("total", &[0.0f32]);
    let args = [Arg::Buf(xb), Arg::Buf(total), Arg::I32(n as i32)];
    let d = dims_1d(8, 128, 0);
    let err = h.launch("check_atomic_sum_f32", d, &args).unwrap_err();
    assert!(
        matches!(&err, HarnessError::ScheduleDependent { buffer, .. } if buffer == "total"),
        "{err}"
    );
    h.write(total, &[0.0f32]);
    h.launch_within("check_atomic_sum_f32", d, &args, 1e-5)
        .unwrap();
    let want: f64 = x.iter().map(|&v| f64::from(v)).sum();
    assert!(close(h.read::<f32>(total)[0], want, 1e-5));
}
