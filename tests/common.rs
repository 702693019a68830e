//! Helpers shared by the integration tests: fixture paths and reference tensors.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The three reference checkpoints made by `scripts/make_fixtures.py`.
pub const FIXTURES: [&str; 3] = [
    "assets/tiny-clip",
    "tests/fixtures/tiny-gelu",
    "tests/fixtures/tiny-legacy",
];

/// A reference tensor: shape and values as f64 (floats) or i64 (ints).
pub struct RefTensor {
    pub shape: Vec<usize>,
    pub f: Vec<f32>,
    pub i: Vec<i64>,
    pub u: Vec<u8>,
}

/// All tensors of a reference safetensors file.
pub struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    pub fn open(path: &Path) -> Self {
        Self {
            bytes: std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }

    pub fn get(&self, name: &str) -> RefTensor {
        let st = SafeTensors::deserialize(&self.bytes).expect("reference file parses");
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("reference lacks {name}"));
        let d = t.data();
        let (mut f, mut i, mut u) = (vec![], vec![], vec![]);
        match t.dtype() {
            Dtype::F32 => {
                f = d
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect()
            }
            Dtype::I64 => {
                i = d
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                    .collect()
            }
            Dtype::U8 => u = d.to_vec(),
            other => panic!("{name}: unexpected dtype {other:?}"),
        }
        RefTensor {
            shape: t.shape().to_vec(),
            f,
            i,
            u,
        }
    }

    pub fn has(&self, name: &str) -> bool {
        SafeTensors::deserialize(&self.bytes)
            .unwrap()
            .tensor(name)
            .is_ok()
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn mean_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}
