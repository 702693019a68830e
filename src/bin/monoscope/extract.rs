//! `extract`.

use std::path::PathBuf;

use clap::Args;
use monoscope::Result;
use monoscope::io::captions::{Format, ReadOptions};
use monoscope::jobs::extract::{ExtractJob, run as extract};

use crate::args::{BackendArg, ModelArgs};
use crate::progress::Bars;

/// `monoscope extract`.
#[derive(Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The image-caption set: a TSV list (`image<TAB>caption`), a CSV file, a COCO
    /// captions JSON, a folder of images with same-name .txt captions, or a webdataset
    /// .tar shard (detected from the path; --format forces one).
    #[arg(long, visible_alias = "pairs")]
    data: PathBuf,
    /// Format of --data: tsv, csv, coco, folder or tar.
    #[arg(long, value_parser = str::parse::<Format>)]
    format: Option<Format>,
    /// CSV column holding the image path.
    #[arg(long, default_value = "image")]
    image_column: String,
    /// CSV column holding the caption.
    #[arg(long, default_value = "caption")]
    caption_column: String,
    /// COCO: the image folder (default: `SPLIT/` next to the `annotations` folder of
    /// `captions_SPLIT.json`, else the JSON's folder).
    #[arg(long)]
    images: Option<PathBuf>,
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
        data: &a.data,
        read: ReadOptions {
            format: a.format,
            image_column: a.image_column,
            caption_column: a.caption_column,
            images: a.images,
        },
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
