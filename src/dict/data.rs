//! Paired embeddings on the host and the deterministic sampler used with them.

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Paired embeddings held on the host: row i of `images` belongs with row i of `texts`.
#[derive(Debug, Clone)]
pub struct Pairs {
    /// [n * d], row-major.
    pub images: Vec<f32>,
    /// [n * d], row-major.
    pub texts: Vec<f32>,
    /// Rows.
    pub n: usize,
    /// Width.
    pub d: usize,
}

impl Pairs {
    /// Checks sizes.
    pub fn new(images: Vec<f32>, texts: Vec<f32>, d: usize) -> Result<Self> {
        if d == 0
            || images.len() != texts.len()
            || !images.len().is_multiple_of(d)
            || images.is_empty()
        {
            return Err(Error::Invalid(
                "paired embeddings must be two non-empty [n, d] matrices of equal shape".into(),
            ));
        }
        Ok(Self {
            n: images.len() / d,
            images,
            texts,
            d,
        })
    }

    /// Mean image embedding and mean text embedding.
    pub fn modality_means(&self) -> (Vec<f32>, Vec<f32>) {
        let mean = |v: &[f32]| {
            let mut m = vec![0f32; self.d];
            for row in v.chunks(self.d) {
                for (a, b) in m.iter_mut().zip(row) {
                    *a += b / self.n as f32;
                }
            }
            m
        };
        (mean(&self.images), mean(&self.texts))
    }

    /// The pairs with each modality's mean subtracted (SPEC §2 option `center`: removes
    /// the modality gap offset).
    pub fn centered(&self) -> Pairs {
        let (mi, mt) = self.modality_means();
        let sub = |v: &[f32], m: &[f32]| {
            v.chunks(self.d)
                .flat_map(|r| r.iter().zip(m).map(|(a, b)| a - b))
                .collect()
        };
        Pairs {
            images: sub(&self.images, &mi),
            texts: sub(&self.texts, &mt),
            n: self.n,
            d: self.d,
        }
    }

    /// Rows `idx` of one modality as a [idx.len(), d] tensor.
    pub fn rows(&self, image: bool, idx: &[usize], device: &Device) -> Tensor<2> {
        let src = if image { &self.images } else { &self.texts };
        let mut out = Vec::with_capacity(idx.len() * self.d);
        for &i in idx {
            out.extend_from_slice(&src[i * self.d..(i + 1) * self.d]);
        }
        Tensor::from_data(TensorData::new(out, [idx.len(), self.d]), device)
    }
}

/// SplitMix64: a tiny deterministic generator for batch sampling (state fits a checkpoint).
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

    /// Uniform index below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
