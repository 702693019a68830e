//! The long native jobs behind the CLI, as library functions: [`extract`] (image-caption
//! list -> paired embeddings, resumable), [`analyze`] (dictionary + embeddings -> result
//! bundle), [`report`] (bundle -> terminal summary and SVG histogram), [`compare`]
//! (bundles side by side; also in the page) and [`init`]
//! (random-init checkpoints of real architectures). They tell their
//! caller how far they are through [`Progress`]; the binary draws bars from it.

pub mod analyze;
pub mod compare;
#[cfg(not(target_arch = "wasm32"))]
pub mod extract;
#[cfg(not(target_arch = "wasm32"))]
pub mod init;
#[cfg(not(target_arch = "wasm32"))]
pub mod report;
pub mod topm;

/// How a long job reports itself. The CLI implements it with progress bars; tests and
/// benchmarks use [`Silent`].
pub trait Progress {
    /// A stage of `total` units begins.
    fn start(&mut self, stage: &str, total: u64);
    /// `n` more units are done.
    fn inc(&mut self, n: u64);
    /// A line for the user (a skipped entry, a resume), printed without breaking the bar.
    fn note(&mut self, line: &str);
    /// The stage is over.
    fn finish(&mut self);
}

/// A [`Progress`] that reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: &str, _: u64) {}
    fn inc(&mut self, _: u64) {}
    fn note(&mut self, _: &str) {}
    fn finish(&mut self) {}
}
