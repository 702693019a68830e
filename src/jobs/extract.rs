//! The `extract` job: an image-caption set in any supported format (see
//! [`crate::io::captions`]) -> a paired embeddings file. Resumable: pairs already in the
//! output (or in its `.partial` checkpoint, written atomically every few batches) are
//! skipped; bad entries and unreadable images are reported as
//! `SOURCE:ENTRY: skipped: reason` and skipped.
//!
//! Reading, decoding and preprocessing run on `decode_threads` worker threads ahead of the
//! forward pass (issue 12, item 4): worker `w` prepares batches `w, w + W, w + 2W ...` into
//! its own queue of [`QUEUE_DEPTH`] batches, and the forward pass takes them round robin,
//! so the output is in the set's order and the same bits as with no workers at all.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};

use super::Progress;
use crate::base::Pairs;
use crate::base::fs::{read_file, write_atomic};
use crate::base::host::host_rows;
use crate::clip::preprocess::ImageProcessor;
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
    /// `(I, N)`: embed only shard I of N: the batches (of `batch` consecutive entries of the
    /// whole set) whose index is I modulo N, and the skipped entries whose id is. Each shard
    /// so computes exactly the batches one process would, and `merge` gives the same bits.
    pub shard: Option<(usize, usize)>,
    /// Worker threads that read, decode and preprocess images ahead of the forward pass;
    /// 0 does it in line, between forward passes.
    pub decode_threads: usize,
}

/// Batches each decode worker may hold ready beyond the one it is working on: enough to
/// hide a slow image, small enough that memory stays at a few batches of pixels.
const QUEUE_DEPTH: usize = 2;

/// One batch's images read, decoded and preprocessed: pixels, or why the entry is skipped.
type Decoded = Vec<Result<Vec<f32>>>;

/// Reads and preprocesses the images of one batch. A panic in a decoder (hostile input
/// reaching a bug in a codec) becomes that entry's error instead of ending the job.
fn decode_batch(processor: &ImageProcessor, chunk: &[&Entry]) -> Decoded {
    chunk
        .iter()
        .map(|e| {
            std::panic::catch_unwind(|| {
                captions::image_bytes(&e.image).and_then(|b| processor.process(&b))
            })
            .unwrap_or_else(|_| Err(Error::Image("the image decoder panicked".into())))
        })
        .collect()
}

/// The `[I, N, batch]` an output of `job` records (see [`EmbeddingsMeta::shard`]).
fn shard_record(job: &ExtractJob<'_>) -> Option<[usize; 3]> {
    job.shard.map(|(i, n)| [i, n, job.batch.max(1)])
}

/// Whether the entry at `position` in the whole set belongs to `shard`: its batch of
/// `batch` consecutive entries has an index that is I modulo N.
fn in_shard(position: usize, shard: Option<(usize, usize)>, batch: usize) -> bool {
    shard.is_none_or(|(i, n)| (position / batch) % n == i)
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
    if let Some((i, n)) = job.shard
        && i >= n
    {
        return Err(Error::Invalid(format!(
            "--shard {i}/{n}: the shard index must be below the shard count"
        )));
    }
    let mut set = captions::read(job.data, &job.read)?;
    let batch = job.batch.max(1);
    // Skipped entries belong to the shard their id falls in (they have no position).
    if let Some((i, n)) = job.shard {
        set.skipped.retain(|(id, _)| id % n == i);
    }
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
    let shard = shard_record(job);
    if let Some(d) = &done
        && d.meta.shard != shard
    {
        return Err(Error::Invalid(format!(
            "{} holds shard {:?}, not {shard:?}: use another --out",
            job.out.display(),
            d.meta.shard
        )));
    }
    let seen: HashSet<usize> = done
        .as_ref()
        .map(|d| d.meta.lines.iter().copied().collect())
        .unwrap_or_default();
    // (position in the whole set, entry): positions fix the batches, so a shard, or a run
    // that resumes, embeds exactly the batches one uninterrupted process would (the same
    // rows together give the same bits).
    let todo: Vec<(usize, &Entry)> = set
        .entries
        .iter()
        .enumerate()
        .filter(|(p, e)| in_shard(*p, job.shard, batch) && !seen.contains(&e.id))
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
    let batches: Vec<Vec<&Entry>> = todo
        .chunk_by(|a, b| a.0 / batch == b.0 / batch)
        .map(|c| c.iter().map(|(_, e)| *e).collect())
        .collect();
    let workers = job.decode_threads.min(batches.len());
    let processor = &embedder.processor;
    std::thread::scope(|scope| -> Result<()> {
        // One bounded queue per worker; dropping them (an error below) stops the workers.
        let lanes: Vec<Receiver<Decoded>> = (0..workers)
            .map(|w| {
                let (tx, rx) = sync_channel(QUEUE_DEPTH);
                let batches = &batches;
                scope.spawn(move || {
                    for chunk in batches.iter().skip(w).step_by(workers) {
                        if tx.send(decode_batch(processor, chunk)).is_err() {
                            break;
                        }
                    }
                });
                rx
            })
            .collect();
        for (i, chunk) in batches.iter().enumerate() {
            let decoded = match lanes.get(i % workers.max(1)) {
                Some(lane) => lane
                    .recv()
                    .map_err(|_| Error::Invalid("an image decode worker stopped".into()))?,
                None => decode_batch(processor, chunk),
            };
            let embedded = embed_chunk(job, &embedder, chunk, decoded, &mut skipped, progress)?;
            if let Some((kept, images, texts)) = embedded {
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
        Ok(())
    })?;
    progress.finish();
    let Some(mut file) = done else {
        return Err(Error::Invalid(format!(
            "{}: no usable pairs",
            job.data.display()
        )));
    };
    // In id order, so that a merge of shards writes the same list.
    skipped.sort_by_key(|(id, _)| *id);
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

/// Embeds one batch of entries from their `decoded` images; unreadable images are noted
/// and skipped.
fn embed_chunk<'l>(
    job: &ExtractJob<'_>,
    embedder: &Embedder,
    chunk: &[&'l Entry],
    decoded: Decoded,
    skipped: &mut Vec<(usize, String)>,
    progress: &mut dyn Progress,
) -> Result<Option<EmbeddedChunk<'l>>> {
    let mut pixels = Vec::new();
    let mut kept = Vec::new();
    for (e, image) in chunk.iter().zip(decoded) {
        match image {
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
            shard: shard_record(job),
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

/// Joins the N shard files of one extraction (`extract --shard I/N`, I = 0..N) into the file
/// a single process would have written: rows in id order, skipped entries in id order. Shards
/// of different models, sets or widths, missing or repeated shards are refused.
pub fn merge(shards: &[(String, EmbeddingsFile)]) -> Result<EmbeddingsFile> {
    let Some((first_name, first)) = shards.first() else {
        return Err(Error::Invalid("merge needs at least one shard file".into()));
    };
    let Some([_, n, batch]) = first.meta.shard else {
        return Err(Error::Invalid(format!(
            "{first_name} is not a shard (made without --shard)"
        )));
    };
    let mut seen = vec![false; n];
    for (name, s) in shards {
        let m = &s.meta;
        let same = m.model == first.meta.model && m.pairs == first.meta.pairs;
        if !same || s.pairs.d != first.pairs.d {
            return Err(Error::Invalid(format!(
                "{name} is from another extraction than {first_name} (model {:?}, set {:?}, width {}; expected {:?}, {:?}, {})",
                m.model, m.pairs, s.pairs.d, first.meta.model, first.meta.pairs, first.pairs.d
            )));
        }
        match m.shard {
            Some([i, count, b]) if count == n && b == batch && i < n && !seen[i] => seen[i] = true,
            Some([i, count, b]) if count == n && b == batch && i < n => {
                return Err(Error::Invalid(format!(
                    "{name}: shard {i}/{n} is given twice"
                )));
            }
            other => {
                return Err(Error::Invalid(format!(
                    "{name} holds shard {other:?} ([I, N, batch]), not one of {n} with batch {batch} like {first_name}"
                )));
            }
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(Error::Invalid(format!("shard {i}/{n} is missing")));
    }
    // (id, shard, row) of every row, in id order.
    let mut rows: Vec<(usize, usize, usize)> = shards
        .iter()
        .enumerate()
        .flat_map(|(s, (_, f))| {
            f.meta
                .lines
                .iter()
                .enumerate()
                .map(move |(r, &id)| (id, s, r))
        })
        .collect();
    rows.sort_unstable();
    let d = first.pairs.d;
    let with_truth = shards.iter().all(|(_, f)| f.meta.truth.len() == f.pairs.n);
    let mut out = EmbeddingsFile {
        pairs: Pairs {
            images: Vec::with_capacity(rows.len() * d),
            texts: Vec::with_capacity(rows.len() * d),
            n: rows.len(),
            d,
        },
        meta: EmbeddingsMeta {
            model: first.meta.model.clone(),
            pairs: first.meta.pairs.clone(),
            ..EmbeddingsMeta::default()
        },
    };
    for &(id, s, r) in &rows {
        let f = &shards[s].1;
        out.pairs
            .images
            .extend_from_slice(&f.pairs.images[r * d..(r + 1) * d]);
        out.pairs
            .texts
            .extend_from_slice(&f.pairs.texts[r * d..(r + 1) * d]);
        out.meta.lines.push(id);
        out.meta.images.push(f.meta.images[r].clone());
        out.meta.captions.push(f.meta.captions[r].clone());
        if with_truth {
            out.meta.truth.push(f.meta.truth[r].clone());
        }
    }
    out.meta.skipped = shards
        .iter()
        .flat_map(|(_, f)| f.meta.skipped.iter().cloned())
        .collect();
    out.meta.skipped.sort_by_key(|(id, _)| *id);
    Ok(out)
}
