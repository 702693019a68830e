//! File formats.

pub mod weights;
