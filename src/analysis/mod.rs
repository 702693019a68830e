//! Analyses of dictionary features: modality dominance ([`mds`]) and interpretability
//! and quality metrics ([`metrics`]).

pub mod mds;
pub mod metrics;
