//! Modality-specific control of a prompt's or an image's embedding, with the demo
//! decoder's before / after images when one is loaded.

use burn::tensor::{Tensor, TensorData};
use serde::Serialize;

use super::Lab;
use crate::apps::control::{Scales, edit};
use crate::base::Modality;
use crate::base::host::host_vec;
use crate::error::Result;
use crate::world::decoder::{ImageDecoder, planar_to_rgba};

/// What to edit.
#[derive(Debug, Clone)]
pub enum ControlInput {
    /// A prompt (its text embedding).
    Prompt(String),
    /// A preprocessed image (its image embedding, e.g. for unCLIP decoders).
    Pixels(Vec<f32>),
}

/// Images the demo decoder draws from the original and the edited embedding.
#[derive(Debug, Clone, Serialize)]
pub struct DecodedPair {
    /// Side in pixels.
    pub side: usize,
    /// RGBA of the original embedding's image.
    pub before: Vec<u8>,
    /// RGBA of the edited embedding's image.
    pub after: Vec<u8>,
}

/// An edit and what it changed.
#[derive(Debug, Clone, Serialize)]
pub struct ControlReport {
    /// Which tower the edited embedding belongs to.
    #[serde(skip)]
    pub modality: Modality,
    /// The original embedding.
    pub original: Vec<f32>,
    /// The edited embedding (L2-normalised).
    pub embedding: Vec<f32>,
    /// Activations before the edit.
    pub before: Vec<f32>,
    /// Activations after the edit.
    pub after: Vec<f32>,
    /// With a demo decoder loaded: its images of both embeddings.
    pub decoded: Option<DecodedPair>,
}

impl ControlReport {
    /// Active features whose activation the edit changed.
    pub fn changed_features(&self) -> usize {
        self.before
            .iter()
            .zip(&self.after)
            .filter(|(a, b)| a != b)
            .count()
    }
}

impl Lab {
    /// Scales the input's features by class (and single features) and returns the edited
    /// embedding. Needs an SAE bundle.
    pub async fn control(&self, input: ControlInput, scales: &Scales) -> Result<ControlReport> {
        let lens = self.lens_with_decoder()?;
        let (x, modality) = match input {
            ControlInput::Prompt(p) => {
                (self.embed_prompts(&[p]).await?.0.remove(0), Modality::Text)
            }
            ControlInput::Pixels(px) => {
                (self.embed_pixels(&[px]).await?.remove(0), Modality::Image)
            }
        };
        let z = lens
            .activations(std::slice::from_ref(&x), modality)?
            .remove(0);
        let e = edit(lens.decoder()?, &x, &z, modality, scales)?;
        let decoded = match self.decoder() {
            Some(dec) => Some(DecodedPair {
                side: dec.side(),
                before: decode_rgba(&dec, &x)?,
                after: decode_rgba(&dec, &e.embedding)?,
            }),
            None => None,
        };
        Ok(ControlReport {
            modality,
            original: x,
            embedding: e.embedding,
            before: e.before,
            after: e.after,
            decoded,
        })
    }
}

/// The demo decoder's image of one embedding, as RGBA (on the decoder's own device).
fn decode_rgba(dec: &ImageDecoder, v: &[f32]) -> Result<Vec<u8>> {
    let dev = dec.fc1.weight.device();
    let t = Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, v.len()]), &dev);
    Ok(planar_to_rgba(&host_vec(dec.forward(t))?, dec.side()))
}

/// PNG file bytes of an RGBA buffer of `side` x `side` pixels.
#[cfg(not(target_arch = "wasm32"))]
pub fn png_bytes(rgba: Vec<u8>, side: usize) -> Result<Vec<u8>> {
    let img = image::RgbaImage::from_raw(side as u32, side as u32, rgba)
        .ok_or_else(|| crate::error::Error::Invalid("image buffer size".into()))?;
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| crate::error::Error::Image(e.to_string()))?;
    Ok(png.into_inner())
}
