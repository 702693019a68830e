//! The deterministic sampler every seeded job uses (batches, scenes, baselines, bootstrap).

use serde::{Deserialize, Serialize};

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast and good enough for sampling; its
/// state is one `u64`, so it is checkpointed exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish index in `0..n` (modulo bias is negligible for n << 2^64).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
