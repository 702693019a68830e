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
//!
//! When a batch has fewer parts than there are engines (batch 1 on 2 cores leaves one
//! idle), the idle engines are lent to the busy ones: the transformer layers hand ranges of
//! each linear layer's output columns to them ([`fork_cols`], `clip::blocks`), so each
//! engine streams only its share of the weight. Every output value is still one GEMM's sum
//! over the whole inner dimension, in blocks chosen from that dimension alone, so cutting
//! columns leaves its arithmetic unchanged and the bits still do not depend on the core
//! count (`tests/engines.rs` checks this at ViT-B/32's shapes).

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

/// Runs `f` on ranges covering `0..cols` (a linear layer's output columns): one range on
/// the calling thread and one on each idle engine it was lent ([`split_rows`] lends the
/// engines its parts leave idle, e.g. every engine but one at batch 1), and returns the
/// results in column order. Ranges have at least [`MIN_FORK_COLS`] columns and start at
/// multiples of [`FORK_COL_ALIGN`]. Without idle engines (other devices, wasm, batches with
/// a part for every engine) it is `vec![f(0..cols)]`.
pub fn fork_cols<T: Send>(cols: usize, f: impl Fn(Range<usize>) -> T + Sync) -> Vec<T> {
    fork(cols, MIN_FORK_COLS, FORK_COL_ALIGN, f)
}

/// [`fork_cols`] with ranges that start at multiples of `align` instead (an attention
/// layer's columns cut at whole heads: `align` is the head size).
pub fn fork_cols_in<T: Send>(
    cols: usize,
    align: usize,
    f: impl Fn(Range<usize>) -> T + Sync,
) -> Vec<T> {
    fork(cols, MIN_FORK_COLS, align, f)
}

/// Fewest output columns a range has (the last range too): more than 64, because gemm
/// (gemm-common 0.19, `gemm_basic_generic`) blocks the inner dimension differently when
/// both of a product's outer dimensions are at most 64 (a 50-token image cut into ranges
/// of 64 columns changed 34 300 of 38 400 values), and a smaller GEMM does not pay for
/// the fork (tens of microseconds).
pub const MIN_FORK_COLS: usize = 96;

/// Column ranges start at multiples of this: gemm's widest f32 micro-kernel covers 32
/// output values (two AVX-512 vectors; gemm computes the transposed product, so a linear
/// layer's output columns are the kernel's rows), so only the last range can end in a
/// part-filled tile.
pub const FORK_COL_ALIGN: usize = 32;

fn fork<T: Send>(
    len: usize,
    min: usize,
    align: usize,
    f: impl Fn(Range<usize>) -> T + Sync,
) -> Vec<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        native::fork(len, min, align, &f)
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (min, align);
        vec![f(0..len)]
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::cell::RefCell;
    use std::ops::Range;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, OnceLock};

    thread_local! {
        /// The idle engines (indices into [`pools`]) lent to the part this thread runs.
        static HELPERS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    }

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
        // Engines without a part of their own are lent, round robin, to those with one.
        let busy = ranges.len().min(pools.len());
        let next = AtomicUsize::new(0);
        let mut results: Vec<(usize, T)> = std::thread::scope(|s| {
            let handles: Vec<_> = pools
                .iter()
                .take(busy)
                .enumerate()
                .map(|(e, pool)| {
                    let (next, ranges) = (&next, &ranges);
                    let helpers: Vec<usize> =
                        (busy..pools.len()).filter(|j| j % busy == e).collect();
                    s.spawn(move || {
                        pool.install(|| {
                            let _lent = Lent::new(helpers);
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

    /// The engines lent to this thread while it runs parts; taken back on drop, a panic's
    /// unwinding included, so a thread that later helps another engine has none of its own
    /// (a helper lending to a busy engine could wait on it forever).
    struct Lent;

    impl Lent {
        fn new(helpers: Vec<usize>) -> Self {
            HELPERS.with(|h| *h.borrow_mut() = helpers);
            Lent
        }
    }

    impl Drop for Lent {
        fn drop(&mut self) {
            HELPERS.with(|h| h.borrow_mut().clear());
        }
    }

    pub(super) fn fork<T: Send>(
        len: usize,
        min: usize,
        align: usize,
        f: &(impl Fn(Range<usize>) -> T + Sync),
    ) -> Vec<T> {
        let helpers = HELPERS.with(|h| h.borrow().clone());
        let ways = (helpers.len() + 1).min(len / min.max(1)).max(1);
        if ways == 1 {
            return vec![f(0..len)];
        }
        let step = len.div_ceil(ways).next_multiple_of(align.max(1));
        let mut ranges: Vec<Range<usize>> = (0..len)
            .step_by(step)
            .map(|start| start..(start + step).min(len))
            .collect();
        if let [.., before, last] = ranges.as_mut_slice()
            && last.len() < min
        {
            before.end = last.end;
            ranges.pop();
        }
        if ranges.len() == 1 {
            return vec![f(0..len)];
        }
        let slots: Vec<Mutex<Option<T>>> = ranges.iter().map(|_| Mutex::new(None)).collect();
        spread(&helpers, &ranges, &slots, f);
        // Every slot is filled unless a range panicked, which the scope has re-raised.
        slots
            .into_iter()
            .zip(ranges)
            .map(|(m, r)| {
                let t = m.into_inner().unwrap_or_else(|p| p.into_inner());
                t.unwrap_or_else(|| f(r))
            })
            .collect()
    }

    /// Range 0 on the calling thread, range i + 1 on helper i: each helper's pool gets its
    /// job through an `in_place_scope`, nested so that all of them run at once.
    fn spread<T: Send>(
        helpers: &[usize],
        ranges: &[Range<usize>],
        slots: &[Mutex<Option<T>>],
        f: &(impl Fn(Range<usize>) -> T + Sync),
    ) {
        let last = ranges.len() - 1;
        match helpers.get(last.wrapping_sub(1)) {
            Some(&h) if last > 0 => pools()[h].in_place_scope(|s| {
                s.spawn(|_| {
                    let t = f(ranges[last].clone());
                    *slots[last].lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
                });
                spread(helpers, &ranges[..last], &slots[..last], f);
            }),
            _ => {
                for (r, slot) in ranges.iter().zip(slots) {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(f(r.clone()));
                }
            }
        }
    }
}
