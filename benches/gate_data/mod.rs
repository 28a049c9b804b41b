//! The gate benches' inputs, shared by `gate.rs` and `gate_ratios.rs` so that both time
//! the same values.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparta::ops::gate::GateShape;

/// (C, H, W) after each ResNet-18 group on CIFAR.
pub const SHAPES: [(usize, usize, usize); 4] =
    [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)];

/// x, s, c and dy of one gate (B = 1), uniform in [−2, 2), seed 1.
pub struct Data {
    pub shape: GateShape,
    pub x: Vec<f32>,
    pub s: Vec<f32>,
    pub c: Vec<f32>,
    pub dy: Vec<f32>,
}

impl Data {
    pub fn new(n: usize, (c, h, w): (usize, usize, usize)) -> Data {
        let shape = GateShape::new(n, c, h, w, 1).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let mut fill = |len: usize| (0..len).map(|_| rng.random_range(-2.0f32..2.0)).collect();
        Data {
            x: fill(shape.x_len()),
            s: fill(shape.s_len()),
            c: fill(shape.c_len()),
            dy: fill(shape.x_len()),
            shape,
        }
    }

    /// `CxHxW`, the benches' name for the shape.
    pub fn label(&self) -> String {
        format!("{}x{}x{}", self.shape.c, self.shape.h, self.shape.w)
    }
}
