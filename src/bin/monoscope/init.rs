//! `init`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use monoscope::Result;
use monoscope::clip::ClipConfig;
use monoscope::io::weights::SaveDtype;
use monoscope::jobs::init::init_checkpoint;

/// A real CLIP architecture.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Preset {
    /// openai/clip-vit-base-patch32 (151 M parameters).
    #[value(name = "vit-b-32")]
    VitB32,
    /// openai/clip-vit-base-patch16 (150 M parameters).
    #[value(name = "vit-b-16")]
    VitB16,
    /// openai/clip-vit-large-patch14 (428 M parameters).
    #[value(name = "vit-l-14")]
    VitL14,
}

/// Float type of `model.safetensors`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Dtype {
    /// 32-bit floats.
    F32,
    /// Half precision.
    F16,
}

/// `monoscope init`.
#[derive(Args)]
pub struct InitArgs {
    /// Architecture.
    #[arg(long, value_enum)]
    preset: Preset,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
    /// Float type of the weights.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    dtype: Dtype,
    /// Seed of the random initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs `init`.
pub fn run(a: InitArgs) -> Result<()> {
    let config = match a.preset {
        Preset::VitB32 => ClipConfig::vit_b_32(),
        Preset::VitB16 => ClipConfig::vit_b_16(),
        Preset::VitL14 => ClipConfig::vit_l_14(),
    };
    let dtype = match a.dtype {
        Dtype::F32 => SaveDtype::F32,
        Dtype::F16 => SaveDtype::F16,
    };
    let s = init_checkpoint(
        &config,
        &a.out,
        dtype,
        a.seed,
        &burn::tensor::Device::flex(),
    )?;
    eprintln!(
        "random-init {:?} ({} parameters, {:.1} MB of weights) written to {}",
        a.preset,
        s.parameters,
        s.weight_bytes as f64 / 1e6,
        a.out.display()
    );
    Ok(())
}
