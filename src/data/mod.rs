//! Image classification data sets, held as bytes and turned into f32 batches on demand.
//!
//! One loader per published file format; each checks sizes, magic numbers and label
//! ranges and names the file and the fault in its error.

pub mod augment;
pub mod cifar10;
pub mod idx;
mod inflate;
pub mod svhn;
pub mod tiny_imagenet;

use std::path::Path;

use crate::error::{Error, Result};

/// Shape of an image batch, NCHW.
pub type BatchShape = [usize; 4];

/// A labelled image set: images as u8 NCHW (0..=255), labels as class indices.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Short name (`fashion-mnist/train`, …).
    pub name: String,
    /// `len × channels × height × width` bytes, NCHW.
    pub images: Vec<u8>,
    /// One class index per image, each `< classes`.
    pub labels: Vec<u16>,
    /// Channels per image.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Number of classes.
    pub classes: usize,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Writes the images `indices` into `out` as f32 in [0, 1] (NCHW) and returns
    /// their labels.
    pub fn batch(&self, indices: &[usize], out: &mut Vec<f32>) -> Vec<usize> {
        let len = self.image_len();
        out.clear();
        out.reserve(indices.len() * len);
        for &i in indices {
            out.extend(
                self.images[i * len..(i + 1) * len]
                    .iter()
                    .map(|&b| b as f32 / 255.0),
            );
        }
        indices.iter().map(|&i| self.labels[i] as usize).collect()
    }
}

/// What a model was trained on, as checkpoints record it: the data set's name (without
/// split or limit) and the shape of its images and labels. Evaluating or resuming on
/// data with other facts is refused unless asked for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatasetInfo {
    /// `fashion-mnist`, `cifar10`, … (the part of [`Dataset::name`] before any `/`).
    pub name: String,
    /// Channels per image.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Number of classes.
    pub classes: usize,
}

impl std::fmt::Display for DatasetInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}×{}×{} images, {} classes)",
            self.name, self.channels, self.height, self.width, self.classes
        )
    }
}

impl Dataset {
    /// Its [`DatasetInfo`].
    pub fn info(&self) -> DatasetInfo {
        let name = self.name.split('/').next().unwrap_or_default();
        DatasetInfo {
            name: name.to_string(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            classes: self.classes,
        }
    }

    /// The first `n` images (all of them when `n ≥ len`), named `<name>[..n]`.
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset {
            name: format!("{}[..{n}]", self.name),
            images: self.images[..n * self.image_len()].to_vec(),
            labels: self.labels[..n].to_vec(),
            ..self.clone()
        }
    }
}

/// The data sets the loaders read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetKind {
    /// CIFAR-10 binary batches.
    Cifar10,
    /// SVHN cropped digits (`*_32x32.mat`).
    Svhn,
    /// Tiny-ImageNet-200 folder layout.
    TinyImagenet,
    /// Fashion-MNIST IDX files.
    FashionMnist,
}

/// Which half of a data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The training images.
    Train,
    /// The held-out images (Tiny-ImageNet: the labelled `val` folder).
    Test,
}

impl Split {
    /// `train` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

impl DatasetKind {
    /// The CLI name (`cifar10`, `svhn`, `tiny-imagenet`, `fashion-mnist`).
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Svhn => "svhn",
            DatasetKind::TinyImagenet => "tiny-imagenet",
            DatasetKind::FashionMnist => "fashion-mnist",
        }
    }

    /// Image shape `(channels, height, width)` and number of classes.
    pub fn shape_and_classes(self) -> ([usize; 3], usize) {
        match self {
            DatasetKind::Cifar10 => ([3, 32, 32], 10),
            DatasetKind::Svhn => ([3, 32, 32], 10),
            DatasetKind::TinyImagenet => ([3, 64, 64], 200),
            DatasetKind::FashionMnist => ([1, 28, 28], 10),
        }
    }

    /// Where the Debian data package (or the usual download) puts the files.
    pub fn default_dir(self) -> &'static str {
        match self {
            DatasetKind::Cifar10 => "data/cifar-10-batches-bin",
            DatasetKind::Svhn => "data/svhn",
            DatasetKind::TinyImagenet => "data/tiny-imagenet-200",
            DatasetKind::FashionMnist => "/usr/share/datasets/fashion-mnist",
        }
    }

    /// Loads one split from `dir`, and checks that it is this data set: its images have
    /// the published shape and its classes the published count ([`Self::shape_and_classes`]),
    /// and it holds at least one image. (The format readers alone accept any size, so
    /// that other sets in the same formats load too.)
    pub fn load(self, dir: &Path, split: Split) -> Result<Dataset> {
        let data = match self {
            DatasetKind::Cifar10 => cifar10::load(dir, split),
            DatasetKind::Svhn => svhn::load(dir, split),
            DatasetKind::TinyImagenet => tiny_imagenet::load(dir, split),
            DatasetKind::FashionMnist => idx::load_fashion_mnist(dir, split),
        }?;
        let ([c, h, w], classes) = self.shape_and_classes();
        let got = [data.channels, data.height, data.width];
        if got != [c, h, w] || data.classes != classes || data.is_empty() {
            return Err(Error::format(
                dir,
                format!(
                    "the {} split of {} should hold {c}×{h}×{w} images of {classes} classes, \
                     found {} images of {}×{}×{} and {} classes",
                    split.as_str(),
                    self.name(),
                    data.len(),
                    got[0],
                    got[1],
                    got[2],
                    data.classes
                ),
            ));
        }
        Ok(data)
    }
}

impl std::str::FromStr for DatasetKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        [
            DatasetKind::Cifar10,
            DatasetKind::Svhn,
            DatasetKind::TinyImagenet,
            DatasetKind::FashionMnist,
        ]
        .into_iter()
        .find(|k| k.name() == s)
        .ok_or_else(|| {
            Error::Config(format!(
                "unknown data set {s:?} (cifar10, svhn, tiny-imagenet, fashion-mnist)"
            ))
        })
    }
}

/// Checks that every label is below `classes`, naming the file and the first bad one.
pub(crate) fn check_labels(path: &Path, labels: &[u16], classes: usize) -> Result<()> {
    match labels.iter().position(|&l| l as usize >= classes) {
        None => Ok(()),
        Some(i) => Err(Error::format(
            path,
            format!(
                "label {} of record {i} is out of range (expected < {classes})",
                labels[i]
            ),
        )),
    }
}
