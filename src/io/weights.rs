//! Hugging Face safetensors <-> burn modules: the one mapping table.
//!
//! Module fields carry transformers' names, so a tensor's checkpoint name is its module
//! path with three exceptions, all in [`hf_name`] / [`Layout`]:
//!
//! | burn path / container        | checkpoint                 | why                                  |
//! |------------------------------|----------------------------|--------------------------------------|
//! | `LayerNorm.gamma`            | `<same>.weight`            | burn names LayerNorm scale `gamma`   |
//! | `LayerNorm.beta`             | `<same>.bias`              | ... and its shift `beta`             |
//! | `Linear.weight` [in, out]    | `.weight` [out, in]        | burn stores Linear transposed        |
//! | `logit_scale` [1]            | `logit_scale` [] (0-d)     | burn has no 0-d tensors              |
//! | `Sae.w_enc` / `Sae.w_dec`    | `W_enc` / `W_dec`          | SAELens' names (same layout)         |
//! | enum variant (`Sae.`, `Ncl.`)| (nothing)                  | the variant is not part of the name  |
//!
//! Known buffers that carry no parameters (`*.position_ids`) are accepted and ignored.
//! Anything else that is missing, unexpected, mis-shaped or not a float fails the load
//! with one message listing every problem: there are no silent partial loads.

use std::collections::{BTreeMap, BTreeSet};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::clip::Footprint;
use crate::error::{Error, Result};

/// How many of a failed load's problems its message lists (all are counted).
const MAX_LISTED_PROBLEMS: usize = 10;

/// Checkpoint entries that are buffers, not parameters (transformers' `position_ids`).
fn is_known_buffer(name: &str) -> bool {
    name.ends_with(".position_ids")
}

/// How a tensor is laid out in the checkpoint relative to burn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Same,
    /// 2-d, transposed.
    Transposed,
    /// burn [1], checkpoint 0-d.
    Scalar,
}

/// The mapping table: burn path (+ the struct owning the field) -> checkpoint name, layout.
fn hf_name(path: &str, owner: &str) -> (String, Layout) {
    let (parent, field) = path.rsplit_once('.').unwrap_or(("", path));
    let join = |f: &str| {
        if parent.is_empty() {
            f.to_string()
        } else {
            format!("{parent}.{f}")
        }
    };
    match (owner, field) {
        ("Struct:LayerNorm", "gamma") => (join("weight"), Layout::Same),
        ("Struct:LayerNorm", "beta") => (join("bias"), Layout::Same),
        ("Struct:Linear", "weight") => (path.to_string(), Layout::Transposed),
        ("Struct:Sae", "w_enc") => (join("W_enc"), Layout::Same),
        ("Struct:Sae", "w_dec") => (join("W_dec"), Layout::Same),
        (_, "logit_scale") if parent.is_empty() => (path.to_string(), Layout::Scalar),
        _ => (path.to_string(), Layout::Same),
    }
}

/// Where a walk over a module tree is: the checkpoint-style path of the current field
/// (enum variants are not part of names) and the struct that owns it.
#[derive(Debug, Default)]
pub struct ModulePath {
    path: Vec<String>,
    owners: Vec<String>,
}

impl ModulePath {
    /// Call from `enter_module`.
    pub fn enter(&mut self, name: &str, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.path.push(name.to_string());
        }
        self.owners.push(container_type.to_string());
    }

    /// Call from `exit_module`.
    pub fn exit(&mut self, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.path.pop();
        }
        self.owners.pop();
    }

    /// Dotted path of the current field.
    pub fn path(&self) -> String {
        self.path.join(".")
    }

    /// Container type of the struct owning the current field (e.g. `Struct:Linear`).
    pub fn owner(&self) -> &str {
        self.owners.last().map(String::as_str).unwrap_or("")
    }
}

/// A parsed safetensors file.
pub struct Checkpoint<'a> {
    st: SafeTensors<'a>,
}

impl<'a> Checkpoint<'a> {
    /// Parses and validates the header (offsets, sizes) of a safetensors buffer.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            Error::Weights(format!(
                "not a valid safetensors file (truncated or corrupt?): {e}"
            ))
        })?;
        Ok(Self { st })
    }

    /// Names of every tensor in the file.
    pub fn names(&self) -> Vec<String> {
        self.st.names().into_iter().map(|s| s.to_string()).collect()
    }

    /// Shape of a tensor.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.st.tensor(name).ok().map(|t| t.shape().to_vec())
    }

    /// A float tensor converted to f32 (F32, F16, BF16 and F64 are accepted).
    pub fn f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let view = self
            .st
            .tensor(name)
            .map_err(|e| Error::Weights(format!("{name}: {e}")))?;
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8")) as f32)
                .collect(),
            other => {
                return Err(Error::Weights(format!(
                    "{name} has dtype {other:?}; a float tensor is expected"
                )));
            }
        };
        Ok((values, view.shape().to_vec()))
    }
}

/// Walks a module and replaces every float parameter with the checkpoint's tensor.
struct Loader<'c, 'a, 'p> {
    ckpt: &'c Checkpoint<'a>,
    device: Device,
    at: ModulePath,
    used: BTreeSet<String>,
    problems: Vec<String>,
    /// Tensors placed so far, and the callback told about each.
    placed: usize,
    total: usize,
    on_tensor: &'p mut dyn FnMut(usize, usize),
}

impl Loader<'_, '_, '_> {
    fn fetch(&mut self, expected: &[usize]) -> Option<TensorData> {
        let (name, layout) = hf_name(&self.at.path(), self.at.owner());
        let Some(mut shape) = self.ckpt.shape(&name) else {
            self.problems.push(format!(
                "missing tensor {name} (expected shape {expected:?})"
            ));
            return None;
        };
        self.used.insert(name.clone());
        match layout {
            Layout::Transposed if shape.len() == 2 => shape.reverse(),
            Layout::Scalar if shape.is_empty() => shape = vec![1],
            _ => {}
        }
        if shape != expected {
            let mut want = expected.to_vec();
            if layout == Layout::Transposed {
                want.reverse();
            }
            let found = self.ckpt.shape(&name).unwrap_or_default();
            self.problems.push(format!(
                "tensor {name} has shape {found:?}, the config implies {want:?}"
            ));
            return None;
        }
        let (values, src_shape) = match self.ckpt.f32(&name) {
            Ok(v) => v,
            Err(e) => {
                self.problems
                    .push(e.to_string().trim_start_matches("weights: ").to_string());
                return None;
            }
        };
        let values = if layout == Layout::Transposed {
            transpose(&values, src_shape[0], src_shape[1])
        } else {
            values
        };
        Some(TensorData::new(values, expected.to_vec()))
    }
}

/// Row-major [rows, cols] -> [cols, rows].
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

impl ModuleMapper for Loader<'_, '_, '_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let expected = param.lazy_shape().to_vec();
        let fetched = self.fetch(&expected);
        self.placed += 1;
        (self.on_tensor)(self.placed, self.total);
        match fetched {
            Some(data) => {
                let id = param.id;
                param.transform_for_load(Tensor::from_data(data, &self.device), id)
            }
            None => param,
        }
    }
}

/// Loads every float parameter of `module` from a checkpoint; fails listing every
/// missing, unexpected, mis-shaped or non-float tensor.
pub fn load_module<M: Module>(module: M, ckpt: &Checkpoint<'_>, device: &Device) -> Result<M> {
    load_module_with_progress(module, ckpt, device, &mut |_, _| {})
}

/// [`load_module`], calling `on_tensor(placed, total)` after each parameter tensor (a
/// page shows it while a large model loads).
pub fn load_module_with_progress<M: Module>(
    module: M,
    ckpt: &Checkpoint<'_>,
    device: &Device,
    on_tensor: &mut dyn FnMut(usize, usize),
) -> Result<M> {
    let total = Footprint::of(&module).tensors;
    let mut loader = Loader {
        ckpt,
        device: device.clone(),
        at: ModulePath::default(),
        used: BTreeSet::new(),
        problems: Vec::new(),
        placed: 0,
        total,
        on_tensor,
    };
    let module = module.map(&mut loader);
    let mut problems = loader.problems;
    for name in ckpt.names() {
        if !loader.used.contains(&name) && !is_known_buffer(&name) {
            problems.push(format!(
                "unexpected tensor {name} {:?}",
                ckpt.shape(&name).unwrap_or_default()
            ));
        }
    }
    if problems.is_empty() {
        Ok(module)
    } else {
        problems.sort();
        let count = problems.len();
        // A checkpoint of another architecture has hundreds; the first few say what is wrong.
        if count > MAX_LISTED_PROBLEMS {
            problems.truncate(MAX_LISTED_PROBLEMS);
            problems.push(format!("and {} more", count - MAX_LISTED_PROBLEMS));
        }
        Err(Error::Weights(format!(
            "the checkpoint does not fit the config ({count} problem{}): {}",
            if count == 1 { "" } else { "s" },
            problems.join("; ")
        )))
    }
}

/// Collects a module's float parameters under their checkpoint names, in the
/// checkpoint's layout (the inverse of [`load_module`]).
struct Collector {
    at: ModulePath,
    out: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (name, layout) = hf_name(&self.at.path(), self.at.owner());
        let data = param.val().into_data();
        let mut shape = data.shape().to_vec();
        let mut values: Vec<f32> = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default(); // a wrong length is caught by TensorView::new below
        match layout {
            Layout::Transposed => {
                values = transpose(&values, shape[0], shape[1]);
                shape.reverse();
            }
            Layout::Scalar => shape.clear(),
            Layout::Same => {}
        }
        self.out.insert(name, (shape, values));
    }
}

/// Float type of a written checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveDtype {
    /// 32-bit floats (exact).
    F32,
    /// IEEE half precision (half the size; how many hub checkpoints ship).
    F16,
}

/// Serialises a module to safetensors bytes in the Hugging Face layout (f32), so that
/// transformers (and [`load_module`]) read it back.
pub fn save_module<M: Module>(module: &M) -> Result<Vec<u8>> {
    save_module_as(module, SaveDtype::F32)
}

/// [`save_module`] with the float type chosen.
pub fn save_module_as<M: Module>(module: &M, dtype: SaveDtype) -> Result<Vec<u8>> {
    let mut c = Collector {
        at: ModulePath::default(),
        out: BTreeMap::new(),
    };
    module.visit(&mut c);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = c
        .out
        .into_iter()
        .map(|(name, (shape, values))| {
            let raw = match dtype {
                SaveDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                SaveDtype::F16 => values
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            };
            (name, shape, raw)
        })
        .collect();
    let st_dtype = match dtype {
        SaveDtype::F32 => Dtype::F32,
        SaveDtype::F16 => Dtype::F16,
    };
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, raw)| {
            safetensors::tensor::TensorView::new(st_dtype, s.clone(), raw)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Weights(format!("{n}: {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, None).map_err(|e| Error::Weights(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_table() {
        assert_eq!(
            hf_name("a.layer_norm1.gamma", "Struct:LayerNorm").0,
            "a.layer_norm1.weight"
        );
        assert_eq!(
            hf_name("post_layernorm.beta", "Struct:LayerNorm").0,
            "post_layernorm.bias"
        );
        assert_eq!(
            hf_name("x.q_proj.weight", "Struct:Linear"),
            ("x.q_proj.weight".into(), Layout::Transposed)
        );
        assert_eq!(hf_name("x.q_proj.bias", "Struct:Linear").1, Layout::Same);
        assert_eq!(hf_name("logit_scale", "Struct:ClipModel").1, Layout::Scalar);
        assert_eq!(
            hf_name("e.patch_embedding.weight", "Struct:PatchEmbedding").1,
            Layout::Same
        );
        assert!(is_known_buffer("text_model.embeddings.position_ids"));
    }

    #[test]
    fn transpose_is_correct() {
        assert_eq!(
            transpose(&[1., 2., 3., 4., 5., 6.], 2, 3),
            vec![1., 4., 2., 5., 3., 6.]
        );
    }
}
