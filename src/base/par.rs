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
    par_rows_with(out, width, || (), |_, r, row| f(r, row))
}

/// [`par_rows_map`] with scratch state made once per thread by `init` and lent to each of
/// that thread's calls (a buffer reused row after row instead of allocated per row).
pub fn par_rows_with<S, T: Send>(
    out: &mut [f32],
    width: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, &mut [f32]) -> T + Sync,
) -> Vec<T> {
    // A last, shorter row counts as a row.
    let rows = out.len().div_ceil(width.max(1));
    let threads = threads(rows);
    let run = |first: usize, chunk: &mut [f32]| -> Vec<T> {
        let mut state = init();
        chunk
            .chunks_mut(width.max(1))
            .enumerate()
            .map(|(i, row)| f(&mut state, first + i, row))
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

/// `f(first, part)` over consecutive parts of `items` (the items `first..first +
/// part.len()`), one part per core natively, one in wasm.
pub fn par_chunks_mut<A: Send>(items: &mut [A], f: impl Fn(usize, &mut [A]) + Sync) {
    // `()` items take no memory: this vector allocates nothing.
    let mut none = vec![(); items.len()];
    par_zip_mut(items, &mut none, |first, a, _| f(first, a));
}

/// `f(first, a_part, b_part)` over consecutive parts of two slices of the same length (the
/// items `first..first + part.len()` of each), one part per core natively, one in wasm.
pub fn par_zip_mut<A: Send, B: Send>(
    a: &mut [A],
    b: &mut [B],
    f: impl Fn(usize, &mut [A], &mut [B]) + Sync,
) {
    assert_eq!(a.len(), b.len(), "par_zip_mut: slices of different lengths");
    let len = a.len();
    let threads = threads(len);
    #[cfg(not(target_arch = "wasm32"))]
    if threads > 1 {
        let (f, per) = (&f, len.div_ceil(threads));
        std::thread::scope(|s| {
            let handles: Vec<_> = a
                .chunks_mut(per)
                .zip(b.chunks_mut(per))
                .enumerate()
                .map(|(c, (a, b))| s.spawn(move || f(c * per, a, b)))
                .collect();
            for h in handles {
                h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            }
        });
        return;
    }
    let _ = threads;
    f(0, a, b)
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn rows_with_scratch_visit_every_row_once_in_order() {
        // 1000 rows of 3 plus a shorter last row: enough rows for several threads.
        let width = 3;
        let mut out: Vec<f32> = (0..3002).map(|i| i as f32).collect();
        let inits = AtomicUsize::new(0);
        let sums = par_rows_with(
            &mut out,
            width,
            || {
                inits.fetch_add(1, Ordering::Relaxed);
                Vec::<f32>::new()
            },
            |scratch, r, row| {
                // The scratch carries over from the thread's previous rows.
                scratch.push(r as f32);
                row.iter_mut().for_each(|x| *x += 1.0);
                (r, row.iter().sum::<f32>(), scratch.len())
            },
        );
        assert_eq!(sums.len(), 1001);
        let made = inits.load(Ordering::Relaxed);
        assert!((1..=threads(1001)).contains(&made), "{made} inits");
        for (i, &(r, s, _)) in sums.iter().enumerate() {
            assert_eq!(r, i);
            let first = (i * width) as f32;
            let expect = if i < 1000 {
                3.0 * first + 3.0 + 3.0
            } else {
                2.0 * first + 1.0 + 2.0
            };
            assert_eq!(s, expect, "row {i}");
        }
        // One scratch per thread, grown by each of its rows: the lengths count 1, 2, ...
        // restarting once per thread.
        let restarts = sums.iter().filter(|&&(_, _, n)| n == 1).count();
        assert_eq!(restarts, made);
        assert_eq!(out[0], 1.0);
        assert_eq!(out[3001], 3002.0);
    }
}
