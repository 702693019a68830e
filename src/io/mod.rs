//! File formats.

pub mod bundle;
pub mod dictionary;
pub mod embeddings;
pub mod pairs;
pub mod weights;
