//! `report`.

use std::path::PathBuf;

use clap::Args;
use monoscope::Result;

/// `monoscope report`.
#[derive(Args)]
pub struct ReportArgs {
    /// Bundle directory.
    bundle: PathBuf,
    /// Where to write the histogram (default BUNDLE/mds_histogram.svg).
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Features listed per class.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

/// Runs `report`.
pub fn run(a: ReportArgs) -> Result<()> {
    let svg = a.svg.unwrap_or_else(|| a.bundle.join("mds_histogram.svg"));
    monoscope::jobs::report::report(&a.bundle, &svg, a.top)
}
