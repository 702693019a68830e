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
//! Kernels:
//! - x86_64 with AVX2 and FMA: every output value is one chain of fused multiply-adds over
//!   the inner dimension in order (`acc = fma(a[p], w[p], acc)` for p = 0, 1, ...;
//!   blocking the inner dimension only stores and reloads the exact f32 accumulator).
//! - x86_64 with AVX-512F ([`wide`]): the same chains, 8-12 rows by two panels (32 columns)
//!   a call in 512-bit registers, so its values are bit for bit those of the AVX2 kernel.
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

/// Rows per block of the wasm kernels (see `wasm`).
const WASM_ROWS: usize = 2;

/// Rows per block of the 512-bit kernel ([`wide`]), at most: 12 x 2 accumulators, two
/// weight vectors and a broadcast fill 27 of AVX-512's 32 vector registers.
const WIDE_MR: usize = 12;
/// The 512-bit kernel's block sizes: every one keeps at least 16 independent FMA chains
/// (two FMA units with a latency of 4 cycles need 8), so the choice is about padding: 50
/// tokens are 5 blocks of 10, 77 tokens 7 blocks of 11, 8 images of 50 tokens 40 of 10.
const WIDE_ROWS: [usize; 5] = [8, 9, 10, 11, 12];
/// Rows of the largest block of any kernel (the staging tile of part-filled tiles).
const MAX_ROWS: usize = WIDE_MR;

/// Rows per block for `m` rows: in wasm [`WASM_ROWS`]; with the 512-bit kernel
/// ([`wide`]) the size of [`WIDE_ROWS`] that pads fewest rows (the larger on a tie: each
/// weight line loaded then serves more rows); otherwise 5 or 6, whichever pads fewer rows
/// (6 on a tie).
fn block_rows(m: usize) -> usize {
    if cfg!(target_arch = "wasm32") {
        WASM_ROWS
    } else if wide() {
        let padded = |r: usize| m.div_ceil(r) * r;
        WIDE_ROWS
            .into_iter()
            .rev()
            .min_by_key(|&r| padded(r))
            .unwrap_or(WIDE_MR)
    } else if m.div_ceil(5) * 5 < m.div_ceil(6) * 6 {
        5
    } else {
        6
    }
}

/// Runs `$body` with the const `$R` equal to the block size `$mr`: the kernels and the
/// packing loops are generic over it, and this is the one list of the sizes that
/// [`block_rows`] picks ([`WASM_ROWS`], 5, [`MR`]; on x86_64 also [`WIDE_ROWS`]).
macro_rules! by_rows {
    ($mr:expr, $R:ident => $body:expr) => {
        by_rows!(@arms $mr, $R, $body; 2, 5, 6; 8, 9, 10, 11, 12)
    };
    (@arms $mr:expr, $R:ident, $body:expr; $($n:literal),*; $($wide:literal),*) => {
        match $mr {
            $($n => {
                const $R: usize = $n;
                $body
            })*
            $(#[cfg(target_arch = "x86_64")]
            $wide => {
                const $R: usize = $wide;
                $body
            })*
            mr => unreachable!("no kernel for blocks of {mr} rows"),
        }
    };
}
const _: () =
    assert!(WASM_ROWS == 2 && MR == 6 && matches!(WIDE_ROWS, [8, 9, 10, 11, 12]) && WIDE_MR == 12);
/// Inner-dimension block: a panel's block is `KC` x 64 bytes = 16 KB, half of a 32 KB L1
/// data cache, so it stays there while every row block of the call passes over it (the
/// 512-bit kernel's two panels, 32 KB, are two thirds of the 48 KB L1 of the Xeon it was
/// measured on, `lscpu`: 96 KiB over 2 cores).
const KC: usize = 256;
/// Rows per pass over the weight: 240 rows x [`KC`] x 4 bytes = 240 KB of packed input,
/// inside a 512 KB L2 with room for the output tiles, so the weight is streamed from memory
/// once for a 50- or 77-token batch-1 pass and twice for a 400-row part.
const MC_ROWS: usize = 240;

/// The environment variable that picks the linear layers' GEMM for A/B measurements in one
/// sitting: `flex` runs flex's own (gemm, packing per call) everywhere, `avx2` this one with
/// its 256-bit kernel even where the CPU has AVX-512; unset or anything else, the default
/// of [`preferred`] and [`wide`].
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

/// Whether linear layers should take the packed GEMM: wherever it is [`available`], unless
/// [`GEMM_ENV`] is `flex`. Read once per process.
pub fn preferred() -> bool {
    static PREFERRED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PREFERRED.get_or_init(|| available() && std::env::var(GEMM_ENV).as_deref() != Ok("flex"))
}

/// Whether the packed GEMM runs its 512-bit kernel: on x86_64 CPUs with AVX-512F (and AVX2
/// and FMA), unless [`GEMM_ENV`] is `avx2`. Read once per process.
pub fn wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *WIDE.get_or_init(|| {
            available()
                && std::is_x86_feature_detected!("avx512f")
                && std::env::var(GEMM_ENV).as_deref() != Ok("avx2")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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

/// One micro-kernel call: `c[R][16 P] (+)= a[kc][R] · b[kc][16 P]` for `P` panels, one
/// chain per value in inner-index order.
#[derive(Clone, Copy)]
struct Tile {
    kc: usize,
    /// `kc * R` values, `R` per inner index.
    a: *const f32,
    /// `kc` 64-byte lines ([`Line`]) a panel; panel `q`'s from `b + q * kc * NR` (in both
    /// the packed copy and a borrowed weight's laid-out block, a panel's lines follow the
    /// previous panel's).
    b: *const f32,
    /// Panels, `P`: 1, or up to [`Kernel::PANELS`].
    panels: usize,
    /// A full `R` x `16 P` tile, rows `ldc` apart.
    c: *mut f32,
    ldc: usize,
    /// Continue from `c` (a later inner block) instead of from zero.
    load: bool,
    /// Also fetch the `P kc` lines after the tile's (a hint, where the kernel has one:
    /// x86_64).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    prefetch: bool,
}

/// One architecture's micro-kernel.
trait Kernel {
    /// Panels a tile may hold ([`Tile::panels`]).
    const PANELS: usize = 1;

    /// Runs `t` in blocks of `R` rows.
    ///
    /// # Safety
    /// `t`'s pointers hold what [`Tile`] says; the kernel's instructions are available.
    unsafe fn tile<const R: usize>(t: Tile);
}

mod driver;
use driver::product;

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
