//! Reading a file the user named, with errors that say what is really at the path.

use std::path::Path;

use crate::error::{Error, Result};

/// What kind of thing is at `path`, in words, for a path that is not a regular file.
fn kind_of(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        } else if file_type.is_socket() {
            return "a socket";
        } else if file_type.is_block_device() || file_type.is_char_device() {
            return "a device";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Reads the whole regular file at `path` (through symbolic links). A directory, FIFO,
/// socket or device there is an error that says which, before anything is opened (a
/// FIFO would block the read forever); a missing or unreadable file is the OS error.
pub fn read_regular_file(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::format(
            path,
            format!("is {}, expected a regular file", kind_of(meta.file_type())),
        ));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_is_at_the_path() {
        let (_tmp, dir) = crate::temp_folder::temp_dir("read");
        std::fs::create_dir_all(dir.join("folder")).unwrap();
        std::fs::write(dir.join("file"), b"abc").unwrap();
        assert_eq!(read_regular_file(&dir.join("file")).unwrap(), b"abc");
        let msg = read_regular_file(&dir.join("folder"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("is a directory"), "{msg}");
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo {}", fifo.display());
        let msg = read_regular_file(&fifo).unwrap_err().to_string();
        assert!(msg.contains("is a FIFO"), "{msg}");
        let msg = read_regular_file(&dir.join("missing"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("missing") && msg.contains("No such file"),
            "{msg}"
        );
    }
}
