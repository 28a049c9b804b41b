//! The crate's one error type. Every variant names the shape, buffer or file that was wrong.

use std::path::PathBuf;

/// Errors from shape checks, files, the CUDA driver and configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor or buffer had the wrong shape or length.
    #[error("{op}: {what} has shape {got}, expected {expected}")]
    Shape {
        /// The operation that checked it (`gate_forward`, `conv2d`, …).
        op: &'static str,
        /// Which argument (`x`, `s`, `dy`, …).
        what: String,
        /// What was required.
        expected: String,
        /// What was passed.
        got: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file was read but its contents are not what its format requires.
    #[error("{path}: {what}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong, in words.
        what: String,
    },
    /// The CUDA driver, NVRTC or a kernel launch failed.
    #[error("CUDA: {0}")]
    Cuda(String),
    /// A configuration or argument that is invalid whatever the data.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Another run holds the lock of the folder a run would write into.
    #[error(
        "{} is in use by another sparta run{}: one run per output folder (wait for it, or \
         choose another --out)",
        dir.display(),
        holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Locked {
        /// The folder.
        dir: PathBuf,
        /// The process that holds it, when its lock file says.
        holder: Option<u32>,
    },
    /// A tensor about to be saved holds NaN or an infinity.
    #[error("tensor {tensor} holds {value} at index {index}")]
    NonFinite {
        /// The tensor's name.
        tensor: String,
        /// Where in it (row-major).
        index: usize,
        /// The value found there.
        value: f64,
    },
    /// Training produced a non-finite loss or non-finite weights; no checkpoint was
    /// written from that step.
    #[error(
        "training diverged at epoch {epoch}, step {step}: {what}; {}",
        match last_good {
            Some(p) => format!("the last good checkpoint is {}", p.display()),
            None => "no checkpoint had been written".to_string(),
        }
    )]
    Diverged {
        /// The epoch, counted from 1.
        epoch: usize,
        /// The step within the epoch, counted from 1.
        step: usize,
        /// What was not finite.
        what: String,
        /// The model file of the last checkpoint written, if any.
        last_good: Option<PathBuf>,
    },
}

/// `Result` with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for a [`Error::Shape`].
    pub fn shape(
        op: &'static str,
        what: impl Into<String>,
        expected: impl std::fmt::Display,
        got: impl std::fmt::Display,
    ) -> Self {
        Error::Shape {
            op,
            what: what.into(),
            expected: expected.to_string(),
            got: got.to_string(),
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A malformed file.
    pub fn format(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            what: what.into(),
        }
    }
}

impl From<cudarc::driver::DriverError> for Error {
    fn from(e: cudarc::driver::DriverError) -> Self {
        Error::Cuda(e.to_string())
    }
}

impl From<cudarc::nvrtc::CompileError> for Error {
    fn from(e: cudarc::nvrtc::CompileError) -> Self {
        Error::Cuda(e.to_string())
    }
}

/// Checks that a buffer has `expected` elements: `Ok`, or an [`Error::Shape`] of `op`
/// naming `what` with both lengths (for implementors of
/// [`KernelDevice`](crate::KernelDevice) too).
pub fn check_len(op: &'static str, what: &str, got: usize, expected: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::shape(
            op,
            what,
            format!("{expected} elements"),
            format!("{got} elements"),
        ))
    }
}
