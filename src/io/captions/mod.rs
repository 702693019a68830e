//! Image-caption sets in the formats people have, read into one list of pairs: the CLI's
//! TSV list ([`tsv`]), CSV with `image,caption` columns ([`csv`]), COCO captions JSON
//! ([`coco`]: every caption is a pair), a folder of images with same-name `.txt`
//! captions ([`folder`], the img2dataset / webdataset folder layout) and webdataset
//! `.tar` shards ([`tar`], `KEY.jpg|png|webp` + `KEY.txt`, indexed in one pass and read
//! member by member without unpacking). Bad entries are reported as
//! `SOURCE:ENTRY: skipped: reason` and skipped; the rest is kept.
//!
//! The parsers work on bytes (so the page can use them later); reading files and
//! folders is native only.

pub mod coco;
pub mod csv;
#[cfg(not(target_arch = "wasm32"))]
pub mod folder;
pub mod tar;
pub mod tsv;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A set's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `image<TAB>caption` lines.
    Tsv,
    /// CSV with a header row naming the image and caption columns.
    Csv,
    /// COCO captions JSON (`images` + `annotations`).
    Coco,
    /// A folder where each image has a same-name `.txt` caption.
    Folder,
    /// A webdataset `.tar` shard.
    Tar,
}

impl std::str::FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tsv" => Ok(Format::Tsv),
            "csv" => Ok(Format::Csv),
            "coco" => Ok(Format::Coco),
            "folder" => Ok(Format::Folder),
            "tar" | "webdataset" => Ok(Format::Tar),
            other => Err(Error::Invalid(format!(
                "unknown format {other:?} (tsv, csv, coco, folder or tar)"
            ))),
        }
    }
}

/// What a text parser returns: (id, image name, caption) per usable entry and (id,
/// reason) per skipped one.
pub type Parsed = (Vec<(usize, String, String)>, Vec<(usize, String)>);

/// Where an entry's image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A file.
    File(PathBuf),
    /// A member of a tar file: its data's byte range.
    TarMember {
        /// The shard.
        shard: PathBuf,
        /// Offset of the member's data.
        offset: u64,
        /// Its length.
        len: u64,
    },
}

/// One usable pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Stable 1-based id within the set (the line number for TSV and CSV, the position
    /// otherwise): what `extract` resumes by.
    pub id: usize,
    /// How the image is named in the set (a path as written, or `KEY.jpg`).
    pub name: String,
    /// Where to read the image.
    pub image: ImageSource,
    /// The caption.
    pub caption: String,
}

/// A set read from disk: its pairs and the entries skipped with the reason.
#[derive(Debug, Clone, Default)]
pub struct CaptionSet {
    /// Usable pairs, in the set's order.
    pub entries: Vec<Entry>,
    /// (id, reason) of every skipped entry.
    pub skipped: Vec<(usize, String)>,
}

/// Options of the readers.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Force a format instead of detecting it.
    pub format: Option<Format>,
    /// CSV column of the image path.
    pub image_column: String,
    /// CSV column of the caption.
    pub caption_column: String,
    /// COCO: the image folder (default: detected, see [`coco`]).
    pub images: Option<PathBuf>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            format: None,
            image_column: "image".into(),
            caption_column: "caption".into(),
            images: None,
        }
    }
}

/// The format of `path`: a folder is [`Format::Folder`]; files by extension (`.csv`,
/// `.json`, `.tar`; anything else is a TSV list).
pub fn detect(path: &Path) -> Format {
    if path.is_dir() {
        return Format::Folder;
    }
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => Format::Csv,
        Some("json") => Format::Coco,
        Some("tar") => Format::Tar,
        _ => Format::Tsv,
    }
}

/// Entries whose images are files `name` relative to `dir`.
#[cfg(not(target_arch = "wasm32"))]
fn in_dir((pairs, skipped): Parsed, dir: &Path) -> CaptionSet {
    let entries = pairs
        .into_iter()
        .map(|(id, name, caption)| Entry {
            id,
            image: ImageSource::File(dir.join(&name)),
            name,
            caption,
        })
        .collect();
    CaptionSet { entries, skipped }
}

/// The format of a caption list by its file name (`.csv`, `.json` for COCO, else TSV).
pub fn list_format(name: &str) -> Format {
    match name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("csv") => Format::Csv,
        Some("json") => Format::Coco,
        _ => Format::Tsv,
    }
}

/// Parses a caption list (TSV, CSV with `image,caption` columns, or COCO captions JSON) from
/// its bytes: `(entry id, image path as written, caption)` and the skipped entries. What the
/// native reader does before it resolves image paths; the page resolves them among the
/// files the user picked.
pub fn parse_list(format: Format, bytes: &[u8], options: &ReadOptions) -> Result<Parsed> {
    let text = || {
        std::str::from_utf8(bytes)
            .map_err(|_| Error::Invalid("the caption list is not UTF-8 text".into()))
    };
    match format {
        Format::Tsv => {
            let (ok, skipped) = tsv::parse(text()?);
            Ok((
                ok.into_iter()
                    .map(|l| (l.line, l.image, l.caption))
                    .collect(),
                skipped,
            ))
        }
        Format::Csv => csv::parse(text()?, &options.image_column, &options.caption_column),
        Format::Coco => coco::parse(bytes),
        Format::Folder | Format::Tar => Err(Error::Invalid(
            "folders and shards are not caption lists".into(),
        )),
    }
}

/// Reads a set in any supported format (native).
#[cfg(not(target_arch = "wasm32"))]
pub fn read(path: &Path, options: &ReadOptions) -> Result<CaptionSet> {
    use crate::base::fs::{read_file, read_text};
    let base = path.parent().unwrap_or(Path::new("."));
    match options.format.unwrap_or_else(|| detect(path)) {
        format @ (Format::Tsv | Format::Csv) => {
            let text = read_text(path)?;
            Ok(in_dir(parse_list(format, text.as_bytes(), options)?, base))
        }
        Format::Coco => {
            let dir = match &options.images {
                Some(d) => d.clone(),
                None => coco::image_dir(path),
            };
            Ok(in_dir(coco::parse(&read_file(path)?)?, &dir))
        }
        Format::Folder => folder::read(path),
        Format::Tar => tar::read(path),
    }
}

/// The bytes of an entry's image (native).
#[cfg(not(target_arch = "wasm32"))]
pub fn image_bytes(image: &ImageSource) -> Result<Vec<u8>> {
    match image {
        ImageSource::File(p) => crate::base::fs::read_file(p),
        ImageSource::TarMember { shard, offset, len } => tar::read_member(shard, *offset, *len),
    }
}
