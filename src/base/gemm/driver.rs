//! The packed GEMM's driver: the loops over inner blocks, row blocks and panels around one
//! architecture's micro-kernel ([`Kernel`]), shared by every kernel.

use super::*;

/// `out[:, ..] = x · w[:, cols]`: `out` points at the output value of row 0, column
/// `cols.start`, rows `ldo` apart.
///
/// # Safety
/// `out` holds an `[m, ldo]` tile from there with `cols.len() <= ldo`, written by nobody
/// else; `K`'s instructions are available.
// Inlined into each architecture's caller, so that on x86_64 the driver is compiled with
// AVX2 and FMA enabled and the micro-kernel is inlined into its loop (as before the driver
// was shared).
#[inline(always)]
pub(super) unsafe fn product<K: Kernel>(
    x: &PackedRows,
    w: &PackedWeight,
    cols: Range<usize>,
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: as for this function.
    by_rows!(x.mr, R => unsafe { product_in::<K, R>(x, w, cols, out, ldo) })
}

/// Panels a borrowed weight lays out at a time: each weight row is then read 8 x 64 = 512
/// contiguous bytes at a time (a panel alone read 64 bytes a row, each row in another page
/// for the 3072-wide MLP, which the hardware prefetchers do not follow: a 50 x 768 x 3072
/// product ran at 17 GFLOP/s, against 25 from a packed copy, in a wasm probe); 8 panels'
/// blocks are 128 KB, inside L2. Even, so that tiles of two panels never straddle two
/// layouts.
const LAYOUT_PANELS: usize = 8;
const _: () = assert!(LAYOUT_PANELS.is_multiple_of(2));

/// Lays out panels `js` (at most [`LAYOUT_PANELS`]) for inner indices `kb..kb + kc` of the
/// `[k, n]` row-major weight `w` into `dst`: panel `js.start + g`'s lines at `g * kc..`
/// (the columns past `n` are zeros).
fn lay_out_panels(w: &[f32], n: usize, js: Range<usize>, kb: usize, kc: usize, dst: &mut [Line]) {
    assert!(w.len() >= (kb + kc) * n && dst.len() >= js.len() * kc && js.end * NR < n + NR);
    // Whole panels first (one fixed-size copy per line: four vector moves; a slice copy of
    // variable length is a `memory.copy` in wasm, a call into V8 per line, which doubled
    // the time of a 50 x 768 x 768 product in a probe), then a part-filled last panel.
    let full = js.start..js.end.min(n / NR);
    let (src, lines) = (w.as_ptr(), dst.as_mut_ptr());
    for p in 0..kc {
        for (g, j) in full.clone().enumerate() {
            // SAFETY: `(kb + p) * n + j * NR + NR <= (kb + kc) * n <= w.len()` and
            // `g * kc + p < dst.len()` (asserted above).
            unsafe {
                let from = src.add((kb + p) * n + j * NR).cast::<[f32; NR]>();
                (*lines.add(g * kc + p)).0 = from.read_unaligned();
            }
        }
    }
    for j in full.end..js.end {
        let (g, c0) = (j - js.start, j * NR);
        for p in 0..kc {
            let line = &mut dst[g * kc + p].0;
            let from = (kb + p) * n + c0;
            line[..n - c0].copy_from_slice(&w[from..from + n - c0]);
            line[n - c0..].fill(0.0);
        }
    }
}

/// [`product`] in blocks of `R` rows (`x.mr`).
///
/// # Safety
/// As for [`product`].
#[inline(always)]
unsafe fn product_in<K: Kernel, const R: usize>(
    x: &PackedRows,
    w: &PackedWeight,
    cols: Range<usize>,
    out: *mut f32,
    ldo: usize,
) {
    debug_assert_eq!(x.mr, R);
    let (m, k) = (x.m, x.k);
    let row_blocks = m.div_ceil(R);
    let panels = cols.start / NR..cols.end.div_ceil(NR);
    let panels_n = w.n.div_ceil(NR);
    // Part-filled tiles are staged here: `MAX_ROWS` rows of two panels.
    let mut tile = [[0.0f32; 2 * NR]; MAX_ROWS];
    // A borrowed weight's panel blocks, laid out [`LAYOUT_PANELS`] at a time when used.
    let mut block = match w.panels {
        Panels::Packed(_) => Vec::new(),
        Panels::Borrowed(_) => vec![Line([0.0; NR]); LAYOUT_PANELS.min(panels.len()) * KC.min(k)],
    };
    for kb in (0..k).step_by(KC) {
        let kc = KC.min(k - kb);
        let load = kb > 0;
        for rb0 in (0..row_blocks).step_by(MC_ROWS / R) {
            let mut j = panels.start;
            while j < panels.end {
                // Tiles of `K::PANELS` panels while that many are left (a borrowed weight's
                // layouts hold an even number of panels, so a pair never straddles two).
                let np = K::PANELS.min(panels.end - j);
                // SAFETY (all pointer arithmetic below): `j * k + kb + kc <= panels * k`,
                // `(rb * k + kb + kc) * R <= data.len()`, and tiles lie inside the [m,
                // ldo] output (full tiles) or are staged through `tile`.
                let (b, next) = match &w.panels {
                    Panels::Packed(lines) => (
                        unsafe { lines.as_ptr().add(line(k, panels_n, j, kb)) }.cast::<f32>(),
                        j + np < panels.end,
                    ),
                    Panels::Borrowed(values) => {
                        let g = (j - panels.start) % LAYOUT_PANELS;
                        if g == 0 {
                            let js = j..(j + LAYOUT_PANELS).min(panels.end);
                            lay_out_panels((**values).as_ref(), w.n, js, kb, kc, &mut block);
                        }
                        (block[g * kc..].as_ptr().cast::<f32>(), false)
                    }
                };
                let c0 = j * NR;
                let width = (np * NR).min(cols.end - c0);
                for rb in rb0..(rb0 + MC_ROWS / R).min(row_blocks) {
                    let a = unsafe { x.data.as_ptr().add((rb * k + kb) * R) };
                    let r0 = rb * R;
                    let rows = R.min(m - r0);
                    let c = unsafe { out.add(r0 * ldo + c0 - cols.start) };
                    // The first row block reads the panels' block from memory: it also asks
                    // for the next tile's (the next panels', stored right after).
                    let first = rb == rb0 && next;
                    let t = Tile {
                        kc,
                        a,
                        b,
                        panels: np,
                        c,
                        ldc: ldo,
                        load,
                        prefetch: first,
                    };
                    if rows == R && width == np * NR {
                        unsafe { K::tile::<R>(t) };
                    } else {
                        // A part-filled tile: through a full scratch tile (which needs
                        // the values so far only to continue from them).
                        let so_far = if load { rows } else { 0 };
                        for (r, line) in tile.iter_mut().enumerate().take(so_far) {
                            let src = unsafe { c.add(r * ldo) };
                            unsafe { std::ptr::copy_nonoverlapping(src, line.as_mut_ptr(), width) };
                        }
                        let staged = tile.as_mut_ptr().cast::<f32>();
                        unsafe {
                            K::tile::<R>(Tile {
                                c: staged,
                                ldc: 2 * NR,
                                ..t
                            })
                        };
                        for (r, line) in tile.iter().enumerate().take(rows) {
                            let dst = unsafe { c.add(r * ldo) };
                            unsafe { std::ptr::copy_nonoverlapping(line.as_ptr(), dst, width) };
                        }
                    }
                }
                j += np;
            }
        }
    }
}
