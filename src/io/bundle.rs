//! The result bundle (SPEC §5): a directory with `dictionary.safetensors` (weights),
//! `features.json` (per feature: MDS, class, support, EmbSim, labels, top examples by id)
//! and `manifest.json` (CLIP model and hash, dictionary config, data set with the
//! centring means, analysis settings, thresholds, metrics, tool version). The web app
//! loads exactly these three files. Every part of the manifest is typed here; `analyze`
//! builds it with [`Manifest::new`] and everything else reads these structs.

use std::collections::BTreeMap;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::analysis::AnalyzeConfig;
use crate::analysis::mds::{FeatureClass, Thresholds};
use crate::analysis::metrics::{Evaluation, WinRates};
use crate::base::ModalityMeans;
use crate::clip::ClipConfig;
use crate::dict::Dictionary;
use crate::error::{Error, Result};
use crate::io::FileRecord;
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
    /// The CLIP model the bundle was made with.
    pub model: ModelRef,
    /// The dictionary's configuration.
    pub dictionary: DictFile,
    /// The data set the analysis ran on.
    pub dataset: DatasetInfo,
    /// Analysis settings (class rule, min support, top-m, centring).
    pub analysis: AnalyzeConfig,
    /// Thresholds the class rule produced.
    pub thresholds: Thresholds,
    /// ImgD, TextD, CrossD, Rare counts.
    pub class_counts: [usize; 4],
    /// WinRates and reconstruction quality.
    pub metrics: BundleMetrics,
    /// Length and hash of `features.json` (the dictionary's weights are recorded in
    /// `dictionary`); absent in bundles from before records were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features_file: Option<FileRecord>,
}

/// The CLIP model a bundle belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRef {
    /// Where the model was read from when the bundle was made.
    #[serde(default)]
    pub path: String,
    /// FNV-1a 64 of its `model.safetensors` ([`fnv1a64`]); the page compares it with the
    /// loaded model's.
    #[serde(default)]
    pub hash_fnv1a64: Option<String>,
    /// Its configuration.
    #[serde(default)]
    pub config: Option<ClipConfig>,
}

/// The data set a bundle was analysed on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// The paired embeddings file.
    #[serde(default)]
    pub embeddings: String,
    /// The image-caption list the embeddings came from.
    #[serde(default)]
    pub pairs_file: String,
    /// Number of pairs.
    #[serde(default)]
    pub pairs: usize,
    /// Lines of the list that were skipped (unreadable images, bad lines).
    #[serde(default)]
    pub skipped_lines: usize,
    /// With `analysis.center`, the means every input is centred with before encoding.
    #[serde(default)]
    pub modality_means: Option<ModalityMeans>,
}

/// Metrics recorded in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleMetrics {
    /// WinRate of the features' EmbSim over raw dimensions and random directions.
    pub win_rates: WinRates,
    /// Reconstruction quality per modality.
    pub quality: Evaluation,
}

/// One feature's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureReport {
    /// Feature index.
    pub id: usize,
    /// Modality Dominance Score.
    pub mds: Option<f64>,
    /// Class.
    pub class: FeatureClass,
    /// Pairs with image + text activation above eps.
    pub support: u64,
    /// Mean activation on images.
    pub mean_image: f64,
    /// Mean activation on texts.
    pub mean_text: f64,
    /// Mean squared activation on images (absent, 0, in bundles from before issue 15).
    #[serde(default)]
    pub energy_image: f64,
    /// Mean squared activation on texts.
    #[serde(default)]
    pub energy_text: f64,
    /// EmbSim of the top image samples.
    pub emb_sim_image: Option<f64>,
    /// EmbSim of the top text samples.
    pub emb_sim_text: Option<f64>,
    /// Best vocabulary entries with their activation.
    pub labels: Vec<(String, f32)>,
    /// Top image samples: (row, activation).
    pub top_images: Vec<(usize, f32)>,
    /// Top text samples: (row, activation).
    pub top_texts: Vec<(usize, f32)>,
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

impl Manifest {
    /// The manifest of a fresh analysis (the one builder `analyze` uses).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: ModelRef,
        dictionary: DictFile,
        dataset: DatasetInfo,
        analysis: AnalyzeConfig,
        thresholds: Thresholds,
        class_counts: [usize; 4],
        metrics: BundleMetrics,
    ) -> Self {
        Self {
            format: FORMAT.into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            model,
            dictionary,
            dataset,
            analysis,
            thresholds,
            class_counts,
            metrics,
            features_file: None,
        }
    }

    /// The centring every input needs before the dictionary: the stored means when the
    /// analysis was centred, `None` otherwise. A centred analysis without (or with
    /// mis-sized) means is refused.
    pub fn centring(&self) -> Result<Option<ModalityMeans>> {
        if !self.analysis.center {
            return Ok(None);
        }
        let means = self.dataset.modality_means.clone().ok_or_else(|| {
            Error::Invalid(format!(
                "{MANIFEST}: the analysis was centred but dataset.modality_means is missing"
            ))
        })?;
        means.check(
            self.dictionary.config.d,
            &format!("{MANIFEST}: dataset.modality_means"),
        )?;
        Ok(Some(means))
    }
}

impl Bundle {
    /// Class per feature, from `features.json`.
    pub fn classes(&self) -> Vec<FeatureClass> {
        self.features.features.iter().map(|f| f.class).collect()
    }
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
    if let Some(record) = &manifest.features_file {
        record.check(FEATURES, MANIFEST, features)?;
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

/// The bytes of a bundle's three files (`manifest.json`, `features.json`,
/// `dictionary.safetensors`), as [`save`] writes them.
pub fn to_bytes_parts(
    manifest: &Manifest,
    features: &FeaturesFile,
    dictionary: &Dictionary,
) -> Result<[Vec<u8>; 3]> {
    fn pretty<T: Serialize>(value: &T) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(value).map_err(|e| Error::Invalid(e.to_string()))
    }
    let features = pretty(features)?;
    let weights = crate::io::dictionary::weights_to_bytes(dictionary)?;
    // The manifest records the other two (and is written last by `save`).
    let mut manifest = manifest.clone();
    manifest.features_file = Some(FileRecord::of(&features));
    manifest.dictionary.weights = Some(FileRecord::of(&weights));
    Ok([pretty(&manifest)?, features, weights])
}

/// Loads a bundle directory.
#[cfg(not(target_arch = "wasm32"))]
pub fn load(dir: &std::path::Path, device: &Device) -> Result<Bundle> {
    let read = |n: &str| crate::base::fs::read_file(&dir.join(n));
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
    use crate::base::fs::{create_dir, write_atomic};
    create_dir(dir)?;
    let [m, f, w] = to_bytes_parts(manifest, features, dictionary)?;
    write_atomic(&dir.join(crate::io::dictionary::WEIGHTS_FILE), &w)?;
    write_atomic(&dir.join(FEATURES), &f)?;
    write_atomic(&dir.join(MANIFEST), &m)
}
