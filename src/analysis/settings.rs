//! The settings of an analysis (SPEC §2-§3), as `analyze` takes them and the bundle's
//! manifest records them.

use serde::{Deserialize, Serialize};

use super::mds::{self, ClassRule};

/// Settings of an analysis.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalyzeConfig {
    /// Class rule.
    pub rule: ClassRule,
    /// Features supported by fewer pairs are rare.
    pub min_support: u64,
    /// Activation floor for MDS support.
    pub eps: f64,
    /// Samples per feature and modality for EmbSim and top examples (SPEC §3: 20).
    pub top_m: usize,
    /// Labels per feature (SPEC §3: 5).
    pub labels: usize,
    /// Subtract each modality's mean embedding before the dictionary (SPEC §2 `center`).
    pub center: bool,
    /// Pairs per batch.
    pub batch: usize,
    /// Seed of the random-direction baseline.
    pub seed: u64,
}

impl Default for AnalyzeConfig {
    fn default() -> Self {
        Self {
            rule: ClassRule::Zscore,
            min_support: mds::DEFAULT_MIN_SUPPORT,
            eps: mds::DEFAULT_EPS,
            top_m: 20,
            labels: 5,
            center: false,
            batch: 1024,
            seed: 0,
        }
    }
}
