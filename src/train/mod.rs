//! Training machinery (native only): Adam/AdamW with checkpointable moments ([`optim`]),
//! the one checkpoint format every trainer writes ([`checkpoint`]) and dictionary
//! training ([`dict`]). The demo world's CLIP trainer (`world::train`) uses the same
//! optimiser and checkpoints.

#[cfg(not(target_arch = "wasm32"))]
pub mod checkpoint;
pub mod dict;
#[cfg(not(target_arch = "wasm32"))]
pub mod job;
pub mod optim;

pub use optim::{Adam, checked_loss};
