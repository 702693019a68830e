//! `extract`.

use std::path::PathBuf;

use clap::Args;
use monoscope::Result;
use monoscope::base::fs::{read_file, write_atomic};
use monoscope::io::captions::{Format, ReadOptions};
use monoscope::io::embeddings::EmbeddingsFile;
use monoscope::jobs::extract::{ExtractJob, merge as merge_shards, run as extract};

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
    /// Embed only shard I of N (I = 0..N-1): the batches of --batch consecutive entries
    /// whose index is I modulo N. Run the N shards anywhere with the same --batch (a Slurm
    /// array, a Kubernetes Indexed Job), then join them with `monoscope merge`: the result
    /// is the file one process writes, bit for bit.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// Threads that read, decode and preprocess images while the model runs (0: in line,
    /// between forward passes). The output is the same for any value.
    #[arg(long, default_value_t = DEFAULT_DECODE_THREADS)]
    decode_threads: usize,
}

/// Two decode workers keep ahead of a ViT-B/32 forward pass on the photos measured in
/// the README (`scripts/extract_reference.py`); more only take cores from the GEMMs.
const DEFAULT_DECODE_THREADS: usize = 2;

/// `I/N` -> (I, N).
fn parse_shard(s: &str) -> std::result::Result<(usize, usize), String> {
    let bad = || format!("{s:?} is not I/N (e.g. 0/4)");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if n == 0 || i >= n {
        return Err(format!("{s:?}: I must be in 0..N and N at least 1"));
    }
    Ok((i, n))
}

/// `monoscope merge`.
#[derive(Args)]
pub struct MergeArgs {
    /// The merged embeddings file.
    out: PathBuf,
    /// The shard files (`extract --shard I/N` outputs), all N of them, in any order.
    #[arg(required = true)]
    shards: Vec<PathBuf>,
}

/// Runs `merge`.
pub fn merge(a: MergeArgs) -> Result<()> {
    let shards = a
        .shards
        .iter()
        .map(|p| {
            let f = EmbeddingsFile::from_bytes(&read_file(p)?)?;
            Ok((p.display().to_string(), f))
        })
        .collect::<Result<Vec<_>>>()?;
    let merged = merge_shards(&shards)?;
    write_atomic(&a.out, &merged.to_bytes()?)?;
    eprintln!(
        "{} pairs from {} shards in {} ({} entries skipped)",
        merged.pairs.n,
        shards.len(),
        a.out.display(),
        merged.meta.skipped.len()
    );
    Ok(())
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
        shard: a.shard,
        decode_threads: a.decode_threads,
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
