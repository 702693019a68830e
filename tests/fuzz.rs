//! Mutation fuzzing of every loader, on stable Rust (issue 13).
//!
//! Each target takes seed files (the committed fixtures, or small files built here), applies
//! one to four random mutations (bit flips, interesting bytes and integers, inserted,
//! deleted, duplicated and spliced ranges, truncation, and format-aware ones: numbers and
//! strings swapped inside JSON, a safetensors header rewritten with its length prefix kept
//! consistent, image dimensions rewritten in PNG (with a valid CRC), JPEG, GIF and BMP
//! headers) and hands the result to the loader the CLI and the page use. Every case must:
//! 1. not panic;
//! 2. make no single allocation larger than the target's bound (a declared size must be
//!    checked against the bytes present, or against a limit, before anything is allocated
//!    for it); the bound is [`SLACK_BYTES`] + [`BYTES_PER_INPUT_BYTE`] x the input's
//!    length, or the image decoder's own limit for images;
//! 3. fail, when it fails, with a one-line message that names the file it is about.
//!
//! This is not coverage-guided (cargo-fuzz needs nightly); the mutations are aimed at the
//! fields that carry sizes and offsets instead.
//!
//! Budget per target: `MONOSCOPE_FUZZ_SECONDS` (what `scripts/fuzz.sh` sets), else
//! `MONOSCOPE_FUZZ_CASES` (default [`DEFAULT_CASES`], what `cargo test` runs). The seed of
//! the mutation stream is `MONOSCOPE_FUZZ_SEED` (default 1), so a run can be repeated. The
//! input of the case being run is kept in `tests/out/fuzz/<target>.cur`, so that even an
//! abort (out of memory) leaves the culprit behind; a failing input is saved as
//! `tests/out/fuzz/<target>-fail-<case>.bin`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use monoscope::base::Pairs;
use monoscope::base::rng::SplitMix;
use monoscope::clip::ClipConfig;
use monoscope::clip::footprint::WASM32_MEMORY_BYTES;
use monoscope::clip::preprocess::{DEFAULT_MAX_PIXELS, ImageProcessor};
use monoscope::clip::tokenizer::ClipTokenizer;
use monoscope::io::captions::{self, Format, ReadOptions};
use monoscope::io::embeddings::{EmbeddingsFile, EmbeddingsMeta};
use monoscope::io::weights::{Checkpoint, load_module};
use monoscope::io::{bundle, dictionary};
use monoscope::{Embedder, ModelFiles};

use common::{read, root};

/// Cases per target when no budget is given (`cargo test`, `.ci/run`).
const DEFAULT_CASES: u64 = 150;
/// Allocation bound: a fixed slack (model structures, tensors of the fixed models) ...
const SLACK_BYTES: usize = 64 << 20;
/// ... plus this many bytes per input byte (parsed JSON, f16 -> f32, a model's copy).
const BYTES_PER_INPUT_BYTE: usize = 16;
/// The image decoder's allocation limit (`clip/preprocess.rs`: 8 bytes per pixel for 16-bit
/// RGBA at the pixel limit), plus the slack.
const IMAGE_BOUND: usize = (DEFAULT_MAX_PIXELS as usize) * 8 + SLACK_BYTES;
/// A case slower than this fails (a loop that does not end on some input).
const MAX_CASE: Duration = Duration::from_secs(20);
/// A case still running after this long aborts the run, naming its input.
const HUNG_CASE_SECS: u64 = 120;

// ---------------------------------------------------------------------------------------
// Allocation tracking: the largest single allocation made by this thread since reset.

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static PANIC_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| {
        if size > l.get() {
            l.set(size)
        }
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the thread-local is
// const-initialised with no destructor, so touching it never allocates or re-enters.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

// ---------------------------------------------------------------------------------------
// Mutations.

const INTERESTING_BYTES: [u8; 8] = [0, 1, 0x7f, 0x80, 0xff, b'"', b'{', b'9'];
const INTERESTING_U64: [u64; 10] = [
    0,
    1,
    0x7f,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    1 << 62,
    u64::MAX,
];
/// What replaces a number or a string in JSON: sizes that overflow, do not fit a usize or
/// u32, are negative, fractional, not numbers at all, or a very long string.
const JSON_SWAPS: [&str; 17] = [
    "0",
    "-1",
    "1e400",
    "18446744073709551616",
    "4294967296",
    "1099511627776",
    "1000000000000",
    "9007199254740993",
    "3.5",
    "null",
    "true",
    "[]",
    "{}",
    "\"\"",
    "\"x\"",
    "NaN",
    "LONG",
];

struct Mutator {
    rng: SplitMix,
}

impl Mutator {
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.rng.below(n) }
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// One generic byte-level mutation.
    fn bytes(&mut self, b: &mut Vec<u8>, corpus: &[Vec<u8>]) {
        let len = b.len();
        match self.below(9) {
            0 if len > 0 => {
                let i = self.below(len);
                b[i] ^= 1 << self.below(8);
            }
            1 if len > 0 => {
                let i = self.below(len);
                b[i] = INTERESTING_BYTES[self.below(INTERESTING_BYTES.len())];
            }
            2 => {
                let i = self.below(len + 1);
                let n = 1 + self.below(16);
                let fill: Vec<u8> = (0..n).map(|_| self.rng.next_u64() as u8).collect();
                b.splice(i..i, fill);
            }
            3 if len > 0 => {
                let i = self.below(len);
                let n = 1 + self.below((len - i).min(256));
                b.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = self.below(len);
                let n = 1 + self.below((len - i).min(256));
                let chunk = b[i..i + n].to_vec();
                let at = self.below(len + 1);
                b.splice(at..at, chunk);
            }
            5 if len > 0 => b.truncate(self.below(len)),
            6 if !corpus.is_empty() => {
                let other = &corpus[self.below(corpus.len())];
                if !other.is_empty() {
                    let i = self.below(other.len());
                    let n = 1 + self.below((other.len() - i).min(512));
                    let at = self.below(len + 1);
                    let end = (at + n).min(len);
                    b.splice(at..end, other[i..i + n].iter().copied());
                }
            }
            7 if len >= 8 => {
                let i = self.below(len - 7);
                let v = INTERESTING_U64[self.below(INTERESTING_U64.len())];
                let width = [1usize, 2, 4, 8][self.below(4)];
                let bytes = if self.chance(50) {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                let bytes = if self.chance(50) {
                    &bytes[..width]
                } else {
                    &bytes[8 - width..]
                };
                b[i..i + width].copy_from_slice(bytes);
            }
            _ => self.json(b),
        }
    }

    /// Replaces a number or a string literal of a JSON text with something hostile.
    fn json(&mut self, b: &mut Vec<u8>) {
        let tokens = json_tokens(b);
        if tokens.is_empty() {
            return;
        }
        let (start, end) = tokens[self.below(tokens.len())];
        let swap = JSON_SWAPS[self.below(JSON_SWAPS.len())];
        let with: Vec<u8> = if swap == "LONG" {
            let mut s = vec![b'"'];
            s.extend(std::iter::repeat_n(b'a', 1 << (10 + self.below(11))));
            s.push(b'"');
            s
        } else {
            swap.as_bytes().to_vec()
        };
        b.splice(start..end, with);
    }

    /// A safetensors file: mutate the JSON header, and mostly keep its length prefix right
    /// so that the mutation reaches the header's meaning rather than its framing.
    fn safetensors(&mut self, b: &mut Vec<u8>, corpus: &[Vec<u8>]) {
        let Some(n) = header_len(b) else {
            return self.bytes(b, corpus);
        };
        let mut header = b[8..8 + n].to_vec();
        let data = b[8 + n..].to_vec();
        if self.chance(70) {
            self.json(&mut header);
        } else {
            self.bytes(&mut header, &[]);
        }
        let mut data = data;
        if self.chance(15) && !data.is_empty() {
            let cut = self.below(data.len());
            data.truncate(cut);
        }
        let prefix = if self.chance(90) {
            header.len() as u64
        } else {
            INTERESTING_U64[self.below(INTERESTING_U64.len())]
        };
        *b = prefix.to_le_bytes().to_vec();
        b.extend_from_slice(&header);
        b.extend_from_slice(&data);
    }

    /// A safetensors file rewritten whole, still well-formed, with one structural change
    /// (a tensor dropped, renamed, added, emptied, reshaped or given another dtype), so that
    /// the loader's own checks are reached and not only the parser's.
    fn structure(&mut self, b: &mut Vec<u8>) {
        use safetensors::Dtype;
        let Ok(st) = safetensors::SafeTensors::deserialize(b) else {
            return;
        };
        let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
            .tensors()
            .into_iter()
            .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
            .collect();
        if tensors.is_empty() {
            return;
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let i = self.below(tensors.len());
        match self.below(7) {
            0 => {
                tensors.remove(i);
            }
            1 => tensors[i].0.push('x'),
            2 => {
                let mut extra = tensors[i].clone();
                extra.0 = format!("{}.extra", extra.0);
                tensors.push(extra);
            }
            3 => {
                tensors[i].2 = vec![0];
                tensors[i].3.clear();
            }
            4 => {
                let numel: usize = tensors[i].2.iter().product();
                tensors[i].2 = match self.below(3) {
                    0 => vec![numel],
                    1 => vec![1, numel],
                    _ => tensors[i].2.iter().rev().copied().collect(),
                };
            }
            5 => {
                let (dtype, size) = [
                    (Dtype::F16, 2),
                    (Dtype::BF16, 2),
                    (Dtype::F64, 8),
                    (Dtype::I64, 8),
                    (Dtype::U8, 1),
                    (Dtype::BOOL, 1),
                ][self.below(6)];
                let n = tensors[i].3.len() / size;
                tensors[i].3.truncate(n * size);
                tensors[i].1 = dtype;
                tensors[i].2 = vec![n];
            }
            _ => {
                let j = self.below(tensors.len());
                let name = tensors[i].0.clone();
                tensors[i].0 = tensors[j].0.clone();
                tensors[j].0 = name;
                if i == j {
                    tensors.remove(i);
                }
            }
        }
        // Names must stay unique (safetensors' serializer panics otherwise).
        let mut seen = std::collections::HashSet::new();
        tensors.retain(|t| seen.insert(t.0.clone()));
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .filter_map(|(n, d, s, data)| {
                safetensors::tensor::TensorView::new(*d, s.clone(), data)
                    .ok()
                    .map(|v| (n.clone(), v))
            })
            .collect();
        if let Ok(out) = safetensors::serialize(views, None) {
            *b = out;
        }
    }

    /// An image: rewrite its declared width and height (PNG with a valid CRC, JPEG's SOF,
    /// GIF's screen, BMP's info header).
    fn dimensions(&mut self, b: &mut [u8]) -> bool {
        let dim = |m: &mut Self, bits: u32| -> u64 {
            let v = [
                0u64,
                1,
                2,
                7,
                65_535,
                30_000,
                1 << 15,
                1 << 20,
                0x7fff_ffff,
                u64::MAX,
            ];
            let x = v[m.below(v.len())];
            if bits >= 64 { x } else { x & ((1 << bits) - 1) }
        };
        if b.starts_with(b"\x89PNG\r\n\x1a\n") && b.len() >= 33 {
            let (w, h) = (dim(self, 32) as u32, dim(self, 32) as u32);
            b[16..20].copy_from_slice(&w.to_be_bytes());
            b[20..24].copy_from_slice(&h.to_be_bytes());
            let crc = crc32(&b[12..29]);
            b[29..33].copy_from_slice(&crc.to_be_bytes());
            return true;
        }
        if b.starts_with(b"GIF8") && b.len() >= 10 {
            b[6..8].copy_from_slice(&(dim(self, 16) as u16).to_le_bytes());
            b[8..10].copy_from_slice(&(dim(self, 16) as u16).to_le_bytes());
            return true;
        }
        if b.starts_with(b"BM") && b.len() >= 26 {
            b[18..22].copy_from_slice(&(dim(self, 32) as u32).to_le_bytes());
            b[22..26].copy_from_slice(&(dim(self, 32) as u32).to_le_bytes());
            return true;
        }
        if b.starts_with(&[0xff, 0xd8]) {
            let sof = (2..b.len().saturating_sub(9))
                .find(|&i| b[i] == 0xff && matches!(b[i + 1], 0xc0..=0xc2));
            if let Some(i) = sof {
                b[i + 5..i + 7].copy_from_slice(&(dim(self, 16) as u16).to_be_bytes());
                b[i + 7..i + 9].copy_from_slice(&(dim(self, 16) as u16).to_be_bytes());
                return true;
            }
        }
        false
    }
}

/// Byte ranges of the number and string literals of a JSON text (a rough scan: enough to
/// aim mutations, never trusted).
fn json_tokens(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() && out.len() < 100_000 {
        match b[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(b.len());
                out.push((start, i));
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                out.push((start, i));
            }
            _ => i += 1,
        }
    }
    out
}

/// The header length of a safetensors buffer, when it is consistent.
fn header_len(b: &[u8]) -> Option<usize> {
    let n = u64::from_le_bytes(b.get(..8)?.try_into().ok()?) as usize;
    (n <= b.len() - 8).then_some(n)
}

/// CRC-32 (ISO-HDLC, as PNG uses).
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

// ---------------------------------------------------------------------------------------
// The harness.

/// Which mutations suit a target's inputs.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Json,
    Text,
    Safetensors,
    Image,
    Binary,
}

/// One fuzz target: its seeds, the words one of which its errors must contain (the file
/// it is about), and the loader.
struct Target<'a> {
    name: &'a str,
    seeds: Vec<Vec<u8>>,
    shape: Shape,
    names: &'a [&'a str],
    bound: Option<usize>,
    /// Whether every seed must load (not when seeds of other models meet fixed weights).
    seeds_load: bool,
    run: &'a dyn Fn(&[u8]) -> monoscope::Result<()>,
}

fn budget() -> (u64, Option<Duration>) {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    match var("MONOSCOPE_FUZZ_SECONDS") {
        Some(s) => (u64::MAX, Some(Duration::from_secs(s))),
        None => (var("MONOSCOPE_FUZZ_CASES").unwrap_or(DEFAULT_CASES), None),
    }
}

fn out_dir() -> PathBuf {
    let dir = root().join("tests/out/fuzz");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn install_quiet_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let fuzzing = PANIC_MESSAGE.with(|m| {
                let mut m = m.borrow_mut();
                if m.is_some() {
                    *m = Some(format!("{info}"));
                    true
                } else {
                    false
                }
            });
            if !fuzzing {
                default(info);
            }
        }));
    });
}

fn fuzz(t: Target<'_>) {
    install_quiet_panic_hook();
    // MONOSCOPE_FUZZ_REPLAY=FILE runs one saved input (`<target>-fail-N.bin` or
    // `<target>.cur`) through its target, with panics and errors shown as they are.
    if let Ok(file) = std::env::var("MONOSCOPE_FUZZ_REPLAY") {
        let name = Path::new(&file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        if name.starts_with(&format!("{}-fail-", t.name)) || name == format!("{}.cur", t.name) {
            let input = read(&file);
            LARGEST.with(|l| l.set(0));
            let result = (t.run)(&input);
            println!(
                "replay {name}: {result:?}; largest allocation {} KB",
                LARGEST.with(Cell::get) / 1024
            );
        }
        return;
    }
    let (cases, time) = budget();
    let seed = std::env::var("MONOSCOPE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1u64);
    // Distinct streams per target from the same seed.
    let stream = t
        .name
        .bytes()
        .fold(seed, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let mut m = Mutator {
        rng: SplitMix(stream),
    };
    let dir = out_dir();
    let cur = dir.join(format!("{}.cur", t.name));
    let start = Instant::now();
    // A case that never ends would stop the run without a report: a watchdog names it and
    // aborts (the input stays in `<target>.cur`).
    let case_started = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let watched = case_started.clone();
    let (name, cur_path) = (t.name.to_string(), cur.clone());
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let at = watched.load(std::sync::atomic::Ordering::Relaxed);
            if at != u64::MAX && start.elapsed().as_secs().saturating_sub(at) > HUNG_CASE_SECS {
                eprintln!(
                    "fuzz {name}: a case has run for over {HUNG_CASE_SECS} s; its input is {}",
                    cur_path.display()
                );
                std::process::abort();
            }
        }
    });
    let (mut run, mut ok, mut largest, mut slowest) = (0u64, 0u64, 0usize, Duration::ZERO);
    let mut messages = std::collections::BTreeSet::new();
    let mut failures: Vec<String> = Vec::new();
    // The seeds themselves first: they must all load.
    let total = cases.saturating_add(t.seeds.len() as u64);
    while run < total
        && time.is_none_or(|limit| start.elapsed() < limit || run < t.seeds.len() as u64)
    {
        let input = if (run as usize) < t.seeds.len() {
            t.seeds[run as usize].clone()
        } else {
            let mut b = t.seeds[m.below(t.seeds.len())].clone();
            for _ in 0..1 + m.below(4) {
                match t.shape {
                    Shape::Safetensors if m.chance(30) => m.structure(&mut b),
                    Shape::Safetensors if m.chance(60) => m.safetensors(&mut b, &t.seeds),
                    Shape::Image if m.chance(25) => {
                        if !m.dimensions(&mut b) {
                            m.bytes(&mut b, &t.seeds)
                        }
                    }
                    Shape::Json if m.chance(50) => m.json(&mut b),
                    Shape::Text
                    | Shape::Binary
                    | Shape::Json
                    | Shape::Safetensors
                    | Shape::Image => m.bytes(&mut b, &t.seeds),
                }
            }
            b
        };
        std::fs::write(&cur, &input).unwrap();
        let bound = t
            .bound
            .unwrap_or(SLACK_BYTES + BYTES_PER_INPUT_BYTE * input.len());
        LARGEST.with(|l| l.set(0));
        PANIC_MESSAGE.with(|p| *p.borrow_mut() = Some(String::new()));
        let t0 = Instant::now();
        case_started.store(
            start.elapsed().as_secs(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (t.run)(&input)));
        let took = t0.elapsed();
        case_started.store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
        let panic = PANIC_MESSAGE.with(|p| p.borrow_mut().take());
        let big = LARGEST.with(Cell::get);
        largest = largest.max(big);
        slowest = slowest.max(took);
        let mut fail = |why: String| {
            let path = dir.join(format!("{}-fail-{run}.bin", t.name));
            std::fs::write(&path, &input).unwrap();
            let why: String = why.chars().take(2000).collect();
            failures.push(format!("case {run} ({}): {why}", path.display()));
        };
        match result {
            Err(_) => fail(format!("panic: {}", panic.unwrap_or_default())),
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                let msg = e.to_string();
                if (run as usize) < t.seeds.len() && t.seeds_load {
                    fail(format!("a seed does not load: {msg}"));
                } else if msg.trim().is_empty() || msg.contains('\n') {
                    fail(format!("the error is not one line: {msg:?}"));
                } else if msg.chars().count() > monoscope::error::MAX_MESSAGE_CHARS + 100 {
                    fail(format!("the error is {} characters long", msg.len()));
                } else if !t.names.iter().any(|n| msg.contains(n)) {
                    fail(format!("the error names none of {:?}: {msg}", t.names));
                }
                // Messages quote the offending input; count them without numbers and quotes.
                let kind: String = msg
                    .split(['"', '`'])
                    .step_by(2)
                    .collect::<String>()
                    .chars()
                    .filter(|c| !c.is_ascii_digit())
                    .take(90)
                    .collect();
                messages.insert(kind);
            }
        }
        if big > bound {
            fail(format!(
                "allocated {big} bytes at once, over the bound of {bound}"
            ));
        }
        if took > MAX_CASE {
            fail(format!("took {took:?}"));
        }
        run += 1;
        if failures.len() >= 5 {
            break;
        }
    }
    std::fs::remove_file(&cur).ok();
    println!(
        "fuzz {}: {run} cases in {:.1} s, {ok} loaded, {} distinct errors, largest allocation {} KB, slowest case {:?}",
        t.name,
        start.elapsed().as_secs_f64(),
        messages.len(),
        largest / 1024,
        slowest
    );
    assert!(
        failures.is_empty(),
        "fuzz {}:\n{}",
        t.name,
        failures.join("\n")
    );
}

fn files(dir: &str, exts: &[&str]) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e))
        })
        .collect();
    paths.sort();
    paths.iter().map(read).collect()
}

const MODELS: [&str; 4] = [
    "assets/tiny-clip",
    "assets/demo/clip",
    "tests/fixtures/tiny-gelu",
    "tests/fixtures/tiny-legacy",
];

// ---------------------------------------------------------------------------------------
// Targets.

#[test]
fn fuzz_config_json() {
    let device = Device::flex();
    let weights = read(root().join("assets/tiny-clip/model.safetensors"));
    let tokenizer = read(root().join("assets/demo/clip/tokenizer.json"));
    let mut seeds: Vec<Vec<u8>> = MODELS
        .iter()
        .map(|m| read(root().join(m).join("config.json")))
        .collect();
    for preset in ["vit-b-32", "vit-l-14"] {
        let c = ClipConfig::preset(preset).unwrap();
        seeds.push(serde_json::to_vec_pretty(&c.to_hf_json()).unwrap());
    }
    fuzz(Target {
        name: "config.json",
        seeds,
        shape: Shape::Json,
        names: &["config"],
        bound: None,
        seeds_load: false,
        // What the page does before it downloads weights (parse, then the fit check), then
        // what the CLI does: load the config with a weights file (tiny-clip's).
        run: &|b| {
            let c = ClipConfig::from_json(b)?;
            let _ = c.footprint(&device).check_fits(0, 0, u64::MAX);
            let _ = c.footprint(&device).check_fits(0, 0, WASM32_MEMORY_BYTES);
            Embedder::from_bytes(
                ModelFiles {
                    config: b,
                    weights: &weights,
                    tokenizer: &tokenizer,
                    preprocessor: None,
                },
                &device,
            )
            .map(drop)
        },
    });
}

#[test]
fn fuzz_preprocessor_config_json() {
    let seeds = [
        "assets/tiny-clip",
        "tests/fixtures/tiny-gelu",
        "tests/fixtures/tiny-legacy",
    ]
    .iter()
    .map(|m| read(root().join(m).join("preprocessor_config.json")))
    .collect();
    fuzz(Target {
        name: "preprocessor_config.json",
        seeds,
        shape: Shape::Json,
        names: &["preprocessor"],
        bound: None,
        seeds_load: true,
        run: &|b| ImageProcessor::from_hf_json(b, 32).map(drop),
    });
}

#[test]
fn fuzz_model_safetensors() {
    let device = Device::flex();
    let dir = root().join("assets/tiny-clip");
    let config = ClipConfig::from_json(&read(dir.join("config.json"))).unwrap();
    fuzz(Target {
        name: "model.safetensors",
        seeds: vec![read(dir.join("model.safetensors"))],
        shape: Shape::Safetensors,
        names: &["weights", "safetensors"],
        bound: None,
        seeds_load: true,
        run: &|b| {
            let ckpt = Checkpoint::parse(b)?;
            load_module(config.init(&device), &ckpt, &device).map(drop)
        },
    });
}

#[test]
fn fuzz_tokenizer_json() {
    // The demo's word-level tokenizer and a byte-level BPE one cut to its first 2000 merges
    // (the full CLIP vocabulary, 3.6 MB, would make every case slow without adding shapes).
    let demo = read(root().join("assets/demo/clip/tokenizer.json"));
    let clip: serde_json::Value =
        serde_json::from_slice(&read(root().join("assets/tiny-clip/tokenizer.json"))).unwrap();
    let mut small = clip.clone();
    let merges: Vec<serde_json::Value> =
        clip["model"]["merges"].as_array().unwrap()[..2000].to_vec();
    small["model"]["merges"] = merges.into();
    fuzz(Target {
        name: "tokenizer.json",
        seeds: vec![demo, serde_json::to_vec(&small).unwrap()],
        shape: Shape::Json,
        names: &["tokenizer"],
        bound: None,
        seeds_load: true,
        run: &|b| {
            let t = ClipTokenizer::from_bytes(b, 16)?;
            t.encode("a photo of an astronaut riding a red horse")?;
            t.encode("")?;
            Ok(())
        },
    });
}

/// A bundle is three files; each case mutates one of them, chosen by the first byte of the
/// mutated input (`0`, `1`, `2` + the file).
#[test]
fn fuzz_bundle() {
    let device = Device::flex();
    let dir = root().join("assets/demo/bundle");
    let parts = [
        read(dir.join(bundle::MANIFEST)),
        read(dir.join(bundle::FEATURES)),
        read(dir.join(dictionary::WEIGHTS_FILE)),
    ];
    let seeds = (0..3u8)
        .map(|i| {
            let mut s = vec![i];
            s.extend_from_slice(&parts[i as usize]);
            s
        })
        .collect();
    fuzz(Target {
        name: "bundle",
        seeds,
        shape: Shape::Json,
        names: &[bundle::MANIFEST, bundle::FEATURES, "dictionary", "weights"],
        bound: None,
        seeds_load: true,
        run: &|b| {
            let Some((&which, rest)) = b.split_first() else {
                return Ok(());
            };
            let mut files = [&parts[0][..], &parts[1][..], &parts[2][..]];
            files[which as usize % 3] = rest;
            bundle::from_bytes_parts(files[0], files[1], files[2], &device).map(drop)
        },
    });
}

#[test]
fn fuzz_dict_json() {
    let device = Device::flex();
    let manifest: serde_json::Value =
        serde_json::from_slice(&read(root().join("assets/demo/bundle/manifest.json"))).unwrap();
    let dict_json = serde_json::to_vec_pretty(&manifest["dictionary"]).unwrap();
    let weights = read(root().join("assets/demo/bundle/dictionary.safetensors"));
    fuzz(Target {
        name: "dict.json",
        seeds: vec![dict_json],
        shape: Shape::Json,
        names: &["dict.json", "dictionary", "weights"],
        bound: None,
        seeds_load: true,
        run: &|b| {
            let file = dictionary::parse_config(b)?;
            dictionary::from_bytes(&file, &weights, &device).map(drop)
        },
    });
}

#[test]
fn fuzz_dictionary_safetensors() {
    let device = Device::flex();
    let manifest: serde_json::Value =
        serde_json::from_slice(&read(root().join("assets/demo/bundle/manifest.json"))).unwrap();
    let file =
        dictionary::parse_config(&serde_json::to_vec(&manifest["dictionary"]).unwrap()).unwrap();
    fuzz(Target {
        name: "dictionary.safetensors",
        seeds: vec![read(
            root().join("assets/demo/bundle/dictionary.safetensors"),
        )],
        shape: Shape::Safetensors,
        names: &["dictionary", "weights"],
        bound: None,
        seeds_load: true,
        run: &|b| dictionary::from_bytes(&file, b, &device).map(drop),
    });
}

#[test]
fn fuzz_saelens_cfg_json() {
    let device = Device::flex();
    let dirs = ["saelens-relu", "saelens-topk", "saelens-topk-legacy"];
    let dir = |d: &str| root().join("tests/fixtures").join(d);
    let seeds: Vec<Vec<u8>> = dirs.iter().map(|d| read(dir(d).join("cfg.json"))).collect();
    let weights: Vec<Vec<u8>> = dirs
        .iter()
        .map(|d| read(dir(d).join("sae_weights.safetensors")))
        .collect();
    fuzz(Target {
        name: "cfg.json",
        seeds,
        shape: Shape::Json,
        names: &["cfg.json", "SAELens", "dictionary", "weights"],
        bound: None,
        seeds_load: true,
        // Against each fixture's weights in turn: a config that parses must still match.
        run: &|b| {
            let file = dictionary::parse_saelens_config(b)?;
            let mut last = Ok(());
            for w in &weights {
                last = dictionary::from_bytes(&file, w, &device).map(drop);
                if last.is_ok() {
                    break;
                }
            }
            last
        },
    });
}

#[test]
fn fuzz_embeddings() {
    let (n, d) = (5, 8);
    let mut rng = SplitMix(3);
    let mut v = || {
        (0..n * d)
            .map(|_| (rng.next_u64() % 1000) as f32 / 1000.0)
            .collect()
    };
    let file = EmbeddingsFile {
        pairs: Pairs::new(v(), v(), d).unwrap(),
        meta: EmbeddingsMeta {
            model: "assets/demo/clip".into(),
            pairs: "pairs.tsv".into(),
            lines: (1..=n).collect(),
            images: (0..n).map(|i| format!("scene-{i}.png")).collect(),
            captions: (0..n).map(|i| format!("caption {i}")).collect(),
            skipped: vec![(9, "missing".into())],
            truth: vec![],
            shard: Some([1, 3, 32]),
        },
    };
    fuzz(Target {
        name: "embeddings",
        seeds: vec![file.to_bytes().unwrap()],
        shape: Shape::Safetensors,
        names: &["embeddings"],
        bound: None,
        seeds_load: true,
        run: &|b| EmbeddingsFile::from_bytes(b).map(drop),
    });
}

#[test]
fn fuzz_caption_lists() {
    let tsv =
        b"# image\tcaption\nimages/a.png\ta red circle\nimages/b.png\ta blue square\n\nbad line\n"
            .to_vec();
    let csv = b"image,caption,extra\nimages/a.png,\"a red, round \"\"circle\"\"\",1\nimages/b.png,a blue square,2\n".to_vec();
    let coco = br#"{"images":[{"id":1,"file_name":"a.jpg"},{"id":2,"file_name":"b.jpg"}],
        "annotations":[{"id":10,"image_id":1,"caption":"a cat"},{"id":11,"image_id":2,"caption":"a dog"},{"id":12,"image_id":3,"caption":"orphan"}]}"#.to_vec();
    // The first byte picks the format, as for the bundle.
    let seeds = [tsv, csv, coco]
        .into_iter()
        .enumerate()
        .map(|(i, s)| [vec![i as u8], s].concat())
        .collect();
    let options = ReadOptions::default();
    fuzz(Target {
        name: "caption-list",
        seeds,
        shape: Shape::Text,
        names: &["caption", "CSV", "COCO", "column", "line"],
        bound: None,
        seeds_load: true,
        run: &|b| {
            let Some((&which, rest)) = b.split_first() else {
                return Ok(());
            };
            let format = [Format::Tsv, Format::Csv, Format::Coco][which as usize % 3];
            captions::parse_list(format, rest, &options).map(drop)
        },
    });
}

#[test]
fn fuzz_tar_shard() {
    let png = read(root().join("tests/fixtures/images/tiny.png"));
    let seed = common::tar_bytes(&[
        ("000001.png", &png),
        ("000001.txt", b"a tiny picture"),
        ("000002.txt", b"a caption without an image"),
    ]);
    fuzz(Target {
        name: "tar",
        seeds: vec![seed],
        shape: Shape::Binary,
        names: &["tar", "shard", "bytes"],
        bound: None,
        seeds_load: true,
        run: &|b| {
            let mut kept = 0usize;
            let stop = captions::tar::walk(
                Cursor::new(b),
                |n| n.ends_with(".txt"),
                |_, data| kept += data.map_or(0, |d| d.len()),
            );
            match stop {
                Some(reason) => Err(monoscope::Error::Invalid(format!("tar shard: {reason}"))),
                None => Ok(()),
            }
        },
    });
}

#[test]
fn fuzz_images() {
    let mut seeds = files(
        "tests/fixtures/images",
        &["png", "jpg", "gif", "bmp", "webp"],
    );
    seeds.extend(files(
        "tests/fixtures/images/layouts",
        &["png", "jpg", "gif", "bmp", "webp"],
    ));
    // Fixtures that are meant to fail (not an image, a truncated JPEG) are not seeds.
    let bad = [
        read(root().join("tests/fixtures/images/not_an_image.png")),
        read(root().join("tests/fixtures/images/truncated.jpg")),
    ];
    seeds.retain(|s| !bad.contains(s));
    let processor = ImageProcessor::for_size(32);
    fuzz(Target {
        name: "image",
        seeds,
        shape: Shape::Image,
        names: &["image"],
        bound: Some(IMAGE_BOUND),
        seeds_load: true,
        run: &|b| processor.process(b).map(drop),
    });
}

/// Keeps the fixture list honest: every committed image layout is a seed above.
#[test]
fn image_layout_seeds_exist() {
    let dir: &Path = &root().join("tests/fixtures/images/layouts");
    for name in [
        "cmyk.jpg",
        "gray16.png",
        "exif-rotate90.jpg",
        "anim.webp",
        "progressive.jpg",
    ] {
        assert!(
            dir.join(name).exists(),
            "{name}: run scripts/make_image_fixtures.py"
        );
    }
}
