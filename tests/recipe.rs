//! The README's "Your own model" recipe, natively, on a real architecture: a random-init
//! ViT-B/32 (`init`), demo-world scenes as a webdataset shard and as a COCO captions file,
//! `extract` from both, `train`, `analyze`, and the bundle opened with the model it was
//! made for. (Opening it in the page is issue 10's browser test, not yet written.)

mod common;

use burn::tensor::Device;
use common::*;
use monoscope::Embedder;
use monoscope::inspect::Lens;
use monoscope::io::bundle::fnv1a64;

#[test]
fn init_extract_train_analyze_on_vit_b_32() {
    let dir = root().join("tests/out/recipe");
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let model = dir.join("vit-b-32");
    cli_ok(
        &[
            "init",
            "--preset",
            "vit-b-32",
            "--dtype",
            "f16",
            "--out",
            &s(&model),
        ],
        None,
    );
    // 24 demo scenes with their captions, as a shard and as COCO.
    let scenes = dir.join("scenes");
    cli_ok(
        &["world-images", "--count", "24", "--out", &s(&scenes)],
        None,
    );
    let index: Vec<serde_json::Value> =
        serde_json::from_slice(&read(scenes.join("index.json"))).unwrap();
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    let (mut images, mut annotations) = (Vec::new(), Vec::new());
    for (i, e) in index.iter().enumerate() {
        let file = e["file"].as_str().unwrap();
        let caption = e["caption"].as_str().unwrap();
        members.push((format!("{i:06}.png"), read(scenes.join(file))));
        members.push((format!("{i:06}.txt"), caption.as_bytes().to_vec()));
        images.push(serde_json::json!({"id": i, "file_name": file}));
        annotations.push(serde_json::json!({"image_id": i, "caption": caption}));
    }
    let refs: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let shard = dir.join("scenes-000.tar");
    std::fs::write(&shard, tar_bytes(&refs)).unwrap();
    let coco = scenes.join("captions.json");
    let json = serde_json::json!({"images": images, "annotations": annotations});
    std::fs::write(&coco, json.to_string()).unwrap();

    let (emb, emb_coco) = (dir.join("emb.safetensors"), dir.join("coco.safetensors"));
    for (data, out) in [(&shard, &emb), (&coco, &emb_coco)] {
        cli_ok(
            &[
                "extract",
                "--model",
                &s(&model),
                "--data",
                &s(data),
                "--out",
                &s(out),
            ],
            None,
        );
    }
    let (a, b) = (TensorFile::open(&emb), TensorFile::open(&emb_coco));
    assert_eq!(a.get("image_embeds").shape, vec![24, 512]);
    assert!(max_abs_diff(&a.get("text_embeds").f, &b.get("text_embeds").f) < 1e-6);

    let dict = dir.join("dict");
    cli_ok(
        &[
            "train",
            "--embeddings",
            &s(&emb),
            "--kind",
            "topk",
            "--features",
            "256",
            "--k",
            "8",
            "--steps",
            "20",
            "--batch",
            "32",
            "--center",
            "--out",
            &s(&dict),
        ],
        None,
    );
    let vocab = dir.join("vocab.txt");
    std::fs::write(&vocab, "red\nblue\ncircle\nsquare\nbig\nsmall\n").unwrap();
    let bundle = dir.join("bundle");
    cli_ok(
        &[
            "analyze",
            "--model",
            &s(&model),
            "--dict",
            &s(&dict),
            "--embeddings",
            &s(&emb),
            "--vocab",
            &s(&vocab),
            "--center",
            "--min-support",
            "1",
            "--out",
            &s(&bundle),
        ],
        None,
    );
    let device = Device::flex();
    let lens = Lens::load(&bundle, &device).unwrap();
    let e = Embedder::from_dir(&model, &device).unwrap();
    lens.check_model(e.config.projection_dim).unwrap();
    let hash = fnv1a64(&read(model.join("model.safetensors")));
    assert_eq!(lens.summary(Some(&hash)).model_matches, Some(true));
    assert_eq!(lens.class_counts.iter().sum::<usize>(), 256);

    // The page's default inputs (www/app.js): the first demo image, its caption, and a second
    // prompt; the browser test compares the page's embeddings with these.
    let demo: Vec<serde_json::Value> =
        serde_json::from_slice(&read(root().join("assets/demo/images/index.json"))).unwrap();
    let image = root()
        .join("assets/demo/images")
        .join(demo[0]["file"].as_str().unwrap());
    cli_ok(
        &[
            "embed",
            "--model",
            &s(&model),
            "--image",
            &s(&image),
            "--text",
            demo[0]["caption"].as_str().unwrap(),
            "--text",
            "a big red circle",
            "--out",
            &s(&dir.join("native.json")),
        ],
        None,
    );
    for scratch in [
        "scenes",
        "scenes-000.tar",
        "emb.safetensors",
        "coco.safetensors",
        "dict",
    ] {
        let p = dir.join(scratch);
        std::fs::remove_dir_all(&p)
            .or_else(|_| std::fs::remove_file(&p))
            .ok();
    }
}
