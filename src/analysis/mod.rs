//! Analyses of dictionary features: modality dominance ([`mds`]) and interpretability
//! and quality metrics ([`metrics`]).

pub mod analyze;
pub mod mds;
pub mod metrics;
#[cfg(not(target_arch = "wasm32"))]
pub mod report;
