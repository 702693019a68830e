//! The one error type of the library: every failure a user can cause (bad files, bad
//! inputs, bad configs) becomes a variant with a message that names the culprit.

use thiserror::Error;

/// Errors returned by monoscope's library code.
#[derive(Debug, Error)]
pub enum Error {
    /// `config.json` is not valid JSON, misses a field, or describes an impossible model.
    #[error("config: {0}")]
    Config(String),
    /// The safetensors file is unreadable, truncated, or does not match the config.
    #[error("weights: {0}")]
    Weights(String),
    /// `tokenizer.json` cannot be loaded, or a prompt cannot be encoded.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An image cannot be decoded, is too large, or has an unusable shape.
    #[error("image: {0}")]
    Image(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A tensor could not be read back from the device.
    #[error("device: {0}")]
    Device(String),
    /// Anything else the user asked for that cannot be done (bad option values, ...).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
