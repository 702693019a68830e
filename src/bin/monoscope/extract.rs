//! `extract`.

use std::path::PathBuf;

use clap::Args;
use monoscope::Result;
use monoscope::jobs::extract::{ExtractJob, run as extract};

use crate::args::{BackendArg, ModelArgs};
use crate::progress::Bars;

/// `monoscope extract`.
#[derive(Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The pairs file (TSV).
    #[arg(long)]
    pairs: PathBuf,
    /// Output safetensors file (image_embeds, text_embeds [n, d]).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    backend: BackendArg,
    /// Pairs per forward pass.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Write the `.partial` checkpoint every this many batches.
    #[arg(long, default_value_t = 20)]
    checkpoint_every: usize,
}

/// Runs `extract`.
pub fn run(a: ExtractArgs) -> Result<()> {
    let job = ExtractJob {
        model: &a.model.model,
        list: &a.pairs,
        out: &a.out,
        batch: a.batch.max(1),
        checkpoint_every: a.checkpoint_every.max(1),
    };
    let s = extract(&job, &a.backend.device()?, &mut Bars::default())?;
    eprintln!(
        "{} pairs in {} ({} lines skipped)",
        s.pairs,
        a.out.display(),
        s.skipped
    );
    Ok(())
}
