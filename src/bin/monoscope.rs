//! The `monoscope` command line (native only).

// trunk builds this binary for the browser (www/index.html: data-bin="monoscope");
// linking the library there is what exports its #[wasm_bindgen] API (src/web).
#[cfg(target_arch = "wasm32")]
use monoscope as _;

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use std::path::PathBuf;
    use std::process::ExitCode;

    use burn::tensor::Device;
    use clap::{Parser, Subcommand, ValueEnum};
    use indicatif::{ProgressBar, ProgressStyle};
    use monoscope::clip::ClipConfig;
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
}
