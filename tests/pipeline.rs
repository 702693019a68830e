//! The native jobs end to end on the tiny fixture model: extract (with bad lines and a
//! resume), train (with a resume), analyze, report.

mod common;

use common::{cli, root};

#[test]
fn extract_train_analyze_report() {
    let dir = std::env::temp_dir().join(format!("monoscope-pipeline-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let images = root().join("tests/fixtures/images");
    let mut lines = vec!["# image<TAB>caption".to_string()];
    let good = [
        "astronaut.jpg",
        "coffee.jpg",
        "gray.png",
        "rgba.png",
        "tiny.png",
        "wide.png",
        "anim.gif",
        "image.bmp",
    ];
    for (i, name) in good.iter().enumerate() {
        // Several captions per image make enough pairs for a small dictionary.
        for j in 0..4 {
            lines.push(format!(
                "{}\tcaption {j} of picture {i} ({name})",
                images.join(name).display()
            ));
        }
    }
    lines.push("a line without a tab".into());
    lines.push(format!(
        "{}\tnot an image",
        images.join("not_an_image.png").display()
    ));
    lines.push("missing.png\ta missing file".into());
    std::fs::write(dir.join("pairs.tsv"), lines.join("\n")).unwrap();
    let model = root().join("assets/tiny-clip");
    let model = model.to_str().unwrap();
    // Every run works in the temporary directory, where its relative paths point.
    let run = |args: &[&str]| cli(args, Some(dir.as_path()));
    let extract = |more: &[&str]| {
        let mut args = vec![
            "extract",
            "--model",
            model,
            "--pairs",
            "pairs.tsv",
            "--out",
            "emb.safetensors",
        ];
        args.extend(more);
        run(&args)
    };

    let (ok, _, err) = extract(&["--batch", "5"]);
    assert!(ok, "{err}");
    for line in [34, 35, 36] {
        assert!(
            err.contains(&format!("pairs.tsv:{line}: skipped")),
            "line {line} not reported: {err}"
        );
    }
    let emb = monoscope::io::embeddings::EmbeddingsFile::from_bytes(
        &std::fs::read(dir.join("emb.safetensors")).unwrap(),
    )
    .unwrap();
    assert_eq!(emb.pairs.n, 32);
    assert_eq!(emb.meta.lines[0], 2);
    // Re-running keeps what is done and only retries the lines that failed.
    let (ok, _, err) = extract(&[]);
    assert!(
        ok && err.contains("32 pairs already embedded, 2 to go"),
        "{err}"
    );

    let train = |steps: &str, resume: bool| {
        let mut args = vec![
            "train",
            "--embeddings",
            "emb.safetensors",
            "--kind",
            "topk",
            "--features",
            "32",
            "--k",
            "4",
        ];
        args.extend([
            "--steps",
            steps,
            "--batch",
            "16",
            "--log-every",
            "10",
            "--checkpoint-every",
            "10",
            "--out",
            "dict",
        ]);
        if resume {
            args.push("--resume");
        }
        run(&args)
    };
    let (ok, _, err) = train("20", false);
    assert!(ok, "{err}");
    let (ok, _, err) = train("30", true);
    assert!(ok && err.contains("resumed at step 20"), "{err}");
    let log = std::fs::read_to_string(dir.join("dict/metrics.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, vec![10, 20, 30]);

    let (ok, _, err) = run(&[
        "analyze",
        "--model",
        model,
        "--dict",
        "dict",
        "--embeddings",
        "emb.safetensors",
        "--out",
        "bundle",
        "--min-support",
        "2",
        "--top-m",
        "4",
    ]);
    assert!(ok, "{err}");
    let bundle =
        monoscope::io::bundle::load(&dir.join("bundle"), &burn::tensor::Device::flex()).unwrap();
    assert_eq!(bundle.features.features.len(), 32);
    assert_eq!(bundle.manifest.class_counts.iter().sum::<usize>(), 32);
    let labelled = bundle
        .features
        .features
        .iter()
        .filter(|f| !f.labels.is_empty())
        .count();
    assert!(labelled > 0, "no feature got a label");
    for f in &bundle.features.features {
        for (row, _) in f.top_images.iter().chain(&f.top_texts) {
            assert!(bundle.features.examples.contains_key(row));
        }
    }

    let (ok, stdout, err) = run(&["report", "bundle"]);
    assert!(ok, "{err}");
    assert!(stdout.contains("classes: ImgD"), "{stdout}");
    let svg = std::fs::read_to_string(dir.join("bundle/mds_histogram.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<rect"));

    // A features.json the manifest does not record is refused with a clear error; one that
    // matches the record but is malformed too.
    std::fs::write(dir.join("bundle/features.json"), "{\"features\": 3}").unwrap();
    let (ok, _, err) = run(&["report", "bundle"]);
    assert!(
        !ok && err.starts_with("error: features.json has 15 bytes where manifest.json records"),
        "{err}"
    );
    let manifest = dir.join("bundle/manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m.as_object_mut().unwrap().remove("features_file");
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let (ok, _, err) = run(&["report", "bundle"]);
    assert!(
        !ok && err.starts_with("error: features.json is malformed"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
