//! Progress bars (indicatif) for the library's long jobs.

use indicatif::{ProgressBar, ProgressStyle};
use monoscope::jobs::Progress;

/// A bar labelled `what`, with rate, ETA and a message slot.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{pos}}/{{len}} {{per_sec}} eta {{eta}} {{msg}}"
        ))
        .expect("valid template"),
    )
}

/// [`Progress`] drawn as one bar per stage on standard error; notes go above the bar.
#[derive(Default)]
pub struct Bars(Option<ProgressBar>);

impl Progress for Bars {
    fn start(&mut self, stage: &str, total: u64) {
        self.0 = Some(bar(total, stage));
    }

    fn inc(&mut self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    fn note(&mut self, line: &str) {
        match &self.0 {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.0.take() {
            b.finish_and_clear();
        }
    }
}
