//! The checkpoint format of every trainer: a directory holding one safetensors file per
//! module, the Adam moments (`adam.safetensors`) and the counters (`state.json`),
//! replaced as a whole (written as `DIR.tmp`, the old one moved aside, renamed; see
//! [`crate::base::fs::write_dir_atomic`]), so a SIGKILL at any moment leaves a complete
//! checkpoint and a resumed run continues byte-identically.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::optim::Adam;
use crate::base::fs::{checkpoint_dir, read_file, to_json_pretty, write_dir_atomic};
use crate::error::{Error, Result};
use crate::io::weights::{Checkpoint, load_module};

/// File of the optimiser moments.
pub const ADAM_FILE: &str = "adam.safetensors";
/// File of the counters.
pub const STATE_FILE: &str = "state.json";

/// Writes a checkpoint: `modules` as (file name, module weights), the optimiser and the
/// state (any serialisable record of counters and settings).
pub fn save(
    dir: &Path,
    modules: Vec<(&str, Vec<u8>)>,
    adam: &Adam,
    state: &impl Serialize,
) -> Result<()> {
    let mut files = modules;
    files.push((ADAM_FILE, adam.to_bytes()?));
    files.push((STATE_FILE, to_json_pretty(state)?));
    write_dir_atomic(dir, &files)
}

/// Whether a checkpoint (or the `.old` copy a crash mid-replacement leaves) exists.
pub fn exists(dir: &Path) -> bool {
    dir.exists() || dir.with_extension("old").exists()
}

/// A checkpoint opened for restoring.
pub struct Saved {
    dir: PathBuf,
    /// `state.json`.
    pub state: serde_json::Value,
}

impl Saved {
    /// Opens the complete copy of a checkpoint directory.
    pub fn open(dir: &Path) -> Result<Self> {
        let dir = checkpoint_dir(dir);
        let state = serde_json::from_slice(&read_file(&dir.join(STATE_FILE))?)
            .map_err(|e| Error::Invalid(format!("checkpoint state: {e}")))?;
        Ok(Self { dir, state })
    }

    /// The directory read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One field of the state.
    pub fn field<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        serde_json::from_value(self.state[key].clone())
            .map_err(|e| Error::Invalid(format!("checkpoint state {key:?}: {e}")))
    }

    /// The `config` field, refused unless it equals `current` once `ignoring` has copied
    /// over what may differ on resume (the step count, which may grow).
    pub fn same_settings<C>(&self, current: &C, ignoring: impl Fn(C) -> C) -> Result<()>
    where
        C: DeserializeOwned + PartialEq + Clone + std::fmt::Debug,
    {
        let saved: C = self.field("config")?;
        if ignoring(saved.clone()) == *current {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "the checkpoint in {} is for other settings: {saved:?}",
            self.dir.display()
        )))
    }

    /// Loads a module's weights into `fresh` (an initialised module of the same shape).
    pub fn module<M: Module>(&self, file: &str, fresh: M, device: &Device) -> Result<M> {
        let bytes = read_file(&self.dir.join(file))?;
        load_module(fresh, &Checkpoint::parse(&bytes)?, device)
    }

    /// Restores the optimiser moments onto `device` (the plain, non-autodiff device).
    pub fn adam(&self, adam: &mut Adam, device: &Device) -> Result<()> {
        adam.load_bytes(&read_file(&self.dir.join(ADAM_FILE))?, device)
    }
}
