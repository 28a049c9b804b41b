//! Training checkpoints: the model (through [`Trainable::save`]) plus a JSON state that
//! says where in the schedule training stopped. The state file is written last and is
//! the commit point: a crash mid-checkpoint leaves the previous checkpoint usable.
//!
//! The state file is read back as untrusted input: its model file must be a name this
//! module writes (`model-step<digits>.safetensors`, inside the folder), and its counters
//! must agree with each other and with the run ([`TrainState::check`]).

use std::path::{Path, PathBuf};

use super::{EpochStats, RunningStats, TrainConfig};
use crate::classifier::Trainable;
use crate::data::DatasetInfo;
use crate::error::{Error, Result};
use crate::storage::write_atomically;

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
    /// The data set trained on (checked on resume); `None` in states written before it
    /// was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetInfo>,
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
    /// The model file, a plain name inside the checkpoint folder (empty before the
    /// first checkpoint).
    pub model_file: String,
}

impl TrainState {
    /// Checks that the counters describe a point of a run whose epochs have
    /// `steps_per_epoch` steps: the step lies within the epoch, the global step is
    /// where the epoch and step put it, there is one history entry per finished epoch
    /// and the epoch's running sums cover at most its steps' images. `path` names the
    /// state file in the error.
    pub fn check(&self, path: &Path, steps_per_epoch: usize, batch_size: usize) -> Result<()> {
        let expected_global = self
            .epoch
            .checked_mul(steps_per_epoch)
            .and_then(|g| g.checked_add(self.step));
        let most_images = self.step.saturating_mul(batch_size);
        let fault = if self.step >= steps_per_epoch {
            Some(format!(
                "step {} is not within an epoch of {steps_per_epoch} steps",
                self.step
            ))
        } else if expected_global != Some(self.global_step) {
            Some(format!(
                "global step {} is not epoch {} × {steps_per_epoch} steps + step {}",
                self.global_step, self.epoch, self.step
            ))
        } else if self.history.len() != self.epoch {
            Some(format!(
                "{} history entries for {} finished epochs",
                self.history.len(),
                self.epoch
            ))
        } else if self.running.images > most_images || self.running.correct > self.running.images {
            Some(format!(
                "running sums of {} images ({} correct) after {} steps of at most {batch_size}",
                self.running.images, self.running.correct, self.step
            ))
        } else {
            None
        };
        match fault {
            Some(what) => Err(Error::format(path, format!("inconsistent state: {what}"))),
            None => Ok(()),
        }
    }
}

/// The model file a checkpoint at `global_step` is saved to.
fn model_file_name(global_step: usize) -> String {
    format!("model-step{global_step:08}.safetensors")
}

/// Whether `name` is one that [`model_file_name`] makes: a plain file name, so a state
/// file can never point outside its folder.
fn is_model_file_name(name: &str) -> bool {
    name.strip_prefix("model-step")
        .and_then(|rest| rest.strip_suffix(".safetensors"))
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Saves the model under a name unique to this step, then the state, then removes the
/// model file the previous state pointed to. A model holding non-finite values is
/// refused by [`Trainable::save`] ([`Error::NonFinite`]) and the previous checkpoint
/// stays the folder's checkpoint.
pub fn save<M: Trainable + ?Sized>(dir: &Path, model: &M, state: &mut TrainState) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let previous = load_state(dir).ok().map(|s| s.model_file);
    let file = model_file_name(state.global_step);
    model.save(&dir.join(&file))?;
    state.model_file = file;
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| Error::format(dir.join(STATE_FILE), e.to_string()))?;
    write_atomically(&dir.join(STATE_FILE), &json)?;
    if let Some(old) = previous.filter(|old| *old != state.model_file) {
        let _ = std::fs::remove_file(dir.join(old));
    }
    Ok(())
}

/// Reads the state of the checkpoint in `dir`; a model file that is not a name
/// [`save`] writes is an error.
pub fn load_state(dir: &Path) -> Result<TrainState> {
    let path = dir.join(STATE_FILE);
    let bytes = crate::storage::read_regular_file(&path)?;
    let state: TrainState = serde_json::from_slice(&bytes)
        .map_err(|e| Error::format(&path, format!("bad training state: {e}")))?;
    if !state.model_file.is_empty() && !is_model_file_name(&state.model_file) {
        return Err(Error::format(
            &path,
            format!(
                "model file {:?} is not a checkpoint's model file name \
                 (model-step<digits>.safetensors, inside the folder)",
                state.model_file
            ),
        ));
    }
    Ok(state)
}

/// Path of the model file of the checkpoint in `dir`, `None` before the first one.
pub fn model_path(dir: &Path, state: &TrainState) -> Option<PathBuf> {
    (!state.model_file.is_empty()).then(|| dir.join(&state.model_file))
}

/// Removes what interrupted checkpoints left in `dir`: temporary files of writes that
/// never reached their rename, and model files no state points to (a kill between
/// the model's write and the state's). Call it only while holding the folder's lock.
/// Returns the paths removed.
pub fn remove_leftovers(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = crate::storage::remove_stale_temporaries(dir)?;
    let kept = load_state(dir).ok().map(|s| s.model_file);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(removed);
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_model_file_name(&name) && kept.as_deref() != Some(name.as_str()) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_save_writes_are_model_files() {
        assert!(is_model_file_name(&model_file_name(12)));
        for bad in [
            "",
            "../model-step00000001.safetensors",
            "/etc/passwd",
            "model-step.safetensors",
            "model-step1.safetensors/..",
            "model-step1x.safetensors",
            "sub/model-step1.safetensors",
        ] {
            assert!(!is_model_file_name(bad), "{bad}");
        }
    }
}
