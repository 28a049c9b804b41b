//! Adversarial images as files, for transfer attacks: `sparta attack
//! --save-adversarial FILE` writes the images an attack made on one model, `sparta eval
//! --adversarial FILE` evaluates any model on them.
//!
//! The file is safetensors: `images` (`[N, C, H, W]`, F32 in [0, 1]) and `labels`
//! (`[N]`, F32 holding whole numbers), and in the metadata `format`
//! ([`FORMAT`]), `checkpoint` (the model attacked), `attack` (its settings as JSON),
//! `dataset` (the images' data set and range) and `seed`. A file is read as untrusted:
//! every tensor and key is checked, and the images must be within the evaluation's ε
//! of the clean test images they claim to be.

use std::collections::HashMap;
use std::path::Path;

use super::evaluate::{fraction, Evaluated, RobustnessReport};
use super::pgd::argmax_rows;
use super::settings::Attack;
pub use super::settings::TransferSource;
use crate::classifier::Classifier;
use crate::data::Dataset;
use crate::error::{check_len, Error, Result};

/// The `format` metadata value of the files this module writes.
pub const FORMAT: &str = "sparta-adversarial-images/1";

/// Adversarial images with their labels and origin.
#[derive(Clone, Debug, PartialEq)]
pub struct AdversarialImages {
    /// Where they came from.
    pub source: TransferSource,
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
    /// The images, NCHW in [0, 1].
    pub images: Vec<f32>,
    /// The true class of each.
    pub labels: Vec<usize>,
}

/// Writes `images` (NCHW, `shape`) with their `labels` and `source` to `path`,
/// atomically.
pub fn save(
    path: &Path,
    images: &[f32],
    shape: [usize; 4],
    labels: &[usize],
    source: &TransferSource,
) -> Result<()> {
    check_len(
        "save adversarial",
        "images",
        images.len(),
        shape.iter().product(),
    )?;
    check_len("save adversarial", "labels", labels.len(), shape[0])?;
    let labels: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
    let attack = serde_json::to_string(&source.attack)
        .map_err(|e| Error::format(path, format!("attack settings: {e}")))?;
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("checkpoint".to_string(), source.checkpoint.clone()),
        ("attack".to_string(), attack),
        ("dataset".to_string(), source.dataset.clone()),
        ("seed".to_string(), source.seed.to_string()),
    ]);
    let tensors = [
        ("images".to_string(), shape.to_vec(), images),
        ("labels".to_string(), vec![shape[0]], &labels[..]),
    ];
    crate::checkpoint::save(path, &tensors, metadata)
}

/// Reads what [`save`] wrote, checking the format, the attack's settings (as
/// [`Attack::validate`] does), the tensors' shapes, images in [0, 1] and whole-number
/// labels.
pub fn load(path: &Path) -> Result<AdversarialImages> {
    let bad = |what: String| Error::format(path, what);
    let (mut tensors, meta) = crate::checkpoint::load::<f32>(path)?;
    let key = |k: &str| {
        meta.get(k).cloned().ok_or_else(|| {
            bad(format!(
                "no {k} in the metadata: not a file of adversarial images"
            ))
        })
    };
    if key("format")? != FORMAT {
        return Err(bad(format!(
            "format {:?}, expected {FORMAT:?}",
            key("format")?
        )));
    }
    let attack: Attack =
        serde_json::from_str(&key("attack")?).map_err(|e| bad(format!("attack settings: {e}")))?;
    attack
        .validate()
        .map_err(|e| bad(format!("attack settings: {e}")))?;
    let seed = key("seed")?
        .parse()
        .map_err(|e| bad(format!("seed: {e}")))?;
    let (dims, images) = tensors
        .remove("images")
        .ok_or_else(|| bad("no images tensor".into()))?;
    let (label_dims, labels) = tensors
        .remove("labels")
        .ok_or_else(|| bad("no labels tensor".into()))?;
    let shape: [usize; 4] = dims
        .as_slice()
        .try_into()
        .map_err(|_| bad(format!("images have shape {dims:?}, expected [N, C, H, W]")))?;
    if label_dims != [shape[0]] {
        return Err(bad(format!(
            "labels have shape {label_dims:?}, expected [{}]",
            shape[0]
        )));
    }
    if let Some(v) = images.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        return Err(bad(format!("an image value {v} is outside [0, 1]")));
    }
    let labels = labels
        .iter()
        .map(|&l| {
            if l >= 0.0 && l.fract() == 0.0 && l < 65_536.0 {
                Ok(l as usize)
            } else {
                Err(bad(format!("label {l} is not a class index")))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(AdversarialImages {
        source: TransferSource {
            file: path.display().to_string(),
            checkpoint: key("checkpoint")?,
            attack,
            dataset: key("dataset")?,
            seed,
        },
        shape,
        images,
        labels,
    })
}

impl AdversarialImages {
    /// Checks that these are adversarial versions of the images of `data`: as many, of
    /// its shape, with its labels, each within `epsilon` (in [0, 1] units) of its clean
    /// image, so that they count in the worst case image by image.
    pub fn check_against(&self, data: &Dataset, epsilon: f32) -> Result<()> {
        let file = &self.source.file;
        let [n, c, h, w] = self.shape;
        if [n, c, h, w] != [data.len(), data.channels, data.height, data.width] {
            return Err(Error::Config(format!(
                "{file} holds {n} images of {c}×{h}×{w} (from {}), the evaluation {} of \
                 {}×{}×{} ({}): use the --test-limit of the attack",
                self.source.dataset,
                data.len(),
                data.channels,
                data.height,
                data.width,
                data.name
            )));
        }
        let len = c * h * w;
        let mut clean = Vec::new();
        let indices: Vec<usize> = (0..n).collect();
        let labels = data.batch(&indices, &mut clean);
        if labels != self.labels {
            return Err(Error::Config(format!(
                "{file}: its labels are not those of {}",
                data.name
            )));
        }
        for (i, (a, o)) in self.images.chunks(len).zip(clean.chunks(len)).enumerate() {
            let dist = a
                .iter()
                .zip(o)
                .fold(0.0f32, |m, (a, o)| m.max((a - o).abs()));
            if dist > epsilon + 1e-6 {
                return Err(Error::Config(format!(
                    "{file}: image {i} is {:.2}/255 from test image {i} of {}, more than ε = {:.2}/255",
                    dist * 255.0,
                    data.name,
                    epsilon * 255.0
                )));
            }
        }
        Ok(())
    }

    /// The error of `model` on these images in batches of `batch`, as a report row
    /// (`transfer: <attack> from <checkpoint>`) with the images it misclassifies.
    pub fn evaluate<C: Classifier + ?Sized>(
        &self,
        model: &mut C,
        batch: usize,
        clean_error: f64,
    ) -> Result<Evaluated> {
        let [n, c, h, w] = self.shape;
        let len = c * h * w;
        let classes = model.num_classes();
        let mut broken = Vec::with_capacity(n);
        for (images, labels) in self
            .images
            .chunks(batch.max(1) * len)
            .zip(self.labels.chunks(batch.max(1)))
        {
            let logits = model.logits(images, [labels.len(), c, h, w])?;
            check_len("transfer", "logits", logits.len(), labels.len() * classes)?;
            let predicted = argmax_rows(&logits, classes);
            broken.extend(predicted.iter().zip(labels).map(|(p, l)| p != l));
        }
        let error = fraction(&broken);
        let (loss, objective) = self.source.attack.loss();
        Ok(Evaluated {
            report: RobustnessReport {
                name: format!(
                    "transfer: {} from {}",
                    self.source.attack.name(),
                    self.source.checkpoint
                ),
                attack: self.source.attack,
                transfer: Some(self.source.clone()),
                images: n,
                clean_error,
                adversarial_error: error,
                attack_success: error,
                loss: loss.into(),
                objective,
                loss_mean: Vec::new(),
                loss_std: Vec::new(),
                curve_images: 0,
                queries_mean: 1.0,
            },
            broken,
            adversarial: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::square::SquareConfig;

    fn data() -> Dataset {
        Dataset {
            name: "noise/test[..3]".into(),
            images: (0..3 * 4).map(|i| (i * 20) as u8).collect(),
            labels: vec![2, 0, 1],
            channels: 1,
            height: 2,
            width: 2,
            classes: 3,
        }
    }

    fn source() -> TransferSource {
        TransferSource {
            file: String::new(),
            checkpoint: "a.safetensors".into(),
            attack: Attack::Square(SquareConfig {
                epsilon: 0.1,
                queries: 7,
            }),
            dataset: "noise/test[..3]".into(),
            seed: 4,
        }
    }

    /// Written and read back: the same images, labels and origin; checked against the
    /// clean images at the ε they were made with, refused at a smaller one, with other
    /// labels or another count.
    #[test]
    fn round_trip_and_the_check_against_the_clean_images() {
        let (_tmp, dir) = crate::temp_folder::temp_dir("transfer");
        let path = dir.join("adv.safetensors");
        let mut clean = Vec::new();
        data().batch(&[0, 1, 2], &mut clean);
        let images: Vec<f32> = clean.iter().map(|&v| (v + 0.05).min(1.0)).collect();
        save(&path, &images, [3, 1, 2, 2], &[2, 0, 1], &source()).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back.images, images);
        assert_eq!(back.labels, [2, 0, 1]);
        assert_eq!(
            back.source,
            TransferSource {
                file: path.display().to_string(),
                ..source()
            }
        );
        back.check_against(&data(), 0.05).unwrap();
        let msg = back.check_against(&data(), 0.04).unwrap_err().to_string();
        assert!(msg.contains("more than ε"), "{msg}");
        let mut other = data();
        other.labels[1] = 2;
        assert!(back.check_against(&other, 0.05).is_err());
        assert!(back.check_against(&data().take(2), 0.05).is_err());
        // Attack settings no attack accepts are refused on reading.
        let bad_attack = TransferSource {
            attack: Attack::Square(SquareConfig {
                epsilon: 2.0,
                queries: 7,
            }),
            ..source()
        };
        save(&path, &images, [3, 1, 2, 2], &[2, 0, 1], &bad_attack).unwrap();
        let msg = load(&path).unwrap_err().to_string();
        assert!(msg.contains("attack settings"), "{msg}");
        // Out of range values and non-class labels are refused on reading.
        save(&path, &[1.5; 12], [3, 1, 2, 2], &[2, 0, 1], &source()).unwrap();
        assert!(load(&path)
            .unwrap_err()
            .to_string()
            .contains("outside [0, 1]"));
    }
}
