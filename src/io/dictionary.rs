//! Dictionary files: monoscope's own (`dict.json` + `dictionary.safetensors`) and
//! SAELens' (`cfg.json` + `sae_weights.safetensors`, tensors `W_enc` [d, K], `W_dec`
//! [K, d], `b_enc` [K], `b_dec` [d]). monoscope writes SAEs with SAELens' tensor names
//! and layout, so its weights are readable by SAELens-style code; NCL heads are written
//! as PyTorch `Linear` layers (`fc1.weight` [hidden, d], ...). Names are mapped by the
//! table in [`crate::io::weights`].

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dict::{DictConfig, DictKind, Dictionary};
use crate::error::{Error, Result};
use crate::io::FileRecord;
use crate::io::weights::{Checkpoint, load_module, save_module};

/// File name of the dictionary's configuration.
pub const CONFIG_FILE: &str = "dict.json";
/// File name of the dictionary's weights (SPEC §5's bundle uses the same name).
pub const WEIGHTS_FILE: &str = "dictionary.safetensors";
/// SAELens' configuration file.
pub const SAELENS_CONFIG: &str = "cfg.json";
/// SAELens' weights file.
pub const SAELENS_WEIGHTS: &str = "sae_weights.safetensors";
/// Format tag written into `dict.json`.
pub const FORMAT: &str = "monoscope-dictionary/1";

/// Contents of `dict.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DictFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// Shape and family.
    pub config: DictConfig,
    /// Whether inputs are centred by `b_dec` before encoding (SAEs).
    #[serde(default = "yes")]
    pub center_input: bool,
    /// Free-form provenance (training settings, data, final metrics).
    #[serde(default)]
    pub provenance: Value,
    /// Length and hash of the weights file written with this config (absent in files
    /// from before records were kept, and in SAELens directories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<FileRecord>,
}

fn yes() -> bool {
    true
}

/// Serialises a dictionary's weights.
pub fn weights_to_bytes(dict: &Dictionary) -> Result<Vec<u8>> {
    save_module(dict)
}

/// Loads weights for a dictionary of the given configuration; every tensor must be
/// present with the right shape and nothing else may be in the file.
pub fn from_bytes(file: &DictFile, weights: &[u8], device: &Device) -> Result<Dictionary> {
    file.config
        .validate()
        .map_err(|e| Error::Config(format!("dictionary config: {e}")))?;
    if let Some(record) = &file.weights {
        record.check(WEIGHTS_FILE, "its config", weights)?;
    }
    // A dictionary is initialised before its weights are loaded, so its declared size is
    // checked against the bytes present first (at least 2 bytes per parameter, f16/bf16).
    let declared = file.config.parameters();
    if declared.saturating_mul(2) > weights.len() as u64 {
        return Err(Error::Weights(format!(
            "the dictionary config declares {declared} parameters, more than the {} bytes of {WEIGHTS_FILE} can hold",
            weights.len()
        )));
    }
    let ckpt = Checkpoint::parse(weights)?;
    let dict = load_module(file.config.init(device), &ckpt, device)?;
    Ok(match dict {
        Dictionary::Sae(s) => Dictionary::Sae(s.with_center_input(file.center_input)),
        other => other,
    })
}

/// Parses `dict.json`.
pub fn parse_config(bytes: &[u8]) -> Result<DictFile> {
    let file: DictFile = serde_json::from_slice(bytes)
        .map_err(|e| Error::Config(format!("dict.json is not a dictionary config: {e}")))?;
    if file.format != FORMAT {
        return Err(Error::Config(format!(
            "dict.json has format {:?}; expected {FORMAT:?}",
            file.format
        )));
    }
    file.config
        .validate()
        .map_err(|e| Error::Config(format!("dict.json: {e}")))?;
    Ok(file)
}

/// Reads a SAELens `cfg.json` (current `architecture: "topk"` / `"standard"` /
/// `"jumprelu"` configs and the older `activation_fn_str` / `activation_fn_kwargs` form).
pub fn parse_saelens_config(bytes: &[u8]) -> Result<DictFile> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::Config(format!("cfg.json is not valid JSON: {e}")))?;
    let int = |key: &str| -> Result<usize> {
        v.get(key)
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .ok_or_else(|| Error::Config(format!("cfg.json: {key} is missing or not an integer")))
    };
    let (d, features) = (int("d_in")?, int("d_sae")?);
    let arch = v
        .get("architecture")
        .and_then(Value::as_str)
        .unwrap_or("standard");
    let act = v
        .get("activation_fn_str")
        .and_then(Value::as_str)
        .unwrap_or("relu");
    let k = v
        .get("k")
        .or_else(|| v.get("activation_fn_kwargs").and_then(|a| a.get("k")))
        .and_then(Value::as_u64)
        .map(|k| k as usize);
    let kind = match (arch, act) {
        ("topk", _) | ("standard", "topk") => DictKind::Topk,
        ("standard", "relu") => DictKind::Relu,
        // SAELens saves JumpReLU, BatchTopK and Matryoshka SAEs alike for inference.
        ("jumprelu", _) => DictKind::Jumprelu,
        (a, f) => {
            return Err(Error::Config(format!(
                "SAELens architecture {a:?} with activation {f:?} is not supported (standard/relu, topk and jumprelu are)"
            )));
        }
    };
    if let Some(n) = v.get("normalize_activations").and_then(Value::as_str)
        && n != "none"
    {
        return Err(Error::Config(format!(
            "cfg.json: normalize_activations = {n:?} is not supported"
        )));
    }
    if v.get("rescale_acts_by_decoder_norm")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Err(Error::Config(
            "cfg.json: rescale_acts_by_decoder_norm is not supported".into(),
        ));
    }
    let mut config = DictConfig {
        features,
        ..DictConfig::new(kind, d)
    };
    if kind == DictKind::Topk {
        config.k = k.ok_or_else(|| Error::Config("cfg.json: a TopK SAE needs k".into()))?;
    }
    config
        .validate()
        .map_err(|e| Error::Config(format!("cfg.json: {e}")))?;
    Ok(DictFile {
        format: FORMAT.into(),
        config,
        center_input: v
            .get("apply_b_dec_to_input")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        provenance: serde_json::json!({ "source": "SAELens", "cfg": v }),
        weights: None,
    })
}

/// Loads a dictionary directory: monoscope's own layout, or SAELens'.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_dir(dir: &std::path::Path, device: &Device) -> Result<(DictFile, Dictionary)> {
    let own = dir.join(CONFIG_FILE);
    let (file, weights) = if own.exists() {
        (
            parse_config(&crate::base::fs::read_file(&own)?)?,
            dir.join(WEIGHTS_FILE),
        )
    } else if dir.join(SAELENS_CONFIG).exists() {
        (
            parse_saelens_config(&crate::base::fs::read_file(&dir.join(SAELENS_CONFIG))?)?,
            dir.join(SAELENS_WEIGHTS),
        )
    } else {
        return Err(Error::Invalid(format!(
            "{}: no {CONFIG_FILE} (monoscope) or {SAELENS_CONFIG} (SAELens) found",
            dir.display()
        )));
    };
    let dict = from_bytes(&file, &crate::base::fs::read_file(&weights)?, device)?;
    Ok((file, dict))
}

/// Writes `dict.json` and `dictionary.safetensors` into `dir` (created if needed), each
/// through a temporary file and a rename.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_dir(dir: &std::path::Path, file: &DictFile, dict: &Dictionary) -> Result<()> {
    let io = |source| Error::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let weights = weights_to_bytes(dict)?;
    crate::base::fs::write_atomic(&dir.join(WEIGHTS_FILE), &weights)?;
    // dict.json is written last and records the weights, so a crash between the two
    // writes leaves a pair that is refused, not silently mismatched.
    let file = DictFile {
        weights: Some(FileRecord::of(&weights)),
        ..file.clone()
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| Error::Invalid(e.to_string()))?;
    crate::base::fs::write_atomic(&dir.join(CONFIG_FILE), &json)
}
