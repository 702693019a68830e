//! Helpers shared by every integration test: the CLI runner, fixture paths (the reference
//! checkpoints and the shipped demo), the one safetensors reader, and float comparisons.
//!
//! A directory module (`tests/common/mod.rs`) so that cargo does not build it as a test
//! target of its own; each test file says `mod common;` and uses what it needs, hence the
//! `dead_code` allowance.
#![allow(dead_code)]

pub mod planted;

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::Device;
use monoscope::Embedder;
use monoscope::inspect::Lens;
use safetensors::{Dtype, SafeTensors};

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bytes of a file; the panic names the file, which `fs::read(..).unwrap()` does not.
pub fn read(path: impl AsRef<Path>) -> Vec<u8> {
    let path = path.as_ref();
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs the `monoscope` binary that cargo built for these tests with `args`, in `dir` (the
/// repository root when `None`, which is also cargo's working directory for tests), and
/// returns (exited successfully, stdout, stderr) so that tests can check failures too.
pub fn cli(args: &[&str], dir: Option<&Path>) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_monoscope"))
        .args(args)
        .current_dir(dir.map_or_else(root, Path::to_path_buf))
        .output()
        .unwrap_or_else(|e| panic!("cannot run monoscope {args:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// [`cli`] for a run that must succeed: a failure panics with the arguments and both
/// streams, since the error is usually only on stderr. Returns (stdout, stderr).
pub fn cli_ok(args: &[&str], dir: Option<&Path>) -> (String, String) {
    let (ok, stdout, stderr) = cli(args, dir);
    assert!(ok, "{args:?}\nstdout: {stdout}\nstderr: {stderr}");
    (stdout, stderr)
}

/// The three reference checkpoints made by `scripts/make_fixtures.py`.
pub const FIXTURES: [&str; 3] = [
    "assets/tiny-clip",
    "tests/fixtures/tiny-gelu",
    "tests/fixtures/tiny-legacy",
];

/// The shipped demo (`assets/demo`: `clip/` model, `bundle/`, `decoder/`, `images/`),
/// whose ground truth several tests check against.
pub fn demo_dir() -> PathBuf {
    root().join("assets/demo")
}

/// The demo CLIP model, loaded as the CLI and the web app load it.
pub fn demo_embedder(device: &Device) -> Embedder {
    Embedder::from_dir(&demo_dir().join("clip"), device).unwrap()
}

/// The lens over the demo bundle (its dictionary, feature classes and means).
pub fn demo_lens(device: &Device) -> Lens {
    Lens::load(&demo_dir().join("bundle"), device).unwrap()
}

/// One tensor of a safetensors file: its shape and values, decoded into `f` (F32), `i`
/// (I64) or `u` (U8) by dtype; the other two stay empty.
pub struct FileTensor {
    pub shape: Vec<usize>,
    pub f: Vec<f32>,
    pub i: Vec<i64>,
    pub u: Vec<u8>,
}

/// A safetensors file in memory: the one reader the tests use for references, fixtures
/// and files the code under test writes, so parsing, decoding and the panics that name the
/// missing tensor are written once.
pub struct TensorFile {
    bytes: Vec<u8>,
}

impl TensorFile {
    pub fn open(path: &Path) -> Self {
        Self::from_bytes(read(path))
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self { bytes }
    }

    /// The parsed file, for what the helpers below do not cover (re-serialising a subset).
    pub fn parse(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("a safetensors file")
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.parse().names().into_iter().map(String::from).collect();
        names.sort();
        names
    }

    /// A tensor's raw little-endian bytes, whatever its dtype.
    pub fn raw(&self, name: &str) -> &[u8] {
        self.parse()
            .tensor(name)
            .unwrap_or_else(|_| panic!("no tensor {name}"))
            .data()
    }

    pub fn get(&self, name: &str) -> FileTensor {
        let st = self.parse();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("no tensor {name}"));
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
        FileTensor {
            shape: t.shape().to_vec(),
            f,
            i,
            u,
        }
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

/// A ustar archive of `(name, data)` members: the webdataset shards the reader tests
/// read (monoscope itself only reads tar files, so the writer lives here).
pub fn tar_bytes(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in members {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        for (range, value) in [
            (100..107, "0000644".to_string()),
            (108..115, "0000000".to_string()),
            (116..123, "0000000".to_string()),
            (124..135, format!("{:011o}", data.len())),
            (136..147, "00000000000".to_string()),
        ] {
            h[range].copy_from_slice(value.as_bytes());
        }
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        // The checksum counts its own field as spaces.
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// TSV lines (`image<TAB>caption`) pairing each demo image (absolute path) with its
/// caption, marked with `rep` so that repeated sets have distinct captions.
pub fn demo_pair_lines(rep: usize) -> Vec<String> {
    let dir = demo_dir().join("images");
    let index: serde_json::Value = serde_json::from_slice(&read(dir.join("index.json"))).unwrap();
    index
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let file = dir.join(e["file"].as_str().unwrap());
            format!(
                "{}\t{} ({rep})",
                file.display(),
                e["caption"].as_str().unwrap()
            )
        })
        .collect()
}

/// Copies the directory `from` (recursively) into `to`, creating it.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A fresh, empty temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("monoscope-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
