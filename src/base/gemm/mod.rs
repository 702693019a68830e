//! A host f32 GEMM for linear layers whose weight is packed once (issue 12).
//!
//! flex hands each linear layer to gemm, which packs the weight into cache-sized panels on
//! every call: 17% of a ViT-B/32 forward pass at batch 1 went to that packing (README,
//! Performance), and every call streams the weight twice (read, then the packed copy).
//! ONNX Runtime packs constant weights once, when a session starts. [`PackedWeight`] does
//! the same: the `[in, out]` weight is laid out once as panels of [`NR`] output columns, in
//! the order the kernel reads them, and [`ColumnWriter::write`] multiplies token rows by a
//! range of those panels with a micro-kernel (6 x 16 or 5 x 16 natively, 2 x 16 in wasm),
//! then adds the bias, the activation and the residual in one pass over the fresh output
//! (what flex ran as three more element-wise ops).
//!
//! Two kernels:
//! - x86_64 with AVX2 and FMA: every output value is one chain of fused multiply-adds over
//!   the inner dimension in order (`acc = fma(a[p], w[p], acc)` for p = 0, 1, ...;
//!   blocking the inner dimension only stores and reloads the exact f32 accumulator). On
//!   CPUs with AVX-512 gemm's 512-bit kernels (burn-flex `x86-v4`) stay in charge by
//!   default ([`preferred`]): a 512-bit kernel for this path is not written, as no such
//!   machine was at hand to measure it.
//! - wasm32 with SIMD128 (the page's CPU backend): WebAssembly has no fused multiply-add,
//!   so every value is one chain of `acc = acc + a[p] * w[p]` (two roundings a step), in
//!   order. The page does not keep a packed copy (a wasm heap has at most 4 GB, and the
//!   page sizes models by their weights): [`PackedWeight::borrowed`] reads the layer's own
//!   weight and lays out a few panels' blocks at a time (128 KB, inside L2) just before
//!   every row block passes over them ([`packs_once`]).
//!
//! Either way a value's bits depend neither on the row count, nor on the rows it is
//! computed with, nor on how output columns are shared between engines.

// Only x86_64 and wasm32 have a kernel: elsewhere the types exist (the towers name them)
// but nothing reads their contents, as `preferred` is false there.
#![cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "wasm32")),
    allow(dead_code, unused_variables)
)]

use std::ops::Range;
use std::sync::Arc;

/// Output columns per panel: two 256-bit vectors of f32.
pub const NR: usize = 16;
/// Token rows per micro-kernel call, at most: 6 x 2 accumulators plus two weight vectors
/// and one broadcast fill 15 of AVX2's 16 vector registers (the shape gemm's AVX2 f32
/// kernel uses too, transposed). Blocks of 5 rows (10 accumulators: still enough
/// independent chains to hide the FMA latency) are used where they waste fewer rows:
/// ViT-B/32's 50 tokens are 10 blocks of 5, not 9 blocks of 6 with 4 rows of padding.
pub const MR: usize = 6;

/// Rows per block of the wasm kernel (see `wasm`).
const WASM_ROWS: usize = 2;

/// Rows per block for `m` rows: 5 or 6, whichever pads fewer rows (6 on a tie); in wasm
/// [`WASM_ROWS`].
fn block_rows(m: usize) -> usize {
    if cfg!(target_arch = "wasm32") {
        WASM_ROWS
    } else if m.div_ceil(5) * 5 < m.div_ceil(6) * 6 {
        5
    } else {
        6
    }
}
/// Inner-dimension block: a panel's block is `KC` x 64 bytes = 16 KB, half of a 32 KB L1
/// data cache, so it stays there while every row block of the call passes over it.
const KC: usize = 256;
/// Rows per pass over the weight: 240 rows x [`KC`] x 4 bytes = 240 KB of packed input,
/// inside a 512 KB L2 with room for the output tiles, so the weight is streamed from memory
/// once for a 50- or 77-token batch-1 pass and twice for a 400-row part.
const MC_ROWS: usize = 240;

/// The environment variable that picks the linear layers' GEMM for A/B measurements in one
/// sitting: `flex` runs flex's own (gemm, packing per call) everywhere, `packed` runs this
/// one wherever it can ([`available`]), AVX-512 CPUs included; unset or anything else, the
/// default of [`preferred`].
pub const GEMM_ENV: &str = "MONOSCOPE_GEMM";

/// Whether this machine can run the packed GEMM: x86_64 with AVX2 and FMA, or wasm32 built
/// with SIMD128 (`.cargo/config.toml` turns it on for the page).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        cfg!(all(target_arch = "wasm32", target_feature = "simd128"))
    }
}

/// Whether [`PackedWeight`]s should be packed copies ([`PackedWeight::new`]) rather than
/// borrowed weights laid out per call ([`PackedWeight::borrowed`]): natively yes (the copy
/// saves 3-4% of a forward pass and memory is plentiful); in wasm no, as a copy of every
/// weight would halve the largest model a page can load, for the few percent that laying
/// out a 16 KB block costs next to the wasm kernel's multiplications.
pub fn packs_once() -> bool {
    !cfg!(target_arch = "wasm32")
}

/// Whether linear layers should take the packed GEMM: where it is [`available`] and the CPU
/// has no AVX-512F (gemm's 512-bit kernels are wider than this path's 256-bit one), unless
/// [`GEMM_ENV`] says otherwise. Read once per process.
pub fn preferred() -> bool {
    static PREFERRED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PREFERRED.get_or_init(|| {
        let avx512 = {
            #[cfg(target_arch = "x86_64")]
            {
                std::is_x86_feature_detected!("avx512f")
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                false
            }
        };
        available()
            && match std::env::var(GEMM_ENV).as_deref() {
                Ok("flex") => false,
                Ok("packed") => true,
                _ => !avx512,
            }
    })
}

/// One 64-byte line: a panel's [`NR`] weights for one inner index, cache-line aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; NR]);

/// A linear layer's `[in, out]` weight and bias laid out for [`ColumnWriter::write`].
pub struct PackedWeight {
    k: usize,
    n: usize,
    panels: Panels,
    bias: Option<Vec<f32>>,
}

/// Row-major f32 values shared with their owner (a tensor's storage), read without a copy.
pub type SharedValues = Arc<dyn AsRef<[f32]> + Send + Sync>;

enum Panels {
    /// Lines in the order the kernel reads them: inner-dimension blocks of [`KC`], in each
    /// block every panel's `kc` lines (`[k / KC rounded up][n / NR rounded up][kc]`), so
    /// a pass over the weight is one sequential stream. The last panel's missing columns
    /// are zeros.
    Packed(Vec<Line>),
    /// The `[k, n]` weight itself, row-major: each panel block is laid out when it is used.
    Borrowed(SharedValues),
}

impl std::fmt::Debug for PackedWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedWeight([{}, {}])", self.k, self.n)
    }
}

impl PackedWeight {
    /// Packs `w`: `[k, n]` row-major (a burn `Linear` weight, `[in, out]`), and the `[n]`
    /// bias.
    pub fn new(w: &[f32], k: usize, n: usize, bias: Option<&[f32]>) -> Self {
        assert_eq!(w.len(), k * n, "weight is not [{k}, {n}]");
        if let Some(b) = bias {
            assert_eq!(b.len(), n, "bias is not [{n}]");
        }
        let mut packed = Self::strided(w, n, 0, k, n);
        packed.bias = bias.map(<[f32]>::to_vec);
        packed
    }

    /// Packs columns `c0..c0 + n` of `k` rows of `w` (row-major, `ld` values a row) as a
    /// `[k, n]` weight without a bias: one head's values.
    pub(super) fn strided(w: &[f32], ld: usize, c0: usize, k: usize, n: usize) -> Self {
        assert!(c0 + n <= ld && (k == 0 || w.len() >= (k - 1) * ld + c0 + n));
        let panels_n = n.div_ceil(NR);
        let mut panels = vec![Line([0.0; NR]); panels_n * k];
        for j in 0..panels_n {
            let from = c0 + j * NR;
            let width = NR.min(n - j * NR);
            for p in 0..k {
                panels[line(k, panels_n, j, p)].0[..width]
                    .copy_from_slice(&w[p * ld + from..p * ld + from + width]);
            }
        }
        Self {
            k,
            n,
            panels: Panels::Packed(panels),
            bias: None,
        }
    }

    /// `w`, `[k, n]` row-major, and the `[n]` bias, without a packed copy of `w`: each call
    /// lays out the panel blocks it uses, one at a time ([`packs_once`]).
    pub fn borrowed(w: SharedValues, k: usize, n: usize, bias: Option<&[f32]>) -> Self {
        assert_eq!((*w).as_ref().len(), k * n, "weight is not [{k}, {n}]");
        if let Some(b) = bias {
            assert_eq!(b.len(), n, "bias is not [{n}]");
        }
        Self {
            k,
            n,
            panels: Panels::Borrowed(w),
            bias: bias.map(<[f32]>::to_vec),
        }
    }

    /// Whether this is a packed copy ([`PackedWeight::new`]).
    pub fn is_copy(&self) -> bool {
        matches!(self.panels, Panels::Packed(_))
    }

    /// `[in, out]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.k, self.n]
    }
}

/// Index of panel `j`'s line for inner index `p` ([`PackedWeight`]'s order).
fn line(k: usize, panels_n: usize, j: usize, p: usize) -> usize {
    let kb = p / KC * KC;
    kb * panels_n + j * KC.min(k - kb) + (p - kb)
}

/// What [`ColumnWriter::write`] does to each product value after the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Nothing.
    Identity,
    /// OpenAI CLIP's `quick_gelu`, `v * sigmoid(1.702 v)`, with a vectorisable `exp`.
    QuickGelu,
}

/// `quick_gelu` slope, from OpenAI CLIP's `QuickGELU` (`x * sigmoid(1.702 * x)`).
const QUICK_GELU_SLOPE: f32 = 1.702;

/// Output columns `window` of an `[m, n]` product (`[m, window.len()]` row-major), which
/// several threads fill, each with its own range of columns.
pub struct ColumnWriter {
    m: usize,
    window: Range<usize>,
    /// The `[m, window.len()]` output, claimed by column ranges of the window.
    out: Claims,
}

impl ColumnWriter {
    /// Columns `window` of an `[m, n]` product, to be written. The buffer is not zeroed
    /// first (every value is written before [`ColumnWriter::into_vec`] hands it out, which
    /// checks that the written ranges cover the window): filling it was most of the 1.3% of
    /// a batch-1 forward pass that went to `memset`.
    pub fn new(m: usize, window: Range<usize>) -> Self {
        Self {
            m,
            out: Claims::new(m * window.len(), window.clone()),
            window,
        }
    }

    /// Writes columns `cols` of `act(x · w + bias) + residual`: `x` [m, k], `w` [k, n],
    /// `residual` [m, n] row-major. `cols` lies in the output's window and starts at a
    /// multiple of [`NR`]; each column may be written once. Needs [`available`].
    pub fn write(
        &self,
        x: &PackedRows,
        w: &PackedWeight,
        cols: Range<usize>,
        act: Activation,
        residual: Option<&[f32]>,
    ) {
        assert!(
            available(),
            "the packed GEMM needs AVX2 and FMA (x86_64) or SIMD128 (wasm32)"
        );
        assert_eq!(
            [x.m, x.k],
            [self.m, w.k],
            "input does not match the weight or output"
        );
        assert!(
            self.window.end <= w.n,
            "output window outside the weight's columns"
        );
        assert_eq!(
            cols.start % NR,
            0,
            "column ranges start at panel boundaries"
        );
        if let Some(r) = residual {
            assert_eq!(r.len(), self.m * w.n, "residual is not [m, n]");
        }
        let start = self.out.claim(&cols);
        if cols.is_empty() {
            return;
        }
        let ldo = self.window.len();
        // Column `cols.start` of the product is this column of the output.
        let out = start.wrapping_add(cols.start - self.window.start);
        let finish = |out: *mut f32| Finish {
            out,
            ldo,
            m: self.m,
            n: w.n,
            cols: cols.clone(),
            bias: w.bias.as_deref(),
            act,
            residual,
        };
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA are present (`available`); the range was claimed by this
        // call alone and lies inside the output's window, whose shapes were checked above.
        unsafe {
            x86::product(x, w, cols.clone(), out, ldo);
            x86::finish(finish(out));
        }
        #[cfg(target_arch = "wasm32")]
        // SAFETY: as above; SIMD128 is compiled in (`available`).
        unsafe {
            product::<wasm::Simd128>(x, w, cols.clone(), out, ldo);
            finish(out).run::<false>();
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "wasm32")))]
        let _ = finish;
    }

    /// The `[m, window.len()]` output, row-major. Panics unless every column of the window
    /// was written.
    pub fn into_vec(self) -> Vec<f32> {
        // SAFETY: each `write` wrote all `m` rows of its claimed columns (the product stores
        // every value of its tiles; part-filled tiles are copied back row by row), so once
        // the claimed columns are the whole window all `m * window.len()` values are set.
        unsafe { self.out.into_vec() }
    }
}

/// One micro-kernel call: `c[R][16] (+)= a[kc][R] · b[kc][16]`, one chain per value in
/// inner-index order.
#[derive(Clone, Copy)]
struct Tile {
    kc: usize,
    /// `kc * R` values, `R` per inner index.
    a: *const f32,
    /// `kc` 64-byte lines ([`Line`]).
    b: *const f32,
    /// A full `R` x 16 tile, rows `ldc` apart.
    c: *mut f32,
    ldc: usize,
    /// Continue from `c` (a later inner block) instead of from zero.
    load: bool,
    /// Also fetch the `kc` lines after `b` (a hint, where the kernel has one: x86_64).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    prefetch: bool,
}

/// One architecture's micro-kernel.
trait Kernel {
    /// Runs `t` in blocks of `R` rows.
    ///
    /// # Safety
    /// `t`'s pointers hold what [`Tile`] says; the kernel's instructions are available.
    unsafe fn tile<const R: usize>(t: Tile);
}

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
unsafe fn product<K: Kernel>(
    x: &PackedRows,
    w: &PackedWeight,
    cols: Range<usize>,
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: as for this function.
    match x.mr {
        WASM_ROWS => unsafe { product_in::<K, WASM_ROWS>(x, w, cols, out, ldo) },
        5 => unsafe { product_in::<K, 5>(x, w, cols, out, ldo) },
        _ => unsafe { product_in::<K, MR>(x, w, cols, out, ldo) },
    }
}

/// Panels a borrowed weight lays out at a time: each weight row is then read 8 x 64 = 512
/// contiguous bytes at a time (a panel alone read 64 bytes a row, each row in another page
/// for the 3072-wide MLP, which the hardware prefetchers do not follow: a 50 x 768 x 3072
/// product ran at 17 GFLOP/s, against 25 from a packed copy, in a wasm probe); 8 panels'
/// blocks are 128 KB, inside L2.
const LAYOUT_PANELS: usize = 8;

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
    let mut tile = [[0.0f32; NR]; MR];
    // A borrowed weight's panel blocks, laid out [`LAYOUT_PANELS`] at a time when used.
    let mut block = match w.panels {
        Panels::Packed(_) => Vec::new(),
        Panels::Borrowed(_) => vec![Line([0.0; NR]); LAYOUT_PANELS.min(panels.len()) * KC.min(k)],
    };
    for kb in (0..k).step_by(KC) {
        let kc = KC.min(k - kb);
        let load = kb > 0;
        for rb0 in (0..row_blocks).step_by(MC_ROWS / R) {
            for j in panels.clone() {
                // SAFETY (all pointer arithmetic below): `j * k + kb + kc <= panels * k`,
                // `(rb * k + kb + kc) * R <= data.len()`, and tiles lie inside the [m,
                // ldo] output (full tiles) or are staged through `tile`.
                let (b, next) = match &w.panels {
                    Panels::Packed(lines) => (
                        unsafe { lines.as_ptr().add(line(k, panels_n, j, kb)) }.cast::<f32>(),
                        j + 1 < panels.end,
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
                let width = NR.min(cols.end - c0);
                for rb in rb0..(rb0 + MC_ROWS / R).min(row_blocks) {
                    let a = unsafe { x.data.as_ptr().add((rb * k + kb) * R) };
                    let r0 = rb * R;
                    let rows = R.min(m - r0);
                    let c = unsafe { out.add(r0 * ldo + c0 - cols.start) };
                    // The first row block reads the panel's block from memory: it also asks
                    // for the next block (the next panel's, stored right after).
                    let first = rb == rb0 && next;
                    let t = Tile {
                        kc,
                        a,
                        b,
                        c,
                        ldc: ldo,
                        load,
                        prefetch: first,
                    };
                    if rows == R && width == NR {
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
                                ldc: NR,
                                ..t
                            })
                        };
                        for (r, line) in tile.iter().enumerate().take(rows) {
                            let dst = unsafe { c.add(r * ldo) };
                            unsafe { std::ptr::copy_nonoverlapping(line.as_ptr(), dst, width) };
                        }
                    }
                }
            }
        }
    }
}

mod finish;
use finish::Finish;

mod softmax;
pub use softmax::softmax_rows;

mod rows;
pub use rows::{PackedRows, RowsWriter};

mod shared;
use shared::Claims;

mod attention;
pub use attention::{Heads, attend};

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(target_arch = "wasm32")]
mod wasm;
