//! Prompt -> token ids with a Hugging Face `tokenizer.json`.
//!
//! The tokenizer's own post-processor adds the start and end tokens; we then truncate to
//! the model's context the way open_clip and transformers both do: keep the first
//! `context - 1` ids and end with the end-of-text token.

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// Ids for one prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Start token, content, end token; at most `context` long.
    pub ids: Vec<u32>,
    /// Whether content was cut to fit the context.
    pub truncated: bool,
}

/// A CLIP tokenizer.
pub struct ClipTokenizer {
    inner: Tokenizer,
    context: usize,
    eos: u32,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("context", &self.context)
            .field("eos", &self.eos)
            .finish()
    }
}

impl ClipTokenizer {
    /// Loads `tokenizer.json` bytes; `context` is the text tower's position count.
    pub fn from_bytes(json: &[u8], context: usize) -> Result<Self> {
        let inner = Tokenizer::from_bytes(json)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json cannot be loaded: {e}")))?;
        // The end token is what the post-processor appends to an empty prompt.
        let empty = inner
            .encode("", true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let ids = empty.get_ids();
        if ids.len() < 2 {
            return Err(Error::Tokenizer(
                "tokenizer.json adds no start/end tokens (its post_processor is missing)".into(),
            ));
        }
        Ok(Self {
            eos: ids[ids.len() - 1],
            inner,
            context,
        })
    }

    /// The end-of-text id.
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// Encodes one prompt, truncating to the context.
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Tokenizer(format!("cannot encode {text:?}: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        let truncated = ids.len() > self.context;
        if truncated {
            ids.truncate(self.context);
            ids[self.context - 1] = self.eos;
        }
        Ok(Encoded { ids, truncated })
    }
}
