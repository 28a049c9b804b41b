//! The three CPU ratios at the ResNet-18 shapes (N = 128, f32), from the best of
//! many runs (a few seconds in all): gate forward / ReLU forward, unfused peer / gate
//! forward, gate backward / ReLU backward. On a shared VM a criterion mean moves by
//! ±20 % and more between runs; the minimum moves less, which is what an A/B comparison
//! of two commits needs. `benches/gate.rs` remains the criterion record.
//!
//!     cargo bench --bench gate_ratios                 # the four shapes
//!     cargo bench --bench gate_ratios -- --in-cache   # one sample, one thread
//!     SPARTA_CPU_VECTORS=avx2 cargo bench --bench gate_ratios   # a narrower CPU tier
//!
//! `--in-cache` times the per-sample loops on one sample that stays in L1/L2 and reports
//! cycles per 16 elements at `GHZ` (default 3.6): the loops' own cost, with no memory
//! traffic in it.

use std::time::Instant;

use sparta::ops::gate::cpu;

mod gate_data;
use gate_data::{Data, SHAPES};

/// Seconds of the fastest of `runs` calls of `f` (after one untimed call), each call
/// repeated `inner` times inside the timing.
fn fastest(runs: usize, inner: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..inner {
                f();
            }
            start.elapsed().as_secs_f64() / inner as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn ratios() {
    println!("best of many runs, µs; ratios as in the issue (targets ≤ 1.3, ≥ 3, ≤ 1.6)");
    for dims in SHAPES {
        let d = Data::new(128, dims);
        let len = d.shape.x_len();
        // 200 runs at 256×8×8, as many elements in all at the other shapes.
        let runs = 200 * (128 * 256 * 64) / len;
        let (mut y, mut r, mut g) = (vec![0.0f32; len], vec![0.0f32; len], vec![0.0f32; len]);
        let (mut dx, mut ds, mut dc) = (
            vec![0.0f32; len],
            vec![0.0; d.s.len()],
            vec![0.0; d.c.len()],
        );
        let (shape, x, s, c, dy) = (&d.shape, &d.x, &d.s, &d.c, &d.dy);
        let us = |f: &mut dyn FnMut()| fastest(runs, 1, f) * 1e6;
        let gate_fwd = us(&mut || cpu::gate_forward(shape, x, s, c, &mut y).unwrap());
        let unfused =
            us(&mut || cpu::gate_forward_unfused(shape, x, s, c, &mut r, &mut g, &mut y).unwrap());
        let relu_fwd = us(&mut || cpu::relu_forward(x, &mut y).unwrap());
        let gate_bwd =
            us(&mut || cpu::gate_backward(shape, x, s, c, dy, &mut dx, &mut ds, &mut dc).unwrap());
        let relu_bwd = us(&mut || cpu::relu_backward(x, dy, &mut dx).unwrap());
        println!(
            "{:>9}: gate_fwd {gate_fwd:7.1} relu_fwd {relu_fwd:7.1} unfused {unfused:7.1} \
             gate_bwd {gate_bwd:7.1} relu_bwd {relu_bwd:7.1} | fwd/relu {:.2} \
             unfused/fwd {:.2} bwd/relu {:.2}",
            d.label(),
            gate_fwd / relu_fwd,
            unfused / gate_fwd,
            gate_bwd / relu_bwd,
        );
    }
}

fn in_cache() {
    let ghz: f64 = std::env::var("GHZ")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.6);
    println!("one sample, one thread: cycles per 16 elements at {ghz} GHz");
    // 2048 elements: x, y, dy, dx together 32 KiB.
    for dims in [(128, 4, 4), (32, 8, 8), (8, 16, 16)] {
        let d = Data::new(1, dims);
        let len = d.shape.x_len();
        let mut y = vec![0.0f32; len];
        let (mut dx, mut ds, mut dc) = (
            vec![0.0f32; len],
            vec![0.0; d.s.len()],
            vec![0.0; d.c.len()],
        );
        let (shape, x, s, c, dy) = (&d.shape, &d.x, &d.s, &d.c, &d.dy);
        let cycles = |f: &mut dyn FnMut()| fastest(30, 1000, f) * 1e9 * ghz / (len / 16) as f64;
        let gate_fwd = cycles(&mut || cpu::gate_forward(shape, x, s, c, &mut y).unwrap());
        let gate_bwd = cycles(&mut || {
            cpu::gate_backward(shape, x, s, c, dy, &mut dx, &mut ds, &mut dc).unwrap()
        });
        let relu_fwd = cycles(&mut || cpu::relu_forward(x, &mut y).unwrap());
        println!(
            "{:>9}: gate_fwd {gate_fwd:5.1} gate_bwd {gate_bwd:5.1} relu_fwd {relu_fwd:5.1}",
            d.label()
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once as a check.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    println!(
        "gate CPU loops: {} (SPARTA_CPU_VECTORS picks another)",
        cpu::vector_tier()
    );
    if args.iter().any(|a| a == "--in-cache") {
        in_cache();
    } else {
        ratios();
    }
}
