//! IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed.
//!
//! An IDX file is a 4-byte magic `00 00 <type> <ndims>`, `ndims` big-endian u32 sizes,
//! then the data. Images are type `0x08` (u8) with 3 dims `[n, rows, cols]`; labels are
//! type `0x08` with 1 dim `[n]`. Gzip is recognised by its magic bytes `1f 8b`, not by
//! the file name.

use std::path::{Path, PathBuf};

use super::inflate::{check_declared, read_at_most};
use super::{check_labels, Dataset, Split};
use crate::error::{Error, Result};
use crate::storage::read_regular_file;

/// The u8 data type code of IDX.
const IDX_U8: u8 = 0x08;

/// An IDX array of bytes: its dimensions and data.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    /// Sizes, outermost first.
    pub dims: Vec<usize>,
    /// `dims.product()` bytes.
    pub data: Vec<u8>,
}

/// Reads an IDX file of u8 values, decompressing it first if it is gzip.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let raw = read_regular_file(path)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        parse_idx(path, &gunzip(path, &raw)?)
    } else {
        parse_idx(path, &raw)
    }
}

/// The decompressed bytes of a gzip'd IDX file, read no further than its header's
/// dimensions say the data goes (plus one byte, so that [`parse_idx`] sees trailing
/// data): a stream that inflates without end is cut there, and dimensions larger than
/// the compressed bytes can hold are refused before their data is read.
fn gunzip(path: &Path, raw: &[u8]) -> Result<Vec<u8>> {
    let corrupt = |e: std::io::Error| {
        Error::format(path, format!("gzip stream is corrupt or truncated: {e}"))
    };
    let mut stream = flate2::read::GzDecoder::new(raw);
    let mut out = Vec::new();
    read_at_most(&mut stream, 4, &mut out).map_err(corrupt)?;
    if out.len() < 4 {
        return Ok(out);
    }
    read_at_most(&mut stream, 4 * out[3] as usize, &mut out).map_err(corrupt)?;
    let Some(dims) = header_dims(&out) else {
        return Ok(out);
    };
    let count = data_len(path, &dims)?;
    check_declared(path, "the IDX header", count, raw.len())?;
    read_at_most(&mut stream, count + 1, &mut out).map_err(corrupt)?;
    Ok(out)
}

/// The dimensions the header at the start of `bytes` declares, `None` when the header
/// is incomplete.
fn header_dims(bytes: &[u8]) -> Option<Vec<usize>> {
    let ndims = *bytes.get(3)? as usize;
    let sizes = bytes.get(4..4 + 4 * ndims)?;
    Some(
        sizes
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect(),
    )
}

/// The number of data bytes `dims` need; an error when their product overflows.
fn data_len(path: &Path, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::format(path, format!("dimensions {dims:?} overflow")))
}

/// Parses the bytes of an (uncompressed) IDX file; `path` is only for errors.
pub fn parse_idx(path: &Path, bytes: &[u8]) -> Result<IdxArray> {
    if bytes.len() < 4 {
        return Err(Error::format(
            path,
            format!("truncated: {} bytes, an IDX header needs 4", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(Error::format(
            path,
            format!(
                "bad magic {:02x} {:02x}: an IDX file starts with 00 00",
                bytes[0], bytes[1]
            ),
        ));
    }
    if bytes[2] != IDX_U8 {
        return Err(Error::format(
            path,
            format!(
                "data type 0x{:02x}, expected 0x08 (unsigned byte)",
                bytes[2]
            ),
        ));
    }
    let ndims = bytes[3] as usize;
    let header = 4 + 4 * ndims;
    let Some(dims) = header_dims(bytes) else {
        return Err(Error::format(
            path,
            format!(
                "truncated: {} bytes, the header of a {ndims}-dim IDX file needs {header}",
                bytes.len()
            ),
        ));
    };
    let count = data_len(path, &dims)?;
    let have = bytes.len() - header;
    if have != count {
        let what = if have < count {
            "truncated"
        } else {
            "trailing bytes"
        };
        return Err(Error::format(
            path,
            format!("{what}: dimensions {dims:?} need {count} data bytes, found {have}"),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Loads an image file (`[n, rows, cols]`) and a label file (`[n]`) as one gray-scale
/// data set with `classes` classes.
pub fn load_pair(
    name: &str,
    images_path: &Path,
    labels_path: &Path,
    classes: usize,
) -> Result<Dataset> {
    let images = read_idx(images_path)?;
    let labels = read_idx(labels_path)?;
    let [n, height, width] = images.dims[..] else {
        return Err(Error::format(
            images_path,
            format!("images have {} dimensions, expected 3", images.dims.len()),
        ));
    };
    if height == 0 || width == 0 {
        return Err(Error::format(
            images_path,
            format!("images are {height}×{width}: both sides must be at least 1"),
        ));
    }
    let [n_labels] = labels.dims[..] else {
        return Err(Error::format(
            labels_path,
            format!("labels have {} dimensions, expected 1", labels.dims.len()),
        ));
    };
    if n_labels != n {
        return Err(Error::format(
            labels_path,
            format!(
                "count mismatch: {n_labels} labels for {n} images in {}",
                images_path.display()
            ),
        ));
    }
    let labels: Vec<u16> = labels.data.iter().map(|&l| l as u16).collect();
    check_labels(labels_path, &labels, classes)?;
    Ok(Dataset {
        name: name.to_string(),
        images: images.data,
        labels,
        channels: 1,
        height,
        width,
        classes,
    })
}

/// Loads Fashion-MNIST (or MNIST) from `dir`: `train-images-idx3-ubyte` and
/// `train-labels-idx1-ubyte` (or `t10k-…` for the test split), each with or without `.gz`.
pub fn load_fashion_mnist(dir: &Path, split: Split) -> Result<Dataset> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let images = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    load_pair(
        &format!("fashion-mnist/{}", split.as_str()),
        &images,
        &labels,
        10,
    )
}

/// `dir/stem.gz` if anything is there, else `dir/stem` (whose read then reports what
/// is wrong with it); a not-found error names both.
fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    let gz = dir.join(format!("{stem}.gz"));
    let raw = dir.join(stem);
    if gz.symlink_metadata().is_ok() {
        Ok(gz)
    } else if raw.symlink_metadata().is_ok() {
        Ok(raw)
    } else {
        Err(Error::io(
            raw,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("neither this file nor {stem}.gz exists"),
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// An IDX file of u8 with the given dims and data.
    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, IDX_U8, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn temp_dir(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        crate::temp_folder::temp_dir(&format!("idx-{name}"))
    }

    fn message(e: Error) -> String {
        e.to_string()
    }

    #[test]
    fn loads_gzip_and_raw_files() {
        let (_tmp, dir) = temp_dir("ok");
        let pixels: Vec<u8> = (0..3 * 2 * 4).map(|i| (i * 7) as u8).collect();
        std::fs::write(
            dir.join("train-images-idx3-ubyte.gz"),
            gzip(&idx_bytes(&[3, 2, 4], &pixels)),
        )
        .unwrap();
        std::fs::write(
            dir.join("train-labels-idx1-ubyte"),
            idx_bytes(&[3], &[9, 0, 4]),
        )
        .unwrap();
        let ds = load_fashion_mnist(&dir, Split::Train).unwrap();
        assert_eq!(
            (ds.channels, ds.height, ds.width, ds.classes),
            (1, 2, 4, 10)
        );
        assert_eq!(ds.labels, vec![9, 0, 4]);
        assert_eq!(ds.images, pixels);
    }

    #[test]
    fn errors_name_the_file_and_the_fault() {
        let (_tmp, dir) = temp_dir("bad");
        let p = dir.join("x");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0, 0], "truncated"),
            (vec![1, 2, 8, 1, 0, 0, 0, 1, 5], "bad magic"),
            (vec![0, 0, 0x0d, 1, 0, 0, 0, 1, 5, 5, 5, 5], "data type"),
            (idx_bytes(&[2, 2, 2], &[1; 7]), "truncated"),
            (idx_bytes(&[2], &[1; 3]), "trailing"),
            (gzip(&idx_bytes(&[4], &[1; 4]))[..12].to_vec(), "gzip"),
        ];
        for (bytes, want) in cases {
            std::fs::write(&p, &bytes).unwrap();
            let msg = message(read_idx(&p).unwrap_err());
            assert!(msg.contains(want), "{msg:?} should mention {want:?}");
            assert!(
                msg.contains(p.to_str().unwrap()),
                "{msg:?} should name the file"
            );
        }
    }

    #[test]
    fn rejects_count_mismatch_and_bad_labels() {
        let (_tmp, dir) = temp_dir("labels");
        let img = dir.join("train-images-idx3-ubyte");
        let lab = dir.join("train-labels-idx1-ubyte");
        std::fs::write(&img, idx_bytes(&[2, 1, 1], &[0, 1])).unwrap();
        std::fs::write(&lab, idx_bytes(&[3], &[0, 1, 2])).unwrap();
        let msg = message(load_fashion_mnist(&dir, Split::Train).unwrap_err());
        assert!(msg.contains("count mismatch"), "{msg}");
        std::fs::write(&lab, idx_bytes(&[2], &[0, 10])).unwrap();
        let msg = message(load_fashion_mnist(&dir, Split::Train).unwrap_err());
        assert!(
            msg.contains("out of range") && msg.contains("record 1"),
            "{msg}"
        );
        let msg = message(load_fashion_mnist(&dir, Split::Test).unwrap_err());
        assert!(msg.contains("t10k-images-idx3-ubyte"), "{msg}");
    }
}
