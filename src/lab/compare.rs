//! Two result bundles compared in the page (issue 15): the same comparison as
//! `monoscope compare` (`crate::jobs::compare`), from the bundles' file bytes.
//! Bridge Scores and the factor table need data the page does not hold (paired
//! embeddings, the world generator), so the page's comparison has neither.

use burn::tensor::Device;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::bundle::from_bytes_parts;
use crate::jobs::compare::{Comparison, compare, render_svg};

/// One bundle's three files and its label.
pub struct BundleBytes<'a> {
    /// Shown in the table.
    pub label: &'a str,
    /// `manifest.json`.
    pub manifest: &'a [u8],
    /// `features.json`.
    pub features: &'a [u8],
    /// `dictionary.safetensors`.
    pub dictionary: &'a [u8],
}

/// What the page shows.
#[derive(Debug, Serialize)]
pub struct CompareReport {
    /// The comparison (rows, overlaps).
    pub comparison: Comparison,
    /// The SVG chart `monoscope compare --svg` writes.
    pub svg: String,
}

/// Parses both bundles onto `device` and compares them. The decoders are read back
/// synchronously, so `device` must allow that (any CPU device; the page passes its CPU
/// backend, as for the bundle it analyses with).
pub fn compare_bundles(
    a: &BundleBytes<'_>,
    b: &BundleBytes<'_>,
    device: &Device,
) -> Result<CompareReport> {
    let parse = |x: &BundleBytes<'_>| {
        from_bytes_parts(x.manifest, x.features, x.dictionary, device)
            .map_err(|e| Error::Invalid(format!("{}: {e}", x.label)))
    };
    let (ba, bb) = (parse(a)?, parse(b)?);
    let comparison = compare(&[(a.label.to_string(), &ba), (b.label.to_string(), &bb)])?;
    Ok(CompareReport {
        svg: render_svg(&comparison),
        comparison,
    })
}
