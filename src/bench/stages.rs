//! `bench --stages`: where the CPU path's time goes, from [`crate::base::stages`]: what the
//! engines did with the passes' wall time (their own parts, jobs lent to another part, or
//! nothing), and inside the parts, the encoder layer's stages.

use serde::Serialize;

use crate::base::stages::{self, ENGINE_TIME, LENT, LENT_WAIT, OWN, PARTS, StageRow};
use crate::error::Result;

/// A stage profile of `passes` passes of one piece of work.
#[derive(Debug, Clone, Serialize)]
pub struct StageProfile {
    /// Profiled passes.
    pub passes: usize,
    /// Their wall time, milliseconds.
    pub wall_ms: f64,
    /// Every stage's total over the passes ([`stages::record`]), largest first.
    pub stages: Vec<StageRow>,
}

/// Runs `pass` `passes` times with the CPU path's stages recorded.
pub fn profile_stages(passes: usize, mut pass: impl FnMut() -> Result<()>) -> Result<StageProfile> {
    let start = std::time::Instant::now();
    let (done, rows) = stages::record(|| (0..passes).try_for_each(|_| pass()));
    done?;
    Ok(StageProfile {
        passes,
        wall_ms: start.elapsed().as_secs_f64() * 1e3,
        stages: rows,
    })
}

impl StageProfile {
    /// A stage's total, milliseconds (0 where it never ran).
    pub fn ms(&self, name: &str) -> f64 {
        self.stages
            .iter()
            .find(|r| r.name == name)
            .map_or(0.0, |r| r.ms)
    }

    /// The profile as a table, per pass.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let n = self.passes.max(1) as f64;
        let mut s = String::new();
        let engines = self.ms(ENGINE_TIME);
        let parts = self.ms(PARTS);
        let lent = self.ms(LENT);
        if engines == 0.0 {
            let _ = writeln!(
                s,
                "  per pass: {:.2} ms; the batch ran whole on one thread (the engines split \
                 batches only on the cpu backend)",
                self.wall_ms / n
            );
            return s;
        }
        let pct = |x: f64| 100.0 * x / engines.max(f64::MIN_POSITIVE);
        let _ = writeln!(
            s,
            "  per pass: wall {:.2} ms; engines x wall {:.2} ms: running parts {:.2} ({:.0}%), \
             lent to another part {:.2} ({:.0}%), idle {:.2} ({:.0}%)",
            self.wall_ms / n,
            engines / n,
            parts / n,
            pct(parts),
            lent / n,
            pct(lent),
            (engines - parts - lent).max(0.0) / n,
            pct((engines - parts - lent).max(0.0)),
        );
        let _ = writeln!(
            s,
            "  inside the parts (wall on the part's engine, waits for lent engines included):"
        );
        let _ = writeln!(
            s,
            "  {:<40} {:>8} {:>10} {:>6}",
            "stage", "calls", "ms", "%"
        );
        let mut layers = 0.0;
        let row = |s: &mut String, name: &str, calls: Option<u64>, ms: f64| {
            let calls = calls.map_or("-".to_string(), |c| format!("{:.1}", c as f64 / n));
            let _ = writeln!(
                s,
                "  {name:<40} {calls:>8} {:>10.3} {:>5.1}%",
                ms / n,
                100.0 * ms / parts.max(f64::MIN_POSITIVE)
            );
        };
        for r in self.stages.iter().filter(|r| r.name.starts_with("layer: ")) {
            layers += r.ms;
            row(&mut s, &r.name, Some(r.count), r.ms);
        }
        row(
            &mut s,
            "outside the encoder layers",
            None,
            (parts - layers).max(0.0),
        );
        for (name, label) in [
            (OWN, "(of the above: own share of forks)"),
            (LENT_WAIT, "(of the above: waiting for lent engines)"),
        ] {
            if let Some(w) = self.stages.iter().find(|r| r.name == name) {
                row(&mut s, label, Some(w.count), w.ms);
            }
        }
        s
    }

    /// The stages named `prefix...` as a table, per pass, with their share of the wall time
    /// (a job's phases, such as `analyze`'s; nested stages say so in their names).
    pub fn phases_table(&self, prefix: &str) -> String {
        use std::fmt::Write;
        let n = self.passes.max(1) as f64;
        let mut s = String::new();
        let _ = writeln!(s, "  per pass: wall {:.2} ms", self.wall_ms / n);
        let _ = writeln!(
            s,
            "  {:<40} {:>8} {:>10} {:>6}",
            "stage", "calls", "ms", "%"
        );
        let mut shown = 0.0;
        for r in self.stages.iter().filter(|r| r.name.starts_with(prefix)) {
            let name = &r.name[prefix.len()..];
            if !name.starts_with('(') {
                shown += r.ms;
            }
            let _ = writeln!(
                s,
                "  {name:<40} {:>8.1} {:>10.3} {:>5.1}%",
                r.count as f64 / n,
                r.ms / n,
                100.0 * r.ms / self.wall_ms.max(f64::MIN_POSITIVE)
            );
        }
        let rest = (self.wall_ms - shown).max(0.0);
        let _ = writeln!(
            s,
            "  {:<40} {:>8} {:>10.3} {:>5.1}%",
            "the rest",
            "-",
            rest / n,
            100.0 * rest / self.wall_ms.max(f64::MIN_POSITIVE)
        );
        s
    }
}
