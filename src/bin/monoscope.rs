//! The `monoscope` command line (native only).

// The browser build is examples/web.rs (see Trunk.toml); this binary is native only.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    keep_large_allocations_in_the_heap();
    cli::main()
}

/// Training and analysis allocate and free tensors of tens of MB on every step (a
/// [4096, 4096] f32 activation is 64 MB). glibc serves allocations above its mmap threshold
/// with fresh mappings and unmaps them on free, so every step page-faults hundreds of MB
/// back in. Serving them from the heap and never trimming it made TopK training 1.25x and
/// `analyze` 1.5x faster here (README, Performance); peak memory is unchanged, it is just
/// not returned to the system before the process exits.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_large_allocations_in_the_heap() {
    // glibc's malloc.h parameter numbers.
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_MAX: i32 = -4;
    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // SAFETY: mallopt only changes allocator policy; called before any other thread exists.
    unsafe {
        mallopt(M_MMAP_MAX, 0);
        mallopt(M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(all(
    not(target_arch = "wasm32"),
    not(all(target_os = "linux", target_env = "gnu"))
))]
fn keep_large_allocations_in_the_heap() {}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    mod apps_cli;

    use std::path::PathBuf;
    use std::process::ExitCode;

    use burn::module::Module;
    use burn::tensor::Device;
    use clap::{Parser, Subcommand, ValueEnum};
    use indicatif::{ProgressBar, ProgressStyle};
    use monoscope::analysis::analyze::{AnalyzeConfig, analyze};
    use monoscope::analysis::mds::ClassRule;
    use monoscope::clip::ClipConfig;
    use monoscope::dict::train::{Pairs, TrainConfig, Trainer, evaluate};
    use monoscope::dict::{DictConfig, DictKind};
    use monoscope::io::bundle::{Example, FeaturesFile, Manifest, fnv1a64};
    use monoscope::io::dictionary::{DictFile, FORMAT, save_dir};
    use monoscope::io::embeddings::{EmbeddingsFile, EmbeddingsMeta};
    use monoscope::io::pairs;
    use monoscope::pipeline::rows;
    use monoscope::{Embedder, Error, Result, bench, read_file, write_atomic};
    use serde::Serialize;

    /// monoscope: look inside CLIP, on your own machine.
    #[derive(Parser)]
    #[command(version, about)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    /// Compute backend.
    #[derive(Clone, Copy, Debug, ValueEnum)]
    enum Backend {
        /// burn's pure-Rust CPU backend (flex).
        Cpu,
        /// burn's wgpu backend (Vulkan, Metal or DX12 natively).
        Wgpu,
    }

    /// Dictionary family.
    #[derive(Clone, Copy, Debug, ValueEnum)]
    enum Kind {
        /// TopK sparse autoencoder.
        Topk,
        /// ReLU sparse autoencoder with an L1 penalty.
        Relu,
        /// Non-negative contrastive head.
        Ncl,
    }

    /// Attack objective.
    #[derive(Clone, Copy, Debug, ValueEnum)]
    enum ObjectiveArg {
        /// The whole embedding (log-probability of the target among the labels).
        Embedding,
        /// Only ImgD features.
        Imgd,
        /// Only TextD features.
        Textd,
        /// Only CrossD features.
        Crossd,
    }

    /// Class rule.
    #[derive(Clone, Copy, Debug, ValueEnum)]
    enum Rule {
        /// ImgD above mean + std of MDS, TextD below mean - std.
        Zscore,
        /// Fixed thresholds (--img-threshold, --text-threshold).
        Fixed,
    }

    impl From<Kind> for DictKind {
        fn from(k: Kind) -> Self {
            match k {
                Kind::Topk => DictKind::Topk,
                Kind::Relu => DictKind::Relu,
                Kind::Ncl => DictKind::Ncl,
            }
        }
    }

    #[derive(Subcommand)]
    enum Command {
        /// Embed images and prompts; prints (or writes) JSON
        /// {"images", "image_embeds", "texts", "text_embeds"} with L2-normalised embeddings
        /// in input order.
        Embed {
            /// Hugging Face CLIP directory (config.json, model.safetensors, tokenizer.json).
            #[arg(long)]
            model: PathBuf,
            /// An image file (PNG, JPEG, WebP, GIF, BMP); repeatable.
            #[arg(long)]
            image: Vec<PathBuf>,
            /// A prompt; repeatable.
            #[arg(long)]
            text: Vec<String>,
            /// Compute backend.
            #[arg(long, value_enum, default_value_t = Backend::Cpu)]
            backend: Backend,
            /// Write the JSON here instead of standard output.
            #[arg(long)]
            out: Option<PathBuf>,
            /// Items per forward pass.
            #[arg(long, default_value_t = 16)]
            batch: usize,
        },
        /// Embed an image-caption list (`image<TAB>caption` per line, paths relative to the
        /// file) into a paired embeddings file. Re-running resumes: pairs already in OUT (or
        /// in its `.partial` checkpoint) are skipped. Bad lines are reported and skipped.
        Extract {
            /// Hugging Face CLIP directory.
            #[arg(long)]
            model: PathBuf,
            /// The pairs file (TSV).
            #[arg(long)]
            pairs: PathBuf,
            /// Output safetensors file (image_embeds, text_embeds [n, d]).
            #[arg(long)]
            out: PathBuf,
            /// Compute backend.
            #[arg(long, value_enum, default_value_t = Backend::Cpu)]
            backend: Backend,
            /// Pairs per forward pass.
            #[arg(long, default_value_t = 32)]
            batch: usize,
            /// Write the `.partial` checkpoint every this many batches.
            #[arg(long, default_value_t = 20)]
            checkpoint_every: usize,
        },
        /// Train a feature dictionary on paired embeddings (from `extract`).
        Train {
            /// Paired embeddings file.
            #[arg(long)]
            embeddings: PathBuf,
            /// Dictionary family.
            #[arg(long, value_enum)]
            kind: Kind,
            /// Number of features K (default 8 x the embedding width).
            #[arg(long)]
            features: Option<usize>,
            /// Active features per sample (topk).
            #[arg(long, default_value_t = monoscope::dict::DEFAULT_TOPK)]
            k: usize,
            /// L1 coefficient (relu).
            #[arg(long, default_value_t = monoscope::dict::DEFAULT_L1)]
            l1: f64,
            /// Hidden width of the NCL head (default: K).
            #[arg(long)]
            hidden: Option<usize>,
            /// InfoNCE temperature (ncl).
            #[arg(long, default_value_t = monoscope::dict::DEFAULT_TEMPERATURE)]
            temperature: f64,
            /// Optimiser steps.
            #[arg(long, default_value_t = 2000)]
            steps: usize,
            /// Samples per step.
            #[arg(long, default_value_t = 4096)]
            batch: usize,
            /// Learning rate (default: 4e-4 topk, 1e-4 relu and ncl).
            #[arg(long)]
            lr: Option<f64>,
            /// Seed.
            #[arg(long, default_value_t = 0)]
            seed: u64,
            /// Dead-latent window in samples (topk AuxK).
            #[arg(long, default_value_t = monoscope::dict::train::DEFAULT_DEAD_WINDOW)]
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
        },
        /// Score every feature's modality (MDS), classify features (ImgD / TextD / CrossD),
        /// measure EmbSim and WinRate, auto-label features, and write the result bundle.
        Analyze {
            /// Hugging Face CLIP directory (used to embed the label vocabulary).
            #[arg(long)]
            model: PathBuf,
            /// Dictionary directory (monoscope or SAELens format).
            #[arg(long)]
            dict: PathBuf,
            /// Paired embeddings file (from `extract`).
            #[arg(long)]
            embeddings: PathBuf,
            /// Output bundle directory.
            #[arg(long)]
            out: PathBuf,
            /// Class rule.
            #[arg(long, value_enum, default_value_t = Rule::Zscore)]
            rule: Rule,
            /// ImgD threshold of the fixed rule.
            #[arg(long, default_value_t = monoscope::analysis::mds::DEFAULT_FIXED.0)]
            img_threshold: f64,
            /// TextD threshold of the fixed rule.
            #[arg(long, default_value_t = monoscope::analysis::mds::DEFAULT_FIXED.1)]
            text_threshold: f64,
            /// Features supported by fewer pairs are "rare" and not classified.
            #[arg(long, default_value_t = monoscope::analysis::mds::DEFAULT_MIN_SUPPORT)]
            min_support: u64,
            /// Top samples per feature and modality (EmbSim, examples).
            #[arg(long, default_value_t = 20)]
            top_m: usize,
            /// Label vocabulary, one entry per line (default: the built-in English list).
            #[arg(long)]
            vocab: Option<PathBuf>,
            /// Subtract each modality's mean embedding before the dictionary.
            #[arg(long)]
            center: bool,
            /// Compute backend.
            #[arg(long, value_enum, default_value_t = Backend::Cpu)]
            backend: Backend,
        },
        /// Summarise a result bundle in the terminal and draw its MDS histogram as SVG.
        Report {
            /// Bundle directory.
            bundle: PathBuf,
            /// Where to write the histogram (default BUNDLE/mds_histogram.svg).
            #[arg(long)]
            svg: Option<PathBuf>,
            /// Features listed per class.
            #[arg(long, default_value_t = 5)]
            top: usize,
        },
        /// Measure dictionary training throughput (samples/s) on random data; compare with
        /// `scripts/sae_reference.py bench --monoscope-json FILE`.
        BenchTrain {
            /// Dictionary families to measure; repeatable.
            #[arg(long, value_enum, default_values_t = [Kind::Topk, Kind::Relu])]
            kind: Vec<Kind>,
            /// Embedding width.
            #[arg(long, default_value_t = 512)]
            d: usize,
            /// Features K.
            #[arg(long, default_value_t = 4096)]
            features: usize,
            /// TopK k.
            #[arg(long, default_value_t = 32)]
            k: usize,
            /// Samples per step.
            #[arg(long, default_value_t = 4096)]
            batch: usize,
            /// Timed steps (after one warm-up).
            #[arg(long, default_value_t = 5)]
            steps: usize,
            /// Dead-latent window; 0 makes every latent dead, so AuxK runs every step.
            #[arg(long, default_value_t = monoscope::dict::train::DEFAULT_DEAD_WINDOW)]
            dead_window: u64,
            /// Also write the results as JSON.
            #[arg(long)]
            json: Option<PathBuf>,
        },
        /// Time `analyze` on random pairs with a random TopK dictionary; compare with
        /// `python3 scripts/analyze_reference.py --monoscope-json FILE`.
        BenchAnalyze {
            /// Number of pairs.
            #[arg(long, default_value_t = 100_000)]
            pairs: usize,
            /// Embedding width.
            #[arg(long, default_value_t = 512)]
            d: usize,
            /// Features K.
            #[arg(long, default_value_t = 4096)]
            features: usize,
            /// TopK k.
            #[arg(long, default_value_t = 32)]
            k: usize,
            /// Also write the result as JSON.
            #[arg(long)]
            json: Option<PathBuf>,
        },
        /// Train the demo world's small CLIP on generated scenes; writes a Hugging Face
        /// directory (config.json, model.safetensors, tokenizer.json).
        WorldTrain {
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
        },
        /// Embed held-out demo-world scenes (one caption each) with a demo CLIP into a
        /// paired embeddings file that also records every scene's ground-truth factors.
        WorldExtract {
            /// The demo CLIP directory (from world-train).
            #[arg(long)]
            model: PathBuf,
            /// World seed (as used for training).
            #[arg(long, default_value_t = 0)]
            seed: u64,
            /// Number of scenes.
            #[arg(long, default_value_t = 5000)]
            scenes: usize,
            /// Output embeddings file.
            #[arg(long)]
            out: PathBuf,
        },
        /// Attribute / bias probe (SPEC §4.1): zero-shot classify groups of images (one
        /// folder per group; group i should match prompt i) from the CLIP embedding, the
        /// dictionary's reconstruction, and the reconstruction without ImgD, TextD or CrossD
        /// features; accuracy with counts and a 95% bootstrap interval per group, and the
        /// features whose removal moves each group most.
        Probe {
            /// CLIP directory.
            #[arg(long)]
            model: PathBuf,
            /// Result bundle (a TopK or ReLU SAE) made for this model.
            #[arg(long)]
            bundle: PathBuf,
            /// Image folder of one group (repeat, in prompt order).
            #[arg(long = "group", required = true)]
            groups: Vec<PathBuf>,
            /// One prompt per group (default: "a photo of a man", "a photo of a woman").
            #[arg(long = "prompt")]
            prompts: Vec<String>,
            /// Bootstrap resamples.
            #[arg(long, default_value_t = monoscope::apps::probe::DEFAULT_BOOTSTRAP)]
            bootstrap: usize,
            /// Features listed per group.
            #[arg(long, default_value_t = monoscope::apps::probe::DEFAULT_TOP_FEATURES)]
            top: usize,
            /// Also write the report as JSON.
            #[arg(long)]
            json: Option<PathBuf>,
            /// Compute backend.
            #[arg(long, value_enum, default_value = "cpu")]
            backend: Backend,
        },
        /// Cross-modal adversarial examples (SPEC §4.2): PGD on pixels (L-infinity) toward a
        /// target prompt, then which feature classes moved and whether removing ImgD or
        /// TextD features before zero-shot classification restores the clean prediction.
        Attack {
            /// CLIP directory.
            #[arg(long)]
            model: PathBuf,
            /// Result bundle (a TopK or ReLU SAE) made for this model.
            #[arg(long)]
            bundle: PathBuf,
            /// Image files or folders (repeat).
            #[arg(long = "image", required = true)]
            images: Vec<PathBuf>,
            /// Zero-shot prompts (repeat; at least two).
            #[arg(long = "label", required = true)]
            labels: Vec<String>,
            /// Target prompt: one of the labels, or "nearest" (per image, the most similar
            /// wrong label).
            #[arg(long, default_value = "nearest")]
            target: String,
            /// L-infinity radius in 0..1 pixel units ("4/255" or 0.0157).
            #[arg(long, default_value = "4/255")]
            eps: String,
            /// PGD steps.
            #[arg(long, default_value_t = monoscope::apps::attack::DEFAULT_STEPS)]
            steps: usize,
            /// Step size (default eps/4).
            #[arg(long)]
            step_size: Option<String>,
            /// What to pull toward the target.
            #[arg(long, value_enum, default_value = "embedding")]
            objective: ObjectiveArg,
            /// Images per PGD batch.
            #[arg(long, default_value_t = 16)]
            batch: usize,
            /// Output directory: report.json and clean / adversarial / difference PNGs.
            #[arg(long)]
            out: Option<PathBuf>,
            /// Compute backend.
            #[arg(long, value_enum, default_value = "cpu")]
            backend: Backend,
        },
        /// Modality-specific control (SPEC §4.3): scale a prompt's (or an image's)
        /// features by class (or single features), keep the reconstruction residual, and
        /// write the edited embedding as OUT (safetensors, tensor "embedding" [1, d]) and
        /// OUT with .npy.
        Control {
            /// CLIP directory.
            #[arg(long)]
            model: PathBuf,
            /// Result bundle (a TopK or ReLU SAE) made for this model.
            #[arg(long)]
            bundle: PathBuf,
            /// The prompt to edit.
            #[arg(long, required_unless_present = "image", conflicts_with = "image")]
            prompt: Option<String>,
            /// Or an image to edit (its image embedding, e.g. for unCLIP decoders).
            #[arg(long)]
            image: Option<PathBuf>,
            /// Scale of ImgD features.
            #[arg(long, default_value_t = 1.0)]
            imgd: f32,
            /// Scale of TextD features.
            #[arg(long, default_value_t = 1.0)]
            textd: f32,
            /// Scale of CrossD features.
            #[arg(long, default_value_t = 1.0)]
            crossd: f32,
            /// Single feature scale, ID=SCALE (repeat).
            #[arg(long = "feature")]
            features: Vec<String>,
            /// Output .safetensors file (a .npy is written next to it).
            #[arg(long)]
            out: PathBuf,
            /// Demo-world image decoder directory: also write OUT.before.png / OUT.after.png.
            #[arg(long)]
            decoder: Option<PathBuf>,
        },
        /// Trains the demo world's image decoder (embedding -> 16x16 image) used to show
        /// modality-specific control in the page.
        WorldDecoder {
            /// The demo CLIP directory.
            #[arg(long)]
            model: PathBuf,
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
            /// Output directory (decoder.json, decoder.safetensors).
            #[arg(long)]
            out: PathBuf,
        },
        /// Draws held-out demo-world scenes as PNG files with an `index.json` listing each
        /// file, its first caption and its scene name (the web page's demo inputs).
        WorldImages {
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
        },
        /// The factor table: for each ground-truth factor of the demo world, the bundle's
        /// feature that predicts it best and its class (expected: image-only -> ImgD,
        /// text-only -> TextD, shared -> CrossD).
        WorldFactors {
            /// The demo CLIP directory.
            #[arg(long)]
            model: PathBuf,
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
            #[arg(long)]
            json: Option<PathBuf>,
        },
        /// Print a model's architecture and parameter count.
        Info {
            /// Hugging Face CLIP directory.
            #[arg(long)]
            model: PathBuf,
        },
        /// Measure images/s and texts/s of a random-init model of a preset shape.
        Bench {
            /// Backends to measure; repeatable.
            #[arg(long, value_enum, default_values_t = [Backend::Cpu])]
            backend: Vec<Backend>,
            /// Batch sizes; repeatable.
            #[arg(long, default_values_t = [1usize, 32])]
            batch: Vec<usize>,
            /// Timed iterations per measurement (after one warm-up).
            #[arg(long, default_value_t = 3)]
            iters: usize,
            /// Also write the results as JSON (read by scripts/bench_reference.py).
            #[arg(long)]
            json: Option<PathBuf>,
        },
    }

    pub fn main() -> ExitCode {
        // Errors are one line; a panic (a bug) is reported the same way, without a backtrace.
        std::panic::set_hook(Box::new(|info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            eprintln!("error: internal error: {}", msg.replace('\n', " "));
        }));
        let cli = Cli::parse();
        match std::panic::catch_unwind(|| run(cli)) {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("error: {}", e.to_string().replace('\n', " "));
                ExitCode::FAILURE
            }
            Err(_) => ExitCode::FAILURE,
        }
    }

    fn device(backend: Backend) -> Result<Device> {
        match backend {
            Backend::Cpu => Ok(Device::flex()),
            Backend::Wgpu => Device::wgpu_options()
                .init()
                .map_err(|e| Error::Device(format!("no wgpu device: {e}"))),
        }
    }

    #[derive(Serialize)]
    struct EmbedOutput {
        images: Vec<String>,
        image_embeds: Vec<Vec<f32>>,
        texts: Vec<String>,
        text_embeds: Vec<Vec<f32>>,
    }

    fn run(cli: Cli) -> Result<()> {
        match cli.command {
            Command::Embed {
                model,
                image,
                text,
                backend,
                out,
                batch,
            } => {
                if image.is_empty() && text.is_empty() {
                    return Err(Error::Invalid(
                        "nothing to embed: give --image and/or --text".into(),
                    ));
                }
                let batch = batch.max(1);
                let device = device(backend)?;
                let embedder = Embedder::from_dir(&model, &device)?;
                let progress = ProgressBar::new((image.len() + text.len()) as u64).with_style(
                    ProgressStyle::with_template("{bar:30} {pos}/{len} {per_sec} eta {eta}")
                        .expect("valid template"),
                );
                let mut image_embeds = Vec::with_capacity(image.len());
                for chunk in image.chunks(batch) {
                    let pixels = chunk
                        .iter()
                        .map(|p| {
                            read_file(p)
                                .and_then(|b| embedder.preprocess(&b))
                                .map_err(|e| Error::Invalid(format!("{}: {e}", p.display())))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    image_embeds.extend(rows(embedder.embed_pixels(&pixels)?)?);
                    progress.inc(chunk.len() as u64);
                }
                let mut text_embeds = Vec::with_capacity(text.len());
                for (i, chunk) in text.chunks(batch).enumerate() {
                    let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    let (tb, truncated) = embedder.text_batch(&refs)?;
                    for (j, t) in truncated.iter().enumerate() {
                        if *t {
                            progress.suspend(|| {
                                eprintln!(
                                    "note: text {} was truncated to {} tokens",
                                    i * batch + j + 1,
                                    embedder.config.text.max_position_embeddings
                                )
                            });
                        }
                    }
                    text_embeds.extend(rows(embedder.model.embed_texts(&tb))?);
                    progress.inc(chunk.len() as u64);
                }
                progress.finish_and_clear();
                let result = EmbedOutput {
                    images: image.iter().map(|p| p.display().to_string()).collect(),
                    image_embeds,
                    texts: text,
                    text_embeds,
                };
                let json =
                    serde_json::to_string(&result).map_err(|e| Error::Invalid(e.to_string()))?;
                match out {
                    Some(path) => write_atomic(&path, json.as_bytes()),
                    None => {
                        println!("{json}");
                        Ok(())
                    }
                }
            }
            Command::Extract {
                model,
                pairs,
                out,
                backend,
                batch,
                checkpoint_every,
            } => extract(
                &model,
                &pairs,
                &out,
                &device(backend)?,
                batch.max(1),
                checkpoint_every.max(1),
            ),
            Command::Train {
                embeddings,
                kind,
                features,
                k,
                l1,
                hidden,
                temperature,
                steps,
                batch,
                lr,
                seed,
                dead_window,
                log_every,
                checkpoint_every,
                resume,
                center,
                out,
            } => {
                let mut emb = EmbeddingsFile::from_bytes(&read_file(&embeddings)?)?;
                if center {
                    emb.pairs = emb.pairs.centered();
                }
                let kind = DictKind::from(kind);
                let d = emb.pairs.d;
                let features = features.unwrap_or(monoscope::dict::DEFAULT_EXPANSION * d);
                let dict = DictConfig {
                    kind,
                    d,
                    features,
                    k,
                    l1,
                    hidden: hidden.unwrap_or(features),
                    temperature,
                };
                let config = TrainConfig {
                    steps,
                    batch,
                    lr,
                    seed,
                    dead_window,
                    ..TrainConfig::default()
                };
                train(
                    &embeddings,
                    emb,
                    dict,
                    config,
                    &out,
                    log_every.max(1),
                    checkpoint_every.max(1),
                    resume,
                )
            }
            Command::Analyze {
                model,
                dict,
                embeddings,
                out,
                rule,
                img_threshold,
                text_threshold,
                min_support,
                top_m,
                vocab,
                center,
                backend,
            } => {
                let rule = match rule {
                    Rule::Zscore => ClassRule::Zscore,
                    Rule::Fixed => ClassRule::Fixed {
                        img: img_threshold,
                        text: text_threshold,
                    },
                };
                let config = AnalyzeConfig {
                    rule,
                    min_support,
                    top_m: top_m.max(2),
                    center,
                    ..AnalyzeConfig::default()
                };
                analyze_cmd(
                    &model,
                    &dict,
                    &embeddings,
                    &out,
                    vocab.as_deref(),
                    config,
                    &device(backend)?,
                )
            }
            Command::Report { bundle, svg, top } => {
                let svg = svg.unwrap_or_else(|| bundle.join("mds_histogram.svg"));
                monoscope::analysis::report::report(&bundle, &svg, top)
            }
            Command::BenchTrain {
                kind,
                d,
                features,
                k,
                batch,
                steps,
                dead_window,
                json,
            } => {
                let mut results = Vec::new();
                for kind in kind {
                    let dk = DictKind::from(kind);
                    let dict = DictConfig {
                        features,
                        k,
                        hidden: features,
                        ..DictConfig::new(dk, d)
                    };
                    let config = TrainConfig {
                        steps: steps + 1,
                        batch,
                        dead_window,
                        ..TrainConfig::default()
                    };
                    let rate = bench::train_throughput(
                        dict,
                        config,
                        batch.max(8192),
                        steps.max(1),
                        &Device::flex(),
                    )?;
                    let name = format!("{kind:?}").to_lowercase();
                    println!(
                        "{name:<5} d={d} K={features} k={k} batch={batch}: {rate:.1} samples/s"
                    );
                    results.push(serde_json::json!({ "kind": name, "samples_per_s": rate, "d": d, "features": features,
                        "k": k, "batch": batch, "steps": steps, "dead_window": dead_window }));
                }
                if let Some(path) = json {
                    let text =
                        serde_json::to_string_pretty(&serde_json::json!({ "results": results }))
                            .map_err(|e| Error::Invalid(e.to_string()))?;
                    write_atomic(&path, text.as_bytes())?;
                }
                Ok(())
            }
            Command::BenchAnalyze {
                pairs,
                d,
                features,
                k,
                json,
            } => {
                let dict = DictConfig {
                    features,
                    k,
                    ..DictConfig::new(DictKind::Topk, d)
                };
                let secs = bench::analyze_seconds(dict, pairs, &Device::flex())?;
                println!("analyze: {pairs} pairs, d={d}, K={features}, k={k}: {secs:.2} s");
                if let Some(path) = json {
                    let v = serde_json::json!({ "results": [{ "task": "analyze", "pairs": pairs, "d": d,
                        "features": features, "k": k, "seconds": secs }] });
                    write_atomic(&path, v.to_string().as_bytes())?;
                }
                Ok(())
            }
            Command::WorldTrain {
                out,
                seed,
                steps,
                batch,
                lr,
                side,
                checkpoint_every,
                resume,
                eval_scenes,
            } => {
                use monoscope::world::train::{WorldTrainConfig, WorldTrainer, evaluate};
                let config = WorldTrainConfig {
                    seed,
                    steps,
                    batch,
                    lr,
                    side,
                    ..WorldTrainConfig::default()
                };
                let device = Device::flex();
                let mut t = WorldTrainer::new(config, &device)?;
                let ckpt = out.join("checkpoint");
                if resume && (ckpt.exists() || ckpt.with_extension("old").exists()) {
                    t.load_checkpoint(&ckpt)?;
                    eprintln!("resumed at step {}", t.step);
                }
                let progress = bar(steps as u64, "train");
                progress.set_position(t.step as u64);
                while t.step < steps {
                    let loss = t.train_step()?;
                    progress.set_message(format!("loss {loss:.4}"));
                    progress.inc(1);
                    if t.step % checkpoint_every.max(1) == 0 || t.step == steps {
                        t.save_checkpoint(&ckpt)?;
                    }
                }
                progress.finish_and_clear();
                t.save_hf(&out)?;
                let tok_bytes = serde_json::to_vec(&t.tokenizer_json)
                    .map_err(|e| Error::Invalid(e.to_string()))?;
                let tok = monoscope::clip::tokenizer::ClipTokenizer::from_bytes(&tok_bytes, 32)?;
                let e = evaluate(&t.model(), &t.clip_config, &tok, seed, eval_scenes, &device)?;
                println!(
                    "{}",
                    serde_json::to_string(&e).map_err(|e| Error::Invalid(e.to_string()))?
                );
                Ok(())
            }
            Command::WorldExtract {
                model,
                seed,
                scenes,
                out,
            } => {
                let embedder = Embedder::from_dir(&model, &Device::flex())?;
                let progress = bar(scenes as u64, "extract");
                let start = monoscope::world::train::HELD_OUT_START;
                let mut file =
                    monoscope::world::train::extract_scenes(&embedder, seed, start, scenes, |n| {
                        progress.inc(n as u64)
                    })?;
                progress.finish_and_clear();
                file.meta.model = model.display().to_string();
                write_atomic(&out, &file.to_bytes()?)?;
                eprintln!("{} scenes embedded into {}", file.pairs.n, out.display());
                Ok(())
            }
            Command::Probe {
                model,
                bundle,
                groups,
                prompts,
                bootstrap,
                top,
                json,
                backend,
            } => apps_cli::probe(
                &model, &bundle, &groups, prompts, bootstrap, top, json, backend,
            ),
            Command::Attack {
                model,
                bundle,
                images,
                labels,
                target,
                eps,
                steps,
                step_size,
                objective,
                batch,
                out,
                backend,
            } => {
                use monoscope::analysis::mds::FeatureClass;
                use monoscope::apps::attack::{AttackConfig, Objective, parse_eps};
                let config = AttackConfig {
                    eps: parse_eps(&eps)?,
                    steps,
                    step_size: step_size.as_deref().map(parse_eps).transpose()?,
                    objective: match objective {
                        ObjectiveArg::Embedding => Objective::Embedding,
                        ObjectiveArg::Imgd => Objective::Class(FeatureClass::ImgD),
                        ObjectiveArg::Textd => Objective::Class(FeatureClass::TextD),
                        ObjectiveArg::Crossd => Objective::Class(FeatureClass::CrossD),
                    },
                };
                apps_cli::attack(
                    &model, &bundle, &images, &labels, &target, config, batch, out, backend,
                )
            }
            Command::Control {
                model,
                bundle,
                prompt,
                image,
                imgd,
                textd,
                crossd,
                features,
                out,
                decoder,
            } => apps_cli::control(
                &model,
                &bundle,
                match (prompt, image) {
                    (Some(p), _) => apps_cli::ControlInput::Prompt(p),
                    (None, Some(i)) => apps_cli::ControlInput::Image(i),
                    (None, None) => {
                        return Err(Error::Invalid("give --prompt or --image".into()));
                    }
                },
                [imgd, textd, crossd, 1.0],
                &features,
                &out,
                decoder.as_deref(),
            ),
            Command::WorldDecoder {
                model,
                seed,
                scenes,
                steps,
                batch,
                lr,
                hidden,
                side,
                out,
            } => {
                use monoscope::world::decoder::{
                    CONFIG_FILE, DecoderTrainConfig, ImageDecoderConfig, WEIGHTS_FILE,
                    train_decoder,
                };
                let device = Device::flex();
                let embedder = Embedder::from_dir(&model, &device)?;
                let config = DecoderTrainConfig {
                    seed,
                    scenes,
                    steps,
                    batch,
                    lr,
                    model: ImageDecoderConfig {
                        d: embedder.config.projection_dim,
                        hidden,
                        side,
                    },
                };
                let progress = bar(steps as u64, "decoder");
                let dec = train_decoder(&embedder, &config, &device, |_, loss| {
                    progress.set_message(format!("mse {loss:.4}"));
                    progress.inc(1);
                })?;
                progress.finish();
                std::fs::create_dir_all(&out).map_err(|source| Error::Io {
                    path: out.display().to_string(),
                    source,
                })?;
                write_atomic(
                    &out.join(WEIGHTS_FILE),
                    &monoscope::io::weights::save_module(&dec)?,
                )?;
                let json = serde_json::to_vec_pretty(&config.model)
                    .map_err(|e| Error::Invalid(e.to_string()))?;
                write_atomic(&out.join(CONFIG_FILE), &json)?;
                eprintln!("decoder written to {}", out.display());
                Ok(())
            }
            Command::WorldImages {
                seed,
                side,
                count,
                colour,
                out,
            } => {
                use monoscope::world::scene;
                std::fs::create_dir_all(&out).map_err(|source| Error::Io {
                    path: out.display().to_string(),
                    source,
                })?;
                // Far past the scenes world-extract and world-factors use.
                let start = 2 * monoscope::world::train::HELD_OUT_START;
                let wanted = match &colour {
                    None => None,
                    Some(c) => Some(scene::COLOURS.iter().position(|(n, _)| n == c).ok_or_else(
                        || {
                            Error::Invalid(format!(
                                "unknown colour {c:?}; the demo world has {:?}",
                                scene::COLOURS.map(|(n, _)| n)
                            ))
                        },
                    )?),
                };
                let mut index = Vec::new();
                let picked = (start..).filter(|&i| match wanted {
                    None => true,
                    Some(c) => {
                        let f = scene::generate(seed, i, side, 0).factors;
                        f.objects.len() == 1 && f.objects[0].colour == c
                    }
                });
                for (i, n) in picked.take(count).enumerate() {
                    let s = scene::generate(seed, n, side, 1);
                    let file = format!("scene-{i}.png");
                    let mut png = std::io::Cursor::new(Vec::new());
                    s.image
                        .write_to(&mut png, image::ImageFormat::Png)
                        .map_err(|e| Error::Image(e.to_string()))?;
                    write_atomic(&out.join(&file), png.get_ref())?;
                    index.push(serde_json::json!({
                        "file": file,
                        "caption": s.captions[0].0,
                        "scene": scene::name(seed, n),
                    }));
                }
                let json =
                    serde_json::to_vec_pretty(&index).map_err(|e| Error::Invalid(e.to_string()))?;
                write_atomic(&out.join("index.json"), &json)?;
                eprintln!("{count} scenes drawn into {}", out.display());
                Ok(())
            }
            Command::WorldFactors {
                model,
                bundle,
                seed,
                scenes,
                json,
            } => {
                let device = Device::flex();
                let table = world_factors(&model, &bundle, seed, scenes, &device)?;
                println!(
                    "| factor | kind | pairs | best feature | correlation | class | as expected |"
                );
                println!("|---|---|---|---|---|---|---|");
                for r in &table {
                    println!(
                        "| {} | {:?} | {} | {} | {:.3} | {:?} | {} |",
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
                println!(
                    "\n{hits} of {} factors land in the expected class",
                    table.len()
                );
                if let Some(path) = json {
                    let text = serde_json::to_string_pretty(&table)
                        .map_err(|e| Error::Invalid(e.to_string()))?;
                    write_atomic(&path, text.as_bytes())?;
                }
                Ok(())
            }
            Command::Info { model } => {
                let embedder = Embedder::from_dir(&model, &Device::flex())?;
                let info = embedder.info();
                let (t, v) = (&info.config.text, &info.config.vision);
                println!("model: {}", model.display());
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
            Command::Bench {
                backend,
                batch,
                iters,
                json,
            } => {
                let config = ClipConfig::vit_b_32();
                println!("random-init ViT-B/32 shape, {iters} timed iterations after 1 warm-up");
                println!(
                    "{:<6} {:<6} {:>6} {:>12}",
                    "backend", "tower", "batch", "items/s"
                );
                let mut all = Vec::new();
                for b in backend {
                    let name = format!("{b:?}").to_lowercase();
                    let dev = device(b)?;
                    let res = bench::run(&name, &dev, &config, &batch, iters.max(1), |r| {
                        println!(
                            "{:<7} {:<6} {:>6} {:>12.2}",
                            r.backend, r.tower, r.batch, r.items_per_s
                        )
                    })?;
                    all.extend(res);
                }
                if let Some(path) = json {
                    let text = serde_json::to_string_pretty(&serde_json::json!({ "results": all }))
                        .map_err(|e| Error::Invalid(e.to_string()))?;
                    write_atomic(&path, text.as_bytes())?;
                }
                Ok(())
            }
        }
    }

    fn bar(len: u64, what: &str) -> ProgressBar {
        ProgressBar::new(len).with_style(
            ProgressStyle::with_template(&format!(
                "{what} {{bar:30}} {{pos}}/{{len}} {{per_sec}} eta {{eta}} {{msg}}"
            ))
            .expect("valid template"),
        )
    }

    fn extract(
        model: &std::path::Path,
        list: &std::path::Path,
        out: &std::path::Path,
        device: &Device,
        batch: usize,
        every: usize,
    ) -> Result<()> {
        let bytes = read_file(list)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::Invalid(format!("{}: not UTF-8 text", list.display())))?;
        let (lines, bad) = pairs::parse(&text);
        for (line, why) in &bad {
            eprintln!("{}:{line}: skipped: {why}", list.display());
        }
        let partial = {
            let mut p = out.as_os_str().to_owned();
            p.push(".partial");
            PathBuf::from(p)
        };
        // Resume from the finished file or the partial one, whichever exists.
        let previous = [out, partial.as_path()].into_iter().find(|p| p.exists());
        let mut done = match previous {
            Some(p) => Some(EmbeddingsFile::from_bytes(&read_file(p)?)?),
            None => None,
        };
        let seen: std::collections::HashSet<usize> = done
            .as_ref()
            .map(|d| d.meta.lines.iter().copied().collect())
            .unwrap_or_default();
        let todo: Vec<&pairs::PairLine> =
            lines.iter().filter(|l| !seen.contains(&l.line)).collect();
        if !seen.is_empty() {
            eprintln!(
                "resuming: {} pairs already embedded, {} to go",
                seen.len(),
                todo.len()
            );
        }
        let embedder = Embedder::from_dir(model, device)?;
        let base = list.parent().unwrap_or(std::path::Path::new("."));
        let mut skipped = bad.clone();
        let progress = bar(todo.len() as u64, "extract");
        for (i, chunk) in todo.chunks(batch).enumerate() {
            let mut pixels = Vec::new();
            let mut kept = Vec::new();
            for l in chunk {
                match read_file(&base.join(&l.image)).and_then(|b| embedder.preprocess(&b)) {
                    Ok(p) => {
                        pixels.push(p);
                        kept.push(*l);
                    }
                    Err(e) => {
                        progress
                            .suspend(|| eprintln!("{}:{}: skipped: {e}", list.display(), l.line));
                        skipped.push((l.line, e.to_string()));
                    }
                }
            }
            if !kept.is_empty() {
                let captions: Vec<&str> = kept.iter().map(|l| l.caption.as_str()).collect();
                let img = rows(embedder.embed_pixels(&pixels)?)?.concat();
                let txt = rows(embedder.embed_texts(&captions)?)?.concat();
                let d = embedder.config.projection_dim;
                let file = done.get_or_insert_with(|| EmbeddingsFile {
                    pairs: Pairs {
                        images: Vec::new(),
                        texts: Vec::new(),
                        n: 0,
                        d,
                    },
                    meta: EmbeddingsMeta {
                        model: model.display().to_string(),
                        pairs: list.display().to_string(),
                        ..EmbeddingsMeta::default()
                    },
                });
                if file.pairs.d != d {
                    return Err(Error::Invalid(format!(
                        "{} holds width {} embeddings, this model makes {d}",
                        out.display(),
                        file.pairs.d
                    )));
                }
                file.pairs.images.extend(img);
                file.pairs.texts.extend(txt);
                file.pairs.n += kept.len();
                for l in &kept {
                    file.meta.lines.push(l.line);
                    file.meta.images.push(l.image.clone());
                    file.meta.captions.push(l.caption.clone());
                }
            }
            progress.inc(chunk.len() as u64);
            if (i + 1) % every == 0
                && let Some(f) = &done
            {
                write_atomic(&partial, &f.to_bytes()?)?;
            }
        }
        progress.finish_and_clear();
        let Some(mut file) = done else {
            return Err(Error::Invalid(format!(
                "{}: no usable pairs",
                list.display()
            )));
        };
        file.meta.skipped = skipped;
        write_atomic(out, &file.to_bytes()?)?;
        std::fs::remove_file(&partial).ok();
        eprintln!(
            "{} pairs in {} ({} lines skipped)",
            file.pairs.n,
            out.display(),
            file.meta.skipped.len()
        );
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn train(
        source: &std::path::Path,
        emb: EmbeddingsFile,
        dict: DictConfig,
        config: TrainConfig,
        out: &std::path::Path,
        log_every: usize,
        checkpoint_every: usize,
        resume: bool,
    ) -> Result<()> {
        let device = Device::flex();
        let io = |source| Error::Io {
            path: out.display().to_string(),
            source,
        };
        std::fs::create_dir_all(out).map_err(io)?;
        let ckpt = out.join("checkpoint");
        let mut trainer = Trainer::new(dict.clone(), config.clone(), &device)?;
        if resume {
            if ckpt.exists() || ckpt.with_extension("old").exists() {
                trainer.load_checkpoint(&ckpt)?;
                eprintln!("resumed at step {}", trainer.state.step);
            } else {
                eprintln!("no checkpoint in {}; starting fresh", out.display());
            }
        }
        let log_path = out.join("metrics.jsonl");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io)?;
        let progress = bar(config.steps as u64, "train");
        progress.set_position(trainer.state.step as u64);
        let mut last = None;
        while trainer.state.step < config.steps {
            let s = trainer.step(&emb.pairs)?;
            let step = trainer.state.step;
            progress.set_message(format!("loss {:.5}", s.loss));
            progress.inc(1);
            if step % log_every == 0 || step == config.steps {
                let eval = evaluate(
                    &trainer.dict.clone().valid(),
                    &emb.pairs,
                    4096,
                    step,
                    &device,
                )?;
                let line = serde_json::json!({ "step": step, "loss": s.loss, "aux": s.aux,
                    "dead_fraction_window": s.dead_fraction, "image": eval.image, "text": eval.text });
                use std::io::Write;
                writeln!(log, "{line}").map_err(io)?;
                last = Some(line);
            }
            if step % checkpoint_every == 0 || step == config.steps {
                trainer.save_checkpoint(&ckpt)?;
            }
        }
        progress.finish_and_clear();
        let file = DictFile {
            format: FORMAT.into(),
            config: dict,
            center_input: true,
            provenance: serde_json::json!({
                "embeddings": source.display().to_string(), "model": emb.meta.model,
                "train": config, "final": last,
            }),
        };
        save_dir(out, &file, &trainer.finish())?;
        eprintln!(
            "dictionary written to {} (metrics in {})",
            out.display(),
            log_path.display()
        );
        Ok(())
    }

    /// The default label vocabulary (scripts/make_vocab.py).
    const DEFAULT_VOCAB: &str = include_str!("../../assets/vocab/english.txt");

    fn analyze_cmd(
        model: &std::path::Path,
        dict_dir: &std::path::Path,
        embeddings: &std::path::Path,
        out: &std::path::Path,
        vocab: Option<&std::path::Path>,
        config: AnalyzeConfig,
        device: &Device,
    ) -> Result<()> {
        let emb = EmbeddingsFile::from_bytes(&read_file(embeddings)?)?;
        let (dict_file, dict) = monoscope::io::dictionary::load_dir(dict_dir, device)?;
        if dict_file.config.d != emb.pairs.d {
            return Err(Error::Invalid(format!(
                "the dictionary expects width {}, the embeddings have {}",
                dict_file.config.d, emb.pairs.d
            )));
        }
        let embedder = Embedder::from_dir(model, device)?;
        if embedder.config.projection_dim != emb.pairs.d {
            return Err(Error::Invalid(format!(
                "{} embeds into {} dimensions, the embeddings have {}",
                model.display(),
                embedder.config.projection_dim,
                emb.pairs.d
            )));
        }
        let vocab_text = match vocab {
            Some(p) => String::from_utf8(read_file(p)?)
                .map_err(|_| Error::Invalid(format!("{}: not UTF-8", p.display())))?,
            None => DEFAULT_VOCAB.to_string(),
        };
        let words: Vec<String> = vocab_text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        let progress = bar((words.len() + emb.pairs.n) as u64, "analyze");
        let mut word_embeds = Vec::new();
        for chunk in words.chunks(256) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            word_embeds.push(embedder.embed_texts(&refs)?);
            progress.inc(chunk.len() as u64);
        }
        let vocab_tensor =
            (!word_embeds.is_empty()).then(|| burn::tensor::Tensor::cat(word_embeds, 0));
        let result = analyze(
            &dict,
            &emb.pairs,
            vocab_tensor.map(|t| (words.as_slice(), t)),
            &config,
            device,
            |n| progress.inc(n as u64),
        )?;
        progress.finish_and_clear();
        let mut examples = std::collections::BTreeMap::new();
        for f in &result.features {
            for (row, _) in f.top_images.iter().chain(&f.top_texts) {
                examples.entry(*row).or_insert_with(|| Example {
                    line: emb.meta.lines.get(*row).copied().unwrap_or(row + 1) as u64,
                    image: emb.meta.images.get(*row).cloned().unwrap_or_default(),
                    caption: emb.meta.captions.get(*row).cloned().unwrap_or_default(),
                });
            }
        }
        let weights = read_file(&model.join("model.safetensors"))?;
        let manifest = Manifest {
            format: monoscope::io::bundle::FORMAT.into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            model: serde_json::json!({
                "path": model.display().to_string(), "hash_fnv1a64": fnv1a64(&weights), "config": embedder.config,
            }),
            dictionary: dict_file,
            dataset: serde_json::json!({
                "embeddings": embeddings.display().to_string(), "pairs_file": emb.meta.pairs,
                "pairs": emb.pairs.n, "skipped_lines": emb.meta.skipped.len(),
                // With --center, inputs must be centred with these means before encoding.
                "modality_means": config.center.then(|| {
                    let (image, text) = emb.pairs.modality_means();
                    serde_json::json!({ "image": image, "text": text })
                }),
            }),
            analysis: serde_json::to_value(&config).map_err(|e| Error::Invalid(e.to_string()))?,
            thresholds: result.thresholds,
            class_counts: result.class_counts,
            metrics: serde_json::json!({ "win_rates": result.win_rates, "quality": result.quality }),
        };
        monoscope::io::bundle::save(
            out,
            &manifest,
            &FeaturesFile {
                features: result.features,
                examples,
            },
            &dict,
        )?;
        let [i, t, c, r] = result.class_counts;
        eprintln!(
            "bundle written to {}: ImgD {i}, TextD {t}, CrossD {c}, rare {r}",
            out.display()
        );
        Ok(())
    }

    fn world_factors(
        model: &std::path::Path,
        bundle: &std::path::Path,
        seed: u64,
        scenes: usize,
        device: &Device,
    ) -> Result<Vec<monoscope::world::factors::FactorRow>> {
        let embedder = Embedder::from_dir(model, device)?;
        let b = monoscope::io::bundle::load(bundle, device)?;
        // Scenes after the ones world-extract embeds by default, so the table is scored
        // on data the dictionary never saw.
        let start = monoscope::world::train::HELD_OUT_START + 1_000_000;
        let mut file =
            monoscope::world::train::extract_scenes(&embedder, seed, start, scenes, |_| {})?;
        if b.manifest.analysis["center"].as_bool() == Some(true) {
            file.pairs = file.pairs.centered();
        }
        let all: Vec<usize> = (0..file.pairs.n).collect();
        let encode = |image: bool| -> Result<Vec<f32>> {
            Ok(rows(b.dictionary.encode(file.pairs.rows(image, &all, device)))?.concat())
        };
        let classes: Vec<_> = b.features.features.iter().map(|f| f.class).collect();
        Ok(monoscope::world::factors::factor_table(
            &encode(true)?,
            &encode(false)?,
            b.dictionary.features(),
            &file.meta.truth,
            &classes,
        ))
    }
}
