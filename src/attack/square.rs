//! The Square attack in the L∞ ball (Andriushchenko et al., "Square Attack: a
//! query-efficient black-box adversarial attack via random search", ECCV 2020),
//! untargeted, on the margin loss `z_y − max_{j≠y} z_j`: gradient-free, it calls only
//! [`Classifier::logits`].
//!
//! Per image: start at `P(x₀ + ε·s)` with one random sign `s` per channel and column
//! (vertical stripes). Then, once per query, propose the best point so far with one
//! random square window of side `⌈√(p·H·W)⌋` (at least 1, at most `min(H, W) − 1`) set
//! to `x₀ ± ε` (one random sign per channel), and keep it when its margin is lower. `p`
//! starts at 0.8 and halves at fixed fractions of the query budget (the paper's
//! schedule, rescaled to the budget). A proposal that would leave the window as it is
//! takes the opposite signs instead. An image stops once misclassified.
//!
//! Only correctly classified images are attacked, each with at most `queries` model
//! evaluations (the stripes start being the first; the clean image is not counted).
//! Random draws, all from the `rng` handed in, in this order: per image, one sign per
//! channel and column (channel-major); then per query after the first, per image of the
//! **whole** batch (attacked or not), the window's row, its column, and one sign per
//! channel. So the draws do not depend on what the model answered.

use rand::Rng;

use super::batch::check_batch;
use super::losses::margin;
use super::outcome::AttackOutcome;
use super::pgd::argmax_rows;
use crate::classifier::{BatchShape, Classifier};
use crate::error::{check_len, Error, Result};
use crate::ops::pgd::cpu::project;

/// Settings of one Square attack.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SquareConfig {
    /// Radius of the L∞ ball, in [0, 1] pixel units.
    pub epsilon: f32,
    /// Model evaluations per image at most.
    pub queries: usize,
}

/// The initial fraction `p` of the pixels a window covers.
pub const P_INIT: f32 = 0.8;

/// The largest query budget [`SquareConfig::validate`] accepts: the paper's largest
/// budget (10,000) a hundred times.
pub const MAX_QUERIES: usize = 1_000_000;

impl SquareConfig {
    /// `Square-5000`.
    pub fn name(&self) -> String {
        format!("Square-{}", self.queries)
    }

    /// Checks ε in [0, 1] and 1 to [`MAX_QUERIES`] queries.
    pub fn validate(&self) -> Result<()> {
        let fault = if !(0.0..=1.0).contains(&self.epsilon) {
            format!("ε {} is outside [0, 1] (of the pixel range)", self.epsilon)
        } else if !(1..=MAX_QUERIES).contains(&self.queries) {
            format!("{} queries, 1 to {MAX_QUERIES}", self.queries)
        } else {
            return Ok(());
        };
        Err(Error::Config(format!("Square attack: {fault}")))
    }
}

/// The fraction of pixels of the window at query `it` (0 after the start) of a budget
/// of `queries`: the paper's schedule over 10,000 queries, rescaled.
pub fn window_fraction(it: usize, queries: usize) -> f32 {
    let at = it * 10_000 / queries.max(1);
    let halvings = match at {
        0..=10 => 0,
        11..=50 => 1,
        51..=200 => 2,
        201..=500 => 3,
        501..=1000 => 4,
        1001..=2000 => 5,
        2001..=4000 => 6,
        4001..=6000 => 7,
        6001..=8000 => 8,
        _ => 9,
    };
    P_INIT / (1u32 << halvings) as f32
}

/// The side of the square window covering a fraction `p` of an `h × w` image.
pub fn window_side(p: f32, h: usize, w: usize) -> usize {
    let side = (p * (h * w) as f32).sqrt().round() as usize;
    side.clamp(1, h.min(w).saturating_sub(1).max(1))
}

/// Attacks the batch `x` (NCHW in [0, 1]) with true `labels`; see the module docs.
pub fn square<C: Classifier + ?Sized>(
    model: &mut C,
    x: &[f32],
    shape: BatchShape,
    labels: &[usize],
    config: &SquareConfig,
    rng: &mut impl Rng,
) -> Result<AttackOutcome> {
    config.validate()?;
    let [n, c, h, w] = shape;
    let len = c * h * w;
    let classes = model.num_classes();
    check_batch("square", x.len(), shape, labels, classes)?;
    if classes < 2 {
        return Err(Error::Config(
            "the Square attack needs at least 2 classes".into(),
        ));
    }
    let eps = config.epsilon;
    let clean = model.logits(x, shape)?;
    check_len("square", "logits", clean.len(), n * classes)?;
    let mut broken: Vec<bool> = argmax_rows(&clean, classes)
        .iter()
        .zip(labels)
        .map(|(p, l)| p != l)
        .collect();
    let mut best = x.to_vec();
    for (i, &done) in broken.iter().enumerate() {
        for ch in 0..c {
            for col in 0..w {
                let sign = if rng.random::<bool>() { eps } else { -eps };
                for row in 0..h {
                    let k = i * len + (ch * h + row) * w + col;
                    if !done {
                        best[k] = project(x[k] + sign, x[k], eps);
                    }
                }
            }
        }
    }
    let curve_images: Vec<usize> = (0..n).filter(|&i| !broken[i]).collect();
    let mut queries = vec![0; n];
    let mut best_margin = vec![f32::INFINITY; n];
    let mut live = curve_images.clone();
    let mut batch = Vec::with_capacity(x.len());
    let evaluate =
        |model: &mut C, images: &[f32], live: &[usize]| -> Result<(Vec<f32>, Vec<bool>)> {
            let live_labels: Vec<usize> = live.iter().map(|&i| labels[i]).collect();
            let logits = model.logits(images, [live.len(), c, h, w])?;
            check_len("square", "logits", logits.len(), live.len() * classes)?;
            let wrong = argmax_rows(&logits, classes)
                .iter()
                .zip(&live_labels)
                .map(|(p, l)| p != l)
                .collect();
            Ok((margin(&logits, classes, &live_labels), wrong))
        };
    if !live.is_empty() {
        for &i in &live {
            batch.extend_from_slice(&best[i * len..(i + 1) * len]);
        }
        let (m, wrong) = evaluate(model, &batch, &live)?;
        for (k, &i) in live.iter().enumerate() {
            queries[i] += 1;
            best_margin[i] = m[k];
            broken[i] |= wrong[k];
        }
        live.retain(|&i| !broken[i]);
    }
    let curve_row = |best_margin: &[f32]| curve_images.iter().map(|&i| best_margin[i]).collect();
    let mut losses: Vec<Vec<f32>> = vec![curve_row(&best_margin)];
    let mut proposals = x.to_vec();
    let mut signs = vec![0.0f32; c];
    for it in 0..config.queries - 1 {
        if live.is_empty() {
            break;
        }
        let side = window_side(window_fraction(it, config.queries), h, w);
        let mut is_live = vec![false; n];
        for &i in &live {
            is_live[i] = true;
        }
        for (i, &attacked) in is_live.iter().enumerate() {
            let top = rng.random_range(0..=h - side);
            let left = rng.random_range(0..=w - side);
            for s in signs.iter_mut() {
                *s = if rng.random::<bool>() { eps } else { -eps };
            }
            if !attacked {
                continue;
            }
            let r = i * len..(i + 1) * len;
            proposals[r.clone()].copy_from_slice(&best[r]);
            let window = |ch: usize| {
                (top..top + side).flat_map(move |row| {
                    (left..left + side).map(move |col| (ch * h + row) * w + col)
                })
            };
            let unchanged = (0..c).all(|ch| {
                window(ch).all(|k| {
                    let k = i * len + k;
                    project(x[k] + signs[ch], x[k], eps) == best[k]
                })
            });
            for (ch, &s) in signs.iter().enumerate() {
                let s = if unchanged { -s } else { s };
                for k in window(ch) {
                    let k = i * len + k;
                    proposals[k] = project(x[k] + s, x[k], eps);
                }
            }
        }
        batch.clear();
        for &i in &live {
            batch.extend_from_slice(&proposals[i * len..(i + 1) * len]);
        }
        let (m, wrong) = evaluate(model, &batch, &live)?;
        for (k, &i) in live.iter().enumerate() {
            queries[i] += 1;
            if m[k] < best_margin[i] || wrong[k] {
                best_margin[i] = m[k];
                best[i * len..(i + 1) * len].copy_from_slice(&batch[k * len..(k + 1) * len]);
            }
            broken[i] |= wrong[k];
        }
        live.retain(|&i| !broken[i]);
        losses.push(curve_row(&best_margin));
    }
    // The curve has a point per query of the budget; images done early keep theirs.
    while losses.len() < config.queries {
        let last = losses[losses.len() - 1].clone();
        losses.push(last);
    }
    Ok(AttackOutcome {
        adversarial: best,
        broken,
        losses,
        curve_images,
        queries,
    })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::testing::{random_batch, LogitsOnly, SoftmaxRegression};

    const SHAPE: BatchShape = [32, 2, 6, 6];

    fn batch() -> (Vec<f32>, Vec<usize>) {
        random_batch(32, 72, 4, 3)
    }

    fn model() -> LogitsOnly<SoftmaxRegression> {
        LogitsOnly::new(SoftmaxRegression::sharp(72, 4, 5))
    }

    /// Gradient-free (the model gives no gradients), within the query budget (counted
    /// by the model: the clean batch, then at most `queries` calls), images in the
    /// ε-ball and [0, 1], the best margin never rising and falling overall, broken
    /// images misclassified, the same seed the same attack. Fails with one query more
    /// than the budget (checked by running the loop to `queries`).
    #[test]
    fn black_box_within_budget_and_ball_and_the_margin_falls() {
        let (x, labels) = batch();
        let config = SquareConfig {
            epsilon: 0.05,
            queries: 40,
        };
        let mut m = model();
        let out = square(
            &mut m,
            &x,
            SHAPE,
            &labels,
            &config,
            &mut ChaCha8Rng::seed_from_u64(9),
        )
        .unwrap();
        assert!(m.calls <= 1 + config.queries, "{} calls", m.calls);
        assert!(
            out.queries.iter().all(|&q| q <= config.queries),
            "{:?}",
            out.queries
        );
        assert_eq!(m.images, 32 + out.queries.iter().sum::<usize>());
        for (&a, &o) in out.adversarial.iter().zip(&x) {
            assert!((0.0..=1.0).contains(&a) && (a - o).abs() <= 0.05 + 1e-6);
        }
        assert_eq!(out.losses.len(), config.queries);
        let mean = |r: &Vec<f32>| r.iter().sum::<f32>() / r.len() as f32;
        for pair in out.losses.windows(2) {
            assert!(pair[0].iter().zip(&pair[1]).all(|(a, b)| b <= a));
        }
        assert!(mean(&out.losses[39]) < mean(&out.losses[0]) - 0.05);
        let logits = m.inner.logits(&out.adversarial, SHAPE).unwrap();
        let predicted = argmax_rows(&logits, 4);
        for i in 0..32 {
            assert_eq!(out.broken[i], predicted[i] != labels[i], "image {i}");
        }
        assert!(out.broken.iter().filter(|&&b| b).count() > out.curve_images.len() / 4);
        let again = square(
            &mut model(),
            &x,
            SHAPE,
            &labels,
            &config,
            &mut ChaCha8Rng::seed_from_u64(9),
        )
        .unwrap();
        assert_eq!(out, again);
    }

    #[test]
    fn the_window_shrinks_on_the_papers_schedule() {
        assert_eq!(window_fraction(0, 10_000), 0.8);
        assert_eq!(window_fraction(11, 10_000), 0.4);
        assert_eq!(window_fraction(9_000, 10_000), 0.8 / 512.0);
        // Rescaled: 100 queries reach the 10,000-query schedule's end.
        assert_eq!(window_fraction(90, 100), 0.8 / 512.0);
        assert_eq!(window_side(0.8, 28, 28), 25);
        assert_eq!(window_side(0.0001, 28, 28), 1);
        assert_eq!(window_side(1.0, 6, 6), 5);
    }

    #[test]
    fn bad_budgets_are_errors() {
        let (x, labels) = batch();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for queries in [0, MAX_QUERIES + 1] {
            let c = SquareConfig {
                epsilon: 0.1,
                queries,
            };
            assert!(square(&mut model(), &x, SHAPE, &labels, &c, &mut rng).is_err());
        }
    }
}
