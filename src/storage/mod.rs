//! Files the crate reads and writes on a user's behalf: atomic writes, one lock per run
//! folder, and reads that report what is really at a path.
//!
//! Every output file (checkpoints, reports, plots) is written with [`write_atomically`],
//! so a crash or a full disk leaves the old file or the new one, never a torn one. A run
//! that writes into a folder holds its [`RunLock`] for its whole life, so two runs never
//! interleave their files there.

mod atomic;
mod lock;
mod read;

pub use atomic::{remove_stale_temporaries, write_atomically};
pub use lock::{RunLock, LOCK_FILE};
pub use read::read_regular_file;
