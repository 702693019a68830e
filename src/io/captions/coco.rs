//! COCO captions JSON (`captions_<split>.json`: `images` with `id` and `file_name`,
//! `annotations` with `image_id` and `caption`). Every caption is one pair; an image with
//! five captions gives five pairs.

use std::collections::HashMap;

use serde::Deserialize;

use super::Parsed;
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct Coco {
    images: Vec<Image>,
    annotations: Vec<Annotation>,
}

#[derive(Deserialize)]
struct Image {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct Annotation {
    image_id: u64,
    #[serde(default)]
    caption: Option<String>,
}

/// Parses a COCO file: (annotation position, file name, caption) per usable caption, and
/// (position, reason) for captions of unknown images or without text.
pub fn parse(bytes: &[u8]) -> Result<Parsed> {
    let coco: Coco = serde_json::from_slice(bytes).map_err(|e| {
        Error::Invalid(format!(
            "not a COCO captions file (images + annotations): {e}"
        ))
    })?;
    let files: HashMap<u64, &str> = coco
        .images
        .iter()
        .map(|i| (i.id, i.file_name.as_str()))
        .collect();
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for (i, a) in coco.annotations.iter().enumerate() {
        let id = i + 1;
        match (files.get(&a.image_id), &a.caption) {
            (None, _) => bad.push((id, format!("image_id {} is not in images", a.image_id))),
            (Some(_), None) => bad.push((id, "no caption".into())),
            (Some(f), Some(c)) => ok.push((id, f.to_string(), c.clone())),
        }
    }
    Ok((ok, bad))
}

/// Where COCO keeps the images of `annotations/captions_<split>.json`: `<split>/` next to
/// the `annotations` folder when it exists, else the JSON's own folder.
#[cfg(not(target_arch = "wasm32"))]
pub fn image_dir(json: &std::path::Path) -> std::path::PathBuf {
    let parent = json.parent().unwrap_or(std::path::Path::new("."));
    let split = json
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.strip_prefix("captions_"));
    if let (Some(split), Some(root)) = (split, parent.parent()) {
        let dir = root.join(split);
        if dir.is_dir() {
            return dir;
        }
    }
    parent.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_caption_is_a_pair() {
        let json =
            br#"{"images": [{"id": 7, "file_name": "a.jpg"}, {"id": 9, "file_name": "b.jpg"}],
            "annotations": [{"image_id": 7, "caption": "one"}, {"image_id": 7, "caption": "two"},
                            {"image_id": 3, "caption": "lost"}, {"image_id": 9}]}"#;
        let (ok, bad) = parse(json).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1], (2, "a.jpg".into(), "two".into()));
        assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), vec![3, 4]);
        assert!(parse(b"{\"images\": 3}").is_err());
    }
}
