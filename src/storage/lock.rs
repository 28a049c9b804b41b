//! One run per output folder: an OS file lock held for the run's whole life.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file a run keeps in its folder. It holds the owner's pid, for the message
/// a second run prints; the lock itself is the OS's, so it is released when the owner
/// exits, however it exits, and a stale file locks nothing.
pub const LOCK_FILE: &str = "run.lock";

/// An exclusive lock on a run folder, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    file: File,
    dir: PathBuf,
}

impl RunLock {
    /// Creates `dir` if needed and takes its lock, or fails at once with
    /// [`Error::Locked`] naming the folder and the pid of the run that holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                    holder: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let record = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            file.sync_all()
        };
        record(&mut file).map_err(|e| Error::io(&path, e))?;
        Ok(RunLock {
            file,
            dir: dir.to_path_buf(),
        })
    }

    /// The folder it locks.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_folder_fails_and_names_the_holder() {
        let (_tmp, dir) = crate::temp_folder::temp_dir("lock");
        // Not there yet: acquiring creates it.
        let dir = dir.join("run");
        let first = RunLock::acquire(&dir).unwrap();
        assert_eq!(first.dir(), dir);
        // A second open file description conflicts even within one process.
        let err = RunLock::acquire(&dir).unwrap_err();
        let pid = std::process::id();
        assert!(
            matches!(err, Error::Locked { holder: Some(p), .. } if p == pid),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
        assert!(msg.contains(&pid.to_string()), "{msg}");
        drop(first);
        let again = RunLock::acquire(&dir).unwrap();
        drop(again);
    }
}
