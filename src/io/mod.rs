//! File formats.
//!
//! Every file monoscope writes is complete or refused on read: safetensors files carry
//! their own length record (the header's offsets must end exactly at the file's end, which
//! the parser checks), JSON files end with the closing brace of their one object, and a
//! unit of several files records the length and FNV-1a 64 hash of each member in the file
//! written last ([`FileRecord`]: `dict.json` for `dictionary.safetensors`, `manifest.json`
//! for `features.json` and the dictionary), so a half-replaced or mixed unit is refused.

pub mod bundle;
pub mod captions;
pub mod dictionary;
pub mod embeddings;
pub mod weights;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The length and hash of a file another file of the same unit refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Length in bytes.
    pub bytes: u64,
    /// FNV-1a 64 ([`bundle::fnv1a64`]).
    pub fnv1a64: String,
}

impl FileRecord {
    /// The record of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            bytes: bytes.len() as u64,
            fnv1a64: bundle::fnv1a64(bytes),
        }
    }

    /// Fails unless `bytes` are the recorded file `name` (named by `by`, the file holding
    /// the record).
    pub fn check(&self, name: &str, by: &str, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 != self.bytes {
            return Err(Error::Invalid(format!(
                "{name} has {} bytes where {by} records {}: the file is incomplete or from another run",
                bytes.len(),
                self.bytes
            )));
        }
        if bundle::fnv1a64(bytes) != self.fnv1a64 {
            return Err(Error::Invalid(format!(
                "{name} does not match the hash {by} records: the file is damaged or from another run"
            )));
        }
        Ok(())
    }
}
