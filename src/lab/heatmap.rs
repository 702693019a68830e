//! Occlusion heatmaps of an image for every feature (see [`crate::inspect::occlusions`]).

use serde::Serialize;

use super::Lab;
use crate::base::Modality;
use crate::error::{Error, Result};
use crate::inspect::{occlusion_drops, occlusions};

/// Images per forward pass: small enough that the caller gets progress often, large
/// enough to keep a GPU busy.
pub const HEATMAP_CHUNK: usize = 8;

/// A heatmap over CLIP's patch grid.
#[derive(Debug, Clone, Serialize)]
pub struct Heatmap {
    /// Grid rows.
    pub rows: usize,
    /// Grid columns.
    pub cols: usize,
    /// `drops[p * K + k]`: activation k of the image minus that with patch p (row-major)
    /// greyed out.
    pub drops: Vec<f32>,
}

impl Lab {
    /// The occlusion heatmap of an encoded image; `progress(done, total)` after every
    /// forward pass. Needs a bundle.
    pub async fn heatmap(
        &self,
        bytes: &[u8],
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Heatmap> {
        self.lens()?; // fail before the work
        let v = &self.embedder.config.vision;
        let pixels = self.preprocess(bytes)?;
        let (rows, cols, occluded) =
            occlusions(&pixels, v.num_channels, v.image_size, v.patch_size)?;
        let mut inputs = vec![pixels];
        inputs.extend(occluded);
        let total = inputs.len();
        let mut embeds = Vec::with_capacity(total);
        for chunk in inputs.chunks(HEATMAP_CHUNK) {
            embeds.extend(self.embed_pixels(chunk).await?);
            progress(embeds.len(), total);
        }
        let acts = self
            .activations(&embeds, Modality::Image)?
            .ok_or_else(|| Error::Invalid("the bundle was unloaded during the heatmap".into()))?;
        Ok(Heatmap {
            rows,
            cols,
            drops: occlusion_drops(&acts[0], &acts[1..]),
        })
    }
}
