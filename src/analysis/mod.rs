//! Analyses of dictionary features as pure maths on activations: modality dominance and
//! classes ([`mds`]), classes from a dictionary's structure ([`structure`]),
//! interpretability and quality metrics ([`metrics`]) and the settings of an analysis
//! ([`settings`]). The `analyze` job that streams data through a
//! dictionary is in `jobs::analyze`.

pub mod mds;
pub mod metrics;
pub mod settings;
pub mod structure;

pub use settings::AnalyzeConfig;
