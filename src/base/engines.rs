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
    !device.is_autodiff() && crate::base::host::is_cpu_backend(device)
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
    use std::any::Any;
    use std::cell::{Cell, RefCell};
    use std::ops::Range;
    use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
    use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
    use std::sync::{Mutex, OnceLock};
    use std::thread::Thread;
    use std::time::{Duration, Instant};

    use crate::base::stages;

    thread_local! {
        /// The idle engines' lanes lent to the part this thread runs (valid while
        /// [`split`]'s scope lasts; cleared by [`Lent`] before it ends).
        static HELPERS: RefCell<Vec<*const Lane>> = const { RefCell::new(Vec::new()) };
        /// Whether this thread is running an engine's work for [`split`]: a `split` from
        /// there runs whole on this thread, as the other engines are taken (the lent ones
        /// serve their lanes until the outer `split` ends, so waiting for them would never
        /// end).
        static INSIDE: Cell<bool> = const { Cell::new(false) };
    }

    /// How long a waiting engine spins before it sleeps. A lent engine gets a job every
    /// few hundred microseconds at batch 1 (four per encoder layer), with tens of
    /// microseconds of the part's own work in between: sleeping in between cost a futex
    /// wake-up a job, 5-7% of a batch-1 pass in a profile, where the same pass on rayon's
    /// scopes spent it in `futex_wake`.
    const SPIN: Duration = Duration::from_micros(200);

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

    /// A lent engine's mailbox: the part's engine posts a job, the lent engine runs it and
    /// says it is done. Both sides spin for [`SPIN`] before they park.
    struct Lane {
        state: AtomicU8,
        /// The posted job (its lifetime erased: [`Lane::run`] waits for it to finish before
        /// what it borrows goes away) and the thread to wake when it is done.
        job: Mutex<Option<(Job, Thread)>>,
        /// A panic of the last job, to re-raise on the part's engine.
        panic: Mutex<Option<Box<dyn Any + Send>>>,
        /// The lent engine's thread, once it serves.
        server: OnceLock<Thread>,
    }

    type Job = &'static (dyn Fn() + Sync);

    const IDLE: u8 = 0;
    const POSTED: u8 = 1;
    const DONE: u8 = 2;
    const CLOSED: u8 = 3;

    /// Waits until `state` satisfies `ready`: spins for [`SPIN`], then parks (the other
    /// side unparks this thread after every change it makes).
    fn wait(state: &AtomicU8, ready: impl Fn(u8) -> bool) -> u8 {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let s = state.load(Ordering::Acquire);
            if ready(s) {
                return s;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) || start.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::park();
            }
        }
    }

    impl Lane {
        fn new() -> Self {
            Self {
                state: AtomicU8::new(IDLE),
                job: Mutex::new(None),
                panic: Mutex::new(None),
                server: OnceLock::new(),
            }
        }

        fn set(&self, state: u8) {
            self.state.store(state, Ordering::Release);
            if let Some(t) = self.server.get() {
                t.unpark();
            }
        }

        /// The lent engine's loop: runs posted jobs until the lane is closed.
        fn serve(&self) {
            let _ = self.server.set(std::thread::current());
            let _inside = Inside::new();
            loop {
                if wait(&self.state, |s| s == POSTED || s == CLOSED) == CLOSED {
                    return;
                }
                let (job, owner) = self
                    .job
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .expect("a posted job");
                if let Err(p) = stages::time(stages::LENT, || catch_unwind(AssertUnwindSafe(job))) {
                    *self.panic.lock().unwrap_or_else(|p| p.into_inner()) = Some(p);
                }
                self.state.store(DONE, Ordering::Release);
                owner.unpark();
            }
        }

        /// Hands `job` to the lent engine.
        ///
        /// # Safety
        /// The caller waits for it ([`Lane::join`]) before anything `job` borrows goes
        /// away, a panic included.
        unsafe fn post(&self, job: &(dyn Fn() + Sync)) {
            // SAFETY: only the lifetime changes; the caller waits for the job to finish.
            let job: Job = unsafe { std::mem::transmute::<&(dyn Fn() + Sync), Job>(job) };
            *self.job.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((job, std::thread::current()));
            self.set(POSTED);
        }

        /// Waits for the posted job; returns its panic, if it panicked.
        fn join(&self) -> Option<Box<dyn Any + Send>> {
            wait(&self.state, |s| s == DONE);
            self.state.store(IDLE, Ordering::Release);
            self.panic.lock().unwrap_or_else(|p| p.into_inner()).take()
        }
    }

    pub(super) fn split<T: Send>(rows: usize, f: &(impl Fn(Range<usize>) -> T + Sync)) -> Vec<T> {
        let pools = pools();
        if pools.is_empty() || rows == 0 || INSIDE.get() {
            return vec![f(0..rows)];
        }
        // One split at a time holds the engines: two taking them in turns (each its parts'
        // engine and the other's lent one) would each wait for the other forever.
        static ENGINES: Mutex<()> = Mutex::new(());
        let _engines = ENGINES.lock().unwrap_or_else(|p| p.into_inner());
        // A batch of one part runs on one engine too: flex's own threads lost at batch 1.
        let ranges: Vec<Range<usize>> = (0..rows)
            .step_by(super::PART_ROWS)
            .map(|start| start..(start + super::PART_ROWS).min(rows))
            .collect();
        // Each engine takes the next part not yet taken; results go back by part index.
        // Engines without a part of their own are lent, round robin, to those with one:
        // each serves its lane until the parts are done.
        let busy = ranges.len().min(pools.len());
        let lanes: Vec<Lane> = (busy..pools.len()).map(|_| Lane::new()).collect();
        let next = AtomicUsize::new(0);
        let start = Instant::now();
        let mut results: Vec<(usize, T)> = std::thread::scope(|s| {
            for (lane, pool) in lanes.iter().zip(&pools[busy..]) {
                s.spawn(move || pool.install(|| lane.serve()));
            }
            let handles: Vec<_> = pools
                .iter()
                .take(busy)
                .enumerate()
                .map(|(e, pool)| {
                    let (next, ranges) = (&next, &ranges);
                    let helpers: Vec<*const Lane> = lanes
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| (busy + j) % busy == e)
                        .map(|(_, l)| l as *const Lane)
                        .collect();
                    let helpers = SendLanes(helpers);
                    s.spawn(move || {
                        pool.install(|| {
                            let _lent = Lent::new(helpers.take());
                            let _inside = Inside::new();
                            let mut done = Vec::new();
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                let Some(r) = ranges.get(i) else { break };
                                done.push((i, stages::time(stages::PARTS, || f(r.clone()))));
                            }
                            done
                        })
                    })
                })
                .collect();
            let joined: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
            // The parts are done (or panicked): the lent engines stop serving.
            lanes.iter().for_each(|l| l.set(CLOSED));
            joined
                .into_iter()
                .flat_map(|r| r.unwrap_or_else(|p| resume_unwind(p)))
                .collect()
        });
        // Every engine took part in the split, with a part or lent.
        stages::add(stages::ENGINE_TIME, start.elapsed() * pools.len() as u32);
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, t)| t).collect()
    }

    /// Lane addresses moved into an engine's thread (they outlive it: `split`'s scope).
    struct SendLanes(Vec<*const Lane>);
    // SAFETY: a `Lane` is `Sync` (atomics and mutexes); the pointers are only read while
    // `split`'s scope, which owns the lanes, lasts.
    unsafe impl Send for SendLanes {}

    impl SendLanes {
        fn take(self) -> Vec<*const Lane> {
            self.0
        }
    }

    /// The engines lent to this thread while it runs parts; taken back on drop, a panic's
    /// unwinding included, so no lane outlives the scope that owns it.
    struct Lent;

    impl Lent {
        fn new(helpers: Vec<*const Lane>) -> Self {
            HELPERS.with(|h| *h.borrow_mut() = helpers);
            Lent
        }
    }

    /// Marks this thread as running an engine's work ([`INSIDE`]) until dropped.
    struct Inside(bool);

    impl Inside {
        fn new() -> Self {
            Self(INSIDE.replace(true))
        }
    }

    impl Drop for Inside {
        fn drop(&mut self) {
            INSIDE.set(self.0);
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
        let jobs: Vec<_> = ranges
            .iter()
            .zip(&slots)
            .skip(1)
            .map(|(r, slot)| {
                move || *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(f(r.clone()))
            })
            .collect();
        // A fork inside a range runs whole: the lanes are busy with this one's ranges.
        let lent = Lent::new(Vec::new());
        for (&lane, job) in helpers.iter().zip(&jobs) {
            // SAFETY: the lane lives as long as `split`'s scope (HELPERS), and every posted
            // job is joined below before `jobs`, `slots` or `f` go away, even if this
            // thread's own range panics.
            unsafe { (*lane).post(job) };
        }
        let own = stages::time(stages::OWN, || {
            catch_unwind(AssertUnwindSafe(|| f(ranges[0].clone())))
        });
        let panics: Vec<_> = stages::time(stages::LENT_WAIT, || {
            helpers
                .iter()
                .take(jobs.len())
                // SAFETY: as above.
                .filter_map(|&lane| unsafe { (*lane).join() })
                .collect()
        });
        drop(lent);
        HELPERS.with(|h| *h.borrow_mut() = helpers);
        let own = own.unwrap_or_else(|p| resume_unwind(p));
        if let Some(p) = panics.into_iter().next() {
            resume_unwind(p);
        }
        std::iter::once(own)
            .chain(slots.into_iter().skip(1).map(|m| {
                m.into_inner()
                    .unwrap_or_else(|p| p.into_inner())
                    .expect("every posted job stored its result or panicked")
            }))
            .collect()
    }
}
