//! How much memory loading a CLIP checkpoint takes, known from `config.json` alone, so a
//! page can refuse a model that cannot fit its WebAssembly heap before it downloads the
//! weights (instead of trapping on an allocation failure half-way through the load).

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

use crate::error::{Error, Result};

use super::ClipConfig;

/// The most memory a 32-bit WebAssembly instance can address: 65536 pages of 64 KiB
/// (WebAssembly JS API, "Limits": at most 65536 pages for a 32-bit memory; Chromium and
/// Firefox allow all of it on 64-bit hosts).
pub const WASM32_MEMORY_BYTES: u64 = 65536 * 65536;

/// Room for everything besides parameters at the peak of a load: the tokenizer, the
/// allocator's slack and the first forward pass of a batch of one (a ViT-L/14 at 336 px
/// needs ~20 MB of activations).
const LOAD_WORKSPACE_BYTES: u64 = 96 << 20;

/// Copies of one tensor alive at once while it is placed (`io::weights::load_module`): the
/// values converted to f32, a transposed copy for linear layers, and the backend's own.
const COPIES_PER_TENSOR: u64 = 3;

/// The parameters of a model, counted from their shapes (no memory is allocated: CLIP's
/// parameters are lazy until loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Scalars in all float parameters.
    pub parameters: u64,
    /// Float parameter tensors.
    pub tensors: usize,
    /// Scalars in the largest tensor (the text tower's token embedding in CLIP).
    pub largest_tensor: u64,
}

struct Shapes(Footprint);

impl ModuleVisitor for Shapes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // Saturating: a hostile config.json can declare shapes whose product overflows.
        let n = param
            .lazy_shape()
            .iter()
            .fold(1u64, |acc, &d| acc.saturating_mul(d as u64));
        self.0.parameters = self.0.parameters.saturating_add(n);
        self.0.tensors += 1;
        self.0.largest_tensor = self.0.largest_tensor.max(n);
    }
}

impl Footprint {
    /// Counts the float parameters of any module without touching their values.
    pub fn of<M: Module>(module: &M) -> Self {
        let mut v = Shapes(Footprint {
            parameters: 0,
            tensors: 0,
            largest_tensor: 0,
        });
        module.visit(&mut v);
        v.0
    }

    /// Bytes in use at the peak of loading a `weights_bytes` checkpoint: the whole file (it
    /// is parsed in place), every parameter as f32, a few copies of the largest tensor and a
    /// fixed workspace.
    pub fn load_peak_bytes(&self, weights_bytes: u64) -> u64 {
        weights_bytes
            .saturating_add(self.parameters.saturating_mul(4))
            .saturating_add(self.largest_tensor.saturating_mul(COPIES_PER_TENSOR * 4))
            .saturating_add(LOAD_WORKSPACE_BYTES)
    }

    /// Fails with a message a user can act on when loading a `weights_bytes` checkpoint
    /// next to `in_use` bytes already taken would pass `limit` bytes.
    pub fn check_fits(&self, weights_bytes: u64, in_use: u64, limit: u64) -> Result<()> {
        let need = self.load_peak_bytes(weights_bytes);
        if in_use.saturating_add(need) <= limit {
            return Ok(());
        }
        let gb = |b: u64| format!("{:.2} GB", b as f64 / 1e9);
        let file = if weights_bytes > 0 {
            format!(" + the {} weights file while it loads", gb(weights_bytes))
        } else {
            String::new()
        };
        let held = if in_use > LOAD_WORKSPACE_BYTES {
            format!(", and {} are already taken", gb(in_use))
        } else {
            String::new()
        };
        Err(Error::Invalid(format!(
            "the model config.json describes cannot fit in the page's memory: loading it needs about {} \
             ({:.0} M parameters as f32{file}), a WebAssembly page can address at most {}{held}. \
             Use a smaller checkpoint (f16 weights only shrink the download), or the native CLI",
            gb(need),
            self.parameters as f64 / 1e6,
            gb(limit),
        )))
    }
}

impl ClipConfig {
    /// The parameter footprint of this architecture (`device` only labels the lazy
    /// parameters; nothing is allocated on it).
    pub fn footprint(&self, device: &Device) -> Footprint {
        Footprint::of(&self.init(device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_vit_b_32_like_transformers() {
        // transformers' CLIPModel(openai/clip-vit-base-patch32).num_parameters() = 151,277,313.
        let f = ClipConfig::vit_b_32().footprint(&Device::flex());
        assert_eq!(f.parameters, 151_277_313);
        // The token embedding: 49408 x 512.
        assert_eq!(f.largest_tensor, 49408 * 512);
    }

    #[test]
    fn vit_l_14_f32_fits_wasm32_and_a_billion_parameters_do_not() {
        let device = Device::flex();
        let l14 = ClipConfig::vit_l_14().footprint(&device);
        let f32_file = 4 * l14.parameters;
        l14.check_fits(f32_file, 0, WASM32_MEMORY_BYTES).unwrap();
        let mut huge = ClipConfig::vit_l_14();
        huge.vision.num_hidden_layers = 96;
        let err = huge
            .footprint(&device)
            .check_fits(0, 0, WASM32_MEMORY_BYTES)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot fit"), "{err}");
        assert!(err.contains("4.29 GB"), "{err}");
    }
}
