//! The main job (ARCHITECTURE's data flow, after the embedding): a result bundle's
//! dictionary turned into a [`Lens`] that maps embeddings to feature activations with the
//! bundle's own preprocessing (centering), plus occlusion heatmaps for image features.
//! Backend-agnostic: callers choose the devices (the browser runs the lens on the CPU
//! backend, the CLI and tests wherever they like).

use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use crate::analysis::mds::{FeatureClass, Thresholds};
pub use crate::base::Modality;
use crate::base::ModalityMeans;
use crate::base::host::host_rows;
use crate::dict::{DictKind, Dictionary};
use crate::error::{Error, Result};
use crate::io::bundle::{Bundle, from_bytes_parts};

/// A loaded bundle ready to explain new embeddings.
#[derive(Debug)]
pub struct Lens {
    /// The dictionary.
    pub dictionary: Dictionary,
    /// Class per feature, from `features.json`.
    pub classes: Vec<FeatureClass>,
    /// Thresholds that produced the classes.
    pub thresholds: Thresholds,
    /// ImgD, TextD, CrossD, Rare counts.
    pub class_counts: [usize; 4],
    /// Image and text mean embeddings, when the analysis was centred (`analyze --center`).
    pub means: Option<ModalityMeans>,
    /// FNV-1a 64 hash of the CLIP weights the bundle was made with, if recorded.
    pub model_hash: Option<String>,
    /// The decoder on the host (SAEs only), copied once when the bundle is loaded.
    decoder: Option<HostDecoder>,
    kind: DictKind,
    d: usize,
    device: Device,
}

/// What the web page shows about a loaded bundle.
#[derive(Debug, Clone, Serialize)]
pub struct LensSummary {
    /// Number of features K.
    pub features: usize,
    /// Embedding width the dictionary expects.
    pub d: usize,
    /// Dictionary family.
    pub kind: DictKind,
    /// ImgD, TextD, CrossD, Rare counts.
    pub class_counts: [usize; 4],
    /// The class rule and its thresholds.
    pub thresholds: Thresholds,
    /// Whether inputs are centred with the stored modality means.
    pub center: bool,
    /// Hash of the CLIP weights the bundle was made with.
    pub model_hash: Option<String>,
    /// Whether that hash equals the loaded model's (None when either is unknown).
    pub model_matches: Option<bool>,
    /// Whether both modalities share one decoder the applications can reconstruct with
    /// (every SAE but split; NCL heads have no decoder).
    pub has_decoder: bool,
}

impl Lens {
    /// Builds a lens from a loaded bundle (the dictionary stays on its device).
    pub fn new(bundle: Bundle, device: &Device) -> Result<Self> {
        let m = &bundle.manifest;
        let d = m.dictionary.config.d;
        let means = m.centring()?;
        let model_hash = m.model.hash_fnv1a64.clone();
        let classes = bundle.classes();
        let decoder = match &bundle.dictionary {
            Dictionary::Sae(sae) => Some(HostDecoder::new(sae, means.clone(), classes.clone(), d)?),
            Dictionary::Ncl(_) | Dictionary::Split(_) => None,
        };
        Ok(Self {
            decoder,
            classes,
            thresholds: m.thresholds,
            class_counts: m.class_counts,
            means,
            model_hash,
            kind: m.dictionary.config.kind,
            d,
            dictionary: bundle.dictionary,
            device: device.clone(),
        })
    }

    /// Parses the three bundle files (`manifest.json`, `features.json`,
    /// `dictionary.safetensors`) onto `device`.
    pub fn from_bytes(
        manifest: &[u8],
        features: &[u8],
        weights: &[u8],
        device: &Device,
    ) -> Result<Self> {
        Self::new(
            from_bytes_parts(manifest, features, weights, device)?,
            device,
        )
    }

    /// Loads a bundle directory.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(dir: &std::path::Path, device: &Device) -> Result<Self> {
        Self::new(crate::io::bundle::load(dir, device)?, device)
    }

    /// The decoder on the host, for reconstructions with features switched off (the
    /// applications); NCL heads have none.
    pub fn decoder(&self) -> Result<&HostDecoder> {
        self.decoder.as_ref().ok_or_else(|| {
            Error::Invalid(
                "this needs a dictionary whose modalities share one decoder (an SAE of any kind but split); NCL heads have no decoder and split dictionaries one per modality"
                    .into(),
            )
        })
    }

    /// Embedding width the dictionary expects.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Number of features K.
    pub fn features(&self) -> usize {
        self.classes.len()
    }

    /// The device the dictionary lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Refuses a model whose embedding width differs from the dictionary's.
    pub fn check_model(&self, projection_dim: usize) -> Result<()> {
        if projection_dim != self.d {
            return Err(Error::Invalid(format!(
                "the bundle's dictionary reads {}-d embeddings but the model makes {projection_dim}-d ones: load the bundle made for this model",
                self.d
            )));
        }
        Ok(())
    }

    /// Summary for display; `model_hash` is the loaded model's hash when known.
    pub fn summary(&self, model_hash: Option<&str>) -> LensSummary {
        LensSummary {
            features: self.features(),
            d: self.d,
            kind: self.kind,
            class_counts: self.class_counts,
            thresholds: self.thresholds,
            center: self.means.is_some(),
            model_hash: self.model_hash.clone(),
            model_matches: match (&self.model_hash, model_hash) {
                (Some(a), Some(b)) => Some(a == b),
                _ => None,
            },
            has_decoder: self.decoder.is_some(),
        }
    }

    /// Embeddings as the dictionary sees them: a [rows, d] tensor on the lens's device,
    /// minus the modality's mean when the bundle was centred.
    pub fn prepare(&self, rows: &[Vec<f32>], modality: Modality) -> Result<Tensor<2>> {
        if let Some(bad) = rows.iter().find(|r| r.len() != self.d) {
            return Err(Error::Invalid(format!(
                "embedding of width {}; the dictionary expects {}",
                bad.len(),
                self.d
            )));
        }
        let mut flat: Vec<f32> = rows.concat();
        if let Some(means) = &self.means {
            means.subtract(&mut flat, modality);
        }
        Ok(Tensor::from_data(
            TensorData::new(flat, [rows.len(), self.d]),
            &self.device,
        ))
    }

    /// Feature activations of embeddings: [rows, d] -> [rows, K], all >= 0.
    pub fn encode(&self, rows: &[Vec<f32>], modality: Modality) -> Result<Tensor<2>> {
        Ok(self
            .dictionary
            .encode(self.prepare(rows, modality)?, modality))
    }

    /// [`Lens::encode`] read back to the host, one `Vec` of K per row. Reads synchronously,
    /// which every CPU backend allows (the browser keeps its lens on the CPU backend).
    pub fn activations(&self, rows: &[Vec<f32>], modality: Modality) -> Result<Vec<Vec<f32>>> {
        host_rows(self.encode(rows, modality)?)
    }
}

/// A dictionary's decoder on the host: W_dec, b_dec and the bundle's centering means.
/// Reconstructions touch only the active features of a sample, so switching classes or
/// single features off costs O(active * d), with no device round trips.
#[derive(Debug, Clone)]
pub struct HostDecoder {
    /// [K, d], row k = decoder direction of feature k.
    w: Vec<f32>,
    b: Vec<f32>,
    means: Option<ModalityMeans>,
    /// Class per feature.
    pub classes: Vec<FeatureClass>,
    d: usize,
}

impl HostDecoder {
    /// Copies an SAE's decoder to the host, with the bundle's means and classes.
    fn new(
        sae: &crate::dict::Sae,
        means: Option<ModalityMeans>,
        classes: Vec<FeatureClass>,
        d: usize,
    ) -> Result<Self> {
        Ok(Self {
            w: host_rows(sae.w_dec.val())?.concat(),
            b: host_rows(sae.b_dec.val().unsqueeze::<2>())?.concat(),
            means,
            classes,
            d,
        })
    }

    /// Embedding width.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Decoder output in the dictionary's (centred) space: b_dec + sum_k keep(k) z_k w_k.
    pub fn decode_centered(&self, z: &[f32], keep: impl Fn(usize) -> bool) -> Vec<f32> {
        let mut x = self.b.clone();
        for (k, &zk) in z.iter().enumerate() {
            if zk != 0.0 && keep(k) {
                let row = &self.w[k * self.d..(k + 1) * self.d];
                x.iter_mut().zip(row).for_each(|(a, w)| *a += zk * w);
            }
        }
        x
    }

    /// The modality's mean (zeros when the bundle is not centred).
    pub fn mean(&self, modality: Modality) -> Vec<f32> {
        match &self.means {
            Some(m) => m.of(modality).to_vec(),
            None => vec![0.0; self.d],
        }
    }

    /// Reconstruction in CLIP's space (the mean added back), keeping features `keep`.
    pub fn reconstruct(
        &self,
        z: &[f32],
        modality: Modality,
        keep: impl Fn(usize) -> bool,
    ) -> Vec<f32> {
        let mut x = self.decode_centered(z, keep);
        x.iter_mut()
            .zip(self.mean(modality))
            .for_each(|(a, m)| *a += m);
        x
    }
}

/// Occlusion inputs for a patch heatmap: the preprocessed image (`channels x size x size`,
/// normalised) with one `patch x patch` cell of CLIP's patch grid set to 0, i.e. to the
/// preprocessing mean colour ("greyed out"), once per cell, row-major.
/// Returns (grid rows, grid cols, one pixel buffer per cell).
///
/// Why occlusion rather than reading patch tokens: the dictionary reads the pooled,
/// projected embedding, and patch tokens never pass through that path in training, so
/// their "activations" have no defined meaning; the change of the real embedding when a
/// patch is hidden does (Zeiler & Fergus 2014).
pub fn occlusions(
    pixels: &[f32],
    channels: usize,
    size: usize,
    patch: usize,
) -> Result<(usize, usize, Vec<Vec<f32>>)> {
    if pixels.len() != channels * size * size || patch == 0 || !size.is_multiple_of(patch) {
        return Err(Error::Invalid(format!(
            "occlusion needs a {channels}x{size}x{size} image and a patch size dividing {size}"
        )));
    }
    let grid = size / patch;
    let mut out = Vec::with_capacity(grid * grid);
    for gy in 0..grid {
        for gx in 0..grid {
            let mut p = pixels.to_vec();
            for c in 0..channels {
                for y in gy * patch..(gy + 1) * patch {
                    let start = (c * size + y) * size + gx * patch;
                    p[start..start + patch].fill(0.0);
                }
            }
            out.push(p);
        }
    }
    Ok((grid, grid, out))
}

/// Heatmap values from the activations of the original image (`base`, K values) and of
/// its occluded copies (one row of K per cell): `drops[p * K + k] = base[k] - occ[p][k]`.
pub fn occlusion_drops(base: &[f32], occluded: &[Vec<f32>]) -> Vec<f32> {
    occluded
        .iter()
        .flat_map(|row| base.iter().zip(row).map(|(b, o)| b - o))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occlusion_hides_exactly_one_cell() {
        let (c, s, p) = (3, 4, 2);
        let pixels: Vec<f32> = (0..c * s * s).map(|i| i as f32 + 1.0).collect();
        let (rows, cols, occ) = occlusions(&pixels, c, s, p).unwrap();
        assert_eq!((rows, cols, occ.len()), (2, 2, 4));
        // Cell 1 = grid row 0, col 1: x in 2..4, y in 0..2, all channels.
        for ch in 0..c {
            for y in 0..s {
                for x in 0..s {
                    let i = (ch * s + y) * s + x;
                    let hidden = y < 2 && x >= 2;
                    assert_eq!(occ[1][i] == 0.0, hidden, "c{ch} y{y} x{x}");
                }
            }
        }
        assert!(occlusions(&pixels, c, s, 3).is_err());
        assert!(occlusions(&pixels[1..], c, s, 2).is_err());
    }

    #[test]
    fn drops_are_base_minus_occluded() {
        let d = occlusion_drops(&[1.0, 2.0], &[vec![0.5, 2.0], vec![1.0, 3.0]]);
        assert_eq!(d, vec![0.5, 0.0, 0.0, -1.0]);
    }
}
