//! Temporary folders for the unit tests that write files.

use std::path::PathBuf;

/// A fresh folder of its own under the system's temporary directory, named
/// `sparta-{name}-…`, and its path. The folder is deleted with everything in it when
/// the returned guard drops, at the end of a failing test too.
pub(crate) fn temp_dir(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("sparta-{name}-"))
        .tempdir()
        .unwrap();
    let path = tmp.path().to_path_buf();
    (tmp, path)
}
