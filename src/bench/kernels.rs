//! Where a GPU pass spends its time, kernel by kernel (issue 12: "whatever is not reached is
//! reported with where the time goes"). The wgpu backend runs every op as a CubeCL kernel;
//! CubeCL's launch observer (`cubecl::logging::LaunchObserver`) is told of each launch on
//! the thread that issues it and, asked for deferred timing, hands over each kernel's
//! device timestamps unread, so the kernels still run back to back and are read once the
//! passes are over. From those: device time per kernel and per family of kernels, launches
//! per pass, and how much of the device's span between the first kernel's start and the
//! last one's end no kernel ran (the device idle, waiting on the host: launch-bound).
//!
//! The CPU backend (flex) runs host code, not CubeCL kernels: a profile of it has no
//! launches (profile it with `perf`, README "Where the time goes").

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use burn::cubecl::config::{TypeNameFormatLevel, type_name_format};
use burn::cubecl::future::block_on;
use burn::cubecl::logging::{
    LaunchObservation, LaunchObserver, ProfileDuration, TimingMethod, TimingRequest,
};
use serde::Serialize;

use crate::error::Result;

/// How far before the profiled passes the device timestamps are measured from. wgpu maps
/// its timestamps onto host instants from a calibration taken when the profiler started
/// (`cubecl-wgpu`'s `timings.rs`), which may drift from the host clock; a minute of margin
/// keeps every kernel after the epoch (`Instant::duration_since` saturates at zero, which
/// would fold kernels onto one point).
const EPOCH_MARGIN: Duration = Duration::from_secs(60);

/// Kernels of one name (or of one family) over the profiled passes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KernelRow {
    /// The kernel's short name (`MatmulEntry`, `ElemwiseFuse`, ...) or its family.
    pub name: String,
    /// Launches over all profiled passes.
    pub launches: usize,
    /// Device time over all profiled passes, milliseconds.
    pub ms: f64,
}

/// A profile of `passes` passes of one piece of work.
#[derive(Debug, Clone, Serialize)]
pub struct KernelProfile {
    /// Profiled passes.
    pub passes: usize,
    /// Host time of the profiled passes, milliseconds. Timing each launch costs the
    /// issuing thread a round trip to the device thread, so this is above the unprofiled
    /// pass's time; the device figures below are the ones to read.
    pub wall_ms: f64,
    /// Kernel launches over all passes.
    pub launches: usize,
    /// Sum of every kernel's device time, milliseconds.
    pub kernel_ms: f64,
    /// Time at least one kernel was running (kernels that overlap count once), ms.
    pub busy_ms: f64,
    /// From the first kernel's start to the last one's end in each pass, milliseconds,
    /// summed over the passes (the read-back between passes is left out).
    pub span_ms: f64,
    /// Kernels whose time came from the host's clock around a blocking submit instead of
    /// device timestamps (wgpu falls back to it when it runs out of timestamp queries):
    /// those include the submit and the wait, not just the kernel.
    pub host_timed: usize,
    /// Launches the device gave no measurement for (left out of the times).
    pub unmeasured: usize,
    /// Device time by family (matmul, fused elementwise, reduce, ...), largest first.
    pub families: Vec<KernelRow>,
    /// Device time by kernel name, largest first.
    pub kernels: Vec<KernelRow>,
}

/// What the observer keeps while the passes run.
#[derive(Default)]
struct Recorded {
    launches: usize,
    deferred: Vec<(&'static str, ProfileDuration)>,
    timed: Vec<(&'static str, Duration, TimingMethod)>,
}

#[derive(Default)]
struct Recorder(Mutex<Recorded>);

impl Recorder {
    fn with<T>(&self, f: impl FnOnce(&mut Recorded) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl LaunchObserver for Recorder {
    fn launched(&self, _kernel: &'static str) {
        self.with(|r| r.launches += 1);
    }

    // Deferred: kernels keep running back to back, so the span and the idle time are
    // those of the pass as it runs unprofiled, apart from the launch round trips.
    fn timing(&self) -> TimingRequest {
        TimingRequest::Deferred
    }

    fn profiled(&self, kernel: &'static str, profile: ProfileDuration) {
        self.with(|r| r.deferred.push((kernel, profile)));
    }

    // Reached instead of `profiled` when CubeCL's profiling logger (cubecl.toml,
    // CUBECL_DEBUG_OPTION) reads the measurements too: lengths without positions.
    fn timed(&self, kernel: &'static str, duration: Duration, method: TimingMethod) {
        self.with(|r| r.timed.push((kernel, duration, method)));
    }
}

/// Runs `pass` `passes` times with every kernel launch timed on the device, and returns
/// where the device time went. `pass` must finish its work (read a result back), so that
/// every kernel it launched has run before the next pass and before the timings are read.
pub fn profile_kernels(
    passes: usize,
    mut pass: impl FnMut() -> Result<()>,
) -> Result<KernelProfile> {
    let recorder = Arc::new(Recorder::default());
    let epoch = Instant::now();
    let epoch = epoch.checked_sub(EPOCH_MARGIN).unwrap_or(epoch);
    let mut ends = Vec::with_capacity(passes);
    let start = Instant::now();
    {
        let _watching = LaunchObservation::new(recorder.clone());
        for _ in 0..passes {
            pass()?;
            // Each launch's measurement reaches the observer on the issuing thread right
            // after the launch, so the pass's kernels are all recorded by now.
            ends.push(recorder.with(|r| r.deferred.len()));
        }
    }
    let wall = start.elapsed();
    let recorded = recorder.with(std::mem::take);

    let mut times: Vec<(&'static str, Duration)> = Vec::new();
    let (mut host_timed, mut unmeasured) = (0, 0);
    let (mut busy, mut span) = (Duration::ZERO, Duration::ZERO);
    let mut deferred = recorded.deferred.into_iter();
    let mut begin = 0;
    for end in ends {
        // This pass's device-timed kernels, relative to the epoch.
        let mut spans = Vec::new();
        for (kernel, profile) in deferred.by_ref().take(end - begin) {
            let method = profile.timing_method();
            match block_on(profile.resolve()) {
                Some(ticks) => {
                    times.push((kernel, ticks.duration()));
                    match method {
                        TimingMethod::Device => spans.push((
                            ticks.start_duration_since(epoch),
                            ticks.end_duration_since(epoch),
                        )),
                        TimingMethod::System => host_timed += 1,
                    }
                }
                None => unmeasured += 1,
            }
        }
        begin = end;
        let (b, s) = busy_and_span(&mut spans);
        busy += b;
        span += s;
    }
    for (kernel, duration, method) in recorded.timed {
        times.push((kernel, duration));
        if method == TimingMethod::System {
            host_timed += 1;
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(KernelProfile {
        passes,
        wall_ms: ms(wall),
        launches: recorded.launches,
        kernel_ms: ms(times.iter().map(|(_, d)| *d).sum()),
        busy_ms: ms(busy),
        span_ms: ms(span),
        host_timed,
        unmeasured,
        families: rows(times.iter().map(|(k, d)| (family(k).to_string(), *d))),
        kernels: rows(times.iter().map(|(k, d)| (short_name(k), *d))),
    })
}

/// Time covered by at least one of `spans` (overlapping kernels count once) and the time
/// from the first kernel's start to the last one's end, for the kernels of one pass.
fn busy_and_span(spans: &mut [(Duration, Duration)]) -> (Duration, Duration) {
    spans.sort_unstable();
    let mut busy = Duration::ZERO;
    let mut run: Option<(Duration, Duration)> = None;
    for &(start, end) in spans.iter() {
        match &mut run {
            Some(r) if start <= r.1 => r.1 = r.1.max(end),
            _ => {
                if let Some((s, e)) = run {
                    busy += e - s;
                }
                run = Some((start, end));
            }
        }
    }
    if let Some((s, e)) = run {
        busy += e - s;
    }
    let span = match (spans.first(), spans.iter().map(|&(_, e)| e).max()) {
        (Some(&(first, _)), Some(last)) => last - first,
        _ => Duration::ZERO,
    };
    (busy, span)
}

/// Sums durations by name, largest first (ties by name, so the order is stable).
fn rows(items: impl Iterator<Item = (String, Duration)>) -> Vec<KernelRow> {
    let mut by: HashMap<String, (usize, Duration)> = HashMap::new();
    for (name, d) in items {
        let e = by.entry(name).or_default();
        e.0 += 1;
        e.1 += d;
    }
    let mut out: Vec<KernelRow> = by
        .into_iter()
        .map(|(name, (launches, d))| KernelRow {
            name,
            launches,
            ms: d.as_secs_f64() * 1e3,
        })
        .collect();
    out.sort_by(|a, b| b.ms.total_cmp(&a.ms).then_with(|| a.name.cmp(&b.name)));
    out
}

/// A kernel's type name without its module path and generics (`MatmulEntry`).
fn short_name(kernel: &str) -> String {
    type_name_format(kernel, TypeNameFormatLevel::Short)
}

/// The family a kernel belongs to, from its type name: what a CLIP pass is made of
/// (products, softmax and LayerNorm reductions, elementwise chains fused by burn's
/// fusion, layout copies).
fn family(kernel: &str) -> &'static str {
    let name = short_name(kernel).to_ascii_lowercase();
    let has = |s: &str| name.contains(s);
    if has("matmul") || has("gemm") {
        "matmul"
    } else if has("attention") || has("flash") {
        "attention"
    } else if has("reduce") || has("softmax") || has("norm") {
        "reduce"
    } else if has("fuse") {
        "elementwise (fused)"
    } else if has("copy") || has("slice") || has("gather") || has("select") || has("cat") {
        "copy / layout"
    } else if has("binop")
        || has("unary")
        || has("scalar")
        || has("cmp")
        || has("mask")
        || has("full")
        || has("clamp")
        || has("cast")
    {
        "elementwise (single op)"
    } else if has("prng") {
        "random"
    } else {
        "other"
    }
}

impl KernelProfile {
    /// The profile as a table, per pass: families, then the `top` kernels.
    pub fn table(&self, top: usize) -> String {
        use std::fmt::Write;
        let n = self.passes.max(1) as f64;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "  per pass: {:.0} launches, kernels {:.2} ms, device busy {:.2} ms of a {:.2} ms span \
             (idle {:.0}%), host {:.2} ms with timing on",
            self.launches as f64 / n,
            self.kernel_ms / n,
            self.busy_ms / n,
            self.span_ms / n,
            if self.span_ms > 0.0 {
                100.0 * (1.0 - self.busy_ms / self.span_ms)
            } else {
                0.0
            },
            self.wall_ms / n,
        );
        if self.launches == 0 {
            let _ = writeln!(
                s,
                "  no CubeCL kernels ran (the cpu backend runs host code: profile it with perf)"
            );
            return s;
        }
        if self.host_timed > 0 || self.unmeasured > 0 {
            let _ = writeln!(
                s,
                "  {} kernels timed by the host clock (submit and wait included), {} not measured",
                self.host_timed, self.unmeasured
            );
        }
        let mut section = |title: &str, rows: &[KernelRow], limit: usize| {
            let _ = writeln!(s, "  {title:<40} {:>9} {:>10} {:>6}", "launches", "ms", "%");
            for r in rows.iter().take(limit) {
                let _ = writeln!(
                    s,
                    "  {:<40} {:>9.1} {:>10.3} {:>5.1}%",
                    r.name,
                    r.launches as f64 / n,
                    r.ms / n,
                    100.0 * r.ms / self.kernel_ms.max(f64::MIN_POSITIVE)
                );
            }
        };
        section("family", &self.families, usize::MAX);
        section("kernel", &self.kernels, top);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn busy_time_counts_overlaps_once_and_the_span_runs_first_start_to_last_end() {
        // Kernels 0-4 and 3-6 overlap; 8-10 after a gap; 1-2 inside the first.
        let mut spans = vec![(d(3), d(6)), (d(0), d(4)), (d(8), d(10)), (d(1), d(2))];
        assert_eq!(busy_and_span(&mut spans), (d(6 + 2), d(10)));
        // A kernel that ends last without starting last.
        let mut spans = vec![(d(0), d(20)), (d(5), d(6))];
        assert_eq!(busy_and_span(&mut spans), (d(20), d(20)));
        assert_eq!(busy_and_span(&mut []), (Duration::ZERO, Duration::ZERO));
    }

    #[test]
    fn rows_sum_by_name_largest_first() {
        let r = rows(
            [("x", 1), ("y", 5), ("x", 2), ("z", 3)]
                .into_iter()
                .map(|(n, ms)| (n.to_string(), d(ms))),
        );
        let got: Vec<(&str, usize, f64)> = r
            .iter()
            .map(|r| (r.name.as_str(), r.launches, r.ms))
            .collect();
        assert_eq!(got, [("y", 1, 5.0), ("x", 2, 3.0), ("z", 1, 3.0)]);
    }

    #[test]
    fn kernels_fall_into_families_by_their_type_names() {
        let cases = [
            (
                "cubecl_matmul::launch::MatmulEntry<f32, SimpleMatmulFamily>",
                "matmul",
            ),
            (
                "burn_cubecl_fusion::elemwise::ElemwiseFuse",
                "elementwise (fused)",
            ),
            ("cubecl_reduce::ReduceKernelFused<f32>", "reduce"),
            (
                "burn_cubecl::kernel::binary::KernelBinop<AddOp>",
                "elementwise (single op)",
            ),
            ("burn_cubecl::kernel::copy::CopyKernelPack", "copy / layout"),
            ("cubecl_random::PrngKernel<NormalFamily>", "random"),
            ("something::Else", "other"),
        ];
        for (kernel, want) in cases {
            assert_eq!(family(kernel), want, "{kernel}");
        }
        assert_eq!(short_name("a::b::MatmulEntry<f32, X>"), "MatmulEntry");
    }
}
