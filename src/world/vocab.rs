//! A word-level `tokenizer.json` for the demo world, loaded by the same code path as a
//! hub CLIP tokenizer ([`crate::clip::tokenizer::ClipTokenizer`]).
//!
//! Ids: `[PAD]` 0, `[UNK]` 1, the words (sorted) from 2, then `[BOS]` and `[EOS]` last,
//! so that, as in OpenAI's vocabulary, the end token has the largest id (both pooling
//! rules then agree). The normaliser lowercases; the pre-tokeniser splits words from
//! punctuation (`Whitespace`); the post-processor wraps every prompt in `[BOS] ... [EOS]`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::scene::generate;

/// Words of all typo-free captions of the first `scenes` scenes of a world, split the way
/// the `Whitespace` pre-tokeniser splits (letter/digit runs, other non-space runs).
pub fn caption_words(seed: u64, scenes: u64) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    for i in 0..scenes {
        for (text, style) in generate(seed, i, 8, 4).captions {
            if style.typo {
                continue;
            }
            words.extend(split(&text.to_lowercase()));
        }
    }
    words
}

fn split(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_word = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let is_word = c.is_alphanumeric() || c == '_';
        if !cur.is_empty() && is_word != cur_word {
            out.push(std::mem::take(&mut cur));
        }
        cur_word = is_word;
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The `tokenizer.json` document for a word list.
pub fn tokenizer_json(words: &BTreeSet<String>) -> Value {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[PAD]".into(), 0.into());
    vocab.insert("[UNK]".into(), 1.into());
    for (i, w) in words.iter().enumerate() {
        vocab.insert(w.clone(), (i + 2).into());
    }
    let bos = words.len() + 2;
    let eos = bos + 1;
    vocab.insert("[BOS]".into(), bos.into());
    vocab.insert("[EOS]".into(), eos.into());
    let special = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
               "normalized": false, "special": true})
    };
    let tok = |t: &str| json!({"SpecialToken": {"id": t, "type_id": 0}});
    let seq = |s: &str| json!({"Sequence": {"id": s, "type_id": 0}});
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "[PAD]"), special(1, "[UNK]"), special(bos, "[BOS]"), special(eos, "[EOS]")],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [tok("[BOS]"), seq("A"), tok("[EOS]")],
            "pair": [tok("[BOS]"), seq("A"), tok("[EOS]"), seq("B"), tok("[EOS]")],
            "special_tokens": {
                "[BOS]": {"id": "[BOS]", "ids": [bos], "tokens": ["[BOS]"]},
                "[EOS]": {"id": "[EOS]", "ids": [eos], "tokens": ["[EOS]"]}
            }
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_whitespace_pre_tokenizer() {
        assert_eq!(
            split("three objects: a red box"),
            vec!["three", "objects", ":", "a", "red", "box"]
        );
    }
}
