//! `monoscope init`: a random-init checkpoint of a real CLIP architecture in the Hugging
//! Face layout (`config.json`, `model.safetensors`, `tokenizer.json` with the real CLIP
//! BPE vocabulary), for tests, benchmarks and trying the whole pipeline before
//! downloading weights. Nothing it makes is trained: its features mean nothing.

use std::path::Path;

use burn::tensor::Device;

use crate::base::fs::{create_dir, write_atomic, write_json};
use crate::clip::ClipConfig;
use crate::error::Result;
use crate::io::weights::{SaveDtype, save_module_as};

/// OpenAI CLIP's BPE tokenizer in the `tokenizers` format (`assets/clip-tokenizer`, from
/// `openai/clip-vit-base-patch32`; the same vocabulary for every OpenAI CLIP).
pub const CLIP_TOKENIZER: &[u8] = include_bytes!("../../assets/clip-tokenizer/tokenizer.json");

/// What `init` wrote.
#[derive(Debug, Clone, Copy)]
pub struct InitSummary {
    /// Parameters of the model.
    pub parameters: usize,
    /// Size of `model.safetensors` in bytes.
    pub weight_bytes: usize,
}

/// Writes a random-init checkpoint of `config` (seeded) into `out`.
pub fn init_checkpoint(
    config: &ClipConfig,
    out: &Path,
    dtype: SaveDtype,
    seed: u64,
    device: &Device,
) -> Result<InitSummary> {
    use burn::module::Module;
    config.validate()?;
    create_dir(out)?;
    device.seed(seed);
    let model = config.init(device);
    let weights = save_module_as(&model, dtype)?;
    write_atomic(&out.join("model.safetensors"), &weights)?;
    write_json(&out.join("config.json"), &config.to_hf_json())?;
    write_atomic(&out.join("tokenizer.json"), CLIP_TOKENIZER)?;
    Ok(InitSummary {
        parameters: model.num_params(),
        weight_bytes: weights.len(),
    })
}
