//! Named tensors to and from safetensors files: written atomically, and finite both ways.
//!
//! A write goes through [`crate::storage::write_atomically`], so a crash leaves either the
//! old file or the new one. A tensor holding NaN or an infinity is never written
//! ([`Error::NonFinite`]) and never read back (an [`Error::Format`] naming it): a model
//! that diverged cannot become a checkpoint, and a damaged file cannot become a model.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};
use crate::real::Real;

/// A tensor read from a file: shape and values.
pub type Loaded<T> = (Vec<usize>, Vec<T>);

/// Tensors of a file by name.
pub type TensorMap<T> = HashMap<String, Loaded<T>>;

fn dtype<T: Real>() -> Dtype {
    if T::DTYPE == "F64" {
        Dtype::F64
    } else {
        Dtype::F32
    }
}

/// The first value of `values` that is NaN or infinite, with its index.
fn first_non_finite<T: Real>(values: &[T]) -> Option<(usize, f64)> {
    values
        .iter()
        .position(|v| !v.as_f64().is_finite())
        .map(|i| (i, values[i].as_f64()))
}

/// Writes `tensors` (name, shape, values) and string `metadata` to `path` atomically;
/// [`Error::NonFinite`] (and nothing written) when a value is NaN or infinite.
pub fn save<T: Real>(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[T])],
    metadata: HashMap<String, String>,
) -> Result<()> {
    for (name, _, data) in tensors {
        if let Some((index, value)) = first_non_finite(data) {
            return Err(Error::NonFinite {
                tensor: name.clone(),
                index,
                value,
            });
        }
    }
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(dtype::<T>(), shape.clone(), bytemuck::cast_slice(data))
                .map(|v| (name.as_str(), v))
                .map_err(|e| Error::format(path, format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::format(path, e.to_string()))?;
    crate::storage::write_atomically(path, &bytes)
}

/// The little-endian F32 or F64 data of a view, converted to `T`; `None` for another
/// dtype.
fn decode<T: Real>(view: &TensorView<'_>) -> Option<Vec<T>> {
    let data = view.data();
    match view.dtype() {
        Dtype::F32 => Some(
            data.chunks_exact(4)
                .map(|b| T::of_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
        ),
        Dtype::F64 => Some(
            data.chunks_exact(8)
                .map(|b| {
                    let bytes = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
                    T::of_f64(f64::from_le_bytes(bytes))
                })
                .collect(),
        ),
        _ => None,
    }
}

/// Reads every tensor of `path` (F32 or F64, converted to `T`) and the metadata. The
/// safetensors header is checked against the file's length before any tensor is
/// copied; a tensor of another dtype, or holding NaN or an infinity, is an error naming
/// it.
pub fn load<T: Real>(path: &Path) -> Result<(TensorMap<T>, HashMap<String, String>)> {
    let bytes = crate::storage::read_regular_file(path)?;
    let not_safetensors = |e: safetensors::SafeTensorError| {
        Error::format(path, format!("not a safetensors file: {e}"))
    };
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(not_safetensors)?;
    let st = SafeTensors::deserialize(&bytes).map_err(not_safetensors)?;
    let mut out = HashMap::new();
    for (name, view) in st.iter() {
        let values = decode::<T>(&view).ok_or_else(|| {
            Error::format(
                path,
                format!("tensor {name} is {}, expected F32 or F64", view.dtype()),
            )
        })?;
        if let Some((i, v)) = first_non_finite(&values) {
            return Err(Error::format(
                path,
                format!("tensor {name} holds {v} at index {i}: a checkpoint must be finite"),
            ));
        }
        out.insert(name.to_string(), (view.shape().to_vec(), values));
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `name` in a fresh folder.
    fn temp_file(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let (tmp, dir) = crate::temp_folder::temp_dir("ckpt");
        (tmp, dir.join(name))
    }

    #[test]
    fn non_finite_tensors_are_neither_written_nor_read() {
        let (_tmp, path) = temp_file("nan.safetensors");
        let good = [1.0f32, 2.0, 3.0];
        let bad = [1.0f32, f32::NAN, 3.0];
        save(&path, &[("w".into(), vec![3], &good[..])], HashMap::new()).unwrap();
        let err = save(&path, &[("w".into(), vec![3], &bad[..])], HashMap::new()).unwrap_err();
        assert!(
            matches!(&err, Error::NonFinite { tensor, index: 1, value } if tensor == "w" && value.is_nan()),
            "{err:?}"
        );
        assert_eq!(load::<f32>(&path).unwrap().0["w"].1, good, "old file kept");

        // A file written by another program with an infinity in it.
        let view = TensorView::new(
            Dtype::F32,
            vec![2],
            bytemuck::cast_slice(&[0.5f32, f32::INFINITY]),
        )
        .unwrap();
        let bytes = safetensors::serialize([("layer.weight", view)], None).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let msg = load::<f64>(&path).unwrap_err().to_string();
        assert!(
            msg.contains("tensor layer.weight holds inf at index 1"),
            "{msg}"
        );
    }
}
