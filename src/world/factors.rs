//! The factor table (issue 4): for each ground-truth factor value of the demo world, the
//! dictionary feature that predicts it best and that feature's class. The paper's claim,
//! made testable: image-only factors should be carried by ImgD features, text-only
//! factors by TextD features, shared factors by CrossD features.

use serde::Serialize;
use serde_json::Value;

use super::scene::{
    BACKGROUNDS, COLOURS, FILLERS, LIGHTING, NOISE, OUTLINES, POLITENESS, SHAPES, SIZES, TEMPLATES,
};
use crate::analysis::mds::FeatureClass;

/// Where a factor lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FactorKind {
    /// In pixels and captions.
    Shared,
    /// Only in pixels.
    ImageOnly,
    /// Only in captions.
    TextOnly,
}

impl FactorKind {
    /// The class the paper predicts for features carrying such a factor.
    pub fn expected(self) -> FeatureClass {
        match self {
            FactorKind::Shared => FeatureClass::CrossD,
            FactorKind::ImageOnly => FeatureClass::ImgD,
            FactorKind::TextOnly => FeatureClass::TextD,
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct FactorRow {
    /// e.g. `colour=red`.
    pub factor: String,
    /// Shared, image-only or text-only.
    pub kind: FactorKind,
    /// Pairs showing the factor.
    pub positives: usize,
    /// The feature whose activation (image + text of the pair) correlates best with it.
    pub feature: usize,
    /// That Pearson correlation.
    pub correlation: f64,
    /// The feature's class.
    pub class: FeatureClass,
}

impl FactorRow {
    /// Whether the best feature has the predicted class.
    pub fn as_expected(&self) -> bool {
        self.class == self.kind.expected()
    }
}

/// A scene-level factor: label, kind, JSON group and key, value names, values skipped.
type ScalarFactor = (
    &'static str,
    FactorKind,
    &'static str,
    &'static str,
    Vec<&'static str>,
    usize,
);

fn indicators(truth: &[Value]) -> Vec<(String, FactorKind, Vec<bool>)> {
    let idx = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).map(|x| x as usize);
    let objects = |t: &Value| {
        t["factors"]["objects"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    let mut add = |name: String, kind, f: &dyn Fn(&Value) -> bool| {
        out.push((name, kind, truth.iter().map(f).collect::<Vec<bool>>()));
    };
    for (c, (name, _)) in COLOURS.iter().enumerate() {
        add(format!("colour={name}"), FactorKind::Shared, &|t| {
            objects(t).iter().any(|o| idx(o, "colour") == Some(c))
        });
    }
    for (s, name) in SHAPES.iter().enumerate() {
        add(format!("shape={name}"), FactorKind::Shared, &|t| {
            objects(t).iter().any(|o| idx(o, "shape") == Some(s))
        });
    }
    for (s, (name, _)) in SIZES.iter().enumerate() {
        add(format!("size={name}"), FactorKind::Shared, &|t| {
            objects(t).iter().any(|o| idx(o, "size") == Some(s))
        });
    }
    for n in 1..=3 {
        add(format!("count={n}"), FactorKind::Shared, &|t| {
            objects(t).len() == n
        });
    }
    // Scene-level factors: one indicator per value index of `group.key` (values before
    // `skip` are the "none" choice and carry no signal).
    let scalar: [ScalarFactor; 7] = [
        (
            "background",
            FactorKind::ImageOnly,
            "factors",
            "background",
            BACKGROUNDS.to_vec(),
            0,
        ),
        (
            "lighting",
            FactorKind::ImageOnly,
            "factors",
            "lighting",
            LIGHTING.to_vec(),
            0,
        ),
        (
            "noise",
            FactorKind::ImageOnly,
            "factors",
            "noise",
            NOISE.map(|(n, _)| n).to_vec(),
            0,
        ),
        (
            "outline",
            FactorKind::ImageOnly,
            "factors",
            "outline",
            OUTLINES.to_vec(),
            0,
        ),
        (
            "template",
            FactorKind::TextOnly,
            "style",
            "template",
            TEMPLATES.to_vec(),
            0,
        ),
        (
            "politeness",
            FactorKind::TextOnly,
            "style",
            "politeness",
            POLITENESS.to_vec(),
            1,
        ),
        (
            "filler",
            FactorKind::TextOnly,
            "style",
            "filler",
            FILLERS.to_vec(),
            1,
        ),
    ];
    for (label, kind, group, key, names, skip) in scalar {
        for (i, name) in names.iter().enumerate().skip(skip) {
            add(format!("{label}={name}"), kind, &|t| {
                idx(&t[group], key) == Some(i)
            });
        }
    }
    add("synonyms".into(), FactorKind::TextOnly, &|t| {
        t["style"]["synonyms"].as_bool() == Some(true)
    });
    add("typo".into(), FactorKind::TextOnly, &|t| {
        t["style"]["typo"].as_bool() == Some(true)
    });
    out
}

/// Builds the table from paired activations (`image`, `text`: [n * k] row-major), the
/// rows' ground truth and the features' classes. Factors shown by fewer than 10 or all
/// but 10 pairs are left out (no signal to correlate with).
pub fn factor_table(
    image: &[f32],
    text: &[f32],
    k: usize,
    truth: &[Value],
    classes: &[FeatureClass],
) -> Vec<FactorRow> {
    let n = truth.len();
    let act: Vec<f64> = image
        .iter()
        .zip(text)
        .map(|(a, b)| (*a + *b) as f64)
        .collect();
    // Per-feature mean and standard deviation of the activation.
    let mut mean = vec![0f64; k];
    let mut sq = vec![0f64; k];
    for row in act.chunks(k) {
        for f in 0..k {
            mean[f] += row[f] / n as f64;
            sq[f] += row[f] * row[f] / n as f64;
        }
    }
    let sd: Vec<f64> = (0..k)
        .map(|f| (sq[f] - mean[f] * mean[f]).max(0.0).sqrt())
        .collect();
    indicators(truth)
        .into_iter()
        .filter_map(|(factor, kind, y)| {
            let pos = y.iter().filter(|b| **b).count();
            if pos < 10 || pos + 10 > n {
                return None;
            }
            let p = pos as f64 / n as f64;
            let sy = (p * (1.0 - p)).sqrt();
            let mut cov = vec![0f64; k];
            for (row, &yi) in act.chunks(k).zip(&y) {
                let dy = if yi { 1.0 - p } else { -p };
                for f in 0..k {
                    cov[f] += (row[f] - mean[f]) * dy / n as f64;
                }
            }
            let (feature, correlation) = (0..k)
                .filter(|&f| sd[f] > 0.0)
                .map(|f| (f, cov[f] / (sd[f] * sy)))
                .max_by(|a, b| a.1.total_cmp(&b.1))?;
            Some(FactorRow {
                factor,
                kind,
                positives: pos,
                feature,
                correlation,
                class: classes[feature],
            })
        })
        .collect()
}

/// The factor table of a bundle on held-out scenes of its demo world (`world-factors`):
/// `scenes` scenes after the ones `world-extract` embeds by default, so the table is
/// scored on data the dictionary never saw. Inputs are centred with the bundle's stored
/// means (the one centring rule; see `base::pairs`).
#[cfg(not(target_arch = "wasm32"))]
pub fn factor_table_for(
    model: &std::path::Path,
    bundle: &std::path::Path,
    seed: u64,
    scenes: usize,
    device: &burn::tensor::Device,
) -> crate::error::Result<Vec<FactorRow>> {
    use crate::base::Modality;
    use crate::inspect::Lens;
    let embedder = crate::pipeline::Embedder::from_dir(model, device)?;
    let lens = Lens::load(bundle, device)?;
    lens.check_model(embedder.config.projection_dim)?;
    let start = super::train::HELD_OUT_START + HELD_OUT_OFFSET;
    let file = super::train::extract_scenes(&embedder, seed, start, scenes, |_| {})?;
    let d = file.pairs.d;
    let encode = |flat: &[f32], modality| -> crate::error::Result<Vec<f32>> {
        let rows: Vec<Vec<f32>> = flat.chunks(d).map(<[f32]>::to_vec).collect();
        Ok(lens.activations(&rows, modality)?.concat())
    };
    Ok(factor_table(
        &encode(&file.pairs.images, Modality::Image)?,
        &encode(&file.pairs.texts, Modality::Text)?,
        lens.features(),
        &file.meta.truth,
        &lens.classes,
    ))
}

/// How far past `world-extract`'s scenes the factor table's held-out scenes start.
pub const HELD_OUT_OFFSET: u64 = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::scene::generate;

    #[test]
    fn finds_the_feature_that_tracks_a_factor() {
        // 200 scenes; feature 0 fires (on images) exactly when the background is
        // striped, feature 1 (on texts) when the caption is polite, feature 2 is noise.
        let scenes: Vec<_> = (0..200).map(|i| generate(9, i, 8, 1)).collect();
        let truth: Vec<Value> = scenes
            .iter()
            .map(|s| serde_json::json!({"factors": s.factors, "style": s.captions[0].1}))
            .collect();
        let k = 3;
        let (mut img, mut txt) = (Vec::new(), Vec::new());
        for (i, s) in scenes.iter().enumerate() {
            let stripes = BACKGROUNDS[s.factors.background] == "stripes";
            let polite = s.captions[0].1.politeness == 1;
            img.extend([if stripes { 1.0 } else { 0.0 }, 0.0, (i % 7) as f32 * 0.1]);
            txt.extend([0.0, if polite { 1.0 } else { 0.0 }, (i % 5) as f32 * 0.1]);
        }
        let classes = [
            FeatureClass::ImgD,
            FeatureClass::TextD,
            FeatureClass::CrossD,
        ];
        let table = factor_table(&img, &txt, k, &truth, &classes);
        let row = |name: &str| table.iter().find(|r| r.factor == name).unwrap();
        let stripes = row("background=stripes");
        assert_eq!(stripes.feature, 0);
        assert!((stripes.correlation - 1.0).abs() < 1e-9);
        assert!(stripes.as_expected());
        let polite = row(&format!("politeness={}", POLITENESS[1]));
        assert_eq!((polite.feature, polite.class), (1, FeatureClass::TextD));
        assert!(polite.as_expected());
    }
}
