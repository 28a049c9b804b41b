//! The paper's feature-map comparison: how far an adversarial image moves each block's
//! activation input X and output Y away from the clean image's. An activation that
//! resists the attack leaves `‖Y_adv − Y‖ / ‖Y‖` small even where `‖X_adv − X‖ / ‖X‖`
//! is not; [`compare_features`] measures both over a data set and keeps one image's
//! maps for the figure (`sparta features`).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::pgd::{pgd, PgdConfig};
use crate::classifier::{ActivationMaps, InspectActivations};
use crate::data::Dataset;
use crate::error::{Error, Result};

/// The relative change an attack made to one block's activation maps, over every
/// image seen.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FeatureShift {
    /// The block (`layer2.0`).
    pub block: String,
    /// Its activation (`relu`, `sparta`).
    pub activation: String,
    /// Whether it is the last block of its group.
    pub last_in_group: bool,
    /// `‖X_adv − X‖ / ‖X‖` of the activation's input (norms over all images).
    pub input: f64,
    /// `‖Y_adv − Y‖ / ‖Y‖` of its output.
    pub output: f64,
}

/// Running sums of squares behind [`FeatureShift`], one entry per block.
#[derive(Clone, Debug, Default)]
pub struct FeatureShifts {
    blocks: Vec<(String, String, bool)>,
    /// `Σ(X_adv − X)², ΣX², Σ(Y_adv − Y)², ΣY²`.
    sums: Vec<[f64; 4]>,
}

impl FeatureShifts {
    /// Adds one batch: the maps of its clean and of its adversarial images, as
    /// [`InspectActivations::activation_maps`] returns them (same blocks, same shapes).
    pub fn add(
        &mut self,
        clean: &[ActivationMaps<f32>],
        adversarial: &[ActivationMaps<f32>],
    ) -> Result<()> {
        let same = clean.len() == adversarial.len()
            && clean.iter().zip(adversarial).all(|(c, a)| {
                (&c.block, c.shape) == (&a.block, a.shape)
                    && c.input.len() == a.input.len()
                    && c.output.len() == a.output.len()
            });
        if !same {
            return Err(Error::Config(
                "feature shifts: the clean and adversarial maps come from different blocks or shapes"
                    .into(),
            ));
        }
        if self.blocks.is_empty() {
            self.blocks = clean
                .iter()
                .map(|m| (m.block.clone(), m.activation.clone(), m.last_in_group))
                .collect();
            self.sums = vec![[0.0; 4]; clean.len()];
        } else if self.blocks.len() != clean.len()
            || self.blocks.iter().zip(clean).any(|(b, m)| b.0 != m.block)
        {
            return Err(Error::Config(
                "feature shifts: a batch from another model's blocks".into(),
            ));
        }
        for ((c, a), sums) in clean.iter().zip(adversarial).zip(&mut self.sums) {
            let (dx, x) = squares(&c.input, &a.input);
            let (dy, y) = squares(&c.output, &a.output);
            for (s, v) in sums.iter_mut().zip([dx, x, dy, y]) {
                *s += v;
            }
        }
        Ok(())
    }

    /// The relative changes so far, in block order.
    pub fn shifts(&self) -> Vec<FeatureShift> {
        let ratio = |d: f64, r: f64| (d / r).sqrt();
        self.blocks
            .iter()
            .zip(&self.sums)
            .map(|((block, activation, last), s)| FeatureShift {
                block: block.clone(),
                activation: activation.clone(),
                last_in_group: *last,
                input: ratio(s[0], s[1]),
                output: ratio(s[2], s[3]),
            })
            .collect()
    }
}

/// `(Σ(adv − clean)², Σclean²)` in f64.
fn squares(clean: &[f32], adv: &[f32]) -> (f64, f64) {
    clean.iter().zip(adv).fold((0.0, 0.0), |(d, r), (&c, &a)| {
        let (c, a) = (c as f64, a as f64);
        (d + (a - c) * (a - c), r + c * c)
    })
}

/// What [`compare_features`] found.
#[derive(Clone, Debug)]
pub struct FeatureReport {
    /// Per block, over the whole data set.
    pub shifts: Vec<FeatureShift>,
    /// Every block's maps of the one image asked for (N = 1), clean…
    pub clean: Vec<ActivationMaps<f32>>,
    /// …and adversarial.
    pub adversarial: Vec<ActivationMaps<f32>>,
}

/// Attacks `data` in batches with `model` (PGD as configured, the same images
/// `sparta eval` attacks for the same seed and batch size) and compares its activation
/// maps for the clean and the adversarial images. `progress` is told the images done
/// after each batch.
pub fn compare_features<M: InspectActivations + ?Sized>(
    model: &mut M,
    data: &Dataset,
    batch: usize,
    attack: &PgdConfig,
    seed: u64,
    image: usize,
    mut progress: impl FnMut(usize),
) -> Result<FeatureReport> {
    if batch == 0 || image >= data.len() {
        return Err(Error::Config(format!(
            "feature maps need a batch size ≥ 1 and an image index below the {} images, got batch {batch}, image {image}",
            data.len()
        )));
    }
    let mut shifts = FeatureShifts::default();
    let mut kept = None;
    let mut x = Vec::new();
    let indices: Vec<usize> = (0..data.len()).collect();
    for (b, chunk) in indices.chunks(batch).enumerate() {
        let labels = data.batch(chunk, &mut x);
        let shape = [chunk.len(), data.channels, data.height, data.width];
        // The batch's random stream as `evaluate` draws it.
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(b as u64);
        let outcome = pgd(model, &x, shape, &labels, attack, &mut rng)?;
        let clean = model.activation_maps(&x, shape)?;
        let adversarial = model.activation_maps(&outcome.adversarial, shape)?;
        shifts.add(&clean, &adversarial)?;
        if let Some(i) = chunk.iter().position(|&k| k == image) {
            let one = |maps: &[ActivationMaps<f32>]| maps.iter().map(|m| one_image(m, i)).collect();
            kept = Some((one(&clean), one(&adversarial)));
        }
        progress(chunk.len());
    }
    let (clean, adversarial) = kept.expect("the image index was checked against the data");
    Ok(FeatureReport {
        shifts: shifts.shifts(),
        clean,
        adversarial,
    })
}

/// Image `i` of a batch's maps, as a batch of one.
fn one_image(maps: &ActivationMaps<f32>, i: usize) -> ActivationMaps<f32> {
    let [_, c, h, w] = maps.shape;
    let len = c * h * w;
    ActivationMaps {
        block: maps.block.clone(),
        last_in_group: maps.last_in_group,
        activation: maps.activation.clone(),
        shape: [1, c, h, w],
        input: maps.input[i * len..][..len].to_vec(),
        output: maps.output[i * len..][..len].to_vec(),
    }
}

/// The mean over channels of the first image of `map` (`[N, C, H, W]`), an H×W plane.
pub fn channel_mean(map: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let [_, c, h, w] = shape;
    let mut mean = vec![0.0f32; h * w];
    for plane in map.chunks_exact(h * w).take(c) {
        for (m, &v) in mean.iter_mut().zip(plane) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= c as f32);
    mean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps(block: &str, input: Vec<f32>, output: Vec<f32>) -> ActivationMaps<f32> {
        ActivationMaps {
            block: block.into(),
            last_in_group: true,
            activation: "relu".into(),
            shape: [1, 1, 1, input.len()],
            input,
            output,
        }
    }

    #[test]
    fn shifts_are_norm_ratios_over_all_batches() {
        let mut s = FeatureShifts::default();
        s.add(
            &[maps("a", vec![3.0, 0.0], vec![1.0, 0.0])],
            &[maps("a", vec![3.0, 4.0], vec![1.0, 0.5])],
        )
        .unwrap();
        s.add(
            &[maps("a", vec![0.0, 4.0], vec![0.0, 1.0])],
            &[maps("a", vec![0.0, 4.0], vec![0.0, 1.0])],
        )
        .unwrap();
        let got = s.shifts();
        assert_eq!(got.len(), 1);
        // Inputs: Σ(Δ)² = 16 over Σx² = 9 + 16; outputs: 0.25 over 1 + 1.
        assert!((got[0].input - (16.0f64 / 25.0).sqrt()).abs() < 1e-12);
        assert!((got[0].output - (0.25f64 / 2.0).sqrt()).abs() < 1e-12);

        let other = [maps("b", vec![1.0], vec![1.0])];
        assert!(s.add(&other, &other).is_err(), "another model's blocks");
        let short = [maps("a", vec![1.0], vec![1.0])];
        let long = [maps("a", vec![1.0, 2.0], vec![1.0, 2.0])];
        assert!(s.add(&short, &long).is_err(), "shapes differ");
    }

    /// The kept maps are the asked-for image's (here in the second batch), ε = 0 moves
    /// nothing, and an image index past the data is an error.
    #[test]
    fn compare_features_keeps_the_image_asked_for() {
        use crate::nn::resnet::{ResNet, ResNetConfig};
        let config = ResNetConfig {
            widths: [2, 3, 3, 4],
            ..ResNetConfig::small(1, 3).with_activation("G1-4.Blast")
        };
        let mut model = ResNet::<f32>::new(config, 4).unwrap();
        let data = Dataset {
            name: "tiny".into(),
            images: (0..5 * 64).map(|i| (i * 37 % 256) as u8).collect(),
            labels: vec![0, 1, 2, 0, 1],
            channels: 1,
            height: 8,
            width: 8,
            classes: 3,
        };
        let attack = PgdConfig::paper(2);
        let mut run = |attack: &PgdConfig, image: usize| {
            compare_features(&mut model, &data, 2, attack, 1, image, |_| {})
        };
        let report = run(&attack, 3).unwrap();
        assert_eq!(report.shifts.len(), 4);
        assert!(report
            .shifts
            .iter()
            .all(|s| s.input > 0.0 && s.output > 0.0));
        let still = run(
            &PgdConfig {
                epsilon: 0.0,
                ..attack
            },
            3,
        )
        .unwrap();
        assert!(still
            .shifts
            .iter()
            .all(|s| s.input == 0.0 && s.output == 0.0));
        assert_eq!(still.clean, still.adversarial);
        assert!(run(&attack, 5).is_err());

        let mut x = Vec::new();
        data.batch(&[3], &mut x);
        let alone = model.activation_maps(&x, [1, 1, 8, 8]).unwrap();
        for (kept, one) in report.clean.iter().zip(&alone) {
            assert_eq!((&kept.block, kept.shape), (&one.block, one.shape));
            let pairs = kept.input.iter().zip(&one.input);
            let close = pairs.chain(kept.output.iter().zip(&one.output));
            for (a, b) in close {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{}: {a} vs {b}",
                    kept.block
                );
            }
        }
    }

    #[test]
    fn channel_mean_and_one_image() {
        // N = 2, C = 2, 1×2 planes.
        let batch = ActivationMaps {
            block: "layer1.0".into(),
            last_in_group: false,
            activation: "sparta".into(),
            shape: [2, 2, 1, 2],
            input: vec![1.0, 2.0, 3.0, 6.0, 10.0, 20.0, 30.0, 60.0],
            output: vec![0.0; 8],
        };
        let second = one_image(&batch, 1);
        assert_eq!(second.shape, [1, 2, 1, 2]);
        assert_eq!(second.input, [10.0, 20.0, 30.0, 60.0]);
        assert_eq!(channel_mean(&second.input, second.shape), [20.0, 40.0]);
        assert_eq!(channel_mean(&batch.input, batch.shape), [2.0, 4.0]);
    }
}
