//! Tiny-ImageNet-200 in its published folder layout.
//!
//! ```text
//! tiny-imagenet-200/wnids.txt                     one WordNet id per line; line i = class i
//! tiny-imagenet-200/train/<wnid>/images/*.JPEG    64×64 training images of that class
//! tiny-imagenet-200/val/images/*.JPEG             64×64 validation images
//! tiny-imagenet-200/val/val_annotations.txt       "<file>\t<wnid>\t<x>\t<y>\t<w>\t<h>"
//! ```
//! The labelled `val` folder serves as the test split (the `test` folder has no labels).
//! Gray-scale JPEGs (the set has some) are decoded to RGB.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::{Dataset, Split};
use crate::error::{Error, Result};
use crate::storage::read_regular_file;

/// Side of every image.
const SIDE: usize = 64;

/// Loads a split from `dir` (the `tiny-imagenet-200` folder, or its parent).
pub fn load(dir: &Path, split: Split) -> Result<Dataset> {
    let dir = if dir.join("tiny-imagenet-200").is_dir() {
        dir.join("tiny-imagenet-200")
    } else {
        dir.to_path_buf()
    };
    let wnids = read_wnids(&dir.join("wnids.txt"))?;
    let files = match split {
        Split::Train => train_files(&dir, &wnids)?,
        Split::Test => val_files(&dir, &wnids)?,
    };
    let images: Vec<Vec<u8>> = files
        .par_iter()
        .map(|(path, _)| decode_rgb_chw(path))
        .collect::<Result<_>>()?;
    Ok(Dataset {
        name: format!("tiny-imagenet/{}", split.as_str()),
        images: images.concat(),
        labels: files.iter().map(|&(_, l)| l).collect(),
        channels: 3,
        height: SIDE,
        width: SIDE,
        classes: wnids.len(),
    })
}

/// The class ids in file order, each unique.
fn read_wnids(path: &Path) -> Result<Vec<String>> {
    let text = String::from_utf8(read_regular_file(path)?)
        .map_err(|e| Error::format(path, format!("not UTF-8: {e}")))?;
    let wnids: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if wnids.is_empty() {
        return Err(Error::format(path, "no class ids"));
    }
    if wnids.len() > u16::MAX as usize {
        return Err(Error::format(
            path,
            format!("{} class ids, at most 65535", wnids.len()),
        ));
    }
    let mut seen = HashMap::new();
    for (i, w) in wnids.iter().enumerate() {
        if let Some(j) = seen.insert(w.as_str(), i) {
            return Err(Error::format(
                path,
                format!("class id {w} appears on lines {} and {}", j + 1, i + 1),
            ));
        }
    }
    Ok(wnids)
}

/// The sorted `*.JPEG` files of a folder.
fn jpegs_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("jpeg"))
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn train_files(dir: &Path, wnids: &[String]) -> Result<Vec<(PathBuf, u16)>> {
    let mut files = Vec::new();
    for (class, wnid) in wnids.iter().enumerate() {
        let folder = dir.join("train").join(wnid).join("images");
        files.extend(jpegs_in(&folder)?.into_iter().map(|p| (p, class as u16)));
    }
    Ok(files)
}

fn val_files(dir: &Path, wnids: &[String]) -> Result<Vec<(PathBuf, u16)>> {
    let class_of: HashMap<&str, u16> = wnids
        .iter()
        .enumerate()
        .map(|(i, w)| (w.as_str(), i as u16))
        .collect();
    let annotations = dir.join("val").join("val_annotations.txt");
    let text = String::from_utf8(read_regular_file(&annotations)?)
        .map_err(|e| Error::format(&annotations, format!("not UTF-8: {e}")))?;
    let mut label_of = HashMap::new();
    for (line_no, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut fields = line.split('\t');
        let (Some(file), Some(wnid)) = (fields.next(), fields.next()) else {
            return Err(Error::format(
                &annotations,
                format!(
                    "line {}: expected <file>\\t<wnid>\\t…, got {line:?}",
                    line_no + 1
                ),
            ));
        };
        let class = *class_of.get(wnid.trim()).ok_or_else(|| {
            Error::format(
                &annotations,
                format!(
                    "line {}: class id {wnid:?} is not in wnids.txt",
                    line_no + 1
                ),
            )
        })?;
        label_of.insert(file.trim().to_string(), class);
    }
    jpegs_in(&dir.join("val").join("images"))?
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            match label_of.get(name.as_ref()) {
                Some(&class) => Ok((path, class)),
                None => Err(Error::format(
                    &annotations,
                    format!("no annotation for {}", path.display()),
                )),
            }
        })
        .collect()
}

/// Decodes a 64×64 JPEG to RGB bytes in CHW order. The size is checked from the
/// frame header before any pixel is decoded, so a header that claims a huge image
/// allocates nothing.
fn decode_rgb_chw(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_regular_file(path)?;
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_strict_mode(true);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(&bytes), options);
    let undecodable = |e| Error::format(path, format!("not a decodable JPEG: {e:?}"));
    decoder.decode_headers().map_err(undecodable)?;
    let info = decoder
        .info()
        .ok_or_else(|| Error::format(path, "JPEG without a frame header"))?;
    let (w, h) = (info.width as usize, info.height as usize);
    if (w, h) != (SIDE, SIDE) {
        return Err(Error::format(
            path,
            format!("image is {w}×{h}, Tiny-ImageNet images are {SIDE}×{SIDE}"),
        ));
    }
    let hwc = decoder.decode().map_err(undecodable)?;
    if hwc.len() != SIDE * SIDE * 3 {
        return Err(Error::format(
            path,
            format!(
                "decoded to {} bytes, a {SIDE}×{SIDE} RGB image has {}",
                hwc.len(),
                SIDE * SIDE * 3
            ),
        ));
    }
    let mut chw = vec![0u8; hwc.len()];
    for (p, rgb) in hwc.chunks_exact(3).enumerate() {
        for ch in 0..3 {
            chw[ch * SIDE * SIDE + p] = rgb[ch];
        }
    }
    Ok(chw)
}

#[cfg(test)]
mod tests {
    use jpeg_encoder::{ColorType, Encoder};

    use super::*;

    /// A fresh folder and, in it, the data set's root, not yet made.
    fn temp_dir(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let (tmp, dir) = crate::temp_folder::temp_dir(&format!("tiny-{name}"));
        (tmp, dir.join("tiny-imagenet-200"))
    }

    /// A flat-colour JPEG (`rgb` = None: gray-scale of value 100).
    fn write_jpeg(path: &Path, side: u16, rgb: Option<[u8; 3]>) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let n = side as usize * side as usize;
        let enc = Encoder::new_file(path, 95).unwrap();
        match rgb {
            Some(c) => enc
                .encode(&c.repeat(n), side, side, ColorType::Rgb)
                .unwrap(),
            None => enc
                .encode(&vec![100; n], side, side, ColorType::Luma)
                .unwrap(),
        }
    }

    /// Two classes, two train images each, three val images.
    fn write_set(root: &Path) {
        std::fs::create_dir_all(root).unwrap();
        std::fs::write(root.join("wnids.txt"), "n02\nn01\n").unwrap();
        for (wnid, colour) in [("n01", [200, 30, 30]), ("n02", [20, 40, 220])] {
            for i in 0..2 {
                let p = root.join(format!("train/{wnid}/images/{wnid}_{i}.JPEG"));
                write_jpeg(&p, 64, Some(colour));
            }
            std::fs::write(root.join(format!("train/{wnid}/{wnid}_boxes.txt")), "").unwrap();
        }
        write_jpeg(&root.join("val/images/val_0.JPEG"), 64, Some([200, 30, 30]));
        write_jpeg(&root.join("val/images/val_1.JPEG"), 64, None);
        write_jpeg(&root.join("val/images/val_2.JPEG"), 64, Some([20, 40, 220]));
        std::fs::write(
            root.join("val/val_annotations.txt"),
            "val_0.JPEG\tn01\t0\t0\t63\t63\nval_1.JPEG\tn02\t1\t2\t3\t4\nval_2.JPEG\tn02\t0\t0\t9\t9\n",
        )
        .unwrap();
    }

    fn close(got: &[u8], want: u8) -> bool {
        got.iter().all(|&v| v.abs_diff(want) <= 3)
    }

    #[test]
    fn reads_train_and_val_with_wnids_order_as_classes() {
        let (_tmp, root) = temp_dir("ok");
        write_set(&root);
        let train = load(root.parent().unwrap(), Split::Train).unwrap();
        assert_eq!(
            (train.len(), train.classes, train.channels, train.height),
            (4, 2, 3, 64)
        );
        assert_eq!(train.labels, vec![0, 0, 1, 1]);
        let plane = 64 * 64;
        let first = &train.images[..3 * plane];
        assert!(close(&first[..plane], 20) && close(&first[2 * plane..], 220));
        let val = load(&root, Split::Test).unwrap();
        assert_eq!(val.labels, vec![1, 0, 0]);
        let gray = &val.images[3 * plane..6 * plane];
        assert!(
            close(gray, 100),
            "gray-scale image decodes to equal RGB planes"
        );
    }

    #[test]
    fn malformed_sets_are_errors_naming_the_file() {
        let (_tmp, root) = temp_dir("bad");
        write_set(&root);
        let ann = root.join("val/val_annotations.txt");
        std::fs::write(&ann, "val_0.JPEG\tn09\t0\t0\t1\t1\n").unwrap();
        let msg = load(&root, Split::Test).unwrap_err().to_string();
        assert!(
            msg.contains("val_annotations.txt") && msg.contains("n09"),
            "{msg}"
        );
        std::fs::write(&ann, "val_0.JPEG\tn01\t0\t0\t1\t1\n").unwrap();
        let msg = load(&root, Split::Test).unwrap_err().to_string();
        assert!(
            msg.contains("no annotation") && msg.contains("val_1.JPEG"),
            "{msg}"
        );

        let img = root.join("train/n01/images/n01_1.JPEG");
        let bytes = std::fs::read(&img).unwrap();
        std::fs::write(&img, &bytes[..bytes.len() / 3]).unwrap();
        let msg = load(&root, Split::Train).unwrap_err().to_string();
        assert!(msg.contains("n01_1.JPEG") && msg.contains("JPEG"), "{msg}");
        write_jpeg(&img, 32, Some([1, 2, 3]));
        let msg = load(&root, Split::Train).unwrap_err().to_string();
        assert!(msg.contains("n01_1.JPEG") && msg.contains("32×32"), "{msg}");

        std::fs::write(root.join("wnids.txt"), "n01\nn01\n").unwrap();
        let msg = load(&root, Split::Train).unwrap_err().to_string();
        assert!(
            msg.contains("wnids.txt") && msg.contains("lines 1 and 2"),
            "{msg}"
        );
    }
}
