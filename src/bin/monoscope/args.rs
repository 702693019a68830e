//! Argument groups shared by several commands, and the device choice (the only place
//! the CLI picks a backend).

use std::path::PathBuf;

use burn::tensor::Device;
use clap::{Args, ValueEnum};
use monoscope::dict::DictKind;
use monoscope::{Error, Result};

/// Compute backend.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Backend {
    /// burn's pure-Rust CPU backend (flex).
    Cpu,
    /// burn's wgpu backend (Vulkan, Metal or DX12 natively).
    Wgpu,
}

impl Backend {
    /// The device of this backend.
    pub fn device(self) -> Result<Device> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            Backend::Wgpu => Device::wgpu_options()
                .init()
                .map_err(|e| Error::Device(format!("no wgpu device: {e}"))),
        }
    }

    /// Untimed passes before a benchmark's timer starts: on wgpu, compiling and
    /// autotuning kernels goes on past the first pass (`monoscope::bench::run`).
    pub fn default_warmup(self) -> usize {
        match self {
            Backend::Cpu => 1,
            Backend::Wgpu => 3,
        }
    }

    /// Lower-case name, as on the command line.
    pub fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

/// `--backend`.
#[derive(Args, Clone, Copy, Debug)]
pub struct BackendArg {
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
}

impl BackendArg {
    /// The chosen device.
    pub fn device(self) -> Result<Device> {
        self.backend.device()
    }
}

/// `--model`.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Hugging Face CLIP directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
}

/// `--model` and `--bundle` of the applications.
#[derive(Args, Clone, Debug)]
pub struct ModelBundleArgs {
    /// CLIP directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Result bundle (a TopK or ReLU SAE) made for this model.
    #[arg(long)]
    pub bundle: PathBuf,
}

/// Dictionary family.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    /// TopK sparse autoencoder.
    Topk,
    /// ReLU sparse autoencoder with an L1 penalty.
    Relu,
    /// Non-negative contrastive head.
    Ncl,
    /// BatchTopK sparse autoencoder (k active on average over a batch; JumpReLU with one
    /// threshold at inference).
    Batchtopk,
    /// Matryoshka BatchTopK sparse autoencoder (nested prefixes each reconstruct).
    Matryoshka,
    /// JumpReLU sparse autoencoder (a threshold per feature, L0 penalty).
    Jumprelu,
    /// Random baseline: TopK SAE with its decoder frozen at the random initialisation.
    Random,
    /// Aligned TopK SAE: a pair's image and text codes are pulled together (Iso-Energy).
    Aligned,
    /// Group-sparse TopK SAE: L2,1 penalty over a pair's codes, cross-modal masking.
    Groupsparse,
    /// One TopK SAE per modality, latents matched across modalities after training.
    Split,
}

impl From<Kind> for DictKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Topk => DictKind::Topk,
            Kind::Relu => DictKind::Relu,
            Kind::Ncl => DictKind::Ncl,
            Kind::Batchtopk => DictKind::Batchtopk,
            Kind::Matryoshka => DictKind::Matryoshka,
            Kind::Jumprelu => DictKind::Jumprelu,
            Kind::Random => DictKind::Random,
            Kind::Aligned => DictKind::Aligned,
            Kind::Groupsparse => DictKind::Groupsparse,
            Kind::Split => DictKind::Split,
        }
    }
}

/// The shape of a random dictionary for the benchmarks.
#[derive(Args, Clone, Copy, Debug)]
pub struct DictShapeArgs {
    /// Embedding width.
    #[arg(long, default_value_t = 512)]
    pub d: usize,
    /// Features K.
    #[arg(long, default_value_t = 4096)]
    pub features: usize,
    /// TopK k.
    #[arg(long, default_value_t = 32)]
    pub k: usize,
}

/// `--json FILE`: also write the result as JSON.
#[derive(Args, Clone, Debug)]
pub struct JsonArg {
    /// Also write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl JsonArg {
    /// Writes `value` when `--json` was given.
    pub fn write<T: serde::Serialize>(&self, value: &T) -> Result<()> {
        match &self.json {
            Some(path) => monoscope::base::fs::write_json(path, value),
            None => Ok(()),
        }
    }
}
