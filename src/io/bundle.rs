//! The result bundle (SPEC §5): a directory with `dictionary.safetensors` (weights),
//! `features.json` (per feature: MDS, class, support, EmbSim, labels, top examples by id)
//! and `manifest.json` (CLIP model and hash, dictionary config, data set, class rule and
//! thresholds, metrics, tool version). The web app loads exactly these three files.

use std::collections::BTreeMap;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::analysis::analyze::FeatureReport;
use crate::analysis::mds::Thresholds;
use crate::dict::Dictionary;
use crate::error::{Error, Result};
use crate::io::dictionary::{DictFile, from_bytes};

/// Manifest file name.
pub const MANIFEST: &str = "manifest.json";
/// Features file name.
pub const FEATURES: &str = "features.json";
/// Format tag of the manifest.
pub const FORMAT: &str = "monoscope-bundle/1";

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// monoscope's version that wrote the bundle.
    pub tool_version: String,
    /// CLIP model: `path`, `hash` (FNV-1a 64 of model.safetensors), `config`.
    pub model: Value,
    /// The dictionary's configuration.
    pub dictionary: DictFile,
    /// The data set: embeddings file, pairs file, counts.
    pub dataset: Value,
    /// Analysis settings (class rule, min support, top-m, centering).
    pub analysis: Value,
    /// Thresholds the class rule produced.
    pub thresholds: Thresholds,
    /// ImgD, TextD, CrossD, Rare counts.
    pub class_counts: [usize; 4],
    /// WinRates, reconstruction quality.
    pub metrics: Value,
}

/// One example referenced by a feature's top lists.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Example {
    /// Line in the pairs file.
    pub line: u64,
    /// Image path as written in the pairs file.
    pub image: String,
    /// Caption.
    pub caption: String,
}

/// `features.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeaturesFile {
    /// Per feature, indexed by feature id.
    pub features: Vec<FeatureReport>,
    /// Examples by row id (only those referenced).
    pub examples: BTreeMap<usize, Example>,
}

/// A loaded bundle.
#[derive(Debug)]
pub struct Bundle {
    /// Manifest.
    pub manifest: Manifest,
    /// Features.
    pub features: FeaturesFile,
    /// The dictionary.
    pub dictionary: Dictionary,
}

/// FNV-1a 64-bit hash (a fingerprint to tell checkpoints apart, not a security hash).
pub fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Parses a bundle from the bytes of its three files, checking that they agree.
pub fn from_bytes_parts(
    manifest: &[u8],
    features: &[u8],
    weights: &[u8],
    device: &Device,
) -> Result<Bundle> {
    let manifest: Manifest = serde_json::from_slice(manifest)
        .map_err(|e| Error::Invalid(format!("{MANIFEST} is malformed: {e}")))?;
    if manifest.format != FORMAT {
        return Err(Error::Invalid(format!(
            "{MANIFEST} has format {:?}; expected {FORMAT:?}",
            manifest.format
        )));
    }
    let features: FeaturesFile = serde_json::from_slice(features)
        .map_err(|e| Error::Invalid(format!("{FEATURES} is malformed: {e}")))?;
    let k = manifest.dictionary.config.features;
    if features.features.len() != k || features.features.iter().enumerate().any(|(i, f)| f.id != i)
    {
        return Err(Error::Invalid(format!(
            "{FEATURES} must list features 0..{k} in order"
        )));
    }
    let dictionary = from_bytes(&manifest.dictionary, weights, device)?;
    Ok(Bundle {
        manifest,
        features,
        dictionary,
    })
}

/// Loads a bundle directory.
#[cfg(not(target_arch = "wasm32"))]
pub fn load(dir: &std::path::Path, device: &Device) -> Result<Bundle> {
    let read = |n: &str| crate::read_file(&dir.join(n));
    from_bytes_parts(
        &read(MANIFEST)?,
        &read(FEATURES)?,
        &read(crate::io::dictionary::WEIGHTS_FILE)?,
        device,
    )
}

/// Writes a bundle directory (each file atomically).
#[cfg(not(target_arch = "wasm32"))]
pub fn save(
    dir: &std::path::Path,
    manifest: &Manifest,
    features: &FeaturesFile,
    dictionary: &Dictionary,
) -> Result<()> {
    let io = |source| Error::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    crate::write_atomic(
        &dir.join(crate::io::dictionary::WEIGHTS_FILE),
        &crate::io::dictionary::weights_to_bytes(dictionary)?,
    )?;
    crate::write_atomic(&dir.join(FEATURES), &pretty(features)?)?;
    crate::write_atomic(&dir.join(MANIFEST), &pretty(manifest)?)
}

#[cfg(not(target_arch = "wasm32"))]
fn pretty<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|e| Error::Invalid(e.to_string()))
}
