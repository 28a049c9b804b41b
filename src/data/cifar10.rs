//! CIFAR-10 binary batches (`data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`).
//!
//! Each file is a run of 3073-byte records: one label byte (0–9), then a 32×32 image as
//! 1024 red, 1024 green and 1024 blue bytes, rows in order — already CHW.

use std::path::{Path, PathBuf};

use super::{check_labels, Dataset, Split};
use crate::error::{Error, Result};
use crate::storage::read_regular_file;

/// Bytes of one image.
const IMAGE_BYTES: usize = 3 * 32 * 32;
/// Bytes of one record: a label, then an image.
const RECORD_BYTES: usize = 1 + IMAGE_BYTES;

/// The batch files of a split, in order.
pub fn file_names(split: Split) -> Vec<String> {
    match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".to_string()],
    }
}

/// Loads a split from `dir` (the `cifar-10-batches-bin` folder, or its parent).
pub fn load(dir: &Path, split: Split) -> Result<Dataset> {
    let dir = if dir.join("cifar-10-batches-bin").is_dir() {
        dir.join("cifar-10-batches-bin")
    } else {
        dir.to_path_buf()
    };
    let paths: Vec<PathBuf> = file_names(split).iter().map(|f| dir.join(f)).collect();
    load_files(&format!("cifar10/{}", split.as_str()), &paths)
}

/// Concatenates the records of `paths`.
pub fn load_files(name: &str, paths: &[PathBuf]) -> Result<Dataset> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for path in paths {
        let bytes = read_regular_file(path)?;
        if bytes.is_empty() || bytes.len() % RECORD_BYTES != 0 {
            return Err(Error::format(
                path,
                format!(
                    "truncated or padded: {} bytes is not a whole number of {RECORD_BYTES}-byte records",
                    bytes.len()
                ),
            ));
        }
        let file_labels: Vec<u16> = bytes
            .chunks_exact(RECORD_BYTES)
            .map(|r| r[0] as u16)
            .collect();
        check_labels(path, &file_labels, 10)?;
        labels.extend(file_labels);
        images.reserve(bytes.len());
        for record in bytes.chunks_exact(RECORD_BYTES) {
            images.extend_from_slice(&record[1..]);
        }
    }
    Ok(Dataset {
        name: name.to_string(),
        images,
        labels,
        channels: 3,
        height: 32,
        width: 32,
        classes: 10,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: u8, seed: u8) -> Vec<u8> {
        let mut r = vec![label];
        r.extend((0..IMAGE_BYTES).map(|i| (i as u8).wrapping_mul(seed)));
        r
    }

    /// A fresh folder with an empty `cifar-10-batches-bin` in it.
    fn temp_dir(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let (tmp, dir) = crate::temp_folder::temp_dir(&format!("cifar-{name}"));
        std::fs::create_dir_all(dir.join("cifar-10-batches-bin")).unwrap();
        (tmp, dir)
    }

    #[test]
    fn loads_all_five_train_batches_in_order() {
        let (_tmp, dir) = temp_dir("ok");
        for i in 1..=5u8 {
            let mut bytes = record(i, i);
            bytes.extend(record(9 - i, i + 10));
            let path = dir.join(format!("cifar-10-batches-bin/data_batch_{i}.bin"));
            std::fs::write(path, bytes).unwrap();
        }
        let ds = load(&dir, Split::Train).unwrap();
        assert_eq!(ds.len(), 10);
        assert_eq!(ds.labels, vec![1, 8, 2, 7, 3, 6, 4, 5, 5, 4]);
        assert_eq!(
            &ds.images[IMAGE_BYTES..2 * IMAGE_BYTES],
            &record(0, 11)[1..]
        );
        assert_eq!(ds.image_len(), IMAGE_BYTES);
    }

    #[test]
    fn truncated_file_and_bad_label_are_errors() {
        let (_tmp, dir) = temp_dir("bad");
        let dir = dir.join("cifar-10-batches-bin");
        let path = dir.join("test_batch.bin");
        let mut bytes = record(3, 1);
        bytes.extend(&record(4, 2)[..100]);
        std::fs::write(&path, &bytes).unwrap();
        let msg = load(&dir, Split::Test).unwrap_err().to_string();
        assert!(
            msg.contains("test_batch.bin") && msg.contains("truncated"),
            "{msg}"
        );
        std::fs::write(&path, record(10, 1)).unwrap();
        let msg = load(&dir, Split::Test).unwrap_err().to_string();
        assert!(
            msg.contains("label 10") && msg.contains("out of range"),
            "{msg}"
        );
        let msg = load(&dir, Split::Train).unwrap_err().to_string();
        assert!(msg.contains("data_batch_1.bin"), "{msg}");
    }
}
