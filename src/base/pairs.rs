//! Paired embeddings on the host, and the one centring rule every job shares.
//!
//! Centring (SPEC §2 `center`): subtract each modality's mean embedding, so the gap
//! between the image and text clouds does not split shared concepts into two features.
//! The means are measured once, on the pairs a dictionary is trained and analysed on,
//! stored in the bundle (`manifest.dataset.modality_means`) and reused for every later
//! input: `train --center`, `analyze --center`, the page, the applications and
//! `world-factors` all go through [`ModalityMeans`].

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which tower an embedding came from (centring subtracts that modality's mean).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modality {
    /// Image tower.
    Image,
    /// Text tower.
    Text,
}

/// Image and text embeddings of the same `n` pairs, row-major `[n, d]` each.
#[derive(Debug, Clone)]
pub struct Pairs {
    /// Image embeddings, `[n, d]`.
    pub images: Vec<f32>,
    /// Text embeddings, `[n, d]`.
    pub texts: Vec<f32>,
    /// Number of pairs.
    pub n: usize,
    /// Embedding width.
    pub d: usize,
}

/// The mean image and text embeddings of a data set: the centring that a dictionary
/// trained with `--center` expects on every input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModalityMeans {
    /// Mean image embedding, `[d]`.
    #[serde(deserialize_with = "numbers")]
    pub image: Vec<f32>,
    /// Mean text embedding, `[d]`.
    #[serde(deserialize_with = "numbers")]
    pub text: Vec<f32>,
}

/// A list of numbers, with an error that says so (the means come from hand-editable JSON).
fn numbers<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<f32>, D::Error> {
    Vec::<f32>::deserialize(d).map_err(|_| {
        serde::de::Error::custom("modality_means.image and .text must be a list of numbers")
    })
}

impl ModalityMeans {
    /// Embedding width.
    pub fn d(&self) -> usize {
        self.image.len()
    }

    /// The mean of one modality.
    pub fn of(&self, modality: Modality) -> &[f32] {
        match modality {
            Modality::Image => &self.image,
            Modality::Text => &self.text,
        }
    }

    /// Checks both means against the width a dictionary reads (`what` names the source
    /// in the error).
    pub fn check(&self, d: usize, what: &str) -> Result<()> {
        for (name, v) in [("image", &self.image), ("text", &self.text)] {
            if v.len() != d {
                return Err(Error::Invalid(format!(
                    "{what}.{name} has {} values; the dictionary expects {d}",
                    v.len()
                )));
            }
        }
        Ok(())
    }

    /// Subtracts the modality's mean from every row of a row-major `[rows, d]` buffer.
    pub fn subtract(&self, flat: &mut [f32], modality: Modality) {
        let mean = self.of(modality);
        for row in flat.chunks_mut(mean.len().max(1)) {
            row.iter_mut().zip(mean).for_each(|(x, m)| *x -= m);
        }
    }
}

impl Pairs {
    /// Wraps two `[n, d]` buffers of equal shape.
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

    /// Mean image and text embeddings.
    pub fn modality_means(&self) -> ModalityMeans {
        let mean = |v: &[f32]| {
            let mut m = vec![0f32; self.d];
            for row in v.chunks(self.d) {
                for (a, b) in m.iter_mut().zip(row) {
                    *a += b / self.n as f32;
                }
            }
            m
        };
        ModalityMeans {
            image: mean(&self.images),
            text: mean(&self.texts),
        }
    }

    /// A copy with `means` subtracted from each modality.
    pub fn centered_with(&self, means: &ModalityMeans) -> Pairs {
        let mut out = self.clone();
        means.subtract(&mut out.images, Modality::Image);
        means.subtract(&mut out.texts, Modality::Text);
        out
    }

    /// A copy centred with its own means (what training and analysis do with `--center`).
    pub fn centered(&self) -> Pairs {
        self.centered_with(&self.modality_means())
    }

    /// The rows `idx` of one modality as a `[idx.len(), d]` tensor.
    pub fn rows(&self, image: bool, idx: &[usize], device: &Device) -> Tensor<2> {
        let src = if image { &self.images } else { &self.texts };
        let mut out = Vec::with_capacity(idx.len() * self.d);
        for &i in idx {
            out.extend_from_slice(&src[i * self.d..(i + 1) * self.d]);
        }
        Tensor::from_data(TensorData::new(out, [idx.len(), self.d]), device)
    }
}
