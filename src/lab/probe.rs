//! The attribute / bias probe from encoded images sorted into groups.

use serde::Serialize;

use super::Lab;
use crate::apps::probe::{Group, ProbeConfig, ProbeReport, probe};
use crate::base::Modality;
use crate::error::{Error, Result};

/// Images per forward pass when the probe embeds its groups.
pub const PROBE_CHUNK: usize = 16;

/// Images sorted into the probe's groups; unreadable ones are kept as skipped notes.
#[derive(Debug, Clone, Default)]
pub struct ProbeGroups {
    names: Vec<String>,
    pixels: Vec<Vec<Vec<f32>>>,
    skipped: Vec<String>,
}

impl ProbeGroups {
    /// Empty groups with these names (group i should match prompt i).
    pub fn new(names: Vec<String>) -> Self {
        Self {
            pixels: vec![Vec::new(); names.len()],
            names,
            skipped: Vec::new(),
        }
    }

    /// Adds an image (`label` names it in the skipped list) to group `group`: its
    /// preprocessed pixels, or why it could not be read.
    pub fn add(&mut self, group: usize, label: &str, pixels: Result<Vec<f32>>) -> Result<()> {
        let Some(g) = self.pixels.get_mut(group) else {
            return Err(Error::Invalid(format!(
                "{label}: group {group} does not exist"
            )));
        };
        match pixels {
            Ok(p) => g.push(p),
            Err(e) => self.skipped.push(format!("{label}: skipped: {e}")),
        }
        Ok(())
    }

    /// The images that could not be read, as `LABEL: skipped: reason` lines.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Readable images in all groups.
    pub fn total(&self) -> usize {
        self.pixels.iter().map(Vec::len).sum()
    }
}

/// The probe's report and the images it skipped.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeOutcome {
    /// Accuracies and movers per group.
    #[serde(flatten)]
    pub report: ProbeReport,
    /// `LABEL: skipped: reason` per unreadable image.
    pub skipped: Vec<String>,
}

impl Lab {
    /// Runs the probe: `prompts[i]` is what group i should be classified as.
    /// `progress(done, total)` after each forward pass. Needs an SAE bundle.
    pub async fn probe(
        &self,
        prompts: &[String],
        groups: ProbeGroups,
        config: &ProbeConfig,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<ProbeOutcome> {
        if prompts.len() != groups.names.len() || prompts.len() < 2 {
            return Err(Error::Invalid(format!(
                "the probe needs one prompt per group, at least two ({} groups, {} prompts)",
                groups.names.len(),
                prompts.len()
            )));
        }
        let lens = self.lens_with_decoder()?; // fail before the work
        let (t, _) = self.embed_prompts(prompts).await?;
        let total = groups.total();
        let mut done = 0;
        let mut gs = Vec::new();
        for (gi, (name, px)) in groups.names.iter().zip(&groups.pixels).enumerate() {
            if px.is_empty() {
                return Err(Error::Invalid(format!("{name}: no readable images")));
            }
            let mut emb = Vec::new();
            for chunk in px.chunks(PROBE_CHUNK) {
                emb.extend(self.embed_pixels(chunk).await?);
                done += chunk.len();
                progress(done, total);
            }
            let activations = lens.activations(&emb, Modality::Image)?;
            gs.push(Group {
                name: name.clone(),
                expected: gi,
                embeddings: emb,
                activations,
            });
        }
        let report = probe(lens.decoder()?, prompts, &t, &gs, config)?;
        Ok(ProbeOutcome {
            report,
            skipped: groups.skipped,
        })
    }
}
