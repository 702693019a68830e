//! A batch split over the cores, one single-threaded CPU engine per part (issue 12).
//!
//! flex parallelises inside each op: its GEMMs ran 1.5x faster on 2 threads than on one for
//! ViT-B/32 at batch 32, and slower at batch 1 (thread wake-ups around GEMMs of 50 rows).
//! Parts of the batch on separate single-thread rayon pools keep every core busy for the
//! whole forward pass instead, and a batch of one part on one engine beats flex's threads
//! at batch 1 (README, lever table). Only the native CPU backend without
//! autodiff splits; other devices and the wasm build run the batch whole.
//!
//! A row's result depends on the rows it is computed with (GEMM blocking follows the row
//! count), so the batch is cut into parts of [`PART_ROWS`] rows whatever the core count,
//! and the engines take parts in turn: a batch gives the same bits on 2 cores and on 64,
//! as `extract`'s resume and shards across machines of one CPU kind need.

use std::ops::Range;

use burn::tensor::Device;

/// Rows per part: a ViT-B/32 part is then 400 token rows, enough for efficient GEMMs on
/// one core, and a batch of 32 keeps 4 parts for up to 4 cores.
pub const PART_ROWS: usize = 8;

/// Whether `device` is one whose batches [`split_rows`] splits.
pub fn splits(device: &Device) -> bool {
    !device.is_autodiff() && device.clone().inner() == Device::flex()
}

/// Runs `f` on consecutive row ranges of [`PART_ROWS`] rows (the last one shorter) covering
/// `0..rows`, spread over one single-threaded engine per core, and returns the results in
/// row order. Returns `vec![f(0..rows)]`, run as usual, where [`splits`] is false.
pub fn split_rows<T: Send>(
    rows: usize,
    device: &Device,
    f: impl Fn(Range<usize>) -> T + Sync,
) -> Vec<T> {
    #[cfg(not(target_arch = "wasm32"))]
    if splits(device) {
        return native::split(rows, &f);
    }
    let _ = device;
    vec![f(0..rows)]
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::ops::Range;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// One single-thread rayon pool per core, made once: flex's ops called inside
    /// `pool.install` see one rayon thread and run single-threaded.
    fn pools() -> &'static [rayon::ThreadPool] {
        static POOLS: OnceLock<Vec<rayon::ThreadPool>> = OnceLock::new();
        POOLS.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (0..cores)
                .filter_map(|i| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .thread_name(move |_| format!("monoscope-engine-{i}"))
                        .build()
                        .ok()
                })
                .collect()
        })
    }

    pub(super) fn split<T: Send>(rows: usize, f: &(impl Fn(Range<usize>) -> T + Sync)) -> Vec<T> {
        let pools = pools();
        if pools.is_empty() || rows == 0 {
            return vec![f(0..rows)];
        }
        // A batch of one part runs on one engine too: flex's own threads lost at batch 1.
        let ranges: Vec<Range<usize>> = (0..rows)
            .step_by(super::PART_ROWS)
            .map(|start| start..(start + super::PART_ROWS).min(rows))
            .collect();
        // Each engine takes the next part not yet taken; results go back by part index.
        let next = AtomicUsize::new(0);
        let mut results: Vec<(usize, T)> = std::thread::scope(|s| {
            let handles: Vec<_> = pools
                .iter()
                .take(ranges.len())
                .map(|pool| {
                    let (next, ranges) = (&next, &ranges);
                    s.spawn(move || {
                        pool.install(|| {
                            let mut done = Vec::new();
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                let Some(r) = ranges.get(i) else { break };
                                done.push((i, f(r.clone())));
                            }
                            done
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, t)| t).collect()
    }
}
