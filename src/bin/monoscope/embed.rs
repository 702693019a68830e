//! `embed` and `info`.

use std::path::PathBuf;

use clap::Args;
use monoscope::base::Modality;
use monoscope::base::fs::{read_file, write_atomic};
use monoscope::base::host::host_rows;
use monoscope::inspect::Lens;
use monoscope::{Embedder, Error, Result};
use serde::Serialize;

use crate::args::{BackendArg, ModelArgs};
use crate::progress::bar;

/// `monoscope embed`.
#[derive(Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// An image file (PNG, JPEG, WebP, GIF, BMP); repeatable.
    #[arg(long)]
    image: Vec<PathBuf>,
    /// A prompt; repeatable.
    #[arg(long)]
    text: Vec<String>,
    #[command(flatten)]
    backend: BackendArg,
    /// Write the JSON here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Items per forward pass.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// A result bundle for this model: also print every input's feature activations
    /// (`image_activations`, `text_activations`), as the page computes them.
    #[arg(long)]
    bundle: Option<PathBuf>,
}

/// The JSON `embed` prints (the interface scripts and the browser tests read).
#[derive(Serialize)]
struct EmbedOutput {
    images: Vec<String>,
    image_embeds: Vec<Vec<f32>>,
    texts: Vec<String>,
    text_embeds: Vec<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_activations: Option<Vec<Vec<f32>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text_activations: Option<Vec<Vec<f32>>>,
}

/// Runs `embed`.
pub fn embed(a: EmbedArgs) -> Result<()> {
    if a.image.is_empty() && a.text.is_empty() {
        return Err(Error::Invalid(
            "nothing to embed: give --image and/or --text".into(),
        ));
    }
    let batch = a.batch.max(1);
    let device = a.backend.device()?;
    let embedder = Embedder::from_dir(&a.model.model, &device)?;
    // The bundle is loaded first: a wrong one fails before any forward pass.
    let lens = match &a.bundle {
        Some(dir) => {
            let lens = Lens::load(dir, &device)?;
            lens.check_model(embedder.config.projection_dim)?;
            Some(lens)
        }
        None => None,
    };
    let progress = bar((a.image.len() + a.text.len()) as u64, "embed");
    let mut image_embeds = Vec::with_capacity(a.image.len());
    for chunk in a.image.chunks(batch) {
        let pixels = chunk
            .iter()
            .map(|p| {
                read_file(p)
                    .and_then(|b| embedder.preprocess(&b))
                    .map_err(|e| Error::Invalid(format!("{}: {e}", p.display())))
            })
            .collect::<Result<Vec<_>>>()?;
        image_embeds.extend(host_rows(embedder.embed_pixels(&pixels)?)?);
        progress.inc(chunk.len() as u64);
    }
    let mut text_embeds = Vec::with_capacity(a.text.len());
    for (i, chunk) in a.text.chunks(batch).enumerate() {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let (tb, truncated) = embedder.text_batch(&refs)?;
        for (j, _) in truncated.iter().enumerate().filter(|(_, t)| **t) {
            progress.suspend(|| {
                eprintln!(
                    "note: text {} was truncated to {} tokens",
                    i * batch + j + 1,
                    embedder.config.text.max_position_embeddings
                )
            });
        }
        text_embeds.extend(host_rows(embedder.model.embed_texts(&tb))?);
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    let activations = |rows: &[Vec<f32>], modality| match &lens {
        Some(l) if !rows.is_empty() => l.activations(rows, modality).map(Some),
        Some(_) => Ok(Some(Vec::new())),
        None => Ok(None),
    };
    let image_activations = activations(&image_embeds, Modality::Image)?;
    let text_activations = activations(&text_embeds, Modality::Text)?;
    let result = EmbedOutput {
        images: a.image.iter().map(|p| p.display().to_string()).collect(),
        image_embeds,
        texts: a.text,
        text_embeds,
        image_activations,
        text_activations,
    };
    let json = serde_json::to_string(&result).map_err(|e| Error::Invalid(e.to_string()))?;
    match a.out {
        Some(path) => write_atomic(&path, json.as_bytes()),
        None => {
            println!("{json}");
            Ok(())
        }
    }
}

/// `monoscope info`.
#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
}

/// Runs `info`.
pub fn info(a: InfoArgs) -> Result<()> {
    let embedder = Embedder::from_dir(&a.model.model, &burn::tensor::Device::flex())?;
    let info = embedder.info();
    let (t, v) = (&info.config.text, &info.config.vision);
    println!("model: {}", a.model.model.display());
    println!(
        "vision: ViT {}px, patch {}, width {}, {} layers, {} heads, mlp {}, {} ({} params)",
        v.image_size,
        v.patch_size,
        v.hidden_size,
        v.num_hidden_layers,
        v.num_attention_heads,
        v.intermediate_size,
        v.hidden_act.hf_name(),
        info.vision_parameters
    );
    println!(
        "text: vocab {}, context {}, width {}, {} layers, {} heads, mlp {}, {}, pooling {:?} ({} params)",
        t.vocab_size,
        t.max_position_embeddings,
        t.hidden_size,
        t.num_hidden_layers,
        t.num_attention_heads,
        t.intermediate_size,
        t.hidden_act.hf_name(),
        t.pooling(),
        info.text_parameters
    );
    println!("projection: {} dims", info.config.projection_dim);
    println!("parameters: {}", info.parameters);
    Ok(())
}
