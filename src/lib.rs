//! monoscope: CLIP and sparse feature dictionaries in burn, natively and in the browser.
//!
//! Layers (see the README's architecture section): [`clip`] (the model, tokenizer,
//! preprocessing) and [`io`] (checkpoint formats) at the bottom, [`pipeline`] on top;
//! the CLI (`src/bin/monoscope.rs`) and the wasm boundary (`web`) are the only places
//! that choose a concrete backend.

pub mod analysis;
pub mod apps;
pub mod clip;
pub mod dict;
pub mod error;
pub mod inspect;
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

/// Writes a directory of files as one unit (checkpoints): into `DIR.tmp`, then the old
/// `DIR` is moved to `DIR.old`, the new one renamed into place and the old one removed.
/// A crash leaves either `DIR` or `DIR.old` complete; [`checkpoint_dir`] finds it.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_dir_atomic(dir: &std::path::Path, files: &[(&str, Vec<u8>)]) -> Result<()> {
    let io = |p: &std::path::Path| {
        let p = p.display().to_string();
        move |source| Error::Io {
            path: p.clone(),
            source,
        }
    };
    let tmp = dir.with_extension("tmp");
    let old = dir.with_extension("old");
    std::fs::remove_dir_all(&tmp).ok();
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    for (name, bytes) in files {
        std::fs::write(tmp.join(name), bytes).map_err(io(&tmp))?;
    }
    std::fs::remove_dir_all(&old).ok();
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    std::fs::remove_dir_all(&old).ok();
    Ok(())
}

/// The complete copy of a directory written by [`write_dir_atomic`]: `DIR`, or `DIR.old`
/// when a crash came between its two renames.
#[cfg(not(target_arch = "wasm32"))]
pub fn checkpoint_dir(dir: &std::path::Path) -> std::path::PathBuf {
    if dir.exists() {
        dir.to_path_buf()
    } else {
        dir.with_extension("old")
    }
}

/// Reads a whole file, with the path in the error.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}
