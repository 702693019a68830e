//! Shared plumbing under every other layer: host read-back of tensors and host-side
//! vector maths ([`host`]), the seeded sampler ([`rng`]), paired embeddings and the one
//! centring rule ([`pairs`]), host loops over the cores ([`par`]), the k-th largest of a row ([`select`]), crash-safe file writes ([`fs`], native only), the CPU engines
//! ([`engines`]), where their time goes ([`stages`]) and the host GEMM with weights packed once ([`gemm`]). It depends on nothing
//! in the crate but [`crate::error`].

pub mod assignment;
pub mod engines;
#[cfg(not(target_arch = "wasm32"))]
pub mod fs;
pub mod gemm;
pub mod host;
pub mod pairs;
pub mod par;
pub mod rng;
pub mod select;
pub mod stages;

pub use pairs::{Modality, ModalityMeans, Pairs};
pub use rng::SplitMix;
