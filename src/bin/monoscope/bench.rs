//! `bench`, `bench-train` and `bench-analyze`: the measurements behind the README's
//! performance figures (compared with the PyTorch / ONNX Runtime scripts in `scripts/`).

use clap::Args;
use monoscope::clip::ClipConfig;
use monoscope::dict::{DictConfig, DictKind};
use monoscope::train::dict::{DEFAULT_DEAD_WINDOW, TrainConfig};
use monoscope::{Result, bench};
use serde_json::json;

use crate::args::{Backend, BackendArg, DictShapeArgs, JsonArg, Kind};

/// Kernels listed by name under `--kernels` (every family is listed).
const KERNELS_SHOWN: usize = 12;

/// `monoscope bench-train`.
#[derive(Args)]
pub struct BenchTrainArgs {
    /// Dictionary families to measure; repeatable.
    #[arg(long, value_enum, default_values_t = [Kind::Topk, Kind::Relu])]
    kind: Vec<Kind>,
    #[command(flatten)]
    shape: DictShapeArgs,
    /// Samples per step.
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Untimed steps first (at least 1). On wgpu, compiling and autotuning kernels goes on
    /// past the first step; `scripts/sae_reference.py bench` warms up 3 times.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Dead-latent window; 0 makes every latent dead, so AuxK runs every step.
    #[arg(long, default_value_t = DEFAULT_DEAD_WINDOW)]
    dead_window: u64,
    /// After each measurement, as many steps again with every GPU kernel timed on the
    /// device, and a table of where the device time went: launches, time by family
    /// (matmul, reduce, fused elementwise, ...) and by kernel, and how long the device sat
    /// idle between kernels. wgpu only (the cpu backend runs no GPU kernels; use perf).
    #[arg(long)]
    kernels: bool,
    #[command(flatten)]
    backend: BackendArg,
    #[command(flatten)]
    json: JsonArg,
}

/// Runs `bench-train`.
pub fn train(a: BenchTrainArgs) -> Result<()> {
    let DictShapeArgs { d, features, k } = a.shape;
    let device = a.backend.device()?;
    let backend = a.backend.backend.name();
    let mut results = Vec::new();
    for kind in a.kind {
        let dict = DictConfig {
            k,
            hidden: features,
            ..DictConfig::new(DictKind::from(kind), d).with_features(features)
        };
        let profiled = if a.kernels { a.steps.max(1) } else { 0 };
        let config = TrainConfig {
            steps: a.steps.max(1) + a.warmup.max(1) + profiled,
            batch: a.batch,
            dead_window: a.dead_window,
            ..TrainConfig::default()
        };
        let (rate, kernels) = bench::train_throughput(
            dict,
            config,
            a.batch.max(8192),
            (a.warmup, a.steps.max(1)),
            a.kernels,
            &device,
        )?;
        let name = format!("{kind:?}").to_lowercase();
        println!(
            "{name:<10} d={d} K={features} k={k} batch={} ({backend}): {rate:.1} samples/s",
            a.batch
        );
        let mut result = json!({ "kind": name, "samples_per_s": rate, "d": d,
            "features": features, "k": k, "batch": a.batch, "steps": a.steps,
            "warmup": a.warmup.max(1), "dead_window": a.dead_window, "backend": backend });
        if let Some(profile) = kernels {
            print!("{}", profile.table(KERNELS_SHOWN));
            result["kernels"] = json!(profile);
        }
        results.push(result);
    }
    a.json.write(&json!({ "results": results }))
}

/// `monoscope bench-analyze`.
#[derive(Args)]
pub struct BenchAnalyzeArgs {
    /// Number of pairs.
    #[arg(long, default_value_t = 100_000)]
    pairs: usize,
    #[command(flatten)]
    shape: DictShapeArgs,
    /// Untimed runs first, on the same pairs. On wgpu the first run compiles and autotunes
    /// the kernels of every shape it meets; `scripts/analyze_reference.py` does not warm up.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// After the measurement, one more run with every GPU kernel timed on the device, and
    /// a table of where the device time went (as `bench --kernels`); the device's idle time
    /// is the run's host work and read-backs. wgpu only.
    #[arg(long)]
    kernels: bool,
    /// After the measurement, one more run with its phases timed on the host clock: the
    /// pass over the pairs (and its top-m lists), labels, EmbSim, WinRates, quality.
    #[arg(long)]
    stages: bool,
    #[command(flatten)]
    backend: BackendArg,
    #[command(flatten)]
    json: JsonArg,
}

/// Runs `bench-analyze`.
pub fn analyze(a: BenchAnalyzeArgs) -> Result<()> {
    let DictShapeArgs { d, features, k } = a.shape;
    let dict = DictConfig {
        features,
        k,
        ..DictConfig::new(DictKind::Topk, d)
    };
    let backend = a.backend.backend.name();
    let profiles = bench::Profiles {
        kernels: a.kernels,
        stages: a.stages,
    };
    let timing = bench::analyze_seconds(dict, a.pairs, a.warmup, profiles, &a.backend.device()?)?;
    let secs = timing.seconds;
    let warmups: Vec<String> = timing.warmups.iter().map(|s| format!("{s:.2} s")).collect();
    let warmups = if warmups.is_empty() {
        String::new()
    } else {
        format!(" (after untimed runs of {})", warmups.join(", "))
    };
    println!(
        "analyze: {} pairs, d={d}, K={features}, k={k} ({backend}): {secs:.2} s{warmups}",
        a.pairs
    );
    let mut result = json!({ "task": "analyze", "pairs": a.pairs, "d": d,
        "features": features, "k": k, "seconds": secs, "warmup_seconds": timing.warmups,
        "backend": backend });
    if let Some(profile) = timing.kernels {
        print!("{}", profile.table(KERNELS_SHOWN));
        result["kernels"] = json!(profile);
    }
    if let Some(profile) = timing.stages {
        print!("{}", profile.phases_table("analyze: "));
        result["stages"] = json!(profile);
    }
    a.json.write(&json!({ "results": [result] }))
}

/// `monoscope bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Backends to measure; repeatable.
    #[arg(long, value_enum, default_values_t = [Backend::Cpu])]
    backend: Vec<Backend>,
    /// Batch sizes; repeatable.
    #[arg(long, default_values_t = [1usize, 32])]
    batch: Vec<usize>,
    /// Timed iterations per measurement.
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Untimed iterations before each measurement (at least 1; default 1 on cpu, 3 on
    /// wgpu). On wgpu, compiling and autotuning kernels goes on past the first pass;
    /// `scripts/bench_reference.py` warms up 3 times.
    #[arg(long)]
    warmup: Option<usize>,
    /// After each measurement, as many passes again with every GPU kernel timed on the
    /// device, and a table of where the device time went: launches, time by family
    /// (matmul, reduce, fused elementwise, ...) and by kernel, and how long the device sat
    /// idle between kernels. wgpu only (the cpu backend runs no GPU kernels; use perf).
    #[arg(long)]
    kernels: bool,
    /// After each measurement, as many passes again with the CPU path's stages timed, and
    /// a table: what the engines (one per core) did with the wall time (their own parts of
    /// the batch, work lent to another part, or nothing) and the encoder layer's stages
    /// (LayerNorms, q/k/v and attention, output projection, fc1, fc2). cpu backend.
    #[arg(long)]
    stages: bool,
    /// Also write the results as JSON (read by scripts/bench_reference.py).
    #[command(flatten)]
    json: JsonArg,
}

/// Runs `bench` (CLIP towers).
pub fn clip(a: BenchArgs) -> Result<()> {
    let config = ClipConfig::vit_b_32();
    println!("random-init ViT-B/32 shape, {} timed iterations", a.iters);
    println!(
        "{:<6} {:<6} {:>6} {:>12}",
        "backend", "tower", "batch", "items/s"
    );
    let mut all = Vec::new();
    for b in a.backend {
        let res = bench::run(
            &b.name(),
            &b.device()?,
            &config,
            &a.batch,
            (a.warmup.unwrap_or(b.default_warmup()), a.iters.max(1)),
            bench::Profiles {
                kernels: a.kernels,
                stages: a.stages,
            },
            |r| {
                println!(
                    "{:<7} {:<6} {:>6} {:>12.2}",
                    r.backend, r.tower, r.batch, r.items_per_s
                );
                if let Some(profile) = &r.kernels {
                    print!("{}", profile.table(KERNELS_SHOWN));
                }
                if let Some(profile) = &r.stages {
                    print!("{}", profile.table());
                }
            },
        )?;
        all.extend(res);
    }
    a.json.write(&json!({ "results": all }))
}
