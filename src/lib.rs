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
#[cfg(not(target_arch = "wasm32"))]
pub mod optim;
pub mod pipeline;
pub mod world;

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;

#[cfg(target_arch = "wasm32")]
mod web;

pub use error::{Error, Result};
pub use pipeline::{Embedder, ModelFiles, ModelInfo};

/// Writes a file through a temporary sibling and a rename, so readers (and a resumed
/// job) never see half a file.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads a whole file, with the path in the error.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}
