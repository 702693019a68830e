//! Webdataset `.tar` shards: members `KEY.EXT` grouped by key (the name up to the first
//! dot of its last path component); a key with an image member (`jpg`, `png`, `webp` ...)
//! and a `txt` member is a pair. The shard is indexed in one pass over its headers
//! (image data is skipped, captions are read), and each image is read later by its byte
//! range: nothing is unpacked. A truncated shard keeps the members before the damage.

use crate::error::{Error, Result};

/// A tar member: its name and its data's byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Path inside the archive.
    pub name: String,
    /// Offset of the data.
    pub offset: u64,
    /// Length of the data.
    pub len: u64,
}

/// Tar block size.
const BLOCK: u64 = 512;

/// The largest member `walk` reads into memory (captions): a caption is a few hundred bytes;
/// a header declaring more is treated as damage, not allocated.
pub const MAX_READ_MEMBER_BYTES: u64 = 1 << 20;

fn octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn text(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Parses one 512-byte header: (name, size, is a regular file); `None` at the end
/// marker (a zero block). A header whose checksum fails is an error.
fn header(h: &[u8; BLOCK as usize]) -> Result<Option<(String, u64, bool)>> {
    if h.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    let stored = octal(&h[148..156]);
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u64
            }
        })
        .sum();
    if stored != Some(sum) {
        return Err(Error::Invalid("a tar header's checksum is wrong".into()));
    }
    let size = octal(&h[124..136]).ok_or_else(|| Error::Invalid("bad tar size field".into()))?;
    let mut name = text(&h[0..100]);
    if &h[257..262] == b"ustar" {
        let prefix = text(&h[345..500]);
        if !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
    }
    let regular = matches!(h[156], b'0' | 0);
    Ok(Some((name, size, regular)))
}

/// Walks a tar stream's headers: every regular member, its data handed to `keep` when
/// `want(name)` (the rest is skipped without being read into memory). Stops at the end
/// marker or the end of the data; a member cut short, or a wanted one larger than
/// [`MAX_READ_MEMBER_BYTES`], ends the walk with the reason.
pub fn walk<R: std::io::Read>(
    mut r: R,
    want: impl Fn(&str) -> bool,
    mut keep: impl FnMut(Member, Option<Vec<u8>>),
) -> Option<String> {
    let mut pos = 0u64;
    let mut h = [0u8; BLOCK as usize];
    loop {
        match r.read_exact(&mut h) {
            Ok(()) => {}
            Err(_) => return None, // end of data without an end marker: tolerated
        }
        pos += BLOCK;
        let (name, size, regular) = match header(&h) {
            Ok(Some(x)) => x,
            Ok(None) => return None,
            Err(e) => return Some(format!("at byte {}: {e}", pos - BLOCK)),
        };
        let padded = size.div_ceil(BLOCK) * BLOCK;
        let wanted = regular && want(&name);
        if wanted && size > MAX_READ_MEMBER_BYTES {
            return Some(format!(
                "{name}: declares {size} bytes, more than the {MAX_READ_MEMBER_BYTES} a caption may have"
            ));
        }
        let bytes = if wanted {
            let mut data = vec![0u8; padded as usize];
            if r.read_exact(&mut data).is_err() {
                return Some(format!("{name}: the shard is truncated"));
            }
            data.truncate(size as usize);
            Some(data)
        } else {
            let skipped = std::io::copy(
                &mut std::io::Read::take(&mut r, padded),
                &mut std::io::sink(),
            );
            if skipped.map_or(true, |n| n < padded) {
                return Some(format!("{name}: the shard is truncated"));
            }
            None
        };
        if regular {
            let m = Member {
                name,
                offset: pos,
                len: size,
            };
            keep(m, bytes);
        }
        pos += padded;
    }
}

/// The key and extension of a member name (`dir/000123.jpg` -> `dir/000123`, `jpg`).
pub fn split_key(name: &str) -> Option<(String, String)> {
    let (dir, file) = name.rsplit_once('/').unwrap_or(("", name));
    let (stem, ext) = file.split_once('.')?;
    let key = if dir.is_empty() {
        stem.to_string()
    } else {
        format!("{dir}/{stem}")
    };
    Some((key, ext.to_ascii_lowercase()))
}

/// Per key of a shard: its position, image member and caption bytes.
#[cfg(not(target_arch = "wasm32"))]
type KeySlot = (usize, Option<Member>, Option<Vec<u8>>);

/// Reads a shard's index (native).
#[cfg(not(target_arch = "wasm32"))]
pub fn read(path: &std::path::Path) -> Result<super::CaptionSet> {
    use super::folder::is_image;
    use super::{CaptionSet, Entry, ImageSource};
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
    // Per key, in archive order: its image member and caption.
    let mut keys: std::collections::BTreeMap<String, KeySlot> = Default::default();
    let mut order = 0;
    let damage = walk(
        file,
        |name| name.ends_with(".txt"),
        |m, bytes| {
            let Some((key, ext)) = split_key(&m.name) else {
                return;
            };
            let slot = keys.entry(key).or_insert_with(|| {
                order += 1;
                (order, None, None)
            });
            if ext == "txt" {
                slot.2 = bytes;
            } else if is_image(&m.name) && slot.1.is_none() {
                slot.1 = Some(m);
            }
        },
    );
    let mut list: Vec<_> = keys.into_iter().collect();
    list.sort_by_key(|(_, (o, _, _))| *o);
    let mut set = CaptionSet::default();
    for (key, (id, image, caption)) in list {
        match (image, caption) {
            (Some(m), Some(c)) => match String::from_utf8(c) {
                Ok(caption) => set.entries.push(Entry {
                    id,
                    name: m.name.clone(),
                    image: ImageSource::TarMember {
                        shard: path.to_path_buf(),
                        offset: m.offset,
                        len: m.len,
                    },
                    caption: caption.trim_end_matches(['\n', '\r']).to_string(),
                }),
                Err(_) => set.skipped.push((id, format!("{key}.txt is not UTF-8"))),
            },
            (None, _) => set.skipped.push((id, format!("{key}: no image member"))),
            (Some(_), None) => set.skipped.push((id, format!("{key}: no .txt caption"))),
        }
    }
    if let Some(why) = damage {
        set.skipped.push((order + 1, why));
    }
    Ok(set)
}

/// The bytes of one member (native): a seek and a read, nothing unpacked.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_member(path: &std::path::Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut out = vec![0u8; len as usize];
    f.read_exact(&mut out).map_err(io)?;
    Ok(out)
}
