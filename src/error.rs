//! The one error type of the library: every failure a user can cause (bad files, bad
//! inputs, bad configs) becomes a variant with a message that names the culprit.

use thiserror::Error;

/// Errors returned by monoscope's library code.
#[derive(Debug, Error)]
pub enum Error {
    /// `config.json` is not valid JSON, misses a field, or describes an impossible model.
    #[error("config: {}", one_line(.0))]
    Config(String),
    /// The safetensors file is unreadable, truncated, or does not match the config.
    #[error("weights: {}", one_line(.0))]
    Weights(String),
    /// `tokenizer.json` cannot be loaded, or a prompt cannot be encoded.
    #[error("tokenizer: {}", one_line(.0))]
    Tokenizer(String),
    /// An image cannot be decoded, is too large, or has an unusable shape.
    #[error("image: {}", one_line(.0))]
    Image(String),
    /// A file could not be read or written.
    #[error("{}: {}", one_line(path), one_line(&source.to_string()))]
    Io {
        /// The file concerned.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A tensor could not be read back from the device.
    #[error("device: {}", one_line(.0))]
    Device(String),
    /// Anything else the user asked for that cannot be done (bad option values, ...).
    #[error("{}", one_line(.0))]
    Invalid(String),
}

/// The longest message an error carries, in characters. Parsers quote the input they
/// choke on (serde_json quotes a whole string literal), and a hostile file can make that
/// megabytes long; the CLI prints messages and the page shows them in its status line.
pub const MAX_MESSAGE_CHARS: usize = 1200;

/// `text` as one line (newlines of underlying errors become spaces) of at most
/// [`MAX_MESSAGE_CHARS`] characters.
pub fn one_line(text: &str) -> String {
    let flat: String = text
        .trim_end()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let count = flat.chars().count();
    if count <= MAX_MESSAGE_CHARS {
        return flat;
    }
    let kept: String = flat.chars().take(MAX_MESSAGE_CHARS).collect();
    format!("{kept}... ({} more characters)", count - MAX_MESSAGE_CHARS)
}

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
