//! Cross-modal adversarial examples, step by step so a caller can show progress and stop
//! between steps: [`Lab::attack_begin`] -> [`AttackRun::step`] until
//! [`AttackRun::done`] -> [`AttackRun::finish`].

use std::rc::Rc;

use burn::tensor::Tensor;
use serde::Serialize;

use super::Lab;
use crate::apps::attack::{
    AttackConfig, AttackSummary, ImageOutcome, Pgd, nearest_wrong, outcome, perturbation_norms,
    summarize,
};
use crate::base::Modality;
use crate::base::host::{cosine, host_vec_async};
use crate::error::{Error, Result};
use crate::inspect::Lens;

/// Which label an attack aims at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Per image, the most similar label other than its clean prediction.
    Nearest,
    /// The label with this index.
    Label(usize),
}

impl Target {
    /// "nearest" or one of `labels`.
    pub fn parse(s: &str, labels: &[String]) -> Result<Self> {
        if s == "nearest" {
            return Ok(Target::Nearest);
        }
        labels
            .iter()
            .position(|l| l == s)
            .map(Target::Label)
            .ok_or_else(|| Error::Invalid(format!("target {s:?} is not one of the labels")))
    }
}

/// An attack in progress on a batch of images.
pub struct AttackRun {
    pgd: Pgd,
    lens: Rc<Lens>,
    labels: Vec<String>,
    label_rows: Vec<Vec<f32>>,
    clean: Vec<Vec<f32>>,
    targets: Vec<usize>,
    config: AttackConfig,
}

/// The objective of one step, still on the device.
pub struct PendingObjective(Tensor<1>);

impl PendingObjective {
    /// Reads it back (the mean objective over the batch before the step).
    pub async fn read(self) -> Result<f32> {
        Ok(host_vec_async(self.0)
            .await?
            .first()
            .copied()
            .unwrap_or(f32::NAN))
    }
}

/// Clean, adversarial and difference images of one attacked image: `[3, side, side]`
/// planes in 0..1 (the difference amplified to fill 0..1 around mid-grey).
#[derive(Debug, Clone)]
pub struct AttackImages {
    /// The preprocessed clean image.
    pub clean: Vec<f32>,
    /// The adversarial image.
    pub adversarial: Vec<f32>,
    /// 0.5 + (adversarial - clean) * 0.5 / eps.
    pub difference: Vec<f32>,
}

/// What an attack did to each image of its batch.
#[derive(Debug, Clone)]
pub struct AttackResult {
    /// The labels, in index order.
    pub labels: Vec<String>,
    /// Per image.
    pub outcomes: Vec<ImageOutcome>,
    /// Per image: cosine of the clean and of the adversarial embedding to the target.
    pub target_similarity: Vec<(f32, f32)>,
    /// Per image.
    pub images: Vec<AttackImages>,
    /// Side of the images in pixels.
    pub side: usize,
    /// Summary of this batch.
    pub summary: AttackSummary,
}

/// One image's report as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// The outcome with labels spelled out.
    #[serde(flatten)]
    pub outcome: serde_json::Value,
    /// The labels.
    pub labels: Vec<String>,
    /// Mean |activation change| per feature of each class (ImgD, TextD, CrossD, Rare).
    pub class_shift_per_feature: [f64; 4],
    /// Cosine of the clean embedding to the target label.
    pub clean_similarity: f32,
    /// Cosine of the adversarial embedding to the target label.
    pub adversarial_similarity: f32,
}

impl AttackResult {
    /// The report of image `i`.
    pub fn image_report(&self, i: usize) -> ImageReport {
        ImageReport {
            outcome: self.outcomes[i].describe(&self.labels),
            labels: self.labels.clone(),
            class_shift_per_feature: self.summary.class_shift_per_feature,
            clean_similarity: self.target_similarity[i].0,
            adversarial_similarity: self.target_similarity[i].1,
        }
    }
}

impl Lab {
    /// Starts a PGD attack on preprocessed images toward `target` among `labels`; runs on
    /// the model's device. Needs an SAE bundle (the report reconstructs embeddings).
    pub async fn attack_begin(
        &self,
        pixels: &[Vec<f32>],
        labels: &[String],
        target: Target,
        config: AttackConfig,
    ) -> Result<AttackRun> {
        config.validate()?;
        if labels.len() < 2 {
            return Err(Error::Invalid(
                "the attack needs at least two labels".into(),
            ));
        }
        let lens = self.lens_with_decoder()?; // fail before the work
        let (t, _) = self.embed_prompts(labels).await?;
        let clean = self.embed_pixels(pixels).await?;
        let targets: Vec<usize> = clean
            .iter()
            .map(|x| match target {
                Target::Label(i) if i < t.len() => Ok(i),
                Target::Label(i) => Err(Error::Invalid(format!("target {i} is not a label index"))),
                Target::Nearest => Ok(nearest_wrong(x, &t)),
            })
            .collect::<Result<_>>()?;
        let target_rows: Vec<Vec<f32>> = targets.iter().map(|&j| t[j].clone()).collect();
        let e = &self.embedder;
        let pgd = Pgd::new(
            &e.model,
            &e.processor,
            pixels,
            &target_rows,
            Some(&lens),
            config,
            e.device(),
        )?
        .with_labels(&vec![t.clone(); pixels.len()], &targets)?;
        Ok(AttackRun {
            pgd,
            lens,
            labels: labels.to_vec(),
            label_rows: t,
            clean,
            targets,
            config,
        })
    }
}

impl AttackRun {
    /// Steps done.
    pub fn steps_done(&self) -> usize {
        self.pgd.step
    }

    /// Steps in total.
    pub fn steps_total(&self) -> usize {
        self.config.steps
    }

    /// Whether all steps are done.
    pub fn done(&self) -> bool {
        self.pgd.done()
    }

    /// Images in the batch.
    pub fn len(&self) -> usize {
        self.clean.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.clean.is_empty()
    }

    /// One PGD step.
    pub fn step(&mut self) -> PendingObjective {
        PendingObjective(self.pgd.step())
    }

    /// Evaluates the attack: outcomes, images and the batch's summary.
    pub async fn finish(self, lab: &Lab) -> Result<AttackResult> {
        let (c, a) = self.pgd.images();
        let (c01, a01) = (host_vec_async(c).await?, host_vec_async(a).await?);
        let n = self.clean.len();
        let norms = perturbation_norms(&c01, &a01, n);
        let adv = lab
            .embed_pixels_tensor(self.pgd.adversarial_pixels())
            .await?;
        let zc = self.lens.activations(&self.clean, Modality::Image)?;
        let za = self.lens.activations(&adv, Modality::Image)?;
        let decoder = self.lens.decoder()?;
        let mut outcomes = Vec::with_capacity(n);
        let mut target_similarity = Vec::with_capacity(n);
        for i in 0..n {
            outcomes.push(outcome(
                decoder,
                &self.label_rows,
                self.targets[i],
                (&self.clean[i], &zc[i]),
                (&adv[i], &za[i]),
                norms[i].0,
                norms[i].1,
            ));
            let target = &self.label_rows[self.targets[i]];
            target_similarity.push((cosine(&self.clean[i], target), cosine(&adv[i], target)));
        }
        let per = c01.len() / n.max(1);
        let amp = 0.5 / self.config.eps;
        let images = c01
            .chunks(per)
            .zip(a01.chunks(per))
            .map(|(c, a)| AttackImages {
                clean: c.to_vec(),
                adversarial: a.to_vec(),
                difference: c.iter().zip(a).map(|(x, y)| 0.5 + (y - x) * amp).collect(),
            })
            .collect();
        let summary = summarize(self.config, &outcomes, &self.lens.classes);
        Ok(AttackResult {
            labels: self.labels,
            outcomes,
            target_similarity,
            images,
            side: lab.embedder.config.vision.image_size,
            summary,
        })
    }
}
