//! Where the CPU path's time goes, stage by stage and engine by engine (issue 12: "whatever
//! is not reached is reported with where the time goes (a per-op profile)", on machines
//! where `perf` is not at hand, such as the lent 16-core ones).
//!
//! Off unless [`record`] is running: then the encoder layer's stages on host values
//! (`clip::blocks::host`) add their wall time, as seen by the engine that runs the part,
//! and the engines ([`super::engines`]) add what each engine did with the split's wall
//! time: running parts, running jobs for another part (lent), or nothing. A stage's time
//! includes waiting for the engines lent to it at the end of its forks (also counted on
//! its own, [`LENT_WAIT`]). Timing costs two clock reads per stage (tens a layer), nothing
//! when off. In wasm nothing is recorded (no clock there; the page's profile is
//! `scripts/profile_web.mjs`).

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// Engines' time over the splits: engines x each split's wall time.
pub const ENGINE_TIME: &str = "engines x wall";
/// An engine running parts of the batch (the stages below happen inside this).
pub const PARTS: &str = "running parts";
/// An engine running another part's job (a lent engine).
pub const LENT: &str = "running lent jobs";
/// A part's engine running its own share of a fork (the lent engines run the rest).
pub const OWN: &str = "own share of forks";
/// A part's engine, its share of a fork done, waiting for the engines lent to it.
pub const LENT_WAIT: &str = "waiting for lent engines";

static ON: AtomicBool = AtomicBool::new(false);

/// One stage's total over the recorded work.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageRow {
    /// The stage.
    pub name: String,
    /// How many times it ran.
    pub count: u64,
    /// Its wall time summed over every time it ran (on every engine), milliseconds.
    pub ms: f64,
}

/// Whether stages are being recorded.
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Runs `f`, adding its wall time to `stage` while [`record`] runs.
pub fn time<T>(stage: &'static str, f: impl FnOnce() -> T) -> T {
    #[cfg(not(target_arch = "wasm32"))]
    if on() {
        let start = std::time::Instant::now();
        let y = f();
        native::add(stage, start.elapsed());
        return y;
    }
    let _ = stage;
    f()
}

/// Adds `d` to `stage` while [`record`] runs.
pub fn add(stage: &'static str, d: std::time::Duration) {
    #[cfg(not(target_arch = "wasm32"))]
    if on() {
        native::add(stage, d);
    }
    let _ = (stage, d);
}

/// Runs `f` with stages recorded and returns its result and every stage's total, largest
/// first. One recording at a time: a second waits for the first (a recording counts
/// every engine's work in the process while it runs).
#[cfg(not(target_arch = "wasm32"))]
pub fn record<T>(f: impl FnOnce() -> T) -> (T, Vec<StageRow>) {
    native::record(f)
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;
    use std::sync::{Mutex, PoisonError};
    use std::time::Duration;

    use super::{ON, StageRow};

    static TABLE: Mutex<Option<HashMap<&'static str, (u64, Duration)>>> = Mutex::new(None);

    pub(super) fn add(stage: &'static str, d: Duration) {
        let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
        let e = table
            .get_or_insert_with(HashMap::new)
            .entry(stage)
            .or_default();
        e.0 += 1;
        e.1 += d;
    }

    pub(super) fn record<T>(f: impl FnOnce() -> T) -> (T, Vec<StageRow>) {
        static ONE: Mutex<()> = Mutex::new(());
        let _one = ONE.lock().unwrap_or_else(PoisonError::into_inner);
        // Off again on the way out, a panic included.
        struct Off;
        impl Drop for Off {
            fn drop(&mut self) {
                ON.store(false, Ordering::Relaxed);
            }
        }
        *TABLE.lock().unwrap_or_else(PoisonError::into_inner) = Some(HashMap::new());
        ON.store(true, Ordering::Relaxed);
        let off = Off;
        let y = f();
        drop(off);
        let table = TABLE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default();
        let mut rows: Vec<StageRow> = table
            .into_iter()
            .map(|(name, (count, d))| StageRow {
                name: name.to_string(),
                count,
                ms: d.as_secs_f64() * 1e3,
            })
            .collect();
        rows.sort_by(|a, b| b.ms.total_cmp(&a.ms).then_with(|| a.name.cmp(&b.name)));
        (y, rows)
    }
}
