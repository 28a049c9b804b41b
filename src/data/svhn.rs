//! SVHN cropped digits: `train_32x32.mat` and `test_32x32.mat`, MATLAB Level-5 MAT-files.
//!
//! The file holds `X`, uint8 `[32, 32, 3, N]` stored column-major (row index fastest),
//! and `y`, `[N, 1]` with labels 1–10 where 10 means the digit 0. The MAT reader lives in
//! [`mat5`]; this module only checks the two variables and reorders `X` to NCHW.

pub mod mat5;

use std::path::Path;

use super::{Dataset, Split};
use crate::error::{Error, Result};
use mat5::MatFile;

/// Loads `train_32x32.mat` or `test_32x32.mat` from `dir`.
pub fn load(dir: &Path, split: Split) -> Result<Dataset> {
    let path = dir.join(format!("{}_32x32.mat", split.as_str()));
    load_file(&format!("svhn/{}", split.as_str()), &path)
}

/// Loads one SVHN MAT-file.
pub fn load_file(name: &str, path: &Path) -> Result<Dataset> {
    let mat = MatFile::read(path)?;
    let x = mat.variable("X")?;
    let y = mat.variable("y")?;
    let [h, w, c, n] = x.dims[..] else {
        return Err(Error::format(
            path,
            format!(
                "X has dimensions {:?}, expected [height, width, 3, N]",
                x.dims
            ),
        ));
    };
    if h == 0 || w == 0 {
        return Err(Error::format(
            path,
            format!("X has dimensions {:?}: images must be at least 1×1", x.dims),
        ));
    }
    if c != 3 {
        return Err(Error::format(
            path,
            format!("X has {c} channels (dimensions {:?}), expected 3", x.dims),
        ));
    }
    let labels_len: usize = y.dims.iter().product();
    if y.dims.len() != 2 || !y.dims.contains(&1) || labels_len != n {
        return Err(Error::format(
            path,
            format!(
                "count mismatch: y has dimensions {:?}, expected [{n}, 1] for the {n} images of X",
                y.dims
            ),
        ));
    }
    let pixels = x.to_u8(path)?;
    let mut labels = Vec::with_capacity(n);
    for (i, v) in y.to_f64(path)?.into_iter().enumerate() {
        if !((1.0..=10.0).contains(&v) && v.fract() == 0.0) {
            return Err(Error::format(
                path,
                format!("label {v} of record {i} is out of range (expected 1..=10)"),
            ));
        }
        labels.push(if v == 10.0 { 0 } else { v as u16 });
    }
    let mut images = vec![0u8; pixels.len()];
    let plane = h * w;
    for (dst_plane, src_plane) in images
        .chunks_exact_mut(plane)
        .zip(pixels.chunks_exact(plane))
    {
        for r in 0..h {
            for col in 0..w {
                dst_plane[r * w + col] = src_plane[r + h * col];
            }
        }
    }
    Ok(Dataset {
        name: name.to_string(),
        images,
        labels,
        channels: c,
        height: h,
        width: w,
        classes: 10,
    })
}

#[cfg(test)]
mod tests {
    use super::mat5::writer::{MatWriter, Numeric};
    use super::*;

    fn temp_dir(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        crate::temp_folder::temp_dir(&format!("svhn-{name}"))
    }

    /// Column-major `[h, w, 3, n]` pixels where each value encodes its position.
    fn column_major(h: usize, w: usize, n: usize) -> Vec<u8> {
        let mut x = vec![0u8; h * w * 3 * n];
        for i in 0..n {
            for ch in 0..3 {
                for col in 0..w {
                    for r in 0..h {
                        x[r + h * (col + w * (ch + 3 * i))] =
                            (i * 60 + ch * 20 + r * w + col) as u8;
                    }
                }
            }
        }
        x
    }

    fn check_layout(ds: &Dataset, h: usize, w: usize) {
        for i in 0..ds.len() {
            for ch in 0..3 {
                for r in 0..h {
                    for col in 0..w {
                        let got = ds.images[((i * 3 + ch) * h + r) * w + col];
                        assert_eq!(got as usize, i * 60 + ch * 20 + r * w + col);
                    }
                }
            }
        }
    }

    #[test]
    fn reads_compressed_and_uncompressed_files_with_either_byte_order() {
        let (h, w, n) = (3, 4, 3);
        let x = column_major(h, w, n);
        let (_tmp, dir) = temp_dir("ok");
        for (compressed, big_endian) in [(true, false), (false, false), (false, true), (true, true)]
        {
            let mut f = MatWriter::new(big_endian);
            // MATLAB stores y (class double) as the smallest integer type that holds it.
            f.variable("X", &[h, w, 3, n], Numeric::U8(x.clone()), compressed);
            f.variable("extra", &[1, 2], Numeric::F64(vec![0.5, 2.0]), compressed);
            f.variable(
                "y",
                &[n, 1],
                Numeric::DoubleAsU8(vec![10, 1, 7]),
                compressed,
            );
            let path = dir.join("train_32x32.mat");
            std::fs::write(&path, f.finish()).unwrap();
            let ds = load(&dir, Split::Train).unwrap();
            assert_eq!((ds.channels, ds.height, ds.width), (3, h, w));
            assert_eq!(ds.labels, vec![0, 1, 7]);
            check_layout(&ds, h, w);
        }
    }

    #[test]
    fn double_labels_are_read_too() {
        let (_tmp, dir) = temp_dir("f64");
        let mut f = MatWriter::new(false);
        f.variable("y", &[2, 1], Numeric::F64(vec![3.0, 10.0]), true);
        f.variable(
            "X",
            &[2, 2, 3, 2],
            Numeric::U8(column_major(2, 2, 2)),
            false,
        );
        std::fs::write(dir.join("test_32x32.mat"), f.finish()).unwrap();
        let ds = load(&dir, Split::Test).unwrap();
        assert_eq!(ds.labels, vec![3, 0]);
        check_layout(&ds, 2, 2);
    }

    #[test]
    fn malformed_files_are_errors_naming_the_file() {
        let (_tmp, dir) = temp_dir("bad");
        let path = dir.join("train_32x32.mat");
        let good = |y: Vec<f64>, ydims: &[usize], compressed: bool| {
            let mut f = MatWriter::new(false);
            f.variable(
                "X",
                &[2, 2, 3, 2],
                Numeric::U8(column_major(2, 2, 2)),
                compressed,
            );
            f.variable("y", ydims, Numeric::F64(y), compressed);
            f.finish()
        };
        let full = good(vec![1.0, 2.0], &[2, 1], true);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (full[..100].to_vec(), "truncated"),
            (full[..full.len() - 5].to_vec(), "truncated"),
            (
                good(vec![1.0, 2.0], &[2, 1], false)[..250].to_vec(),
                "truncated",
            ),
            (good(vec![1.0, 11.0], &[2, 1], false), "out of range"),
            (good(vec![1.0, 2.0, 3.0], &[3, 1], false), "count mismatch"),
            (
                {
                    let mut b = full.clone();
                    b[126] = b'X';
                    b
                },
                "byte-order",
            ),
            (
                {
                    let mut f = MatWriter::new(false);
                    f.variable(
                        "X",
                        &[2, 2, 3, 2],
                        Numeric::U8(column_major(2, 2, 2)),
                        false,
                    );
                    f.finish()
                },
                "no variable \"y\"",
            ),
            (
                {
                    let mut f = MatWriter::new(false);
                    f.variable("X", &[2, 2, 3, 2], Numeric::U8(vec![0; 23]), false);
                    f.finish()
                },
                "count mismatch",
            ),
        ];
        for (bytes, want) in cases {
            std::fs::write(&path, &bytes).unwrap();
            let msg = load(&dir, Split::Train).unwrap_err().to_string();
            assert!(msg.contains(want), "{msg:?} should mention {want:?}");
            assert!(
                msg.contains("train_32x32.mat"),
                "{msg:?} should name the file"
            );
        }
    }
}
