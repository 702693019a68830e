//! Image-caption sets in every supported format: the same pairs come out of each format
//! of one set, bad entries are reported and skipped, a truncated shard keeps what came
//! before the damage, COCO gives one pair per caption, and `extract` embeds a tar shard
//! and a COCO file exactly as it embeds the TSV list.

mod common;

use std::path::Path;

use common::*;
use monoscope::io::captions::{self, CaptionSet, Format, ReadOptions};

/// The set: demo images with captions, including unicode and an empty caption.
fn pairs() -> Vec<(String, Vec<u8>, String)> {
    let captions = [
        "a big red circle",
        "un cercle rouge, très \"grand\"",
        "",
        "蓝色的方块",
    ];
    captions
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let img = read(demo_dir().join(format!("images/scene-{i}.png")));
            (format!("{i:04}.png"), img, c.to_string())
        })
        .collect()
}

/// (image bytes, caption) of every entry, in order.
fn contents(set: &CaptionSet) -> Vec<(Vec<u8>, String)> {
    set.entries
        .iter()
        .map(|e| (captions::image_bytes(&e.image).unwrap(), e.caption.clone()))
        .collect()
}

fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Writes the set in all five formats under `dir`; returns their paths.
fn write_all(dir: &Path, p: &[(String, Vec<u8>, String)]) -> [std::path::PathBuf; 5] {
    let img = dir.join("img");
    std::fs::create_dir_all(&img).unwrap();
    let mut tsv = String::new();
    let mut csv = String::from("caption,image\n");
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    let (mut images, mut annotations) = (Vec::new(), Vec::new());
    for (i, (name, bytes, cap)) in p.iter().enumerate() {
        std::fs::write(img.join(name), bytes).unwrap();
        std::fs::write(img.join(name.replace(".png", ".txt")), cap).unwrap();
        tsv += &format!("img/{name}\t{cap}\n");
        csv += &format!("{},img/{name}\n", csv_field(cap));
        members.push((format!("shard/{name}"), bytes.clone()));
        members.push((
            format!("shard/{}", name.replace(".png", ".txt")),
            cap.clone().into_bytes(),
        ));
        images.push(serde_json::json!({"id": i, "file_name": name}));
        annotations.push(serde_json::json!({"image_id": i, "caption": cap}));
    }
    let paths = [
        dir.join("pairs.tsv"),
        dir.join("pairs.csv"),
        dir.join("annotations/captions_img.json"),
        img.clone(),
        dir.join("shard-000.tar"),
    ];
    std::fs::write(&paths[0], tsv).unwrap();
    std::fs::write(&paths[1], csv).unwrap();
    std::fs::create_dir_all(dir.join("annotations")).unwrap();
    let coco = serde_json::json!({"images": images, "annotations": annotations});
    std::fs::write(&paths[2], coco.to_string()).unwrap();
    let refs: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    std::fs::write(&paths[4], tar_bytes(&refs)).unwrap();
    paths
}

#[test]
fn every_format_gives_the_same_pairs() {
    let dir = temp_dir("captions-same");
    let p = pairs();
    let want: Vec<(Vec<u8>, String)> = p.iter().map(|(_, b, c)| (b.clone(), c.clone())).collect();
    let formats = [
        Format::Tsv,
        Format::Csv,
        Format::Coco,
        Format::Folder,
        Format::Tar,
    ];
    for (path, format) in write_all(&dir, &p).iter().zip(formats) {
        assert_eq!(captions::detect(path), format, "{}", path.display());
        let set = captions::read(path, &ReadOptions::default()).unwrap();
        assert!(set.skipped.is_empty(), "{format:?}: {:?}", set.skipped);
        assert_eq!(contents(&set), want, "{format:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_entries_are_skipped_with_the_reason() {
    let dir = temp_dir("captions-bad");
    let p = pairs();
    let paths = write_all(&dir, &p);
    // Folder: an image without a caption file, a non-UTF-8 caption.
    std::fs::write(paths[3].join("9998.png"), &p[0].1).unwrap();
    std::fs::write(paths[3].join("9999.png"), &p[0].1).unwrap();
    std::fs::write(paths[3].join("9999.txt"), [0xff, 0xfe]).unwrap();
    let set = captions::read(&paths[3], &ReadOptions::default()).unwrap();
    assert_eq!(set.entries.len(), 4);
    let why: Vec<&str> = set.skipped.iter().map(|s| s.1.as_str()).collect();
    assert!(
        why[0].contains("no 9998.txt") && why[1].contains("not UTF-8"),
        "{why:?}"
    );

    // Tar: a caption without an image, an image without a caption, then truncation.
    let tar = tar_bytes(&[
        ("a.png", &p[0].1),
        ("a.txt", b"kept"),
        ("b.txt", b"no image"),
        ("c.png", &p[1].1),
        ("d.png", &p[2].1),
        ("d.txt", b"cut off"),
    ]);
    let whole = dir.join("bad.tar");
    std::fs::write(&whole, &tar).unwrap();
    let set = captions::read(&whole, &ReadOptions::default()).unwrap();
    assert_eq!(set.entries.len(), 2);
    assert_eq!(set.skipped.len(), 2, "{:?}", set.skipped);
    let cut = dir.join("cut.tar");
    // Cut inside d.png's data: a, b, c survive; d is lost and the damage is named.
    let d_at = tar.windows(5).position(|w| w == b"d.png").unwrap();
    std::fs::write(&cut, &tar[..d_at + 512 + 100]).unwrap();
    let set = captions::read(&cut, &ReadOptions::default()).unwrap();
    assert_eq!(set.entries.len(), 1, "only a.png has both members");
    assert!(
        set.skipped.iter().any(|s| s.1.contains("truncated")),
        "{:?}",
        set.skipped
    );

    // A caption member declaring 8 GB: refused from its header (no allocation), the
    // members before it are kept.
    let mut huge = tar_bytes(&[("a.png", &p[0].1), ("a.txt", b"kept"), ("z.txt", b"x")]);
    let z_at = huge.windows(5).position(|w| w == b"z.txt").unwrap();
    let h = &mut huge[z_at..z_at + 512];
    h[124..136].copy_from_slice(b"77777777777\0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let huge_path = dir.join("huge.tar");
    std::fs::write(&huge_path, &huge).unwrap();
    let set = captions::read(&huge_path, &ReadOptions::default()).unwrap();
    assert_eq!(set.entries.len(), 1);
    assert!(
        set.skipped
            .iter()
            .any(|s| s.1.contains("z.txt: declares 8589934591 bytes")),
        "{:?}",
        set.skipped
    );

    // CSV: wrong column names are refused for the whole file, options choose others.
    let csv = dir.join("cols.csv");
    std::fs::write(&csv, "file,text\nimg/0000.png,a big red circle\n").unwrap();
    assert!(captions::read(&csv, &ReadOptions::default()).is_err());
    let opts = ReadOptions {
        image_column: "file".into(),
        caption_column: "text".into(),
        ..ReadOptions::default()
    };
    assert_eq!(captions::read(&csv, &opts).unwrap().entries.len(), 1);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn coco_gives_one_pair_per_caption() {
    let dir = temp_dir("captions-coco");
    let p = pairs();
    let paths = write_all(&dir, &p);
    let coco = serde_json::json!({
        "images": [{"id": 1, "file_name": "0000.png"}],
        "annotations": [{"image_id": 1, "caption": "one"}, {"image_id": 1, "caption": "two"},
                        {"image_id": 5, "caption": "unknown image"}]});
    std::fs::write(&paths[2], coco.to_string()).unwrap();
    let set = captions::read(&paths[2], &ReadOptions::default()).unwrap();
    let caps: Vec<&str> = set.entries.iter().map(|e| e.caption.as_str()).collect();
    assert_eq!(caps, ["one", "two"]);
    assert_eq!(set.skipped.len(), 1);
    // The image folder was found next to `annotations/` from the file's split name.
    assert_eq!(
        captions::image_bytes(&set.entries[1].image).unwrap(),
        p[0].1
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn extract_embeds_a_shard_and_a_coco_file_like_the_tsv_list() {
    let dir = temp_dir("captions-extract");
    let p = pairs();
    let paths = write_all(&dir, &p);
    let model = demo_dir().join("clip");
    let mut tensors = Vec::new();
    for (i, path) in [&paths[0], &paths[4], &paths[2]].iter().enumerate() {
        let out = dir.join(format!("emb-{i}.safetensors"));
        cli_ok(
            &[
                "extract",
                "--model",
                model.to_str().unwrap(),
                "--data",
                path.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            None,
        );
        let f = TensorFile::open(&out);
        tensors.push((f.get("image_embeds").f, f.get("text_embeds").f));
    }
    assert_eq!(tensors[0].0.len(), 4 * 32);
    for t in &tensors[1..] {
        assert!(max_abs_diff(&t.0, &tensors[0].0) < 1e-6);
        assert!(max_abs_diff(&t.1, &tensors[0].1) < 1e-6);
    }
    std::fs::remove_dir_all(&dir).ok();
}
