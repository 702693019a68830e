//! A folder of images, each with a same-name `.txt` caption (`0001.jpg` + `0001.txt`),
//! as img2dataset and unpacked webdataset shards lay them out. Images without a caption
//! file and unreadable captions are skipped with the reason.

use std::path::Path;

use super::{CaptionSet, Entry, ImageSource};
use crate::error::{Error, Result};

/// Image extensions read from folders and shards.
pub const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "jpe"];

/// Whether a file name has an image extension.
pub fn is_image(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, e)| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Reads the folder (not recursively); entries in file-name order, ids from 1.
pub fn read(dir: &Path) -> Result<CaptionSet> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| is_image(n))
        .collect();
    names.sort();
    let mut set = CaptionSet::default();
    for (i, name) in names.into_iter().enumerate() {
        let id = i + 1;
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
        let txt = dir.join(format!("{stem}.txt"));
        match std::fs::read(&txt) {
            Err(_) => set
                .skipped
                .push((id, format!("{name}: no {stem}.txt caption"))),
            Ok(bytes) => match String::from_utf8(bytes) {
                Err(_) => set.skipped.push((id, format!("{stem}.txt is not UTF-8"))),
                Ok(caption) => set.entries.push(Entry {
                    id,
                    image: ImageSource::File(dir.join(&name)),
                    name,
                    caption: caption.trim_end_matches(['\n', '\r']).to_string(),
                }),
            },
        }
    }
    Ok(set)
}
