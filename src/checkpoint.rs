//! Named tensors to and from safetensors files, written atomically.
//!
//! A write goes to a temporary file in the same folder, is flushed to disk, and is then
//! renamed over the target, so a crash leaves either the old file or the new one.

use std::collections::HashMap;
use std::io::Write;
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

/// Writes `tensors` (name, shape, values) and string `metadata` to `path` atomically.
pub fn save<T: Real>(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[T])],
    metadata: HashMap<String, String>,
) -> Result<()> {
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
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::format(path, "not a file path"))?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    // Persist the rename itself; not every platform lets a folder be opened, so this is
    // best effort.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Reads every tensor of `path` (which must all have `T`'s dtype) and the metadata.
pub fn load<T: Real>(path: &Path) -> Result<(TensorMap<T>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, meta) =
        SafeTensors::read_metadata(&bytes).map_err(|e| Error::format(path, e.to_string()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::format(path, e.to_string()))?;
    let mut out = HashMap::new();
    for (name, view) in st.iter() {
        if view.dtype() != dtype::<T>() {
            return Err(Error::format(
                path,
                format!("tensor {name} is {}, expected {}", view.dtype(), T::DTYPE),
            ));
        }
        // The file's bytes need not be aligned for T: copy them into a typed buffer.
        let mut values = vec![T::zero(); view.shape().iter().product()];
        bytemuck::cast_slice_mut::<T, u8>(&mut values).copy_from_slice(view.data());
        out.insert(name.to_string(), (view.shape().to_vec(), values));
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}
