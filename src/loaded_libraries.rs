//! Which shared libraries this process has mapped, read from `/proc/self/maps` (Linux):
//! the libcuda, libnvrtc or libcudnn the dynamic loader actually picked, which is not
//! always the first one on the library path (cudarc asks for several names of each).

use std::path::{Path, PathBuf};

/// Every shared library mapped into this process, each path once, in map order. Empty
/// where `/proc/self/maps` cannot be read.
pub fn loaded_libraries() -> Vec<PathBuf> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode path; the path is the sixth field and may
        // hold spaces.
        let Some(path) = line.splitn(6, char::is_whitespace).nth(5).map(str::trim) else {
            continue;
        };
        let path = Path::new(path);
        let is_library = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains(".so"));
        if path.is_absolute() && is_library && !found.iter().any(|p| p == path) {
            found.push(path.to_path_buf());
        }
    }
    found
}

/// The mapped library whose file name is `stem.so` or `stem.so.<version>` (`libnvrtc`
/// finds `libnvrtc.so.13`, not `libnvrtc-builtins.so.13.0`).
pub fn find_loaded(stem: &str) -> Option<PathBuf> {
    loaded_libraries().into_iter().find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(stem))
            .is_some_and(|rest| rest == ".so" || rest.starts_with(".so."))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn finds_the_c_library_this_test_runs_on() {
        let libc = find_loaded("libc").expect("libc is mapped into every Linux process");
        assert!(libc.is_absolute(), "{}", libc.display());
        assert!(find_loaded("libc-no-such-library").is_none());
    }
}
