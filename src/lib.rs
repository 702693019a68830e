//! monoscope: CLIP and sparse feature dictionaries in burn, natively and in the browser.
//!
//! Layers (see the README's architecture section): [`clip`] (the model, tokenizer,
//! preprocessing) and [`io`] (checkpoint formats) at the bottom, [`pipeline`] on top;
//! the CLI (`src/bin/monoscope.rs`) and the wasm boundary (`web`) are the only places
//! that choose a concrete backend.

pub mod analysis;
pub mod clip;
pub mod dict;
pub mod error;
pub mod io;
pub mod pipeline;

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;

#[cfg(target_arch = "wasm32")]
mod web;

pub use error::{Error, Result};
pub use pipeline::{Embedder, ModelFiles, ModelInfo};

/// Reads a whole file, with the path in the error.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}
