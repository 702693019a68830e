//! The `analyze` job (SPEC §2-§3): stream paired embeddings through a dictionary,
//! score every feature's modality (MDS), classify, measure EmbSim on each feature's
//! top-m samples per modality, compare with raw CLIP dimensions and random directions
//! (WinRate), label features with the vocabulary entries that activate them most, and
//! write the result bundle.

use std::collections::BTreeMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

#[cfg(not(target_arch = "wasm32"))]
use super::Progress;
use super::topm::TopM;
use crate::analysis::AnalyzeConfig;
use crate::analysis::mds::{
    FeatureClass, FeatureMds, MdsAccumulator, Thresholds, class_counts, classify,
};
use crate::analysis::metrics::{Evaluation, WinRates, emb_sim, win_rate};
use crate::base::host::{self, is_cpu_backend};
use crate::base::{Modality, Pairs, SplitMix, stages};
use crate::dict::Dictionary;
use crate::error::Result;
#[cfg(not(target_arch = "wasm32"))]
use crate::io::bundle::fnv1a64;
use crate::io::bundle::{
    BundleMetrics, DatasetInfo, Example, FeatureReport, FeaturesFile, Manifest, ModelRef,
};
use crate::io::dictionary::DictFile;
use crate::io::embeddings::EmbeddingsFile;
#[cfg(not(target_arch = "wasm32"))]
use crate::pipeline::Embedder;
use crate::train::dict::evaluate;

/// The default label vocabulary (scripts/make_vocab.py).
pub const DEFAULT_VOCAB: &str = include_str!("../../assets/vocab/english.txt");

/// Vocabulary entries embedded per forward pass.
pub const VOCAB_BATCH: usize = 256;
/// Pairs the reconstruction quality is measured on.
const QUALITY_ROWS: usize = 4096;

/// `analyze`'s phases, as [`crate::base::stages`] (`bench-analyze --stages`). The pass over
/// the pairs: encoding, MDS sums and the top-m lists; its top-m lists alone (on a GPU,
/// including the wait for the batch's kernels, which their read-back forces).
pub const STAGE_STREAM: &str = "analyze: pass over the pairs";
/// See [`STAGE_STREAM`].
pub const STAGE_TOP_M: &str = "analyze: (of which top-m lists)";
/// Auto-labels from the vocabulary.
pub const STAGE_LABELS: &str = "analyze: labels";
/// EmbSim of the features' top-m rows.
pub const STAGE_EMB_SIM: &str = "analyze: EmbSim";
/// WinRates: the baselines' top-m rows and EmbSim.
pub const STAGE_WIN_RATES: &str = "analyze: WinRates";
/// Reconstruction quality.
pub const STAGE_QUALITY: &str = "analyze: quality";

/// Everything `analyze` computes.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// Per feature.
    pub features: Vec<FeatureReport>,
    /// Thresholds of the class rule.
    pub thresholds: Thresholds,
    /// Counts of ImgD, TextD, CrossD, Rare.
    pub class_counts: [usize; 4],
    /// WinRates.
    pub win_rates: WinRates,
    /// Reconstruction quality per modality (on up to 4096 pairs).
    pub quality: Evaluation,
}

/// Runs the analysis. `vocab` holds vocabulary entries and their text embeddings
/// ([entries, d], same space as `pairs`) for auto-labels; `progress` is told the number
/// of pairs done.
pub fn analyze(
    dict: &Dictionary,
    pairs: &Pairs,
    vocab: Option<(&[String], Tensor<2>)>,
    config: &AnalyzeConfig,
    device: &Device,
    mut progress: impl FnMut(usize),
) -> Result<Analysis> {
    let input = if config.center {
        pairs.centered()
    } else {
        pairs.clone()
    };
    let (mds, top_i, top_t) = stages::time(STAGE_STREAM, || {
        stream(dict, &input, config, device, &mut progress)
    })?;
    let (classes, thresholds) = classify(&mds, config.rule, config.min_support);
    let mut labels = stages::time(STAGE_LABELS, || match vocab {
        Some((words, embeds)) => auto_labels(dict, words, embeds, pairs, config, device),
        None => Ok(vec![Vec::new(); dict.features()]),
    })?;
    let (sim_i, sim_t) = stages::time(STAGE_EMB_SIM, || {
        (
            top_sims(&top_i, &pairs.images, pairs.d),
            top_sims(&top_t, &pairs.texts, pairs.d),
        )
    });
    let win_rates = stages::time(STAGE_WIN_RATES, || {
        win_rates(pairs, &classes, (&sim_i, &sim_t), config, device)
    })?;
    let quality = stages::time(STAGE_QUALITY, || {
        evaluate(dict, &input, QUALITY_ROWS, 0, device)
    })?;
    let features = (0..dict.features())
        .map(|f| FeatureReport {
            id: f,
            mds: mds[f].mds,
            class: classes[f],
            support: mds[f].support,
            mean_image: mds[f].mean_image,
            mean_text: mds[f].mean_text,
            energy_image: mds[f].energy_image,
            energy_text: mds[f].energy_text,
            emb_sim_image: sim_i[f],
            emb_sim_text: sim_t[f],
            labels: std::mem::take(&mut labels[f]),
            top_images: top_i.lists[f].iter().map(|(v, i)| (*i, *v)).collect(),
            top_texts: top_t.lists[f].iter().map(|(v, i)| (*i, *v)).collect(),
        })
        .collect();
    Ok(Analysis {
        features,
        thresholds,
        class_counts: class_counts(&classes),
        win_rates,
        quality,
    })
}

/// One pass over the pairs: MDS statistics and the top-m rows per feature and modality.
fn stream(
    dict: &Dictionary,
    input: &Pairs,
    config: &AnalyzeConfig,
    device: &Device,
    progress: &mut impl FnMut(usize),
) -> Result<(Vec<FeatureMds>, TopM, TopM)> {
    let k = dict.features();
    let mut acc = MdsAccumulator::new(config.eps);
    let (mut top_i, mut top_t) = (TopM::new(k, config.top_m), TopM::new(k, config.top_m));
    let all: Vec<usize> = (0..input.n).collect();
    for (c, chunk) in all.chunks(config.batch.max(1)).enumerate() {
        let a = dict.encode(input.rows(true, chunk, device), Modality::Image);
        let b = dict.encode(input.rows(false, chunk, device), Modality::Text);
        let offset = c * config.batch;
        if is_cpu_backend(&a.device()) {
            // The CPU backend: both read back once, without a copy (the only references),
            // and the sums and lists made in one pass each on the host.
            let (a, b) = (
                a.into_data().convert::<f32>(),
                b.into_data().convert::<f32>(),
            );
            let (a, b) = (host::slice(&a)?, host::slice(&b)?);
            acc.add_host(a, b, k)?;
            stages::time(STAGE_TOP_M, || {
                top_i.add_host_rows(a, k, offset)?;
                top_t.add_host_rows(b, k, offset)
            })?;
        } else {
            acc.add(a.clone(), b.clone());
            stages::time(STAGE_TOP_M, || {
                top_i.add(a, offset)?;
                top_t.add(b, offset)
            })?;
        }
        progress(chunk.len());
    }
    Ok((acc.finish()?, top_i, top_t))
}

/// Auto-labels: the vocabulary entries that activate each feature most (text embeddings,
/// centred with the text mean when the analysis is).
fn auto_labels(
    dict: &Dictionary,
    words: &[String],
    embeds: Tensor<2>,
    pairs: &Pairs,
    config: &AnalyzeConfig,
    device: &Device,
) -> Result<Vec<Vec<(String, f32)>>> {
    let mut top = TopM::new(dict.features(), config.labels);
    let [n_words, _] = embeds.dims();
    let embeds = if config.center {
        let mean = pairs.modality_means().text;
        embeds - Tensor::<1>::from_floats(mean.as_slice(), device).unsqueeze::<2>()
    } else {
        embeds
    };
    for start in (0..n_words).step_by(config.batch.max(1)) {
        let len = config.batch.min(n_words - start);
        top.add(
            dict.encode(embeds.clone().narrow(0, start, len), Modality::Text),
            start,
        )?;
    }
    Ok(top
        .lists
        .into_iter()
        .map(|list| {
            list.into_iter()
                .map(|(v, i)| (words[i].clone(), v))
                .collect()
        })
        .collect())
}

/// EmbSim of each list's rows (`emb` is the raw `[n, d]` embeddings of one modality).
fn top_sims(top: &TopM, emb: &[f32], d: usize) -> Vec<Option<f64>> {
    top.lists
        .iter()
        .map(|l| {
            emb_sim(
                &l.iter()
                    .map(|(_, i)| &emb[i * d..(i + 1) * d])
                    .collect::<Vec<_>>(),
            )
        })
        .collect()
}

/// EmbSim of every baseline "feature", a direction in embedding space (the columns of
/// `directions`, [d, features]): its top-m rows by projection, and their embeddings'
/// mean pairwise cosine. Projections run on the device in batches; `None` stands for the
/// raw dimensions (the identity: the rows are their own projections, bit for bit, so no
/// product is spent on them).
fn baseline_emb_sims(
    pairs: &Pairs,
    image: bool,
    directions: Option<&Tensor<2>>,
    config: &AnalyzeConfig,
    device: &Device,
) -> Result<Vec<f64>> {
    let d = pairs.d;
    let features = directions.map_or(d, |t| t.dims()[1]);
    let batch = config.batch.max(1);
    let mut top = TopM::new(features, config.top_m);
    let all: Vec<usize> = (0..pairs.n).collect();
    for (c, chunk) in all.chunks(batch).enumerate() {
        let rows = pairs.rows(image, chunk, device);
        let projected = match directions {
            Some(dirs) => rows.matmul(dirs.clone()),
            None => rows,
        };
        top.add(projected, c * batch)?;
    }
    let emb = if image { &pairs.images } else { &pairs.texts };
    Ok(top_sims(&top, emb, d).into_iter().flatten().collect())
}

/// `d` random unit directions as the columns of a [d, d] matrix.
fn random_directions(d: usize, seed: u64, device: &Device) -> Tensor<2> {
    let mut rng = SplitMix(seed);
    let random: Vec<f32> = (0..d * d)
        .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        .collect();
    crate::dict::sae::unit_rows(Tensor::<2>::from_data(
        TensorData::new(random, [d, d]),
        device,
    ))
    .transpose()
}

/// WinRates of the classified features' EmbSim over the d raw dimensions and d random
/// unit directions, per modality.
fn win_rates(
    pairs: &Pairs,
    classes: &[FeatureClass],
    (sim_i, sim_t): (&[Option<f64>], &[Option<f64>]),
    config: &AnalyzeConfig,
    device: &Device,
) -> Result<WinRates> {
    let classified = |s: &[Option<f64>]| -> Vec<f64> {
        s.iter()
            .zip(classes)
            .filter(|(_, c)| **c != FeatureClass::Rare)
            .filter_map(|(v, _)| *v)
            .collect()
    };
    let (ours_i, ours_t) = (classified(sim_i), classified(sim_t));
    let random = random_directions(pairs.d, config.seed, device);
    let vs = |dirs: Option<&Tensor<2>>| -> Result<[(f64, usize); 2]> {
        Ok([
            win_rate(
                &ours_i,
                &baseline_emb_sims(pairs, true, dirs, config, device)?,
            ),
            win_rate(
                &ours_t,
                &baseline_emb_sims(pairs, false, dirs, config, device)?,
            ),
        ])
    };
    Ok(WinRates {
        vs_raw_dims: vs(None)?,
        vs_random_directions: vs(Some(&random))?,
    })
}

/// What a bundle is made of, in memory (the native job reads it from files; the page
/// builds it on-device).
pub struct BundleInputs<'a> {
    /// The model the embeddings came from (path or name, hash, config).
    pub model: ModelRef,
    /// The dictionary's `dict.json` contents.
    pub dict_file: DictFile,
    /// The dictionary.
    pub dict: &'a Dictionary,
    /// The paired embeddings and their provenance.
    pub emb: &'a EmbeddingsFile,
    /// Where the embeddings came from (recorded in the manifest).
    pub embeddings_name: String,
    /// Label vocabulary and its text embeddings ([entries, d]), if labels are wanted.
    pub vocab: Option<(&'a [String], Tensor<2>)>,
    /// Settings.
    pub config: &'a AnalyzeConfig,
}

/// Runs the analysis and assembles the bundle's manifest and features file; `progress` is
/// told the number of pairs done.
pub fn make_bundle(
    inputs: BundleInputs<'_>,
    device: &Device,
    progress: impl FnMut(usize),
) -> Result<(Manifest, FeaturesFile)> {
    let BundleInputs {
        model,
        dict_file,
        dict,
        emb,
        embeddings_name,
        vocab,
        config,
    } = inputs;
    let result = analyze(dict, &emb.pairs, vocab, config, device, progress)?;
    let examples = examples(&result.features, emb);
    let manifest = Manifest::new(
        model,
        dict_file,
        DatasetInfo {
            embeddings: embeddings_name,
            pairs_file: emb.meta.pairs.clone(),
            pairs: emb.pairs.n,
            skipped_lines: emb.meta.skipped.len(),
            // With --center, inputs must be centred with these means before encoding.
            modality_means: config.center.then(|| emb.pairs.modality_means()),
        },
        config.clone(),
        result.thresholds,
        result.class_counts,
        BundleMetrics {
            win_rates: result.win_rates,
            quality: result.quality,
        },
    );
    let features = FeaturesFile {
        features: result.features,
        examples,
    };
    Ok((manifest, features))
}

/// The vocabulary entries of a text (one per line), blank lines dropped.
pub fn vocabulary_entries(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// The inputs of `monoscope analyze`.
#[cfg(not(target_arch = "wasm32"))]
pub struct AnalyzeJob<'a> {
    /// Hugging Face CLIP directory (embeds the label vocabulary; its hash goes into the
    /// manifest).
    pub model: &'a Path,
    /// Dictionary directory (monoscope or SAELens format).
    pub dict: &'a Path,
    /// Paired embeddings file (from `extract`).
    pub embeddings: &'a Path,
    /// Output bundle directory.
    pub out: &'a Path,
    /// Label vocabulary file, one entry per line (default: [`DEFAULT_VOCAB`]).
    pub vocab: Option<&'a Path>,
    /// Settings.
    pub config: AnalyzeConfig,
}

/// Runs `analyze` from files to a bundle directory; returns the class counts.
#[cfg(not(target_arch = "wasm32"))]
pub fn run(
    job: &AnalyzeJob<'_>,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<[usize; 4]> {
    use crate::base::fs::{read_file, read_text};
    use crate::error::Error;
    let emb = EmbeddingsFile::from_bytes(&read_file(job.embeddings)?)?;
    let (dict_file, dict) = crate::io::dictionary::load_dir(job.dict, device)?;
    if dict_file.config.d != emb.pairs.d {
        return Err(Error::Invalid(format!(
            "the dictionary expects width {}, the embeddings have {}",
            dict_file.config.d, emb.pairs.d
        )));
    }
    let embedder = Embedder::from_dir(job.model, device)?;
    if embedder.config.projection_dim != emb.pairs.d {
        return Err(Error::Invalid(format!(
            "{} embeds into {} dimensions, the embeddings have {}",
            job.model.display(),
            embedder.config.projection_dim,
            emb.pairs.d
        )));
    }
    let words = match job.vocab {
        Some(p) => vocabulary_entries(&read_text(p)?),
        None => vocabulary_entries(DEFAULT_VOCAB),
    };
    progress.start("analyze", (words.len() + emb.pairs.n) as u64);
    let mut word_embeds = Vec::new();
    for chunk in words.chunks(VOCAB_BATCH) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        word_embeds.push(embedder.embed_texts(&refs)?);
        progress.inc(chunk.len() as u64);
    }
    let vocab_tensor = (!word_embeds.is_empty()).then(|| Tensor::cat(word_embeds, 0));
    let model = ModelRef {
        path: job.model.display().to_string(),
        hash_fnv1a64: Some(fnv1a64(&read_file(&job.model.join("model.safetensors"))?)),
        config: Some(embedder.config.clone()),
    };
    let inputs = BundleInputs {
        model,
        dict_file,
        dict: &dict,
        emb: &emb,
        embeddings_name: job.embeddings.display().to_string(),
        vocab: vocab_tensor.map(|t| (words.as_slice(), t)),
        config: &job.config,
    };
    let (manifest, features) = make_bundle(inputs, device, |n| progress.inc(n as u64))?;
    progress.finish();
    crate::io::bundle::save(job.out, &manifest, &features, &dict)?;
    Ok(manifest.class_counts)
}

/// The pairs the features' top lists refer to, by row.
fn examples(features: &[FeatureReport], emb: &EmbeddingsFile) -> BTreeMap<usize, Example> {
    let mut examples = BTreeMap::new();
    for f in features {
        for (row, _) in f.top_images.iter().chain(&f.top_texts) {
            examples.entry(*row).or_insert_with(|| Example {
                line: emb.meta.lines.get(*row).copied().unwrap_or(row + 1) as u64,
                image: emb.meta.images.get(*row).cloned().unwrap_or_default(),
                caption: emb.meta.captions.get(*row).cloned().unwrap_or_default(),
            });
        }
    }
    examples
}
