//! Throughput benchmark of the two towers on a random-init model (native only).
//! Speed is reported as items per second; compare with `scripts/bench_reference.py`,
//! which runs the same shapes in PyTorch and ONNX Runtime on the same machine.

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use serde::Serialize;

use crate::base::host::host_rows as rows;
use crate::clip::{ClipConfig, ClipModel, TextBatch};
use crate::error::Result;

mod kernels;
mod stages;
pub use kernels::{KernelProfile, KernelRow, profile_kernels};
pub use stages::{StageProfile, profile_stages};

/// Profiles taken after each measurement, each over as many passes again.
#[derive(Debug, Clone, Copy, Default)]
pub struct Profiles {
    /// Every GPU kernel timed on the device ([`profile_kernels`]).
    pub kernels: bool,
    /// The CPU path's stages and engines ([`profile_stages`]).
    pub stages: bool,
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Backend name as given on the command line.
    pub backend: String,
    /// `image` or `text`.
    pub tower: String,
    /// Batch size.
    pub batch: usize,
    /// Timed iterations.
    pub iterations: usize,
    /// Throughput.
    pub items_per_s: f64,
    /// Where the device time went, from a second series of `iterations` passes with every
    /// kernel timed (`kernels` in [`run`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernels: Option<KernelProfile>,
    /// Where the CPU path's time went, from another series of `iterations` passes with
    /// its stages recorded (`stages` in [`run`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<StageProfile>,
}

/// Times `iterations` forward passes per batch size and tower, after `warmup` untimed
/// passes (at least one). On wgpu, compiling and autotuning kernels goes on past the
/// first pass (on lavapipe the second and third training steps still cost seconds more
/// than later ones), so one warm-up pass is not enough there; `scripts/bench_reference.py`
/// warms up 3 times too. Each pass ends with a read-back, so asynchronous backends are
/// timed to completion. Each profile asked for in `profiles` follows the measurement with
/// as many passes again (the timed series itself runs without them).
pub fn run(
    backend: &str,
    device: &Device,
    config: &ClipConfig,
    batches: &[usize],
    (warmup, iterations): (usize, usize),
    profiles: Profiles,
    mut report: impl FnMut(&BenchResult),
) -> Result<Vec<BenchResult>> {
    let model: ClipModel = config.init(device);
    let mut out = Vec::new();
    for &batch in batches {
        let s = config.vision.image_size;
        let pixels = Tensor::<4>::random(
            [batch, config.vision.num_channels, s, s],
            Distribution::Normal(0.0, 1.0),
            device,
        );
        let image = || rows(model.embed_images(pixels.clone())).map(|_| ());
        out.push(time(
            backend,
            "image",
            batch,
            (warmup, iterations),
            profiles,
            image,
            &mut report,
        )?);

        // Full-context prompts: BOS, random content, EOS.
        let t = &config.text;
        let ids: Vec<Vec<u32>> = (0..batch)
            .map(|b| {
                let mut seq: Vec<u32> = (0..t.max_position_embeddings)
                    .map(|i| ((b * 7919 + i * 104_729) % (t.vocab_size - 2)) as u32)
                    .collect();
                seq[0] = t.bos_token_id.min(t.vocab_size as u32 - 1);
                *seq.last_mut().expect("context >= 2") =
                    t.eos_token_id.min(t.vocab_size as u32 - 1);
                seq
            })
            .collect();
        let text_batch = TextBatch::new(&ids, t, device)?;
        let text = || rows(model.embed_texts(&text_batch)).map(|_| ());
        out.push(time(
            backend,
            "text",
            batch,
            (warmup, iterations),
            profiles,
            text,
            &mut report,
        )?);
    }
    Ok(out)
}

fn time(
    backend: &str,
    tower: &str,
    batch: usize,
    (warmup, iterations): (usize, usize),
    profiles: Profiles,
    mut f: impl FnMut() -> Result<()>,
    report: &mut impl FnMut(&BenchResult),
) -> Result<BenchResult> {
    for _ in 0..warmup.max(1) {
        f()?;
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f()?;
    }
    let secs = start.elapsed().as_secs_f64();
    let kernels = if profiles.kernels {
        Some(profile_kernels(iterations, &mut f)?)
    } else {
        None
    };
    let stages = if profiles.stages {
        Some(profile_stages(iterations, &mut f)?)
    } else {
        None
    };
    let r = BenchResult {
        backend: backend.to_string(),
        tower: tower.to_string(),
        batch,
        iterations,
        items_per_s: (batch * iterations) as f64 / secs,
        kernels,
        stages,
    };
    report(&r);
    Ok(r)
}

/// Training throughput of a dictionary on random unit-norm data (SPEC §1 shapes by
/// default), for comparison with `scripts/sae_reference.py bench`: `warmup` untimed steps
/// (at least one; see [`run`] for why GPU backends need more than one), then `steps`
/// timed optimiser steps. Returns samples per second and, with `kernels`, where the device
/// time of as many steps again went ([`profile_kernels`]).
pub fn train_throughput(
    dict: crate::dict::DictConfig,
    config: crate::train::dict::TrainConfig,
    pairs: usize,
    (warmup, steps): (usize, usize),
    kernels: bool,
    device: &Device,
) -> Result<(f64, Option<KernelProfile>)> {
    use crate::train::dict::Trainer;
    let d = dict.d;
    let data = random_pairs(pairs, d, 1)?;
    let batch = config.batch;
    let mut trainer = Trainer::new(dict, config, device)?;
    for _ in 0..warmup.max(1) {
        trainer.step(&data)?;
    }
    let start = Instant::now();
    for _ in 0..steps {
        trainer.step(&data)?;
    }
    let rate = (steps * batch) as f64 / start.elapsed().as_secs_f64();
    let kernels = if kernels {
        Some(profile_kernels(steps, || trainer.step(&data).map(|_| ()))?)
    } else {
        None
    };
    Ok((rate, kernels))
}

/// What [`analyze_seconds`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct AnalyzeTiming {
    /// The timed run, seconds.
    pub seconds: f64,
    /// Each untimed warm-up run before it, seconds (the first is the cold run).
    pub warmups: Vec<f64>,
    /// Where a further run's device time went, if asked for.
    pub kernels: Option<KernelProfile>,
    /// A further run's phases, if asked for.
    pub stages: Option<StageProfile>,
}

/// Seconds `analyze` takes on `pairs` random unit-norm pairs with a random-init TopK
/// dictionary and no vocabulary (`scripts/analyze_reference.py` does the same work in
/// PyTorch), after `warmup` untimed runs on the same pairs (on wgpu the first run compiles
/// and autotunes its kernels). With `kernels`, one more run with every GPU kernel timed
/// ([`profile_kernels`]); with `stages`, one more with its phases timed
/// ([`profile_stages`]; the names start with "analyze: ").
pub fn analyze_seconds(
    dict: crate::dict::DictConfig,
    pairs: usize,
    warmup: usize,
    profiles: Profiles,
    device: &Device,
) -> Result<AnalyzeTiming> {
    use crate::analysis::AnalyzeConfig;
    use crate::jobs::analyze::analyze;
    let d = dict.d;
    let data = random_pairs(pairs, d, 2)?;
    let dictionary = dict.init(device);
    let config = AnalyzeConfig::default();
    let run = || analyze(&dictionary, &data, None, &config, device, |_| {}).map(|_| ());
    let mut warmups = Vec::with_capacity(warmup);
    for _ in 0..warmup {
        let start = Instant::now();
        run()?;
        warmups.push(start.elapsed().as_secs_f64());
    }
    let start = Instant::now();
    run()?;
    let secs = start.elapsed().as_secs_f64();
    let kernels = if profiles.kernels {
        Some(profile_kernels(1, run)?)
    } else {
        None
    };
    let stages = if profiles.stages {
        Some(stages::profile_stages(1, run)?)
    } else {
        None
    };
    Ok(AnalyzeTiming {
        seconds: secs,
        warmups,
        kernels,
        stages,
    })
}

/// `n` random unit-norm image/text pairs of width `d`.
fn random_pairs(n: usize, d: usize, seed: u64) -> Result<crate::base::Pairs> {
    let mut rng = crate::base::SplitMix(seed);
    let mut unit_rows = || -> Vec<f32> {
        let mut v: Vec<f32> = (0..n * d)
            .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            .collect();
        for row in v.chunks_mut(d) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|x| *x /= norm);
        }
        v
    };
    let images = unit_rows();
    crate::base::Pairs::new(images, unit_rows(), d)
}
