//! monoscope: CLIP and sparse feature dictionaries in burn, natively and in the browser.
//!
//! Layers, bottom to top; a module uses only its own files and layers below it
//! (`tests/layers.rs` checks this, the README's Architecture section draws it):
//!
//! 0. [`error`]: the error type.
//! 1. [`base`]: host read-back, the seeded sampler, paired embeddings and the centring
//!    rule, crash-safe writes.
//! 2. [`clip`] (the model, tokenizer, preprocessing), [`dict`] (dictionary models) and
//!    [`analysis`] (MDS, classes, metrics): they know nothing of each other.
//! 3. [`io`]: checkpoint, dictionary, embeddings, pairs-list and bundle formats.
//! 4. [`pipeline`] (model files -> embeddings) and [`inspect`] (bundle -> activations).
//! 5. [`train`] (native): Adam, the checkpoint format, dictionary training.
//! 6. [`jobs`] (native: extract, analyze, report), [`world`] (the demo world) and
//!    [`apps`] (probe, attack, control).
//! 7. [`lab`] (the one API both edges use) and [`bench`] (native).
//!
//! Edges: the CLI (`src/bin/monoscope/`) and the wasm boundary (`web`) convert arguments
//! and results and are the only places that choose a concrete backend.

pub mod analysis;
pub mod apps;
pub mod base;
pub mod clip;
pub mod dict;
pub mod error;
pub mod inspect;
pub mod io;
pub mod jobs;
pub mod lab;
pub mod pipeline;
pub mod train;
pub mod world;

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;

#[cfg(target_arch = "wasm32")]
mod web;

#[cfg(not(target_arch = "wasm32"))]
pub use base::fs::{checkpoint_dir, read_file, write_atomic, write_dir_atomic};
pub use error::{Error, Result};
pub use lab::Lab;
pub use pipeline::{Embedder, ModelFiles, ModelInfo};
