//! CLIP hyper-parameters, read from a Hugging Face `config.json`.
//!
//! Two layouts exist on the hub and both are accepted:
//! - the current one (`text_config` / `vision_config` objects), and
//! - the transformers-4.x layout of the 2021 OpenAI checkpoints, where
//!   `text_config_dict` / `vision_config_dict` hold the real values and override
//!   `text_config` / `vision_config` (transformers' `CLIPConfig.__init__` does the same).
//!
//! Structural fields (widths, depths, heads, sizes) are required: a missing one is an
//! error naming it, never a silent default. Fields with a single sensible value
//! (activation, layer-norm epsilon, channels, special token ids) default to
//! transformers' `CLIPTextConfig` / `CLIPVisionConfig` defaults.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// transformers' `CLIPTextConfig.eos_token_id` before v4.30; when a checkpoint still
/// says 2, transformers pools at the largest token id instead (the OpenAI vocabulary
/// puts `<|endoftext|>` last), and so do we.
pub const LEGACY_EOS_TOKEN_ID: u32 = 2;

/// Default `logit_scale_init_value` of transformers' `CLIPConfig` (= ln(1 / 0.07)).
pub const DEFAULT_LOGIT_SCALE_INIT: f64 = 2.6592;

/// The largest integer a `config.json` may declare (2^24), checked as each one is read.
/// The largest CLIPs use widths of a few thousand and vocabularies of about 250k; anything
/// far beyond is a corrupt or hostile file, and bounding every size keeps products of two
/// of them (a weight matrix, a patch grid) far from overflowing.
pub const MAX_CONFIG_SIZE: usize = 1 << 24;

/// The most layers a tower may declare. The deepest CLIPs have 48 (ViT-bigG); every
/// declared layer is a module built before any weight is read, so the count is bounded
/// far below [`MAX_CONFIG_SIZE`].
pub const MAX_LAYERS: usize = 1024;

/// The feed-forward activation (`hidden_act` in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, OpenAI's original CLIP.
    QuickGelu,
    /// Exact (erf) GELU, as in many OpenCLIP exports.
    Gelu,
    /// tanh-approximated GELU (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
}

impl Activation {
    fn parse(name: &str, field: &str) -> Result<Self> {
        match name {
            "quick_gelu" => Ok(Self::QuickGelu),
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            other => Err(Error::Config(format!(
                "{field} = {other:?} is not supported (expected quick_gelu, gelu, gelu_new or gelu_pytorch_tanh)"
            ))),
        }
    }

    /// The name `config.json` uses.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::QuickGelu => "quick_gelu",
            Self::Gelu => "gelu",
            Self::GeluTanh => "gelu_pytorch_tanh",
        }
    }
}

/// How the text tower picks the token whose state becomes the sentence embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TextPooling {
    /// The first position holding this token id (current transformers).
    EosToken(u32),
    /// The position of the largest token id (transformers' rule for `eos_token_id == 2`).
    ArgmaxId,
}

/// Hyper-parameters of the text tower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    /// Token vocabulary size.
    pub vocab_size: usize,
    /// Residual stream width.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Context length (77 for OpenAI CLIP).
    pub max_position_embeddings: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    /// Id of `<|startoftext|>`.
    pub bos_token_id: u32,
    /// Id of `<|endoftext|>` as the config states it (may be the legacy 2).
    pub eos_token_id: u32,
    /// Id used for padding.
    pub pad_token_id: u32,
}

impl TextConfig {
    /// The pooling rule transformers applies for this config.
    pub fn pooling(&self) -> TextPooling {
        if self.eos_token_id == LEGACY_EOS_TOKEN_ID {
            TextPooling::ArgmaxId
        } else {
            TextPooling::EosToken(self.eos_token_id)
        }
    }
}

/// Hyper-parameters of the vision tower (a ViT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    /// Residual stream width.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Input resolution (square).
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Input channels (3).
    pub num_channels: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
}

impl VisionConfig {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Tokens per image: one class token plus the patches.
    pub fn num_positions(&self) -> usize {
        self.grid() * self.grid() + 1
    }
}

impl ClipConfig {
    /// The image tower's (tokens, MLP width, heads): what sizes its activations.
    pub fn vision_tokens(&self) -> (usize, usize, usize) {
        let v = &self.vision;
        (
            v.num_positions(),
            v.intermediate_size,
            v.num_attention_heads,
        )
    }

    /// The text tower's (context length, MLP width, heads).
    pub fn text_tokens(&self) -> (usize, usize, usize) {
        let t = &self.text;
        (
            t.max_position_embeddings,
            t.intermediate_size,
            t.num_attention_heads,
        )
    }
}

/// A whole CLIP model's hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    /// Text tower.
    pub text: TextConfig,
    /// Vision tower.
    pub vision: VisionConfig,
    /// Width of the shared embedding space.
    pub projection_dim: usize,
    /// Initial value of the learnable log temperature.
    pub logit_scale_init_value: f64,
}

impl ClipConfig {
    /// Parses a Hugging Face `config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let root: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::Config(format!("config.json is not valid JSON: {e}")))?;
        let root = root
            .as_object()
            .ok_or_else(|| Error::Config("config.json must hold a JSON object".into()))?;
        if let Some(t) = root.get("model_type").and_then(Value::as_str)
            && t != "clip"
        {
            return Err(Error::Config(format!(
                "model_type is {t:?}; only \"clip\" checkpoints are supported"
            )));
        }
        let text = merged(root, "text_config")?;
        let vision = merged(root, "vision_config")?;
        let t = Fields {
            map: &text,
            section: "text_config",
        };
        let v = Fields {
            map: &vision,
            section: "vision_config",
        };

        let text = TextConfig {
            vocab_size: t.usize("vocab_size")?,
            hidden_size: t.usize("hidden_size")?,
            intermediate_size: t.usize("intermediate_size")?,
            num_hidden_layers: t.usize("num_hidden_layers")?,
            num_attention_heads: t.usize("num_attention_heads")?,
            max_position_embeddings: t.usize("max_position_embeddings")?,
            hidden_act: t.activation()?,
            layer_norm_eps: t.f64_or("layer_norm_eps", 1e-5)?,
            // transformers' CLIPTextConfig defaults (current versions).
            bos_token_id: t.usize_or("bos_token_id", 49406)? as u32,
            eos_token_id: t.usize_or("eos_token_id", 49407)? as u32,
            pad_token_id: t.usize_or("pad_token_id", 1)? as u32,
        };
        let vision = VisionConfig {
            hidden_size: v.usize("hidden_size")?,
            intermediate_size: v.usize("intermediate_size")?,
            num_hidden_layers: v.usize("num_hidden_layers")?,
            num_attention_heads: v.usize("num_attention_heads")?,
            image_size: v.usize("image_size")?,
            patch_size: v.usize("patch_size")?,
            num_channels: v.usize_or("num_channels", 3)?,
            hidden_act: v.activation()?,
            layer_norm_eps: v.f64_or("layer_norm_eps", 1e-5)?,
        };
        let top = Fields {
            map: root,
            section: "config",
        };
        let projection_dim = match root.get("projection_dim") {
            Some(_) => top.usize("projection_dim")?,
            // Some exports only state it inside the tower configs.
            None => t.usize("projection_dim")?,
        };
        let config = ClipConfig {
            text,
            vision,
            projection_dim,
            logit_scale_init_value: top
                .f64_or("logit_scale_init_value", DEFAULT_LOGIT_SCALE_INIT)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that the numbers describe a model that can exist.
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, msg: String| if ok { Ok(()) } else { Err(Error::Config(msg)) };
        let t = &self.text;
        let v = &self.vision;
        for (name, layers) in [
            ("text_config", t.num_hidden_layers),
            ("vision_config", v.num_hidden_layers),
        ] {
            check(
                layers <= MAX_LAYERS,
                format!(
                    "{name}.num_hidden_layers is {layers}, more than the {MAX_LAYERS} accepted"
                ),
            )?;
        }
        for (name, width, heads) in [
            (
                "text_config",
                self.text.hidden_size,
                self.text.num_attention_heads,
            ),
            (
                "vision_config",
                self.vision.hidden_size,
                self.vision.num_attention_heads,
            ),
        ] {
            check(
                width > 0 && heads > 0 && width.is_multiple_of(heads),
                format!(
                    "{name}.hidden_size ({width}) must be a positive multiple of num_attention_heads ({heads})"
                ),
            )?;
        }
        check(
            v.patch_size > 0
                && v.image_size >= v.patch_size
                && v.image_size.is_multiple_of(v.patch_size),
            format!(
                "vision_config.image_size ({}) must be a multiple of patch_size ({})",
                v.image_size, v.patch_size
            ),
        )?;
        check(
            self.projection_dim > 0,
            "projection_dim must be positive".into(),
        )?;
        check(
            self.text.max_position_embeddings >= 2,
            "text_config.max_position_embeddings must be at least 2 (BOS and EOS)".into(),
        )?;
        Ok(())
    }

    /// The ViT-B/32 shape of OpenAI's `clip-vit-base-patch32` (its hub `config.json`).
    pub fn vit_b_32() -> Self {
        ClipConfig {
            text: TextConfig {
                vocab_size: 49408,
                hidden_size: 512,
                intermediate_size: 2048,
                num_hidden_layers: 12,
                num_attention_heads: 8,
                max_position_embeddings: 77,
                hidden_act: Activation::QuickGelu,
                layer_norm_eps: 1e-5,
                bos_token_id: 49406,
                eos_token_id: 49407,
                pad_token_id: 1,
            },
            vision: VisionConfig {
                hidden_size: 768,
                intermediate_size: 3072,
                num_hidden_layers: 12,
                num_attention_heads: 12,
                image_size: 224,
                patch_size: 32,
                num_channels: 3,
                hidden_act: Activation::QuickGelu,
                layer_norm_eps: 1e-5,
            },
            projection_dim: 512,
            logit_scale_init_value: DEFAULT_LOGIT_SCALE_INIT,
        }
    }

    /// The ViT-B/16 shape of OpenAI's `clip-vit-base-patch16`: ViT-B/32 with 16-pixel
    /// patches.
    pub fn vit_b_16() -> Self {
        let mut c = Self::vit_b_32();
        c.vision.patch_size = 16;
        c
    }

    /// The ViT-L/14 shape of OpenAI's `clip-vit-large-patch14` (its hub `config.json`).
    pub fn vit_l_14() -> Self {
        let mut c = Self::vit_b_32();
        c.text.hidden_size = 768;
        c.text.intermediate_size = 3072;
        c.text.num_attention_heads = 12;
        c.vision.hidden_size = 1024;
        c.vision.intermediate_size = 4096;
        c.vision.num_hidden_layers = 24;
        c.vision.num_attention_heads = 16;
        c.vision.patch_size = 14;
        c.projection_dim = 768;
        c
    }

    /// A real architecture by name: `vit-b-32`, `vit-b-16` or `vit-l-14`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "vit-b-32" => Ok(Self::vit_b_32()),
            "vit-b-16" => Ok(Self::vit_b_16()),
            "vit-l-14" => Ok(Self::vit_l_14()),
            other => Err(Error::Invalid(format!(
                "unknown preset {other:?} (vit-b-32, vit-b-16 or vit-l-14)"
            ))),
        }
    }

    /// Serialises to the current Hugging Face `config.json` layout.
    pub fn to_hf_json(&self) -> Value {
        let t = &self.text;
        let v = &self.vision;
        serde_json::json!({
            "architectures": ["CLIPModel"],
            "model_type": "clip",
            "projection_dim": self.projection_dim,
            "logit_scale_init_value": self.logit_scale_init_value,
            "text_config": {
                "vocab_size": t.vocab_size, "hidden_size": t.hidden_size,
                "intermediate_size": t.intermediate_size, "num_hidden_layers": t.num_hidden_layers,
                "num_attention_heads": t.num_attention_heads,
                "max_position_embeddings": t.max_position_embeddings,
                "hidden_act": t.hidden_act.hf_name(), "layer_norm_eps": t.layer_norm_eps,
                "bos_token_id": t.bos_token_id, "eos_token_id": t.eos_token_id,
                "pad_token_id": t.pad_token_id, "projection_dim": self.projection_dim,
            },
            "vision_config": {
                "hidden_size": v.hidden_size, "intermediate_size": v.intermediate_size,
                "num_hidden_layers": v.num_hidden_layers, "num_attention_heads": v.num_attention_heads,
                "image_size": v.image_size, "patch_size": v.patch_size, "num_channels": v.num_channels,
                "hidden_act": v.hidden_act.hf_name(), "layer_norm_eps": v.layer_norm_eps,
                "projection_dim": self.projection_dim,
            },
        })
    }
}

/// `<name>` overlaid with `<name>_dict` (the transformers-4.x override), as one object.
fn merged(root: &Map<String, Value>, name: &str) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    let dict_name = format!("{name}_dict");
    let mut found = false;
    for key in [name, dict_name.as_str()] {
        match root.get(key) {
            Some(Value::Object(m)) => {
                found = true;
                out.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            Some(Value::Null) | None => {}
            Some(_) => return Err(Error::Config(format!("{key} must be a JSON object"))),
        }
    }
    if !found {
        return Err(Error::Config(format!("{name} is missing")));
    }
    Ok(out)
}

struct Fields<'a> {
    map: &'a Map<String, Value>,
    section: &'a str,
}

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn usize(&self, key: &str) -> Result<usize> {
        match self.get(key) {
            None => Err(Error::Config(format!("{}.{key} is missing", self.section))),
            Some(v) => {
                let x = v.as_u64().ok_or_else(|| {
                    Error::Config(format!(
                        "{}.{key} must be a non-negative integer, found {v}",
                        self.section
                    ))
                })?;
                // Checked, not `as`: on wasm32 a usize is 32 bits and 2^32 + 16 would wrap to 16.
                match usize::try_from(x) {
                    Ok(x) if x <= MAX_CONFIG_SIZE => Ok(x),
                    _ => Err(Error::Config(format!(
                        "{}.{key} is {x}, more than the {MAX_CONFIG_SIZE} any CLIP could use",
                        self.section
                    ))),
                }
            }
        }
    }

    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.get(key).is_some() {
            self.usize(key)
        } else {
            Ok(default)
        }
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| {
                Error::Config(format!(
                    "{}.{key} must be a number, found {v}",
                    self.section
                ))
            }),
        }
    }

    fn activation(&self) -> Result<Activation> {
        let field = format!("{}.hidden_act", self.section);
        match self.get("hidden_act") {
            // transformers' default for both towers.
            None => Ok(Activation::QuickGelu),
            Some(Value::String(s)) => Activation::parse(s, &field),
            Some(v) => Err(Error::Config(format!(
                "{field} must be a string, found {v}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_hf_json() {
        let c = ClipConfig::vit_b_32();
        let json = serde_json::to_vec(&c.to_hf_json()).unwrap();
        assert_eq!(ClipConfig::from_json(&json).unwrap(), c);
    }

    #[test]
    fn legacy_dicts_override_and_pool_by_argmax() {
        let json = br#"{"model_type":"clip","projection_dim":16,
            "text_config":{"hidden_size":512,"intermediate_size":2048,"num_attention_heads":8,
                "num_hidden_layers":12,"vocab_size":49408,"max_position_embeddings":77,"eos_token_id":2},
            "text_config_dict":{"hidden_size":16,"intermediate_size":32,"num_attention_heads":2,"num_hidden_layers":2},
            "vision_config":{"hidden_size":768},
            "vision_config_dict":{"hidden_size":32,"intermediate_size":64,"num_attention_heads":2,
                "num_hidden_layers":2,"image_size":32,"patch_size":8}}"#;
        let c = ClipConfig::from_json(json).unwrap();
        assert_eq!(c.text.hidden_size, 16);
        assert_eq!(c.vision.hidden_size, 32);
        assert_eq!(c.text.pooling(), TextPooling::ArgmaxId);
        assert_eq!(c.vision.num_positions(), 17);
    }

    #[test]
    fn missing_field_is_named() {
        let mut v = ClipConfig::vit_b_32().to_hf_json();
        v["vision_config"]
            .as_object_mut()
            .unwrap()
            .remove("patch_size");
        let err = ClipConfig::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config: vision_config.patch_size is missing"
        );
    }

    #[test]
    fn impossible_shapes_are_refused() {
        let mut v = ClipConfig::vit_b_32().to_hf_json();
        v["text_config"]["num_attention_heads"] = 7.into();
        assert!(ClipConfig::from_json(&serde_json::to_vec(&v).unwrap()).is_err());
        assert!(ClipConfig::from_json(b"{not json").is_err());
        assert!(ClipConfig::from_json(b"[]").is_err());
    }
}
