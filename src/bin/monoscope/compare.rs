//! `compare`.

use std::path::PathBuf;

use burn::tensor::Device;
use clap::Args;
use monoscope::base::fs::{read_file, write_atomic};
use monoscope::io::bundle::load;
use monoscope::io::embeddings::EmbeddingsFile;
use monoscope::jobs::compare::{DEFAULT_TOP_PAIRS, bridge, compare, render_svg, render_text};
use monoscope::world::factors::factor_table_for;
use monoscope::{Error, Result};

use crate::args::JsonArg;
use crate::progress::bar;

/// `monoscope compare`.
#[derive(Args)]
pub struct CompareArgs {
    /// Result bundles to compare (two or more; one is allowed, for its row alone).
    #[arg(required = true)]
    bundles: Vec<PathBuf>,
    /// Paired embeddings (from `extract`) to compute the Bridge Scores of the top
    /// concept pairs on; the bundles' centring is applied.
    #[arg(long)]
    embeddings: Option<PathBuf>,
    /// Concept pairs listed per bundle with --embeddings.
    #[arg(long, default_value_t = DEFAULT_TOP_PAIRS)]
    top_pairs: usize,
    /// For demo-world bundles: the demo CLIP directory, to score the factor table (how
    /// many of the world's factors land in the expected class).
    #[arg(long)]
    world_model: Option<PathBuf>,
    /// World seed of the factor table.
    #[arg(long, default_value_t = 0)]
    world_seed: u64,
    /// Write the comparison as an SVG chart here.
    #[arg(long)]
    svg: Option<PathBuf>,
    #[command(flatten)]
    json: JsonArg,
}

/// A bundle's label: its directory name, or "parent/name" when names repeat (bundles are
/// often all called `bundle`), or the whole path when even that repeats.
fn label(path: &std::path::Path, all: &[PathBuf]) -> String {
    let tail = |p: &std::path::Path, parts: usize| {
        let v: Vec<String> = p
            .components()
            .rev()
            .take(parts)
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .collect();
        v.into_iter().rev().collect::<Vec<_>>().join("/")
    };
    for parts in [1, 2] {
        let mine = tail(path, parts);
        if all.iter().filter(|p| tail(p, parts) == mine).count() == 1 {
            return mine;
        }
    }
    path.display().to_string()
}

/// Runs `compare`.
pub fn run(a: CompareArgs) -> Result<()> {
    let device = Device::flex();
    let loaded = a
        .bundles
        .iter()
        .map(|p| load(p, &device).map_err(|e| Error::Invalid(format!("{}: {e}", p.display()))))
        .collect::<Result<Vec<_>>>()?;
    let named: Vec<(String, &monoscope::io::bundle::Bundle)> = a
        .bundles
        .iter()
        .zip(&loaded)
        .map(|(p, b)| (label(p, &a.bundles), b))
        .collect();
    let mut comparison = compare(&named)?;
    if let Some(path) = &a.embeddings {
        let emb = EmbeddingsFile::from_bytes(&read_file(path)?)?;
        let progress = bar(loaded.len() as u64, "bridge");
        for (row, b) in comparison.bundles.iter_mut().zip(&loaded) {
            row.bridge = bridge(b, &emb.pairs, a.top_pairs, &device)?;
            progress.inc(1);
        }
        progress.finish_and_clear();
    }
    if let Some(model) = &a.world_model {
        for (row, p) in comparison.bundles.iter_mut().zip(&a.bundles) {
            let table = factor_table_for(model, p, a.world_seed, 2000, &device)?;
            let hits = table.iter().filter(|r| r.as_expected()).count();
            row.factors = Some((hits, table.len()));
        }
    }
    print!("{}", render_text(&comparison));
    if let Some(svg) = &a.svg {
        write_atomic(svg, render_svg(&comparison).as_bytes())?;
    }
    a.json.write(&comparison)
}
