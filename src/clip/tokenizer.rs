//! Prompt -> token ids with a Hugging Face `tokenizer.json`.
//!
//! The tokenizer's own post-processor adds the start and end tokens; we then truncate to
//! the model's context the way open_clip and transformers both do: keep the first
//! `context - 1` ids and end with the end-of-text token.

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// Parses `tokenizer.json`, checking what the tokenizers crate panics or stalls on instead
/// of returning an error (found by `tests/fuzz.rs`; a panic aborts the page's engine, where
/// panics cannot be caught): a file that is not valid JSON (its decoder section is parsed
/// with `expect`), a `TemplateProcessing` post-processor whose template names a special
/// token it does not define (indexed without a check when a prompt is encoded), and huge
/// added tokens.
fn check_json(json: &[u8]) -> Result<serde_json::Value> {
    let root: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| Error::Tokenizer(format!("tokenizer.json is not valid JSON: {e}")))?;
    // An added token of a megabyte made loading run for minutes (tests/fuzz.rs): the
    // tokenizers crate matches added tokens against every prompt.
    for token in root["added_tokens"].as_array().into_iter().flatten() {
        let len = token["content"].as_str().map_or(0, str::len);
        if len > MAX_ADDED_TOKEN_BYTES {
            return Err(Error::Tokenizer(format!(
                "tokenizer.json: an added token is {len} bytes long, more than the {MAX_ADDED_TOKEN_BYTES} accepted"
            )));
        }
    }
    check_templates(&root["post_processor"])?;
    Ok(root)
}

/// The longest added (special) token accepted, in bytes; real ones are short markers
/// like `<|endoftext|>`.
const MAX_ADDED_TOKEN_BYTES: usize = 1024;

fn check_templates(p: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    if let Some(list) = p["processors"].as_array() {
        return list.iter().try_for_each(check_templates);
    }
    if p["type"] != "TemplateProcessing" {
        return Ok(());
    }
    let defined = p["special_tokens"].as_object();
    for part in ["single", "pair"] {
        for piece in p[part].as_array().into_iter().flatten() {
            if let Some(id) = piece.get("SpecialToken").map(|t| &t["id"]) {
                let known = match (id, defined) {
                    (Value::String(id), Some(d)) => d.contains_key(id),
                    _ => false,
                };
                if !known {
                    return Err(Error::Tokenizer(format!(
                        "tokenizer.json: the post_processor's {part} template uses the special token {id}, which its special_tokens do not define"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Runs a call into the tokenizers crate, turning a panic into an error natively (in the
/// page, panics abort; [`check_json`] keeps the known ones from happening).
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let why = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Error::Tokenizer(format!(
            "tokenizer.json is malformed (the tokenizer failed: {why})"
        ))
    })
}

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
        // Parsed once: the checked JSON value is what the tokenizer is built from.
        let root = check_json(json)?;
        let inner = guarded(|| serde_json::from_value::<Tokenizer>(root))?
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json cannot be loaded: {e}")))?;
        // The end token is what the post-processor appends to an empty prompt.
        let empty = guarded(|| inner.encode("", true))?
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
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
        let enc = guarded(|| self.inner.encode(text, true))?
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
