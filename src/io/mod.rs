//! File formats.

pub mod dictionary;
pub mod weights;
