//! Modality-specific control (SPEC §4.3): edit a prompt's embedding by scaling the
//! features of one class (or single features), keep the reconstruction residual, and hand
//! the edited embedding to a generator conditioned on CLIP embeddings (exported as
//! safetensors and `.npy`; the demo world ships a small decoder to images).

use serde::{Deserialize, Serialize};

use super::{HostDecoder, normalize};
use crate::error::{Error, Result};
use crate::inspect::Modality;

/// Scale per feature class, plus single-feature overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scales {
    /// Factor for ImgD, TextD, CrossD, Rare features (in that order).
    pub class: [f32; 4],
    /// (feature, factor) overrides, applied after the class factors.
    #[serde(default)]
    pub features: Vec<(usize, f32)>,
}

impl Default for Scales {
    fn default() -> Self {
        Self {
            class: [1.0; 4],
            features: Vec::new(),
        }
    }
}

/// Parses a single-feature scale `ID=SCALE` (e.g. `12=0` switches feature 12 off).
pub fn parse_feature_scale(s: &str) -> Result<(usize, f32)> {
    let (id, scale) = s
        .split_once('=')
        .ok_or_else(|| Error::Invalid(format!("{s:?}: expected ID=SCALE")))?;
    let id = id
        .trim()
        .parse()
        .map_err(|_| Error::Invalid(format!("{s:?}: bad id")))?;
    let scale: f32 = scale
        .trim()
        .parse()
        .map_err(|_| Error::Invalid(format!("{s:?}: bad scale")))?;
    if !scale.is_finite() {
        return Err(Error::Invalid(format!("{s:?}: bad scale")));
    }
    Ok((id, scale))
}

/// An edited embedding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Edit {
    /// The edited embedding, L2-normalised like CLIP's own (what generators expect).
    pub embedding: Vec<f32>,
    /// Activations before the edit.
    pub before: Vec<f32>,
    /// Activations after the edit.
    pub after: Vec<f32>,
    /// Norm of the reconstruction residual that was kept (centred space).
    pub residual_norm: f32,
}

/// Edits an embedding of `modality` (normally a prompt's) whose activations are `z`:
/// x' = normalise(W_dec (s * z) + b_dec + (x_c - x_hat_c) + mean). With all scales 1 this
/// returns `x` itself (up to rounding).
pub fn edit(
    decoder: &HostDecoder,
    x: &[f32],
    z: &[f32],
    modality: Modality,
    scales: &Scales,
) -> Result<Edit> {
    if x.len() != decoder.d() || z.len() != decoder.classes.len() {
        return Err(Error::Invalid(format!(
            "edit needs a {}-d embedding and {} activations",
            decoder.d(),
            decoder.classes.len()
        )));
    }
    if let Some((k, _)) = scales
        .features
        .iter()
        .find(|(k, _)| *k >= decoder.classes.len())
    {
        return Err(Error::Invalid(format!(
            "feature {k} does not exist (the dictionary has {})",
            decoder.classes.len()
        )));
    }
    if scales
        .class
        .iter()
        .chain(scales.features.iter().map(|(_, s)| s))
        .any(|s| !s.is_finite())
    {
        return Err(Error::Invalid("scales must be finite numbers".into()));
    }
    let mean = decoder.mean(modality);
    let x_c: Vec<f32> = x.iter().zip(&mean).map(|(a, m)| a - m).collect();
    let x_hat = decoder.decode_centered(z, |_| true);
    let residual: Vec<f32> = x_c.iter().zip(&x_hat).map(|(a, b)| a - b).collect();
    let mut after: Vec<f32> = z
        .iter()
        .zip(&decoder.classes)
        .map(|(v, c)| v * scales.class[c.index()])
        .collect();
    for &(k, s) in &scales.features {
        after[k] = z[k] * s;
    }
    let edited: Vec<f32> = decoder
        .decode_centered(&after, |_| true)
        .iter()
        .zip(&residual)
        .zip(&mean)
        .map(|((d, r), m)| d + r + m)
        .collect();
    Ok(Edit {
        embedding: normalize(edited),
        before: z.to_vec(),
        after,
        residual_norm: residual.iter().map(|r| r * r).sum::<f32>().sqrt(),
    })
}

/// A `.npy` (format 1.0) file holding a little-endian f32 array of `shape`.
pub fn npy_bytes(values: &[f32], shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' must be a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// A safetensors file with one f32 tensor `embedding` of `shape` and string metadata.
pub fn safetensors_bytes(
    values: &[f32],
    shape: &[usize],
    metadata: std::collections::HashMap<String, String>,
) -> Result<Vec<u8>> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), &bytes)
            .map_err(|e| Error::Invalid(e.to_string()))?;
    safetensors::tensor::serialize([("embedding", view)], Some(metadata))
        .map_err(|e| Error::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_parsable() {
        let b = npy_bytes(&[1.0, 2.0], &[1, 2]);
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(header.contains("'shape': (1, 2)"), "{header}");
        assert_eq!(b.len(), 10 + hlen + 8);
        assert_eq!(&b[10 + hlen..10 + hlen + 4], &1f32.to_le_bytes());
    }
}
