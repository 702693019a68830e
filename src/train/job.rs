//! The `train` job: a dictionary trained on a paired embeddings file into a dictionary
//! directory, with metrics logged to `metrics.jsonl`, atomic checkpoints and resume.

use std::io::Write;
use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;

use super::checkpoint;
use super::dict::{TrainConfig, Trainer, align_split, evaluate};
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
    // The log must end where the checkpoint does: lines of steps after it (logged before a
    // crash, and logged again by this run) and a line cut short by the crash are dropped;
    // a fresh run starts an empty log.
    let kept = match std::fs::read(&log_path) {
        Ok(old) if job.resume => log_up_to(&old, trainer.state.step),
        _ => Vec::new(),
    };
    crate::base::fs::write_atomic(&log_path, &kept)?;
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .map_err(io)?;
    let pairs = &job.embeddings.pairs;
    // The last metrics logged so far (a resumed run may have no step left to log).
    let mut last: Option<serde_json::Value> = kept
        .split(|&b| b == b'\n')
        .rev()
        .find_map(|l| serde_json::from_slice(l).ok());
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
    // Split dictionaries: text latents matched to image latents after training (the
    // checkpoint keeps the unmatched ones, so a resumed run matches from the same state).
    let (dict, alignment) = align_split(trainer.finish(), pairs, device)?;
    let file = DictFile {
        format: FORMAT.into(),
        config: job.dict,
        center_input: true,
        provenance: serde_json::json!({
            "embeddings": job.source.display().to_string(), "model": job.embeddings.meta.model,
            "train": job.config, "final": last, "alignment": alignment,
        }),
        weights: None,
    };
    save_dir(out, &file, &dict)?;
    Ok(log_path)
}

/// The complete lines of a `metrics.jsonl` whose step is at most `step`.
fn log_up_to(old: &[u8], step: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for line in old.split_inclusive(|&b| b == b'\n') {
        let complete = line.ends_with(b"\n");
        let logged = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["step"].as_u64());
        if complete && logged.is_some_and(|s| s as usize <= step) {
            out.extend_from_slice(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_resumed_log_keeps_complete_lines_up_to_the_checkpoint() {
        let old = b"{\"step\":10}\n{\"step\":20}\n{\"step\":30}\n{\"step\":4";
        assert_eq!(super::log_up_to(old, 20), b"{\"step\":10}\n{\"step\":20}\n");
        assert_eq!(super::log_up_to(old, 5), b"");
    }
}
