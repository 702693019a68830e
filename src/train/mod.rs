//! Training machinery (native only): Adam/AdamW with checkpointable moments ([`optim`]),
//! the one checkpoint format every trainer writes ([`checkpoint`]), dictionary training
//! ([`dict`]: the trainer; [`losses`]: every kind's loss; [`align`]: the split kind's
//! matching; [`sparse`]: the TopK step without autodiff; [`relu`]: the ReLU and JumpReLU step without autodiff). The demo world's CLIP trainer (`world::train`) uses the same
//! optimiser and checkpoints.

pub mod align;
#[cfg(not(target_arch = "wasm32"))]
pub mod checkpoint;
pub mod dict;
mod host;
#[cfg(not(target_arch = "wasm32"))]
pub mod job;
pub mod losses;
pub mod optim;
pub mod relu;
pub mod sparse;

pub use optim::{Adam, checked_loss};
