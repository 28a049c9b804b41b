//! Training checkpoints: the model (through [`Trainable::save`]) plus a JSON state that
//! says where in the schedule training stopped. The state file is written last and is
//! the commit point: a crash mid-checkpoint leaves the previous checkpoint usable.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{EpochStats, RunningStats, TrainConfig};
use crate::classifier::Trainable;
use crate::error::{Error, Result};

/// Name of the state file inside a checkpoint folder.
pub const STATE_FILE: &str = "state.json";

/// Where training stands; everything else (shuffles, crops, attack starts) is derived
/// from the seed and these counters.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// The configuration the run was started with.
    pub config: TrainConfig,
    /// Images in the training set (checked on resume).
    pub train_images: usize,
    /// The epoch in progress (0-based).
    pub epoch: usize,
    /// Batches of `epoch` already done.
    pub step: usize,
    /// Batches done since the start.
    pub global_step: usize,
    /// Loss and accuracy so far in `epoch`.
    pub running: RunningStats,
    /// One entry per finished epoch.
    pub history: Vec<EpochStats>,
    /// The model file, relative to the checkpoint folder.
    pub model_file: String,
}

/// Writes `bytes` to `path` so that readers see either the old file or the new one:
/// a temporary file in the same folder, fsync, rename, fsync of the folder.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::Config(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    // Persist the rename itself; not every platform can open a folder, so best effort.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Saves the model under a name unique to this step, then the state, then removes the
/// model file the previous state pointed to.
pub fn save<M: Trainable + ?Sized>(dir: &Path, model: &M, state: &mut TrainState) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let previous = load_state(dir).ok().map(|s| s.model_file);
    state.model_file = format!("model-step{:08}.safetensors", state.global_step);
    model.save(&dir.join(&state.model_file))?;
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| Error::format(dir.join(STATE_FILE), e.to_string()))?;
    write_atomically(&dir.join(STATE_FILE), &json)?;
    if let Some(old) = previous.filter(|old| *old != state.model_file) {
        let _ = std::fs::remove_file(dir.join(old));
    }
    Ok(())
}

/// Reads the state of the checkpoint in `dir`.
pub fn load_state(dir: &Path) -> Result<TrainState> {
    let path = dir.join(STATE_FILE);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::format(&path, format!("bad training state: {e}")))
}

/// Path of the model file of the checkpoint in `dir`.
pub fn model_path(dir: &Path, state: &TrainState) -> PathBuf {
    dir.join(&state.model_file)
}
