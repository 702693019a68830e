//! The text tower: a causal transformer pooled at the end-of-text token
//! (transformers' `CLIPTextTransformer`).

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::blocks::{Encoder, EncoderConfig, MASKED, Pick};
use super::config::{TextConfig, TextPooling};
use super::vision::TowerOutput;
use crate::error::{Error, Result};

/// Token and position embeddings.
#[derive(Module, Debug)]
pub struct TextEmbeddings {
    /// [vocab, width]
    pub token_embedding: Embedding,
    /// [context, width]
    pub position_embedding: Embedding,
}

/// A padded batch of token ids ready for the text tower, built on the host.
#[derive(Debug, Clone)]
pub struct TextBatch {
    /// [batch, tokens], padded to the longest sequence.
    pub ids: Tensor<2, Int>,
    /// [batch]: flat index (row * tokens + position) of each sequence's pooled token.
    pub pool_index: Tensor<1, Int>,
    /// [batch, 1, tokens, tokens]: causal mask plus padding keys, additive.
    pub mask: Tensor<4>,
}

impl TextBatch {
    /// Pads `sequences` (each already holding start and end tokens) into one batch.
    pub fn new(sequences: &[Vec<u32>], config: &TextConfig, device: &Device) -> Result<Self> {
        let b = sequences.len();
        let t = sequences.iter().map(Vec::len).max().unwrap_or(0);
        if b == 0 || t == 0 {
            return Err(Error::Invalid("no tokens to embed".into()));
        }
        if t > config.max_position_embeddings {
            return Err(Error::Tokenizer(format!(
                "a sequence has {t} tokens; the model's context is {}",
                config.max_position_embeddings
            )));
        }
        let mut ids = vec![config.pad_token_id as i64; b * t];
        let mut pool = Vec::with_capacity(b);
        let mut mask = vec![0f32; b * t * t];
        for (row, seq) in sequences.iter().enumerate() {
            if let Some(bad) = seq.iter().find(|&&id| id as usize >= config.vocab_size) {
                return Err(Error::Tokenizer(format!(
                    "token id {bad} is outside the model's vocabulary of {}",
                    config.vocab_size
                )));
            }
            for (i, &id) in seq.iter().enumerate() {
                ids[row * t + i] = id as i64;
            }
            // transformers: argmax over (ids == eos) or over ids; both take the first maximum
            // and fall back to position 0.
            let pos = match config.pooling() {
                TextPooling::EosToken(eos) => seq.iter().position(|&id| id == eos).unwrap_or(0),
                TextPooling::ArgmaxId => first_argmax(seq),
            };
            pool.push((row * t + pos) as i64);
            for q in 0..t {
                for k in 0..t {
                    if k > q || k >= seq.len() {
                        mask[(row * t + q) * t + k] = MASKED;
                    }
                }
            }
        }
        Ok(TextBatch {
            ids: Tensor::from_data(TensorData::new(ids, [b, t]), device),
            pool_index: Tensor::from_data(TensorData::new(pool, [b]), device),
            mask: Tensor::from_data(TensorData::new(mask, [b, 1, t, t]), device),
        })
    }

    /// The sequences `rows` of this batch (still padded to the whole batch's longest).
    pub fn rows(&self, rows: std::ops::Range<usize>) -> TextBatch {
        let [b, t] = self.ids.dims();
        if rows == (0..b) {
            return self.clone();
        }
        // pool_index is flat over [batch, tokens]: shift it to the part's first row.
        let offset = (rows.start * t) as i64;
        TextBatch {
            ids: self.ids.clone().slice(rows.clone()),
            pool_index: self.pool_index.clone().slice(rows.clone()) - offset,
            mask: self.mask.clone().slice(rows),
        }
    }
}

fn first_argmax(seq: &[u32]) -> usize {
    let mut best = 0;
    for (i, &id) in seq.iter().enumerate() {
        if id > seq[best] {
            best = i;
        }
    }
    best
}

/// The text transformer.
#[derive(Module, Debug)]
pub struct TextTransformer {
    /// Token and position embeddings.
    pub embeddings: TextEmbeddings,
    /// Transformer layers (causal).
    pub encoder: Encoder,
    /// LayerNorm applied to every token before pooling.
    pub final_layer_norm: LayerNorm,
}

impl TextConfig {
    /// Creates the tower with fresh (lazily initialised) parameters.
    pub fn init(&self, device: &Device) -> TextTransformer {
        let w = self.hidden_size;
        TextTransformer {
            embeddings: TextEmbeddings {
                token_embedding: EmbeddingConfig::new(self.vocab_size, w)
                    .with_initializer(Initializer::Normal {
                        mean: 0.0,
                        std: 0.02,
                    })
                    .init(device),
                position_embedding: EmbeddingConfig::new(self.max_position_embeddings, w)
                    .with_initializer(Initializer::Normal {
                        mean: 0.0,
                        std: 0.01,
                    })
                    .init(device),
            },
            encoder: EncoderConfig {
                width: w,
                intermediate: self.intermediate_size,
                layers: self.num_hidden_layers,
                heads: self.num_attention_heads,
                act: self.hidden_act,
                eps: self.layer_norm_eps,
            }
            .init(device),
            final_layer_norm: LayerNormConfig::new(w)
                .with_epsilon(self.layer_norm_eps)
                .init(device),
        }
    }
}

impl TextTransformer {
    /// Runs the tower on a padded batch; `pooled` is [batch, width].
    pub fn forward(&self, batch: &TextBatch, keep_states: bool) -> TowerOutput {
        let [b, t] = batch.ids.dims();
        let tokens = self.embeddings.token_embedding.forward(batch.ids.clone()); // [b, t, w]
        let w = tokens.dims()[2];
        let positions = self
            .embeddings
            .position_embedding
            .weight
            .val()
            .narrow(0, 0, t); // [t, w]
        let x = tokens + positions.unsqueeze::<3>();
        let mask = Some(batch.mask.clone());
        if !keep_states {
            // Without the states, the last layer computes the pooled token's row alone.
            let pick = Pick {
                index: batch.pool_index.clone(),
            };
            let x = self.encoder.forward_pooled(x, mask, &pick); // [b, w]
            return TowerOutput {
                pooled: self.final_layer_norm.forward(x),
                hidden_states: Vec::new(),
            };
        }
        let (x, hidden_states) = self.encoder.forward(x, mask, true);
        let x = self.final_layer_norm.forward(x).reshape([b * t, w]);
        TowerOutput {
            pooled: x.select(0, batch.pool_index.clone()),
            hidden_states,
        }
    }
}
