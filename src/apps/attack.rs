//! Cross-modal adversarial examples and their defense (SPEC §4.2): projected gradient
//! descent on image pixels (L-infinity ball, burn autodiff through the vision tower) that
//! pulls an image's embedding toward a target prompt, on the whole embedding or on one
//! feature class only; then which feature classes moved, and whether zero-shot
//! classification from the reconstruction without ImgD (or TextD) features restores the
//! clean prediction.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{HostDecoder, cosine, zero_shot};
use crate::analysis::mds::FeatureClass;
use crate::base::host::l2_normalize;
use crate::clip::ClipModel;
use crate::clip::preprocess::ImageProcessor;
use crate::dict::Dictionary;
use crate::error::{Error, Result};
use crate::inspect::{Lens, Modality};

/// L-infinity budget in [0, 1] pixel units (SPEC §4.2: 4/255).
pub const DEFAULT_EPS: f32 = 4.0 / 255.0;
/// PGD steps (SPEC §4.2).
pub const DEFAULT_STEPS: usize = 10;
/// Step size as a fraction of eps (SPEC §4.2: eps / 4).
pub const DEFAULT_STEP_FRACTION: f32 = 0.25;

/// What the attack pulls toward the target prompt.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Cosine between the image embedding and the prompt's (with zero-shot labels: the
    /// target's cosine margin over the best other label).
    Embedding,
    /// Cosine between the image's and the prompt's activations of one class only.
    Class(FeatureClass),
}

impl std::str::FromStr for Objective {
    type Err = Error;

    /// "embedding", or a class name ("ImgD", "TextD", "CrossD"; any case).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "embedding" => Ok(Objective::Embedding),
            "imgd" => Ok(Objective::Class(FeatureClass::ImgD)),
            "textd" => Ok(Objective::Class(FeatureClass::TextD)),
            "crossd" => Ok(Objective::Class(FeatureClass::CrossD)),
            _ => Err(Error::Invalid(format!(
                "unknown objective {s:?} (embedding, ImgD, TextD or CrossD)"
            ))),
        }
    }
}

/// PGD settings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct AttackConfig {
    /// L-infinity radius in [0, 1] pixel units.
    pub eps: f32,
    /// Steps.
    pub steps: usize,
    /// Step size (default eps / 4).
    pub step_size: Option<f32>,
    /// What is optimised.
    pub objective: Objective,
}

impl Default for AttackConfig {
    fn default() -> Self {
        Self {
            eps: DEFAULT_EPS,
            steps: DEFAULT_STEPS,
            step_size: None,
            objective: Objective::Embedding,
        }
    }
}

impl AttackConfig {
    /// Checks the numbers.
    pub fn validate(&self) -> Result<()> {
        let alpha = self.alpha();
        if !(self.eps > 0.0 && self.eps <= 1.0) || self.steps == 0 || alpha.is_nan() || alpha <= 0.0
        {
            return Err(Error::Invalid(format!(
                "attack needs 0 < eps <= 1, steps >= 1 and a positive step size (eps {}, steps {}, step {alpha})",
                self.eps, self.steps
            )));
        }
        if self.steps > 10_000 {
            return Err(Error::Invalid("at most 10000 steps".into()));
        }
        Ok(())
    }

    /// The step size.
    pub fn alpha(&self) -> f32 {
        self.step_size.unwrap_or(self.eps * DEFAULT_STEP_FRACTION)
    }
}

/// Parses "4/255" or "0.0157".
pub fn parse_eps(s: &str) -> Result<f32> {
    let bad = || Error::Invalid(format!("{s:?} is not a number or a fraction like 4/255"));
    let v = match s.split_once('/') {
        Some((a, b)) => {
            let (a, b): (f32, f32) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            a / b
        }
        None => s.trim().parse().map_err(|_| bad())?,
    };
    if v.is_finite() { Ok(v) } else { Err(bad()) }
}

/// A running PGD attack on a batch of images.
#[derive(Debug)]
pub struct Pgd {
    model: ClipModel,
    dict: Option<(Dictionary, Tensor<2>, Tensor<2>)>,
    x0: Tensor<4>,
    delta: Tensor<4>,
    target: Tensor<2>,
    mean: Tensor<4>,
    std: Tensor<4>,
    /// Zero-shot prompts per image [n, C, d] and the target's one-hot [n, C]: with these
    /// the embedding objective is the target's cosine margin over the best other prompt.
    contrast: Option<(Tensor<3>, Tensor<2>)>,
    /// Embedding width.
    d: usize,
    config: AttackConfig,
    /// Steps done.
    pub step: usize,
}

/// CLIP's logit scale cap (ln 100, HF `CLIPModel`): zero-shot logits are 100 * cosine.
const LOGIT_SCALE: f32 = 100.0;

fn channel_tensor(v: [f32; 3], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(v.to_vec(), [1, 3, 1, 1]), device)
}

impl Pgd {
    /// Starts an attack. `pixels`: preprocessed images (as [`ImageProcessor::process`]
    /// makes them); `targets`: the target prompt's L2-normalised text embedding per image;
    /// `lens`: needed for a class objective. `device` is a plain device; autodiff is added
    /// here and the model and dictionary are moved onto it (weights shared, not trained).
    pub fn new(
        model: &ClipModel,
        processor: &ImageProcessor,
        pixels: &[Vec<f32>],
        targets: &[Vec<f32>],
        lens: Option<&Lens>,
        config: AttackConfig,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let n = pixels.len();
        if n == 0 || targets.len() != n {
            return Err(Error::Invalid(
                "attack needs one target per image and at least one image".into(),
            ));
        }
        let ad = device.clone().autodiff();
        let size = processor.crop;
        let (mean, std) = (
            channel_tensor(processor.mean, &ad),
            channel_tensor(processor.std, &ad),
        );
        let flat: Vec<f32> = pixels.concat();
        if flat.len() != n * 3 * size * size {
            return Err(Error::Invalid(
                "pixel buffers do not match the model's image size".into(),
            ));
        }
        let p = Tensor::<4>::from_data(TensorData::new(flat, [n, 3, size, size]), &ad);
        // Back to [0, 1] pixels: the budget and the valid range live there.
        let x0 = (p * std.clone() + mean.clone()).clamp(0.0, 1.0).detach();
        let d = targets[0].len();
        let target = Tensor::<2>::from_data(TensorData::new(targets.concat(), [n, d]), &ad);
        let (dict, target) = match config.objective {
            Objective::Embedding => (None, target),
            Objective::Class(class) => {
                let lens = lens.ok_or_else(|| {
                    Error::Invalid("a class objective needs a result bundle".into())
                })?;
                let mask: Vec<f32> = lens
                    .classes
                    .iter()
                    .map(|c| if *c == class { 1.0 } else { 0.0 })
                    .collect();
                let k = mask.len();
                let mask = Tensor::<2>::from_data(TensorData::new(mask, [1, k]), &ad);
                let (mi, mt) = match &lens.means {
                    Some(m) => (m.image.clone(), m.text.clone()),
                    None => (vec![0.0; d], vec![0.0; d]),
                };
                let dict = lens.dictionary.clone().to_device(&ad).no_grad();
                let mi = Tensor::<2>::from_data(TensorData::new(mi, [1, d]), &ad);
                let mt = Tensor::<2>::from_data(TensorData::new(mt, [1, d]), &ad);
                // The target becomes the prompt's activations of that class.
                let zt =
                    l2_normalize(dict.encode(target - mt, Modality::Text) * mask.clone()).detach();
                (Some((dict, mi, mask)), zt)
            }
        };
        Ok(Self {
            model: model.clone().to_device(&ad).no_grad(),
            dict,
            delta: x0.zeros_like().require_grad(),
            x0,
            target,
            mean,
            std,
            contrast: None,
            d,
            config,
            step: 0,
        })
    }

    /// Uses the zero-shot prompts: the embedding objective becomes the margin of the target
    /// prompt over the most similar other prompt of `labels`, cos(e, target) - max cos(e,
    /// other) (per image: its prompts' embeddings; `targets`: the index of the target
    /// among them), which also pushes away from the clean class.
    /// Class objectives are unchanged.
    pub fn with_labels(mut self, labels: &[Vec<Vec<f32>>], targets: &[usize]) -> Result<Self> {
        let n = self.x0.dims()[0];
        let c = labels.first().map_or(0, Vec::len);
        let d = self.d;
        if labels.len() != n || targets.len() != n || c < 2 {
            return Err(Error::Invalid(
                "labels: one set of >= 2 prompts per image".into(),
            ));
        }
        if labels
            .iter()
            .any(|l| l.len() != c || l.iter().any(|v| v.len() != d))
            || targets.iter().any(|t| *t >= c)
        {
            return Err(Error::Invalid(
                "labels: equal-sized prompt sets and targets inside them".into(),
            ));
        }
        let device = self.x0.device();
        let flat: Vec<f32> = labels.iter().flatten().flatten().copied().collect();
        let l = Tensor::<3>::from_data(TensorData::new(flat, [n, c, d]), &device);
        let mut onehot = vec![0f32; n * c];
        for (i, t) in targets.iter().enumerate() {
            onehot[i * c + t] = 1.0;
        }
        let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [n, c]), &device);
        self.contrast = Some((l, onehot));
        Ok(self)
    }

    /// Whether all steps are done.
    pub fn done(&self) -> bool {
        self.step >= self.config.steps
    }

    fn normalised(&self, x: Tensor<4>) -> Tensor<4> {
        (x - self.mean.clone()) / self.std.clone()
    }

    /// Per-image objective (cosine to the target; higher is better for the attacker). [n]
    fn objective(&self, x: Tensor<4>) -> Tensor<1> {
        let e = self.model.embed_images(self.normalised(x)); // [n, d]
        match (&self.dict, &self.contrast) {
            (None, Some((labels, onehot))) => {
                let [n, c, _] = labels.dims();
                let cos = (e.unsqueeze_dim::<3>(1) * labels.clone())
                    .sum_dim(2)
                    .reshape([n, c]); // [n, C]
                let own = (cos.clone() * onehot.clone()).sum_dim(1); // [n, 1]
                let others = cos - onehot.clone() * LOGIT_SCALE; // target pushed out of the max
                (own - others.max_dim(1)).squeeze_dim(1)
            }
            (None, None) => (e * self.target.clone()).sum_dim(1).squeeze_dim(1),
            (Some((dict, mean, mask)), _) => {
                let v = l2_normalize(dict.encode(e - mean.clone(), Modality::Image) * mask.clone());
                (v * self.target.clone()).sum_dim(1).squeeze_dim(1)
            }
        }
    }

    /// One PGD step; returns the mean objective before the step (a [1] tensor, read it
    /// back however the device allows).
    pub fn step(&mut self) -> Tensor<1> {
        let x = self.x0.clone() + self.delta.clone();
        let obj = self.objective(x);
        let mean_obj = obj.clone().mean().detach();
        let grads = obj.sum().backward();
        let g = self
            .delta
            .grad(&grads)
            .map(Tensor::from_inner)
            .unwrap_or_else(|| self.delta.zeros_like().detach());
        let eps = self.config.eps;
        let stepped = self.delta.clone().detach() + g.sign() * self.config.alpha();
        let stepped = stepped.clamp(-eps, eps);
        // Keep x0 + delta a valid image.
        let delta = (self.x0.clone() + stepped).clamp(0.0, 1.0) - self.x0.clone();
        self.delta = delta.detach().require_grad();
        self.step += 1;
        mean_obj
    }

    /// Clean and adversarial images in [0, 1], [n, 3, size, size], without autodiff.
    pub fn images(&self) -> (Tensor<4>, Tensor<4>) {
        let x0 = self.x0.clone().inner();
        let adv = (self.x0.clone() + self.delta.clone()).detach().inner();
        (Tensor::from_inner(x0), Tensor::from_inner(adv))
    }

    /// Adversarial images preprocessed for the model (as `ImageProcessor::process`), for
    /// evaluating them with the plain model.
    pub fn adversarial_pixels(&self) -> Tensor<4> {
        let adv = (self.x0.clone() + self.delta.clone()).detach();
        Tensor::from_inner(self.normalised(adv).inner())
    }
}

/// The outcome for one image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageOutcome {
    /// Zero-shot prediction of the clean image.
    pub clean: usize,
    /// Of the adversarial image.
    pub adversarial: usize,
    /// The target.
    pub target: usize,
    /// adversarial == target (and clean != target).
    pub success: bool,
    /// Largest pixel change (0..1 units).
    pub linf: f32,
    /// L2 norm of the pixel change (0..1 units, all channels).
    pub l2: f32,
    /// Sum of |activation change| per class (ImgD, TextD, CrossD, Rare).
    pub class_shift: [f32; 4],
    /// Prediction from the adversarial image's reconstruction without ImgD, then without
    /// TextD features.
    pub defended: [usize; 2],
    /// Same for the clean image (what the defense costs on clean inputs).
    pub clean_defended: [usize; 2],
}

/// Evaluates one image: embeddings and activations of the clean and adversarial images.
pub fn outcome(
    decoder: &HostDecoder,
    prompts: &[Vec<f32>],
    target: usize,
    clean: (&[f32], &[f32]),
    adv: (&[f32], &[f32]),
    linf: f32,
    l2: f32,
) -> ImageOutcome {
    let (xc, zc) = clean;
    let (xa, za) = adv;
    let pc = zero_shot(xc, prompts);
    let pa = zero_shot(xa, prompts);
    let mut class_shift = [0f32; 4];
    for (k, (a, b)) in za.iter().zip(zc).enumerate() {
        class_shift[decoder.classes[k].index()] += (a - b).abs();
    }
    let without = |z: &[f32], c: FeatureClass| {
        zero_shot(
            &decoder.reconstruct(z, Modality::Image, |k| decoder.classes[k] != c),
            prompts,
        )
    };
    ImageOutcome {
        clean: pc,
        adversarial: pa,
        target,
        success: pa == target && pc != target,
        linf,
        l2,
        class_shift,
        defended: [
            without(za, FeatureClass::ImgD),
            without(za, FeatureClass::TextD),
        ],
        clean_defended: [
            without(zc, FeatureClass::ImgD),
            without(zc, FeatureClass::TextD),
        ],
    }
}

/// The label an attack aims at when none is given: the most similar label other than the
/// clean zero-shot prediction.
pub fn nearest_wrong(x: &[f32], labels: &[Vec<f32>]) -> usize {
    let pred = zero_shot(x, labels);
    (0..labels.len())
        .filter(|&j| j != pred)
        .max_by(|&a, &b| cosine(x, &labels[a]).total_cmp(&cosine(x, &labels[b])))
        .unwrap_or(0)
}

impl ImageOutcome {
    /// The outcome with label indices replaced by the labels (for reports).
    pub fn describe(&self, labels: &[String]) -> serde_json::Value {
        serde_json::json!({
            "clean": labels[self.clean],
            "adversarial": labels[self.adversarial],
            "target": labels[self.target],
            "success": self.success,
            "linf": self.linf,
            "l2": self.l2,
            "class_shift": self.class_shift,
            "defended_without_imgd": labels[self.defended[0]],
            "defended_without_textd": labels[self.defended[1]],
            "restored_without_imgd": self.success && self.defended[0] == self.clean,
            "restored_without_textd": self.success && self.defended[1] == self.clean,
        })
    }
}

/// One row of the defense table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DefenseRow {
    /// The class removed before classification.
    pub removed: FeatureClass,
    /// Successful attacks whose clean prediction the defense restores.
    pub restored: usize,
    /// Successful attacks.
    pub of: usize,
    /// Clean images whose prediction is unchanged by the defense.
    pub clean_kept: usize,
    /// Clean images.
    pub clean_total: usize,
}

/// The attack's summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttackSummary {
    /// Settings.
    pub config: AttackConfig,
    /// Images attacked (clean prediction already the target: not counted).
    pub attacked: usize,
    /// Images skipped because their clean prediction was the target already.
    pub skipped: usize,
    /// Successes.
    pub successes: usize,
    /// successes / attacked.
    pub success_rate: f64,
    /// Mean L-infinity and L2 size of the perturbations.
    pub mean_linf: f64,
    /// Mean L2.
    pub mean_l2: f64,
    /// Mean summed |activation change| per class (ImgD, TextD, CrossD, Rare).
    pub class_shift: [f64; 4],
    /// Same, per feature of the class (classes differ in size).
    pub class_shift_per_feature: [f64; 4],
    /// Defense by removing ImgD, then TextD features.
    pub defense: [DefenseRow; 2],
}

/// Summarises outcomes.
pub fn summarize(
    config: AttackConfig,
    outcomes: &[ImageOutcome],
    classes: &[FeatureClass],
) -> AttackSummary {
    let attacked: Vec<&ImageOutcome> = outcomes.iter().filter(|o| o.clean != o.target).collect();
    let n = attacked.len().max(1) as f64;
    let successes: Vec<&&ImageOutcome> = attacked.iter().filter(|o| o.success).collect();
    let mut class_shift = [0f64; 4];
    for o in &attacked {
        for (s, v) in class_shift.iter_mut().zip(o.class_shift) {
            *s += v as f64 / n;
        }
    }
    let mut counts = [0usize; 4];
    for c in classes {
        counts[c.index()] += 1;
    }
    let per_feature = std::array::from_fn(|i| class_shift[i] / counts[i].max(1) as f64);
    let row = |i: usize| DefenseRow {
        removed: FeatureClass::ALL[i],
        restored: successes
            .iter()
            .filter(|o| o.defended[i] == o.clean)
            .count(),
        of: successes.len(),
        clean_kept: attacked
            .iter()
            .filter(|o| o.clean_defended[i] == o.clean)
            .count(),
        clean_total: attacked.len(),
    };
    AttackSummary {
        config,
        attacked: attacked.len(),
        skipped: outcomes.len() - attacked.len(),
        successes: successes.len(),
        success_rate: successes.len() as f64 / n,
        mean_linf: attacked.iter().map(|o| o.linf as f64).sum::<f64>() / n,
        mean_l2: attacked.iter().map(|o| o.l2 as f64).sum::<f64>() / n,
        class_shift,
        class_shift_per_feature: per_feature,
        defense: [row(0), row(1)],
    }
}

/// L-infinity and L2 norms of each image's change: [n, 3, s, s] host buffers.
pub fn perturbation_norms(clean: &[f32], adv: &[f32], n: usize) -> Vec<(f32, f32)> {
    let per = clean.len() / n.max(1);
    clean
        .chunks(per)
        .zip(adv.chunks(per))
        .map(|(c, a)| {
            let (mut linf, mut l2) = (0f32, 0f32);
            for (x, y) in c.iter().zip(a) {
                let d = (x - y).abs();
                linf = linf.max(d);
                l2 += d * d;
            }
            (linf, l2.sqrt())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eps_parsing() {
        assert!((parse_eps("4/255").unwrap() - 4.0 / 255.0).abs() < 1e-9);
        assert_eq!(parse_eps("0.5").unwrap(), 0.5);
        assert!(parse_eps("x/2").is_err() && parse_eps("1/0").is_err());
        let bad = AttackConfig {
            eps: 0.0,
            ..AttackConfig::default()
        };
        assert!(bad.validate().is_err());
        assert!((AttackConfig::default().alpha() - 1.0 / 255.0).abs() < 1e-9);
        assert_eq!(
            "ImgD".parse::<Objective>().unwrap(),
            Objective::Class(FeatureClass::ImgD)
        );
        assert_eq!(
            "crossd".parse::<Objective>().unwrap(),
            Objective::Class(FeatureClass::CrossD)
        );
        assert_eq!(
            "embedding".parse::<Objective>().unwrap(),
            Objective::Embedding
        );
        assert!("Rare".parse::<Objective>().is_err());
    }
}
