//! File formats.

pub mod bundle;
pub mod captions;
pub mod dictionary;
pub mod embeddings;
pub mod weights;
