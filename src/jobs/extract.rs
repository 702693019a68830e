//! The `extract` job: an image-caption set in any supported format (see
//! [`crate::io::captions`]) -> a paired embeddings file. Resumable: pairs already in the
//! output (or in its `.partial` checkpoint, written atomically every few batches) are
//! skipped; bad entries and unreadable images are reported as
//! `SOURCE:ENTRY: skipped: reason` and skipped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::Progress;
use crate::base::Pairs;
use crate::base::fs::{read_file, write_atomic};
use crate::base::host::host_rows;
use crate::error::{Error, Result};
use crate::io::captions::{self, Entry, ReadOptions};
use crate::io::embeddings::{EmbeddingsFile, EmbeddingsMeta};
use crate::pipeline::Embedder;

/// The inputs of `monoscope extract`.
pub struct ExtractJob<'a> {
    /// Hugging Face CLIP directory.
    pub model: &'a Path,
    /// The image-caption set (TSV, CSV, COCO JSON, folder or tar shard).
    pub data: &'a Path,
    /// How to read it.
    pub read: ReadOptions,
    /// Output safetensors file.
    pub out: &'a Path,
    /// Pairs per forward pass.
    pub batch: usize,
    /// Write the `.partial` checkpoint every this many batches.
    pub checkpoint_every: usize,
}

/// What an extraction did.
#[derive(Debug, Clone, Copy)]
pub struct ExtractSummary {
    /// Pairs in the output file.
    pub pairs: usize,
    /// Entries skipped (bad entries and unreadable images, over all runs).
    pub skipped: usize,
}

/// The `.partial` checkpoint next to `out`.
fn partial_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

/// Runs the extraction on `device`.
pub fn run(
    job: &ExtractJob<'_>,
    device: &burn::tensor::Device,
    progress: &mut dyn Progress,
) -> Result<ExtractSummary> {
    let set = captions::read(job.data, &job.read)?;
    for (id, why) in &set.skipped {
        progress.note(&format!("{}:{id}: skipped: {why}", job.data.display()));
    }
    let partial = partial_path(job.out);
    // Resume from the finished file or the partial one, whichever exists.
    let previous = [job.out, partial.as_path()]
        .into_iter()
        .find(|p| p.exists());
    let mut done = match previous {
        Some(p) => Some(EmbeddingsFile::from_bytes(&read_file(p)?)?),
        None => None,
    };
    let seen: HashSet<usize> = done
        .as_ref()
        .map(|d| d.meta.lines.iter().copied().collect())
        .unwrap_or_default();
    let todo: Vec<&Entry> = set
        .entries
        .iter()
        .filter(|e| !seen.contains(&e.id))
        .collect();
    if !seen.is_empty() {
        progress.note(&format!(
            "resuming: {} pairs already embedded, {} to go",
            seen.len(),
            todo.len()
        ));
    }
    let embedder = Embedder::from_dir(job.model, device)?;
    let mut skipped = set.skipped;
    progress.start("extract", todo.len() as u64);
    for (i, chunk) in todo.chunks(job.batch.max(1)).enumerate() {
        let batch = embed_chunk(job, &embedder, chunk, &mut skipped, progress)?;
        if let Some((kept, images, texts)) = batch {
            append(
                job,
                &mut done,
                &kept,
                images,
                texts,
                embedder.config.projection_dim,
            )?;
        }
        progress.inc(chunk.len() as u64);
        if (i + 1) % job.checkpoint_every.max(1) == 0
            && let Some(f) = &done
        {
            write_atomic(&partial, &f.to_bytes()?)?;
        }
    }
    progress.finish();
    let Some(mut file) = done else {
        return Err(Error::Invalid(format!(
            "{}: no usable pairs",
            job.data.display()
        )));
    };
    file.meta.skipped = skipped;
    write_atomic(job.out, &file.to_bytes()?)?;
    std::fs::remove_file(&partial).ok();
    Ok(ExtractSummary {
        pairs: file.pairs.n,
        skipped: file.meta.skipped.len(),
    })
}

/// Embedded pairs of one batch: the kept entries, their image and text embeddings.
type EmbeddedChunk<'l> = (Vec<&'l Entry>, Vec<f32>, Vec<f32>);

/// Embeds one batch of entries; unreadable images are noted and skipped.
fn embed_chunk<'l>(
    job: &ExtractJob<'_>,
    embedder: &Embedder,
    chunk: &[&'l Entry],
    skipped: &mut Vec<(usize, String)>,
    progress: &mut dyn Progress,
) -> Result<Option<EmbeddedChunk<'l>>> {
    let mut pixels = Vec::new();
    let mut kept = Vec::new();
    for e in chunk {
        match captions::image_bytes(&e.image).and_then(|b| embedder.preprocess(&b)) {
            Ok(p) => {
                pixels.push(p);
                kept.push(*e);
            }
            Err(err) => {
                progress.note(&format!("{}:{}: skipped: {err}", job.data.display(), e.id));
                skipped.push((e.id, err.to_string()));
            }
        }
    }
    if kept.is_empty() {
        return Ok(None);
    }
    let captions: Vec<&str> = kept.iter().map(|e| e.caption.as_str()).collect();
    let images = host_rows(embedder.embed_pixels(&pixels)?)?.concat();
    let texts = host_rows(embedder.embed_texts(&captions)?)?.concat();
    Ok(Some((kept, images, texts)))
}

/// Appends a batch to the file being built (created on the first batch).
fn append(
    job: &ExtractJob<'_>,
    done: &mut Option<EmbeddingsFile>,
    kept: &[&Entry],
    images: Vec<f32>,
    texts: Vec<f32>,
    d: usize,
) -> Result<()> {
    let file = done.get_or_insert_with(|| EmbeddingsFile {
        pairs: Pairs {
            images: Vec::new(),
            texts: Vec::new(),
            n: 0,
            d,
        },
        meta: EmbeddingsMeta {
            model: job.model.display().to_string(),
            pairs: job.data.display().to_string(),
            ..EmbeddingsMeta::default()
        },
    });
    if file.pairs.d != d {
        return Err(Error::Invalid(format!(
            "{} holds width {} embeddings, this model makes {d}",
            job.out.display(),
            file.pairs.d
        )));
    }
    file.pairs.images.extend(images);
    file.pairs.texts.extend(texts);
    file.pairs.n += kept.len();
    for e in kept {
        file.meta.lines.push(e.id);
        file.meta.images.push(e.name.clone());
        file.meta.captions.push(e.caption.clone());
    }
    Ok(())
}
