//! A bundle built the page's way (`lab::build`: embed batches through the `Lab`, train with
//! the scaled defaults, analyse) from 300 demo-world pairs, against `monoscope extract /
//! train / analyze` on the same folder with the same settings: the same method, so the MDS
//! classes must agree for >= 90% of features (issue 11; both run on the CPU backend here,
//! where they agree exactly, which the test reports).

mod common;

use burn::tensor::{Device, read_sync};
use common::*;
use monoscope::Lab;
use monoscope::inspect::Lens;
use monoscope::lab::build::{BuildSettings, BundleBuild, MIN_PAIRS, StoredRows};

/// The pairs embedded the page's way: batches of 32 through `Lab::build_add`.
fn build_rows(lab: &Lab, scenes: &std::path::Path, entries: &[(String, String)]) -> StoredRows {
    let device = Device::flex();
    let mut build = BundleBuild::new("scenes", lab.embedder().config.projection_dim, &device);
    for (c, chunk) in entries.chunks(32).enumerate() {
        let ids: Vec<usize> = (0..chunk.len()).map(|i| c * 32 + i + 1).collect();
        let names: Vec<String> = chunk.iter().map(|e| e.0.clone()).collect();
        let captions: Vec<String> = chunk.iter().map(|e| e.1.clone()).collect();
        let images: Vec<Vec<u8>> = names.iter().map(|n| read(scenes.join(n))).collect();
        read_sync(lab.build_add(&mut build, &ids, &names, &images, &captions)).unwrap();
    }
    build.rows_from(0)
}

#[test]
fn on_device_build_agrees_with_the_cli() {
    let dir = temp_dir("build");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let scenes = dir.join("scenes");
    cli_ok(
        &[
            "world-images",
            "--count",
            "300",
            "--seed",
            "7",
            "--out",
            &s(&scenes),
        ],
        None,
    );
    // The folder layout (image + same-name .txt), read in file-name order as both sides do.
    let index: Vec<serde_json::Value> =
        serde_json::from_slice(&read(scenes.join("index.json"))).unwrap();
    let mut entries: Vec<(String, String)> = index
        .iter()
        .map(|e| {
            let file = e["file"].as_str().unwrap().to_string();
            let caption = e["caption"].as_str().unwrap().to_string();
            let stem = file.trim_end_matches(".png");
            std::fs::write(scenes.join(format!("{stem}.txt")), format!("{caption}\n")).unwrap();
            (file, caption)
        })
        .collect();
    entries.sort();

    let device = Device::flex();
    let lab = Lab::new(demo_embedder(&device), None);
    let d = lab.embedder().config.projection_dim;
    let mut build = BundleBuild::new("scenes", d, &device);
    let rows = build_rows(&lab, &scenes, &entries);
    build
        .add_rows(
            &rows.ids,
            &rows.names,
            &rows.captions,
            &rows.image,
            &rows.text,
        )
        .unwrap();
    assert_eq!(build.pairs(), 300);
    let settings = BuildSettings::for_data(300, d);
    build.start_training(&settings).unwrap();
    let mut last = None;
    while !build.trained() {
        last = Some(build.train(100).unwrap());
    }
    let status = last.unwrap();
    assert_eq!(status.step, settings.steps);
    assert!(status.fvu[0] < 0.9 && status.fvu[1] < 0.9, "{status:?}");
    let [m, f, w] = read_sync(build.finish(&lab, "demo")).unwrap();
    let page = Lens::from_bytes(&m, &f, &w, &device).unwrap();

    let (emb, dict, bundle) = (
        dir.join("emb.safetensors"),
        dir.join("dict"),
        dir.join("bundle"),
    );
    let model = s(&demo_dir().join("clip"));
    cli_ok(
        &[
            "extract",
            "--model",
            &model,
            "--data",
            &s(&scenes),
            "--out",
            &s(&emb),
        ],
        None,
    );
    let (features, k, steps, batch) = (
        settings.features.to_string(),
        settings.k.to_string(),
        settings.steps.to_string(),
        settings.batch.to_string(),
    );
    cli_ok(
        &[
            "train",
            "--embeddings",
            &s(&emb),
            "--kind",
            "topk",
            "--center",
            "--features",
            &features,
            "--k",
            &k,
            "--steps",
            &steps,
            "--batch",
            &batch,
            "--out",
            &s(&dict),
        ],
        None,
    );
    cli_ok(
        &[
            "analyze",
            "--model",
            &model,
            "--dict",
            &s(&dict),
            "--embeddings",
            &s(&emb),
            "--center",
            "--out",
            &s(&bundle),
        ],
        None,
    );
    let cli = Lens::load(&bundle, &device).unwrap();
    assert_eq!(cli.classes.len(), page.classes.len());
    let same = cli
        .classes
        .iter()
        .zip(&page.classes)
        .filter(|(a, b)| a == b)
        .count();
    let agree = same as f64 / cli.classes.len() as f64;
    eprintln!(
        "on-device build vs CLI: {same}/{} feature classes agree ({:.1}%); page counts {:?}, CLI {:?}",
        cli.classes.len(),
        100.0 * agree,
        page.class_counts,
        cli.class_counts
    );
    assert!(agree >= 0.9);

    // Bringing the CLI's dictionary instead of training: the same bundle classes.
    let mut again = BundleBuild::new("scenes", d, &device);
    let all = build_rows(&lab, &scenes, &entries);
    again
        .add_rows(&all.ids, &all.names, &all.captions, &all.image, &all.text)
        .unwrap();
    again
        .use_dictionary(
            &read(dict.join("dict.json")),
            &read(dict.join("dictionary.safetensors")),
            false,
            true,
        )
        .unwrap();
    let [m, f, w] = read_sync(again.finish(&lab, "demo")).unwrap();
    let brought = Lens::from_bytes(&m, &f, &w, &device).unwrap();
    assert_eq!(brought.classes, cli.classes);
    let mut wrong = BundleBuild::new("scenes", d + 1, &device);
    let err = wrong
        .use_dictionary(
            &read(dict.join("dict.json")),
            &read(dict.join("dictionary.safetensors")),
            false,
            true,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("expects width"), "{err}");

    // Too few pairs are refused with the reason.
    let mut small = BundleBuild::new("few", d, &device);
    let err = small
        .start_training(&BuildSettings::for_data(10, d))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("at least {MIN_PAIRS}")), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
