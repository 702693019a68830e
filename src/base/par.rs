//! Host loops shared out over the cores on scoped threads (one thread in wasm): each call of
//! the closure gets a contiguous range of items, so a result computed per item does not
//! depend on the thread count.

use std::ops::Range;

/// Fewest items a thread takes (below that a thread's start costs more than it saves).
const MIN_PER_THREAD: usize = 64;

/// `f` over consecutive ranges covering `0..len`, one per core natively (scoped threads),
/// one in wasm; results in order.
pub fn par_map<T: Send>(len: usize, f: impl Fn(Range<usize>) -> T + Sync) -> Vec<T> {
    let threads = threads(len);
    #[cfg(not(target_arch = "wasm32"))]
    if threads > 1 {
        let (f, per) = (&f, len.div_ceil(threads));
        return std::thread::scope(|s| {
            let handles: Vec<_> = (0..len)
                .step_by(per)
                .map(|a| s.spawn(move || f(a..(a + per).min(len))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
    }
    let _ = threads;
    vec![f(0..len)]
}

/// `f(row, values)` for every row of `out` (rows of `width` values), rows shared out over
/// the cores.
pub fn par_rows(out: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    par_rows_map(out, width, f);
}

/// [`par_rows`] whose calls return a value: the results, one per row, in order.
pub fn par_rows_map<T: Send>(
    out: &mut [f32],
    width: usize,
    f: impl Fn(usize, &mut [f32]) -> T + Sync,
) -> Vec<T> {
    // A last, shorter row counts as a row.
    let rows = out.len().div_ceil(width.max(1));
    let threads = threads(rows);
    let run = |first: usize, chunk: &mut [f32]| -> Vec<T> {
        chunk
            .chunks_mut(width.max(1))
            .enumerate()
            .map(|(i, row)| f(first + i, row))
            .collect()
    };
    #[cfg(not(target_arch = "wasm32"))]
    if threads > 1 {
        let (run, per) = (&run, rows.div_ceil(threads));
        return std::thread::scope(|s| {
            let handles: Vec<_> = out
                .chunks_mut(per * width)
                .enumerate()
                .map(|(c, chunk)| s.spawn(move || run(c * per, chunk)))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
    }
    let _ = threads;
    run(0, out)
}

/// Threads for `len` items: the cores, fewer for small jobs, one in wasm.
fn threads(len: usize) -> usize {
    if cfg!(target_arch = "wasm32") {
        return 1;
    }
    std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(len / MIN_PER_THREAD)
        .max(1)
}
