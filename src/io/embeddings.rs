//! Paired embedding files (`monoscope extract` output, `train` / `analyze` input):
//! safetensors with `image_embeds` [n, d] and `text_embeds` [n, d] (f32, L2-normalised,
//! row i of both from line `lines[i]` of the pairs file) and, in the safetensors
//! metadata, `monoscope` = JSON [`EmbeddingsMeta`].

use std::collections::HashMap;

use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde::{Deserialize, Serialize};

use crate::base::Pairs;
use crate::error::{Error, Result};
use crate::io::weights::Checkpoint;

/// Metadata key holding [`EmbeddingsMeta`].
pub const META_KEY: &str = "monoscope";

/// Where each row came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsMeta {
    /// The CLIP model directory used.
    pub model: String,
    /// The pairs file.
    pub pairs: String,
    /// Line number (1-based) of each row.
    pub lines: Vec<usize>,
    /// Image path of each row, as written in the pairs file.
    pub images: Vec<String>,
    /// Caption of each row.
    pub captions: Vec<String>,
    /// Lines skipped, with the reason.
    pub skipped: Vec<(usize, String)>,
    /// Ground truth per row, when the pairs come from the demo world (factors and the
    /// caption's text-only choices).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truth: Vec<serde_json::Value>,
    /// `[I, N, batch]` when this file holds shard I of N of the set (`extract --shard I/N`
    /// with that `--batch`); a merged or single-process file has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<[usize; 3]>,
}

/// Embeddings plus their provenance.
#[derive(Debug, Clone)]
pub struct EmbeddingsFile {
    /// The paired rows.
    pub pairs: Pairs,
    /// Provenance.
    pub meta: EmbeddingsMeta,
}

impl EmbeddingsFile {
    /// Serialises to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let raw = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let (img, txt) = (raw(&self.pairs.images), raw(&self.pairs.texts));
        let shape = vec![self.pairs.n, self.pairs.d];
        let view = |b| {
            TensorView::new(Dtype::F32, shape.clone(), b).map_err(|e| Error::Invalid(e.to_string()))
        };
        let meta = serde_json::to_string(&self.meta).map_err(|e| Error::Invalid(e.to_string()))?;
        let info: HashMap<String, String> = [(META_KEY.to_string(), meta)].into();
        safetensors::serialize(
            vec![("image_embeds", view(&img)?), ("text_embeds", view(&txt)?)],
            Some(info),
        )
        .map_err(|e| Error::Invalid(e.to_string()))
    }

    /// Parses safetensors bytes written by [`EmbeddingsFile::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::parse(bytes).map_err(|e| Error::Invalid(format!("embeddings file: {e}")))
    }

    fn parse(bytes: &[u8]) -> Result<Self> {
        let ckpt = Checkpoint::parse(bytes)?;
        let (img, si) = ckpt.f32("image_embeds")?;
        let (txt, st) = ckpt.f32("text_embeds")?;
        if si.len() != 2 || si != st {
            return Err(Error::Invalid(format!(
                "image_embeds {si:?} and text_embeds {st:?} must both be [n, d]"
            )));
        }
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::Weights(e.to_string()))?;
        let meta = match header.metadata().as_ref().and_then(|m| m.get(META_KEY)) {
            Some(s) => {
                serde_json::from_str(s).map_err(|e| Error::Invalid(format!("its metadata: {e}")))?
            }
            None => EmbeddingsMeta::default(),
        };
        Ok(Self {
            pairs: Pairs::new(img, txt, si[1])?,
            meta,
        })
    }
}
