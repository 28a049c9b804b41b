//! Writes that readers see whole or not at all.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What sits between the dot and the writer's pid in a temporary file's name:
/// `.<target name>.tmp-<pid>`.
const TEMPORARY_MARK: &str = ".tmp-";

/// The temporary file a write of `path` goes through before it is renamed over `path`:
/// in the same folder (so the rename is atomic), hidden, and unique to this process.
fn temporary_for(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::format(path, "not a file path"))?;
    Ok(path.with_file_name(format!(
        ".{}{TEMPORARY_MARK}{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Writes `bytes` to `path` so that readers see either the old file or the new one:
/// a temporary file in the same folder, fsync, rename, fsync of the folder. On error the
/// temporary file is removed and `path` is untouched.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temporary_for(path)?;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    // Persist the rename itself; not every platform lets a folder be opened, so this is
    // best effort.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Whether `name` is a temporary file [`write_atomically`] makes: `.<name>.tmp-<pid>`.
fn is_temporary(name: &str) -> bool {
    name.starts_with('.')
        && name
            .rsplit_once(TEMPORARY_MARK)
            .is_some_and(|(target, pid)| {
                target.len() > 1 && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
            })
}

/// Removes the temporary files that interrupted [`write_atomically`] calls left in
/// `dir` (a kill between create and rename), and returns them. Call it only while no
/// other process writes there, i.e. while holding the folder's
/// [`RunLock`](super::RunLock). A missing folder has none.
pub fn remove_stale_temporaries(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && is_temporary(&entry.file_name().to_string_lossy()) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            removed.push(path);
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        crate::temp_folder::temp_dir(&format!("atomic-{name}"))
    }

    #[test]
    fn a_write_replaces_the_file_and_leaves_no_temporary() {
        let (_tmp, dir) = temp_dir("replace");
        let path = dir.join("report.json");
        write_atomically(&path, b"old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let (_tmp, dir) = temp_dir("failed");
        let path = dir.join("taken");
        // A folder where the file should go: the rename fails, the folder stays.
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), b"x").unwrap();
        assert!(write_atomically(&path, b"new").is_err());
        assert!(path.join("inside").is_file());
        assert!(remove_stale_temporaries(&dir).unwrap().is_empty());
    }

    #[test]
    fn only_the_temporaries_of_interrupted_writes_are_removed() {
        let (_tmp, dir) = temp_dir("stale");
        let keep = [
            "model.safetensors",
            ".hidden",
            ".x.tmp-",
            ".x.tmp-12a",
            "a.tmp-12",
            ".tmp-12",
        ];
        let stale = [".model.safetensors.tmp-4242", ".state.json.tmp-1"];
        for name in keep.iter().chain(&stale) {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        std::fs::create_dir(dir.join(".folder.tmp-7")).unwrap();
        let removed = remove_stale_temporaries(&dir).unwrap();
        let mut want: Vec<PathBuf> = stale.iter().map(|n| dir.join(n)).collect();
        want.sort();
        assert_eq!(removed, want);
        for name in keep {
            assert!(dir.join(name).exists(), "{name} was removed");
        }
        assert!(dir.join(".folder.tmp-7").is_dir());
        assert!(remove_stale_temporaries(&dir.join("missing"))
            .unwrap()
            .is_empty());
    }
}
