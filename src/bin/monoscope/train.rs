//! `train`.

use std::path::PathBuf;

use clap::Args;
use indicatif::ProgressBar;
use monoscope::Result;
use monoscope::base::fs::read_file;
use monoscope::dict::{
    DEFAULT_ALIGN, DEFAULT_BANDWIDTH, DEFAULT_EXPANSION, DEFAULT_GROUP, DEFAULT_L0, DEFAULT_L1,
    DEFAULT_MASK, DEFAULT_TEMPERATURE, DEFAULT_TOPK, matryoshka_widths,
};
use monoscope::dict::{DictConfig, DictKind};
use monoscope::io::embeddings::EmbeddingsFile;
use monoscope::train::dict::{DEFAULT_DEAD_WINDOW, TrainConfig};
use monoscope::train::job::{TrainJob, TrainProgress, run as train};

use crate::args::{BackendArg, Kind};
use crate::progress::bar;

/// `monoscope train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Paired embeddings file.
    #[arg(long)]
    embeddings: PathBuf,
    /// Dictionary family.
    #[arg(long, value_enum)]
    kind: Kind,
    /// Number of features K (default 8 x the embedding width).
    #[arg(long)]
    features: Option<usize>,
    /// Active features per sample (topk, random, aligned, groupsparse; on average over a batch for batchtopk
    /// and matryoshka).
    #[arg(long, default_value_t = DEFAULT_TOPK)]
    k: usize,
    /// L1 coefficient (relu).
    #[arg(long, default_value_t = DEFAULT_L1)]
    l1: f64,
    /// L0 coefficient λ (jumprelu).
    #[arg(long, default_value_t = DEFAULT_L0)]
    l0: f64,
    /// Bandwidth ε of the straight-through estimators (jumprelu).
    #[arg(long, default_value_t = DEFAULT_BANDWIDTH)]
    bandwidth: f64,
    /// Alignment weight β in the paper's per-element units (aligned).
    #[arg(long, default_value_t = DEFAULT_ALIGN)]
    align: f64,
    /// Group-sparsity weight λ (groupsparse).
    #[arg(long, default_value_t = DEFAULT_GROUP)]
    group: f64,
    /// Fraction of latents masked per pair before TopK in training (groupsparse).
    #[arg(long, default_value_t = DEFAULT_MASK)]
    mask: f64,
    /// Nested prefix widths, comma-separated and increasing, the last = the feature
    /// count (matryoshka; default K/8,K/4,K/2,K).
    #[arg(long, value_delimiter = ',')]
    widths: Option<Vec<usize>>,
    /// Hidden width of the NCL head (default: K).
    #[arg(long)]
    hidden: Option<usize>,
    /// InfoNCE temperature (ncl).
    #[arg(long, default_value_t = DEFAULT_TEMPERATURE)]
    temperature: f64,
    /// Optimiser steps.
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Samples per step.
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    /// Learning rate (default: 1e-4 relu and ncl, 4e-4 every other kind).
    #[arg(long)]
    lr: Option<f64>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Dead-latent window in samples (AuxK of topk, batchtopk, matryoshka, random).
    #[arg(long, default_value_t = DEFAULT_DEAD_WINDOW)]
    dead_window: u64,
    /// Append metrics to OUT/metrics.jsonl every this many steps.
    #[arg(long, default_value_t = 100)]
    log_every: usize,
    /// Write OUT/checkpoint every this many steps.
    #[arg(long, default_value_t = 500)]
    checkpoint_every: usize,
    /// Continue from OUT/checkpoint (also after a finished run, with a larger --steps).
    #[arg(long)]
    resume: bool,
    /// Subtract each modality's mean embedding first (use `analyze --center` too).
    #[arg(long)]
    center: bool,
    /// Output dictionary directory (dict.json, dictionary.safetensors).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    backend: BackendArg,
}

/// The training bar; resume notes go above it.
struct TrainBar(ProgressBar, PathBuf);

impl TrainProgress for TrainBar {
    fn resumed(&mut self, step: Option<usize>) {
        match step {
            Some(s) => {
                self.0.set_position(s as u64);
                self.0.suspend(|| eprintln!("resumed at step {s}"));
            }
            None => self
                .0
                .suspend(|| eprintln!("no checkpoint in {}; starting fresh", self.1.display())),
        }
    }

    fn step(&mut self, _step: usize, loss: f64) {
        self.0.set_message(format!("loss {loss:.5}"));
        self.0.inc(1);
    }
}

/// Runs `train`.
pub fn run(a: TrainArgs) -> Result<()> {
    let mut emb = EmbeddingsFile::from_bytes(&read_file(&a.embeddings)?)?;
    if a.center {
        emb.pairs = emb.pairs.centered();
    }
    let d = emb.pairs.d;
    let features = a.features.unwrap_or(DEFAULT_EXPANSION * d);
    let kind = DictKind::from(a.kind);
    let widths = match (kind, a.widths) {
        (DictKind::Matryoshka, Some(w)) => w,
        (DictKind::Matryoshka, None) => matryoshka_widths(features),
        (_, Some(_)) => {
            return Err(monoscope::Error::Invalid(
                "--widths is for --kind matryoshka".into(),
            ));
        }
        (_, None) => Vec::new(),
    };
    let dict = DictConfig {
        kind,
        d,
        features,
        k: a.k,
        l1: a.l1,
        hidden: a.hidden.unwrap_or(features),
        temperature: a.temperature,
        l0: a.l0,
        bandwidth: a.bandwidth,
        widths,
        align: a.align,
        group: a.group,
        mask: a.mask,
    };
    let config = TrainConfig {
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        seed: a.seed,
        dead_window: a.dead_window,
        ..TrainConfig::default()
    };
    let mut progress = TrainBar(bar(a.steps as u64, "train"), a.out.clone());
    let job = TrainJob {
        source: &a.embeddings,
        embeddings: emb,
        dict,
        config,
        out: &a.out,
        log_every: a.log_every,
        checkpoint_every: a.checkpoint_every,
        resume: a.resume,
    };
    let log = train(job, &a.backend.device()?, &mut progress)?;
    progress.0.finish_and_clear();
    eprintln!(
        "dictionary written to {} (metrics in {})",
        a.out.display(),
        log.display()
    );
    Ok(())
}
