//! Image classification data sets, held as bytes and turned into f32 batches on demand.

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
