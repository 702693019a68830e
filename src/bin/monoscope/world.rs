//! The demo world's commands: `world-train`, `world-extract`, `world-decoder`,
//! `world-images`, `world-factors`.

use std::path::PathBuf;

use burn::tensor::Device;
use clap::Args;
use monoscope::base::fs::write_atomic;
use monoscope::clip::tokenizer::ClipTokenizer;
use monoscope::train::checkpoint;
use monoscope::world::decoder::{DecoderTrainConfig, DecoderTrainer, ImageDecoderConfig, save_dir};
use monoscope::world::factors::{FactorRow, factor_table_for};
use monoscope::world::images::draw_scenes;
use monoscope::world::train::{
    HELD_OUT_START, WorldTrainConfig, WorldTrainer, evaluate, extract_scenes,
};
use monoscope::{Embedder, Error, Result};

use crate::args::{JsonArg, ModelArgs};
use crate::progress::bar;

/// `monoscope world-train`.
#[derive(Args)]
pub struct WorldTrainArgs {
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
    /// World seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Optimiser steps.
    #[arg(long, default_value_t = 3000)]
    steps: usize,
    /// Pairs per step.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Image side in pixels (a multiple of 8).
    #[arg(long, default_value_t = 64)]
    side: usize,
    /// Write OUT/checkpoint every this many steps.
    #[arg(long, default_value_t = 250)]
    checkpoint_every: usize,
    /// Continue from OUT/checkpoint.
    #[arg(long)]
    resume: bool,
    /// Held-out scenes for the final evaluation.
    #[arg(long, default_value_t = 1000)]
    eval_scenes: usize,
}

/// Runs `world-train`: trains, writes the HF directory, prints the held-out evaluation.
pub fn train(a: WorldTrainArgs) -> Result<()> {
    let config = WorldTrainConfig {
        seed: a.seed,
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        side: a.side,
        ..WorldTrainConfig::default()
    };
    let device = Device::flex();
    let mut t = WorldTrainer::new(config, &device)?;
    let ckpt = a.out.join("checkpoint");
    if a.resume && checkpoint::exists(&ckpt) {
        t.load_checkpoint(&ckpt)?;
        eprintln!("resumed at step {}", t.step);
    }
    let progress = bar(a.steps as u64, "train");
    progress.set_position(t.step as u64);
    while t.step < a.steps {
        let loss = t.train_step()?;
        progress.set_message(format!("loss {loss:.4}"));
        progress.inc(1);
        if t.step % a.checkpoint_every.max(1) == 0 || t.step == a.steps {
            t.save_checkpoint(&ckpt)?;
        }
    }
    progress.finish_and_clear();
    t.save_hf(&a.out)?;
    let tok_bytes =
        serde_json::to_vec(&t.tokenizer_json).map_err(|e| Error::Invalid(e.to_string()))?;
    let tok = ClipTokenizer::from_bytes(&tok_bytes, 32)?;
    let e = evaluate(
        &t.model(),
        &t.clip_config,
        &tok,
        a.seed,
        a.eval_scenes,
        &device,
    )?;
    println!(
        "{}",
        serde_json::to_string(&e).map_err(|e| Error::Invalid(e.to_string()))?
    );
    Ok(())
}

/// `monoscope world-extract`.
#[derive(Args)]
pub struct WorldExtractArgs {
    /// The demo CLIP directory (from world-train).
    #[command(flatten)]
    model: ModelArgs,
    /// World seed (as used for training).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of scenes.
    #[arg(long, default_value_t = 5000)]
    scenes: usize,
    /// Output embeddings file.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `world-extract`.
pub fn extract(a: WorldExtractArgs) -> Result<()> {
    let embedder = Embedder::from_dir(&a.model.model, &Device::flex())?;
    let progress = bar(a.scenes as u64, "extract");
    let mut file = extract_scenes(&embedder, a.seed, HELD_OUT_START, a.scenes, |n| {
        progress.inc(n as u64)
    })?;
    progress.finish_and_clear();
    file.meta.model = a.model.model.display().to_string();
    write_atomic(&a.out, &file.to_bytes()?)?;
    eprintln!("{} scenes embedded into {}", file.pairs.n, a.out.display());
    Ok(())
}

/// `monoscope world-decoder`.
#[derive(Args)]
pub struct WorldDecoderArgs {
    /// The demo CLIP directory.
    #[command(flatten)]
    model: ModelArgs,
    /// World seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Training scenes are drawn from indices 0..SCENES.
    #[arg(long, default_value_t = 50_000)]
    scenes: u64,
    /// Steps.
    #[arg(long, default_value_t = 3000)]
    steps: usize,
    /// Scenes per step.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Hidden width.
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    /// Output side in pixels.
    #[arg(long, default_value_t = 16)]
    side: usize,
    /// Output directory (decoder.json, decoder.safetensors, and checkpoint/ while it trains).
    #[arg(long)]
    out: PathBuf,
    /// Write OUT/checkpoint every this many steps.
    #[arg(long, default_value_t = 250)]
    checkpoint_every: usize,
    /// Continue from OUT/checkpoint.
    #[arg(long)]
    resume: bool,
}

/// Runs `world-decoder`.
pub fn decoder(a: WorldDecoderArgs) -> Result<()> {
    let device = Device::flex();
    let embedder = Embedder::from_dir(&a.model.model, &device)?;
    let config = DecoderTrainConfig {
        seed: a.seed,
        scenes: a.scenes,
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        model: ImageDecoderConfig {
            d: embedder.config.projection_dim,
            hidden: a.hidden,
            side: a.side,
        },
    };
    let mut t = DecoderTrainer::new(config.clone(), &device)?;
    let ckpt = a.out.join("checkpoint");
    if a.resume && checkpoint::exists(&ckpt) {
        t.load_checkpoint(&ckpt)?;
        eprintln!("resumed at step {}", t.step);
    }
    let progress = bar(a.steps as u64, "decoder");
    progress.set_position(t.step as u64);
    while t.step < a.steps {
        let loss = t.train_step(&embedder)?;
        progress.set_message(format!("mse {loss:.4}"));
        progress.inc(1);
        if t.step % a.checkpoint_every.max(1) == 0 || t.step == a.steps {
            t.save_checkpoint(&ckpt)?;
        }
    }
    progress.finish();
    save_dir(&a.out, &config.model, &t.finish())?;
    eprintln!("decoder written to {}", a.out.display());
    Ok(())
}

/// `monoscope world-images`.
#[derive(Args)]
pub struct WorldImagesArgs {
    /// World seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image side in pixels (the demo CLIP's image_size).
    #[arg(long, default_value_t = 64)]
    side: u32,
    /// Number of scenes.
    #[arg(long, default_value_t = 6)]
    count: usize,
    /// Only single-object scenes of this colour (e.g. probe groups).
    #[arg(long)]
    colour: Option<String>,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `world-images`.
pub fn images(a: WorldImagesArgs) -> Result<()> {
    draw_scenes(a.seed, a.side, a.count, a.colour.as_deref(), &a.out)?;
    eprintln!("{} scenes drawn into {}", a.count, a.out.display());
    Ok(())
}

/// `monoscope world-factors`.
#[derive(Args)]
pub struct WorldFactorsArgs {
    /// The demo CLIP directory.
    #[command(flatten)]
    model: ModelArgs,
    /// A result bundle made from this model's embeddings.
    #[arg(long)]
    bundle: PathBuf,
    /// World seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Held-out scenes to score (taken after the ones `world-extract` uses).
    #[arg(long, default_value_t = 2000)]
    scenes: usize,
    /// Also write the table as JSON.
    #[command(flatten)]
    json: JsonArg,
}

/// Runs `world-factors`: prints the table as Markdown.
pub fn factors(a: WorldFactorsArgs) -> Result<()> {
    let table = factor_table_for(&a.model.model, &a.bundle, a.seed, a.scenes, &Device::flex())?;
    print!("{}", markdown(&table));
    a.json.write(&table)
}

/// The factor table as Markdown, with the count of expected classes.
fn markdown(table: &[FactorRow]) -> String {
    let mut s = String::from(
        "| factor | kind | pairs | best feature | correlation | class | as expected |\n|---|---|---|---|---|---|---|\n",
    );
    for r in table {
        s += &format!(
            "| {} | {:?} | {} | {} | {:.3} | {:?} | {} |\n",
            r.factor,
            r.kind,
            r.positives,
            r.feature,
            r.correlation,
            r.class,
            if r.as_expected() { "yes" } else { "no" }
        );
    }
    let hits = table.iter().filter(|r| r.as_expected()).count();
    s += &format!(
        "\n{hits} of {} factors land in the expected class\n",
        table.len()
    );
    s
}
