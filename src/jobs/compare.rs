//! Several result bundles side by side (issue 15, `monoscope compare` and the page's
//! dictionary view): reconstruction quality per modality, sparsity, dead features, class
//! counts by MDS and by the Iso-Energy rule ([`super::structure`]) with their agreement,
//! mean EmbSim, WinRates, optionally the Bridge Score of the top concept pairs (with paired
//! embeddings) and the demo world's factor-table score; and, for every two bundles, the
//! overlap of their classes over features matched by decoder cosine.
//!
//! Works on loaded bundles (no files), so the CLI and the page share it; the bundles' decoders
//! are read back synchronously, which every CPU device allows (the page compares on its
//! CPU backend).

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::analysis::mds::{FeatureClass, FeatureMds};
use crate::analysis::metrics::{Evaluation, WinRates};
use crate::analysis::structure::{confusion, energy_classes};
use crate::base::host::{host_rows, host_vec};
use crate::base::{Modality, Pairs};
use crate::dict::Dictionary;
use crate::error::{Error, Result};
use crate::io::bundle::Bundle;

/// Decoder cosine at which two features of different bundles count as the same atom (the
/// planted-recovery tests' bar).
pub const MATCH_COSINE: f32 = 0.9;
/// Concept pairs listed per bundle by default.
pub const DEFAULT_TOP_PAIRS: usize = 5;
/// Pairs encoded per pass when computing Bridge Scores.
const BRIDGE_CHUNK: usize = 2048;

/// One bundle's row of the comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleSummary {
    /// Label (the directory or file name).
    pub name: String,
    /// Dictionary kind.
    pub kind: String,
    /// Embedding width.
    pub d: usize,
    /// Features K.
    pub features: usize,
    /// FVU, explained variance, cosine, L0 and dead fraction per modality.
    pub quality: Evaluation,
    /// ImgD, TextD, CrossD, Rare by MDS (SPEC §2).
    pub class_counts: [usize; 4],
    /// The same by the Iso-Energy rule; `None` for bundles without energies (made before
    /// issue 15).
    pub energy_class_counts: Option<[usize; 4]>,
    /// Features whose MDS class and Iso-Energy class agree, over features that are not
    /// Rare in either.
    pub energy_agreement: Option<(usize, usize)>,
    /// (MDS class, Iso-Energy class) counts.
    pub energy_confusion: Option<[[usize; 4]; 4]>,
    /// Mean EmbSim of the features' top images and top texts.
    pub mean_emb_sim: [Option<f64>; 2],
    /// WinRates over raw dimensions and random directions.
    pub win_rates: WinRates,
    /// The highest Bridge Scores between two different features.
    pub bridge: Option<Vec<BridgePair>>,
    /// Demo world: (factors in the expected class, factors).
    pub factors: Option<(usize, usize)>,
}

/// Two features that bridge the modalities (Papadimitriou et al. 2025, arXiv 2504.11695):
/// B_ij = E_pairs[z_i(image) z_j(text)] · <d_i, d_j>, co-activation on the image and
/// the caption of the same pair times the cosine of the unit decoder atoms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BridgePair {
    /// The feature active on the image.
    pub image_feature: usize,
    /// The feature active on the text.
    pub text_feature: usize,
    /// B_ij.
    pub score: f64,
    /// E[z_i(image) z_j(text)].
    pub coactivation: f64,
    /// <d_i, d_j> of the decoder atoms.
    pub cosine: f64,
    /// MDS classes of the two features.
    pub classes: [FeatureClass; 2],
}

/// Class overlap of two bundles over features matched by decoder cosine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Overlap {
    /// Index of the first bundle.
    pub a: usize,
    /// Index of the second bundle.
    pub b: usize,
    /// Features of `a` whose best match in `b` has cosine >= [`MATCH_COSINE`].
    pub matched: usize,
    /// Features of `a`.
    pub of: usize,
    /// Matched features with the same class in both.
    pub same_class: usize,
    /// (class in `a`, class in `b`) counts over matched features.
    pub confusion: [[usize; 4]; 4],
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// One row per bundle, in the order given.
    pub bundles: Vec<BundleSummary>,
    /// Every two bundles with decoders, in order.
    pub overlaps: Vec<Overlap>,
}

/// The part of a bundle's row that needs nothing but the bundle.
pub fn summarize(name: &str, bundle: &Bundle) -> BundleSummary {
    let m = &bundle.manifest;
    let feats = &bundle.features.features;
    let has_energy = feats
        .iter()
        .any(|f| f.energy_image > 0.0 || f.energy_text > 0.0);
    let (energy_class_counts, energy_agreement, energy_confusion) = if has_energy {
        let as_mds: Vec<FeatureMds> = feats
            .iter()
            .map(|f| FeatureMds {
                mds: f.mds,
                support: f.support,
                mean_image: f.mean_image,
                mean_text: f.mean_text,
                energy_image: f.energy_image,
                energy_text: f.energy_text,
            })
            .collect();
        let energy = energy_classes(&as_mds);
        let mds = bundle.classes();
        let both: Vec<(FeatureClass, FeatureClass)> = mds
            .iter()
            .zip(&energy)
            .filter(|(a, b)| **a != FeatureClass::Rare && **b != FeatureClass::Rare)
            .map(|(a, b)| (*a, *b))
            .collect();
        let same = both.iter().filter(|(a, b)| a == b).count();
        (
            Some(crate::analysis::mds::class_counts(&energy)),
            Some((same, both.len())),
            Some(confusion(&mds, &energy)),
        )
    } else {
        (None, None, None)
    };
    let mean = |pick: fn(&crate::io::bundle::FeatureReport) -> Option<f64>| {
        let v: Vec<f64> = feats.iter().filter_map(pick).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    BundleSummary {
        name: name.to_string(),
        kind: m.dictionary.config.kind.name().to_string(),
        d: m.dictionary.config.d,
        features: m.dictionary.config.features,
        quality: m.metrics.quality.clone(),
        class_counts: m.class_counts,
        energy_class_counts,
        energy_agreement,
        energy_confusion,
        mean_emb_sim: [mean(|f| f.emb_sim_image), mean(|f| f.emb_sim_text)],
        win_rates: m.metrics.win_rates.clone(),
        bridge: None,
        factors: None,
    }
}

/// Unit decoder atoms of an SAE bundle on the host ([K][d]); `None` for NCL heads.
fn atoms(bundle: &Bundle) -> Result<Option<Vec<Vec<f32>>>> {
    match &bundle.dictionary {
        Dictionary::Sae(sae) => {
            let rows = host_rows(crate::dict::sae::unit_rows(sae.w_dec.val()))?;
            Ok(Some(rows))
        }
        Dictionary::Ncl(_) | Dictionary::Split(_) => Ok(None),
    }
}

/// Class overlap of `a` and `b` (indices `ia`, `ib` in the comparison); `None` when
/// either has no decoder or their widths differ.
pub fn overlap(ia: usize, a: &Bundle, ib: usize, b: &Bundle) -> Result<Option<Overlap>> {
    let (Some(da), Some(db)) = (atoms(a)?, atoms(b)?) else {
        return Ok(None);
    };
    if da.first().map(Vec::len) != db.first().map(Vec::len) {
        return Ok(None);
    }
    let (ca, cb) = (a.classes(), b.classes());
    let mut confusion = [[0usize; 4]; 4];
    let (mut matched, mut same) = (0, 0);
    for (i, row) in da.iter().enumerate() {
        let best = db
            .iter()
            .enumerate()
            .map(|(j, other)| (j, row.iter().zip(other).map(|(x, y)| x * y).sum::<f32>()))
            .max_by(|x, y| x.1.total_cmp(&y.1));
        if let Some((j, cos)) = best
            && cos >= MATCH_COSINE
        {
            matched += 1;
            confusion[ca[i].index()][cb[j].index()] += 1;
            if ca[i] == cb[j] {
                same += 1;
            }
        }
    }
    Ok(Some(Overlap {
        a: ia,
        b: ib,
        matched,
        of: da.len(),
        same_class: same,
        confusion,
    }))
}

/// The `top` highest Bridge Scores between two different features of an SAE bundle on
/// paired embeddings (centred with the bundle's means when its analysis was), computed on
/// `device`. NCL heads have no decoder atoms: `None`.
pub fn bridge(
    bundle: &Bundle,
    pairs: &Pairs,
    top: usize,
    device: &Device,
) -> Result<Option<Vec<BridgePair>>> {
    // Atoms of the image-side and the text-side feature: one decoder for every SAE but
    // split, whose features have one atom per modality.
    let (img_dec, txt_dec) = match &bundle.dictionary {
        Dictionary::Sae(sae) => (sae.w_dec.val(), sae.w_dec.val()),
        Dictionary::Split(s) => (s.image.w_dec.val(), s.text.w_dec.val()),
        Dictionary::Ncl(_) => return Ok(None),
    };
    let d = bundle.manifest.dictionary.config.d;
    if pairs.d != d {
        return Err(Error::Invalid(format!(
            "the embeddings have width {}, the bundle's dictionary {d}",
            pairs.d
        )));
    }
    if pairs.n == 0 {
        return Err(Error::Invalid(
            "no pairs to compute Bridge Scores on".into(),
        ));
    }
    let means = bundle.manifest.centring()?;
    let k = bundle.manifest.dictionary.config.features;
    let mut co: Option<Tensor<2>> = None; // Σ z(image)ᵀ z(text), [K, K]
    for start in (0..pairs.n).step_by(BRIDGE_CHUNK) {
        let idx: Vec<usize> = (start..(start + BRIDGE_CHUNK).min(pairs.n)).collect();
        let encode = |image: bool| -> Result<Tensor<2>> {
            let mut flat = host_vec(pairs.rows(image, &idx, device))?;
            if let Some(m) = &means {
                let modality = if image {
                    Modality::Image
                } else {
                    Modality::Text
                };
                m.subtract(&mut flat, modality);
            }
            let x = Tensor::<2>::from_data(TensorData::new(flat, [idx.len(), d]), device);
            Ok(bundle.dictionary.encode(
                x,
                if image {
                    Modality::Image
                } else {
                    Modality::Text
                },
            ))
        };
        let part = encode(true)?.transpose().matmul(encode(false)?);
        co = Some(match co {
            Some(c) => c + part,
            None => part,
        });
    }
    let co = co.expect("at least one chunk") / pairs.n as f64;
    let unit = crate::dict::sae::unit_rows;
    let gram = unit(img_dec).matmul(unit(txt_dec).transpose());
    let (co, gram) = (host_vec(co)?, host_vec(gram)?);
    let classes = bundle.classes();
    let mut scored: Vec<(f64, usize)> = (0..k * k)
        .filter(|f| f / k != f % k)
        .map(|f| (co[f] as f64 * gram[f] as f64, f))
        .collect();
    let top = top.min(scored.len());
    if top == 0 {
        return Ok(Some(Vec::new()));
    }
    scored.select_nth_unstable_by(top - 1, |a, b| b.0.total_cmp(&a.0));
    scored.truncate(top);
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ok(Some(
        scored
            .into_iter()
            .map(|(score, f)| {
                let (i, j) = (f / k, f % k);
                BridgePair {
                    image_feature: i,
                    text_feature: j,
                    score,
                    coactivation: co[f] as f64,
                    cosine: gram[f] as f64,
                    classes: [classes[i], classes[j]],
                }
            })
            .collect(),
    ))
}

/// Summaries of every bundle and the overlaps of every two.
pub fn compare(named: &[(String, &Bundle)]) -> Result<Comparison> {
    let bundles = named.iter().map(|(n, b)| summarize(n, b)).collect();
    let mut overlaps = Vec::new();
    for i in 0..named.len() {
        for j in i + 1..named.len() {
            if let Some(o) = overlap(i, named[i].1, j, named[j].1)? {
                overlaps.push(o);
            }
        }
    }
    Ok(Comparison { bundles, overlaps })
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "-".into()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), num)
}

fn counts(c: &[usize; 4]) -> String {
    format!("{} / {} / {} / {}", c[0], c[1], c[2], c[3])
}

/// The comparison as a Markdown table (one column per bundle), then the overlaps and the
/// bridge pairs.
pub fn render_text(c: &Comparison) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: &str, f: &dyn Fn(&BundleSummary) -> String| {
        rows.push((label.to_string(), c.bundles.iter().map(f).collect()));
    };
    row("kind", &|b| b.kind.clone());
    row("features K", &|b| b.features.to_string());
    row("FVU image / text", &|b| {
        format!("{} / {}", num(b.quality.image.fvu), num(b.quality.text.fvu))
    });
    row("explained variance image / text", &|b| {
        format!(
            "{} / {}",
            num(b.quality.image.explained_variance),
            num(b.quality.text.explained_variance)
        )
    });
    row("cosine image / text", &|b| {
        format!(
            "{} / {}",
            num(b.quality.image.cosine),
            num(b.quality.text.cosine)
        )
    });
    row("L0 image / text", &|b| {
        format!("{:.1} / {:.1}", b.quality.image.l0, b.quality.text.l0)
    });
    row("dead image / text", &|b| {
        format!(
            "{} / {}",
            num(b.quality.image.dead_fraction),
            num(b.quality.text.dead_fraction)
        )
    });
    row("classes ImgD / TextD / CrossD / Rare (MDS)", &|b| {
        counts(&b.class_counts)
    });
    row("classes by Iso-Energy", &|b| {
        b.energy_class_counts.as_ref().map_or("-".into(), counts)
    });
    row("MDS and Iso-Energy agree", &|b| {
        b.energy_agreement
            .map_or("-".into(), |(s, n)| format!("{s} of {n}"))
    });
    row("mean EmbSim image / text", &|b| {
        format!("{} / {}", opt(b.mean_emb_sim[0]), opt(b.mean_emb_sim[1]))
    });
    row("WinRate vs raw dims image / text", &|b| {
        let w = &b.win_rates.vs_raw_dims;
        format!("{} / {}", num(w[0].0), num(w[1].0))
    });
    row("WinRate vs random image / text", &|b| {
        let w = &b.win_rates.vs_random_directions;
        format!("{} / {}", num(w[0].0), num(w[1].0))
    });
    if c.bundles.iter().any(|b| b.bridge.is_some()) {
        row("top Bridge Score", &|b| {
            b.bridge
                .as_ref()
                .and_then(|p| p.first())
                .map_or("-".into(), |p| format!("{:.2e}", p.score))
        });
    }
    if c.bundles.iter().any(|b| b.factors.is_some()) {
        row("factors in the expected class", &|b| {
            b.factors.map_or("-".into(), |(h, n)| format!("{h} of {n}"))
        });
    }
    let mut out = String::from("| |");
    for b in &c.bundles {
        out.push_str(&format!(" {} |", b.name));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(c.bundles.len()));
    out.push('\n');
    for (label, cells) in rows {
        out.push_str(&format!("| {label} | {} |\n", cells.join(" | ")));
    }
    for o in &c.overlaps {
        let (a, b) = (&c.bundles[o.a].name, &c.bundles[o.b].name);
        out.push_str(&format!(
            "\n{a} vs {b}: {} of {} features of {a} have an atom in {b} at cosine >= {MATCH_COSINE}; {} of those keep their class\n",
            o.matched, o.of, o.same_class
        ));
    }
    for b in &c.bundles {
        if let Some(pairs) = &b.bridge {
            out.push_str(&format!(
                "\n{}: top Bridge Score pairs (image feature, text feature)\n",
                b.name
            ));
            for p in pairs {
                out.push_str(&format!(
                    "  {} ({:?}) -> {} ({:?}): {:.3e} (co-activation {:.3e}, cosine {:.3})\n",
                    p.image_feature,
                    p.classes[0],
                    p.text_feature,
                    p.classes[1],
                    p.score,
                    p.coactivation,
                    p.cosine
                ));
            }
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Class colours, in [`FeatureClass::ALL`] order (the page's badge colours).
const CLASS_COLOURS: [&str; 4] = ["#d9822b", "#2b7bd9", "#3a9a5b", "#9aa0a6"];

/// The comparison as an SVG: per bundle, the share of each class by MDS (and by the
/// Iso-Energy rule where known) as stacked bars, labelled with FVU and L0.
pub fn render_svg(c: &Comparison) -> String {
    const ROW: f64 = 26.0;
    const LABEL: f64 = 230.0;
    const BAR: f64 = 360.0;
    let mut lines = Vec::new();
    for b in &c.bundles {
        lines.push((
            format!("{} ({}) MDS", b.name, b.kind),
            Some(b.class_counts),
            b,
        ));
        if let Some(e) = b.energy_class_counts {
            lines.push((format!("{} Iso-Energy", b.name), Some(e), b));
        }
    }
    let height = 40.0 + ROW * lines.len() as f64 + 30.0;
    let width = LABEL + BAR + 190.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n<title>monoscope compare: feature classes per dictionary</title>\n"
    );
    for (i, (label, counts, b)) in lines.iter().enumerate() {
        let y = 30.0 + ROW * i as f64;
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
            LABEL - 8.0,
            y + 14.0,
            escape(label)
        ));
        let counts = counts.unwrap_or([0; 4]);
        let total = counts.iter().sum::<usize>().max(1) as f64;
        let mut x = LABEL;
        for (ci, n) in counts.iter().enumerate() {
            let w = BAR * *n as f64 / total;
            if w > 0.0 {
                s.push_str(&format!(
                    "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"18\" fill=\"{}\"><title>{:?}: {n}</title></rect>\n",
                    CLASS_COLOURS[ci],
                    FeatureClass::ALL[ci]
                ));
            }
            x += w;
        }
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\">FVU {} / {}, L0 {:.1}</text>\n",
            LABEL + BAR + 8.0,
            y + 14.0,
            num(b.quality.image.fvu),
            num(b.quality.text.fvu),
            b.quality.image.l0
        ));
    }
    let y = 30.0 + ROW * lines.len() as f64 + 10.0;
    let mut x = LABEL;
    for (ci, class) in FeatureClass::ALL.iter().enumerate() {
        s.push_str(&format!(
            "<rect x=\"{x}\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{class:?}</text>\n",
            CLASS_COLOURS[ci],
            x + 16.0,
            y + 11.0
        ));
        x += 80.0;
    }
    s.push_str("</svg>\n");
    s
}
