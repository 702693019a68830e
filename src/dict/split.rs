//! Modality-split dictionaries ("Same Concept, Different Directions", Lee et al. 2026,
//! arXiv 2606.29888): one TopK SAE per modality, trained independently, so each keeps its
//! modality's own atom directions; after training the text SAE's latents are permuted so
//! that text latent j is the one whose activations correlate best with image latent j on
//! paired data (a min-cost assignment, `crate::train::align::align_split`). Feature j of
//! the dictionary is then image latent j on images and text latent j on texts; its MDS
//! and classes are computed as for any dictionary (SPEC §2).
//!
//! Here K is the number of latents per side (the paper splits a total K between the
//! two), so feature ids run over 0..K as for every other kind.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::sae::{Sae, SaeActivation, init as init_sae};
use crate::base::Modality;

/// Two SAEs, one per modality.
#[derive(Module, Debug)]
pub struct SplitSae {
    /// Encodes and reconstructs images.
    pub image: Sae,
    /// Encodes and reconstructs texts; latent j is aligned with image latent j.
    pub text: Sae,
}

/// Two fresh TopK SAEs.
pub fn init(d: usize, features: usize, k: usize, device: &Device) -> SplitSae {
    SplitSae {
        image: init_sae(d, features, SaeActivation::TopK(k), device),
        text: init_sae(d, features, SaeActivation::TopK(k), device),
    }
}

impl SplitSae {
    /// The SAE of a modality.
    pub fn side(&self, modality: Modality) -> &Sae {
        match modality {
            Modality::Image => &self.image,
            Modality::Text => &self.text,
        }
    }

    /// Feature activations of one modality's embeddings. [n, d] -> [n, K]
    pub fn encode(&self, x: Tensor<2>, modality: Modality) -> Tensor<2> {
        self.side(modality).encode(x)
    }

    /// Reconstruction with one modality's decoder. [n, K] -> [n, d]
    pub fn decode(&self, z: Tensor<2>, modality: Modality) -> Tensor<2> {
        self.side(modality).decode(z)
    }

    /// The text SAE with its latents reordered: new latent j is old latent `perm[j]`
    /// (encoder columns, encoder bias, decoder rows).
    pub fn permute_text(mut self, perm: &[usize]) -> Self {
        let device = self.text.w_dec.device();
        let idx = Tensor::<1, Int>::from_data(
            TensorData::new(perm.iter().map(|&p| p as i64).collect(), [perm.len()]),
            &device,
        );
        let mut sae = self.text;
        sae.w_enc = sae.w_enc.map(|w| w.select(1, idx.clone()));
        sae.b_enc = sae.b_enc.map(|b| b.select(0, idx.clone()));
        sae.w_dec = sae.w_dec.map(|w| w.select(0, idx.clone()));
        self.text = sae;
        self
    }
}
