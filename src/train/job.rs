//! The `train` job: a dictionary trained on a paired embeddings file into a dictionary
//! directory, with metrics logged to `metrics.jsonl`, atomic checkpoints and resume.

use std::io::Write;
use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;

use super::checkpoint;
use super::dict::{TrainConfig, Trainer, evaluate};
use crate::base::fs::create_dir;
use crate::dict::DictConfig;
use crate::error::{Error, Result};
use crate::io::dictionary::{DictFile, FORMAT, save_dir};
use crate::io::embeddings::EmbeddingsFile;

/// Rows the metrics in `metrics.jsonl` are measured on.
const EVAL_ROWS: usize = 4096;

/// The inputs of `monoscope train`.
pub struct TrainJob<'a> {
    /// Where the embeddings came from (recorded in the dictionary's provenance).
    pub source: &'a Path,
    /// The embeddings (already centred with `--center`).
    pub embeddings: EmbeddingsFile,
    /// Dictionary shape.
    pub dict: DictConfig,
    /// Hyper-parameters.
    pub config: TrainConfig,
    /// Output directory.
    pub out: &'a Path,
    /// Log metrics every this many steps.
    pub log_every: usize,
    /// Checkpoint every this many steps.
    pub checkpoint_every: usize,
    /// Continue from `OUT/checkpoint`.
    pub resume: bool,
}

/// What the training loop tells its caller after each step.
pub trait TrainProgress {
    /// Resumed at `step` (or started fresh when no checkpoint was found: `None`).
    fn resumed(&mut self, step: Option<usize>);
    /// `step` done with this loss.
    fn step(&mut self, step: usize, loss: f64);
}

/// Trains and writes the dictionary directory; returns the path of `metrics.jsonl`.
pub fn run(
    job: TrainJob<'_>,
    device: &Device,
    progress: &mut dyn TrainProgress,
) -> Result<std::path::PathBuf> {
    let out = job.out;
    let io = |source| Error::Io {
        path: out.display().to_string(),
        source,
    };
    create_dir(out)?;
    let ckpt = out.join("checkpoint");
    let mut trainer = Trainer::new(job.dict.clone(), job.config.clone(), device)?;
    if job.resume {
        if checkpoint::exists(&ckpt) {
            trainer.load_checkpoint(&ckpt)?;
            progress.resumed(Some(trainer.state.step));
        } else {
            progress.resumed(None);
        }
    }
    let log_path = out.join("metrics.jsonl");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io)?;
    let pairs = &job.embeddings.pairs;
    let mut last = None;
    while trainer.state.step < job.config.steps {
        let s = trainer.step(pairs)?;
        let step = trainer.state.step;
        progress.step(step, s.loss);
        if step % job.log_every.max(1) == 0 || step == job.config.steps {
            let eval = evaluate(
                &trainer.dict.clone().valid(),
                pairs,
                EVAL_ROWS,
                step,
                device,
            )?;
            let line = serde_json::json!({ "step": step, "loss": s.loss, "aux": s.aux,
                "dead_fraction_window": s.dead_fraction, "image": eval.image, "text": eval.text });
            writeln!(log, "{line}").map_err(io)?;
            last = Some(line);
        }
        if step % job.checkpoint_every.max(1) == 0 || step == job.config.steps {
            trainer.save_checkpoint(&ckpt)?;
        }
    }
    let file = DictFile {
        format: FORMAT.into(),
        config: job.dict,
        center_input: true,
        provenance: serde_json::json!({
            "embeddings": job.source.display().to_string(), "model": job.embeddings.meta.model,
            "train": job.config, "final": last,
        }),
    };
    save_dir(out, &file, &trainer.finish())?;
    Ok(log_path)
}
