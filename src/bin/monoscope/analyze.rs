//! `analyze`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use monoscope::Result;
use monoscope::analysis::AnalyzeConfig;
use monoscope::analysis::mds::{ClassRule, DEFAULT_FIXED, DEFAULT_MIN_SUPPORT};
use monoscope::jobs::analyze::{AnalyzeJob, run as analyze};

use crate::args::{BackendArg, ModelArgs};
use crate::progress::Bars;

/// Class rule.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Rule {
    /// ImgD above mean + std of MDS, TextD below mean - std.
    Zscore,
    /// Fixed thresholds (--img-threshold, --text-threshold).
    Fixed,
}

/// `monoscope analyze`.
#[derive(Args)]
pub struct AnalyzeArgs {
    /// The CLIP the embeddings came from (embeds the label vocabulary; its hash goes into
    /// the bundle).
    #[command(flatten)]
    model: ModelArgs,
    /// Dictionary directory (monoscope or SAELens format).
    #[arg(long)]
    dict: PathBuf,
    /// Paired embeddings file (from `extract`).
    #[arg(long)]
    embeddings: PathBuf,
    /// Output bundle directory.
    #[arg(long)]
    out: PathBuf,
    /// Class rule.
    #[arg(long, value_enum, default_value_t = Rule::Zscore)]
    rule: Rule,
    /// ImgD threshold of the fixed rule.
    #[arg(long, default_value_t = DEFAULT_FIXED.0)]
    img_threshold: f64,
    /// TextD threshold of the fixed rule.
    #[arg(long, default_value_t = DEFAULT_FIXED.1)]
    text_threshold: f64,
    /// Features supported by fewer pairs are "rare" and not classified.
    #[arg(long, default_value_t = DEFAULT_MIN_SUPPORT)]
    min_support: u64,
    /// Top samples per feature and modality (EmbSim, examples).
    #[arg(long, default_value_t = 20)]
    top_m: usize,
    /// Label vocabulary, one entry per line (default: the built-in English list).
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// Subtract each modality's mean embedding before the dictionary.
    #[arg(long)]
    center: bool,
    #[command(flatten)]
    backend: BackendArg,
}

/// Runs `analyze`.
pub fn run(a: AnalyzeArgs) -> Result<()> {
    let rule = match a.rule {
        Rule::Zscore => ClassRule::Zscore,
        Rule::Fixed => ClassRule::Fixed {
            img: a.img_threshold,
            text: a.text_threshold,
        },
    };
    let job = AnalyzeJob {
        model: &a.model.model,
        dict: &a.dict,
        embeddings: &a.embeddings,
        out: &a.out,
        vocab: a.vocab.as_deref(),
        config: AnalyzeConfig {
            rule,
            min_support: a.min_support,
            top_m: a.top_m.max(2),
            center: a.center,
            ..AnalyzeConfig::default()
        },
    };
    let [i, t, c, r] = analyze(&job, &a.backend.device()?, &mut Bars::default())?;
    eprintln!(
        "bundle written to {}: ImgD {i}, TextD {t}, CrossD {c}, rare {r}",
        a.out.display()
    );
    Ok(())
}
