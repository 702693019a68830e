//! The `monoscope` command line (native only). One module per command group; each parses
//! its arguments into the library's types, runs the library, reports progress and prints.
//! No job logic lives here.

// The browser build is examples/web.rs (see Trunk.toml); this binary is native only.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod analyze;
#[cfg(not(target_arch = "wasm32"))]
mod apps;
#[cfg(not(target_arch = "wasm32"))]
mod args;
#[cfg(not(target_arch = "wasm32"))]
mod bench;
#[cfg(not(target_arch = "wasm32"))]
mod compare;
#[cfg(not(target_arch = "wasm32"))]
mod embed;
#[cfg(not(target_arch = "wasm32"))]
mod extract;
#[cfg(not(target_arch = "wasm32"))]
mod init;
#[cfg(not(target_arch = "wasm32"))]
mod progress;
#[cfg(not(target_arch = "wasm32"))]
mod report;
#[cfg(not(target_arch = "wasm32"))]
mod train;
#[cfg(not(target_arch = "wasm32"))]
mod world;

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
    use std::process::ExitCode;

    use clap::{Parser, Subcommand};
    use monoscope::Result;

    use super::{analyze, apps, bench, compare, embed, extract, init, report, train, world};

    /// monoscope: look inside CLIP, on your own machine.
    #[derive(Parser)]
    #[command(version, about)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Embed images and prompts; prints (or writes) JSON
        /// {"images", "image_embeds", "texts", "text_embeds"} with L2-normalised embeddings
        /// in input order.
        Embed(embed::EmbedArgs),
        /// Embed an image-caption set (TSV list, CSV, COCO captions JSON, folder of images
        /// with .txt captions, or webdataset .tar shard) into a paired embeddings file.
        /// Re-running resumes: pairs already in OUT (or in its `.partial` checkpoint) are
        /// skipped. Bad entries are reported and skipped.
        Extract(extract::ExtractArgs),
        /// Join the shard files of one extraction (`extract --shard I/N`) into the file a
        /// single process would have written (same rows, same order, same provenance).
        Merge(extract::MergeArgs),
        /// Train a feature dictionary on paired embeddings (from `extract`).
        Train(train::TrainArgs),
        /// Score every feature's modality (MDS), classify features (ImgD / TextD / CrossD),
        /// measure EmbSim and WinRate, auto-label features, and write the result bundle.
        Analyze(analyze::AnalyzeArgs),
        /// Summarise a result bundle in the terminal and draw its MDS histogram as SVG.
        Report(report::ReportArgs),
        /// Compare result bundles side by side: FVU, explained variance and cosine per
        /// modality, L0, dead features, class counts by MDS and by the Iso-Energy rule,
        /// mean EmbSim, WinRates, optionally Bridge Scores (--embeddings) and the demo
        /// world's factor score (--world-model), and the class overlap of every two
        /// bundles over features matched by decoder cosine. Markdown on stdout, --json,
        /// --svg.
        Compare(compare::CompareArgs),
        /// Measure dictionary training throughput (samples/s) on random data; compare with
        /// `scripts/sae_reference.py bench --monoscope-json FILE`.
        BenchTrain(bench::BenchTrainArgs),
        /// Time `analyze` on random pairs with a random TopK dictionary; compare with
        /// `python3 scripts/analyze_reference.py --monoscope-json FILE`.
        BenchAnalyze(bench::BenchAnalyzeArgs),
        /// Train the demo world's small CLIP on generated scenes; writes a Hugging Face
        /// directory (config.json, model.safetensors, tokenizer.json).
        WorldTrain(world::WorldTrainArgs),
        /// Embed held-out demo-world scenes (one caption each) with a demo CLIP into a
        /// paired embeddings file that also records every scene's ground-truth factors.
        WorldExtract(world::WorldExtractArgs),
        /// Attribute / bias probe (SPEC §4.1): zero-shot classify groups of images (one
        /// folder per group; group i should match prompt i) from the CLIP embedding, the
        /// dictionary's reconstruction, and the reconstruction without ImgD, TextD or CrossD
        /// features; accuracy with counts and a 95% bootstrap interval per group, and the
        /// features whose removal moves each group most.
        Probe(apps::ProbeArgs),
        /// Cross-modal adversarial examples (SPEC §4.2): PGD on pixels (L-infinity) toward a
        /// target prompt, then which feature classes moved and whether removing ImgD or
        /// TextD features before zero-shot classification restores the clean prediction.
        Attack(apps::AttackArgs),
        /// Modality-specific control (SPEC §4.3): scale a prompt's (or an image's)
        /// features by class (or single features), keep the reconstruction residual, and
        /// write the edited embedding as OUT (safetensors, tensor "embedding" [1, d]) and
        /// OUT with .npy.
        Control(apps::ControlArgs),
        /// Trains the demo world's image decoder (embedding -> 16x16 image) used to show
        /// modality-specific control in the page.
        WorldDecoder(world::WorldDecoderArgs),
        /// Draws held-out demo-world scenes as PNG files with an `index.json` listing each
        /// file, its first caption and its scene name (the web page's demo inputs).
        WorldImages(world::WorldImagesArgs),
        /// The factor table: for each ground-truth factor of the demo world, the bundle's
        /// feature that predicts it best and its class (expected: image-only -> ImgD,
        /// text-only -> TextD, shared -> CrossD).
        WorldFactors(world::WorldFactorsArgs),
        /// Print a model's architecture and parameter count.
        Info(embed::InfoArgs),
        /// Write a random-init checkpoint of a real CLIP architecture in the Hugging Face
        /// layout (config.json, model.safetensors, tokenizer.json with CLIP's real BPE
        /// vocabulary): for tests, benchmarks and trying the pipeline before downloading
        /// weights. Its features mean nothing.
        Init(init::InitArgs),
        /// Measure images/s and texts/s of a random-init model of a preset shape.
        Bench(bench::BenchArgs),
    }

    /// Parses, runs, and turns errors (and panics, which are bugs) into one line.
    pub fn main() -> ExitCode {
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
        match std::panic::catch_unwind(|| run(cli.command)) {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("error: {}", e.to_string().replace('\n', " "));
                ExitCode::FAILURE
            }
            Err(_) => ExitCode::FAILURE,
        }
    }

    fn run(command: Command) -> Result<()> {
        match command {
            Command::Embed(a) => embed::embed(a),
            Command::Extract(a) => extract::run(a),
            Command::Merge(a) => extract::merge(a),
            Command::Train(a) => train::run(a),
            Command::Analyze(a) => analyze::run(a),
            Command::Report(a) => report::run(a),
            Command::Compare(a) => compare::run(a),
            Command::BenchTrain(a) => bench::train(a),
            Command::BenchAnalyze(a) => bench::analyze(a),
            Command::WorldTrain(a) => world::train(a),
            Command::WorldExtract(a) => world::extract(a),
            Command::Probe(a) => apps::probe(a),
            Command::Attack(a) => apps::attack(a),
            Command::Control(a) => apps::control(a),
            Command::WorldDecoder(a) => world::decoder(a),
            Command::WorldImages(a) => world::images(a),
            Command::WorldFactors(a) => world::factors(a),
            Command::Info(a) => embed::info(a),
            Command::Init(a) => init::run(a),
            Command::Bench(a) => bench::clip(a),
        }
    }
}
