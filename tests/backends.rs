//! The native jobs on every `--backend` value (issue 12, item 6): `extract`, `train` and
//! `analyze` with `--backend wgpu` (lavapipe's Vulkan on the CI machines) against
//! `--backend cpu` (flex) on the demo model and demo images, each stage fed the same
//! (CPU) inputs so that differences do not compound. The towers' parity with transformers
//! on both backends, hidden states included, is in `parity.rs`.

mod common;

use std::path::Path;

use common::{TensorFile, cli_ok, copy_dir, max_abs_diff, root};
use monoscope::io::embeddings::EmbeddingsFile;

fn run(dir: &Path, args: &[&str]) {
    cli_ok(args, Some(dir));
}

fn embeddings(dir: &Path, name: &str) -> EmbeddingsFile {
    EmbeddingsFile::from_bytes(&common::read(dir.join(name))).unwrap()
}

#[test]
fn extract_train_analyze_agree_across_backends() {
    let dir = common::temp_dir("backends");
    let mut lines = vec!["# image\tcaption".to_string()];
    for rep in 0..6 {
        lines.extend(common::demo_pair_lines(rep));
    }
    std::fs::write(dir.join("pairs.tsv"), lines.join("\n") + "\n").unwrap();
    let model = root().join("assets/demo/clip").display().to_string();

    // extract: the same rows, embeddings within 1e-4 (unit vectors in f32 on both sides;
    // only the order of sums differs, ~1e-6, as in parity.rs).
    for backend in ["cpu", "wgpu"] {
        let out = format!("emb-{backend}.safetensors");
        run(
            &dir,
            &[
                "extract",
                "--model",
                &model,
                "--data",
                "pairs.tsv",
                "--out",
                &out,
                "--batch",
                "8",
                "--backend",
                backend,
            ],
        );
    }
    let (cpu, gpu) = (
        embeddings(&dir, "emb-cpu.safetensors"),
        embeddings(&dir, "emb-wgpu.safetensors"),
    );
    assert_eq!(cpu.meta.lines, gpu.meta.lines);
    assert_eq!(cpu.pairs.n, 36);
    for (what, a, b) in [
        ("image", &cpu.pairs.images, &gpu.pairs.images),
        ("text", &cpu.pairs.texts, &gpu.pairs.texts),
    ] {
        let d = max_abs_diff(a, b);
        assert!(
            d <= 1e-4,
            "extract {what} embeddings: wgpu vs cpu max abs diff {d}"
        );
    }

    // train: the initial weights come from the device's random generator, which differs
    // between backends, so both resume from one CPU checkpoint (weights, Adam moments,
    // the host sampler) and run 19 more TopK steps on the same (CPU) embeddings.
    let train = |out: &str, steps: &str, more: &[&str]| {
        let mut args = vec![
            "train",
            "--embeddings",
            "emb-cpu.safetensors",
            "--kind",
            "topk",
            "--features",
            "64",
            "--k",
            "4",
            "--steps",
            steps,
            "--batch",
            "32",
            "--log-every",
            "1",
            "--checkpoint-every",
            "1",
            "--out",
            out,
        ];
        args.extend(more);
        run(&dir, &args);
    };
    train("dict-cpu", "1", &[]);
    copy_dir(&dir.join("dict-cpu"), &dir.join("dict-wgpu"));
    for backend in ["cpu", "wgpu"] {
        train(
            &format!("dict-{backend}"),
            "20",
            &["--resume", "--backend", backend],
        );
    }
    let (a, b) = (
        TensorFile::open(&dir.join("dict-cpu/dictionary.safetensors")),
        TensorFile::open(&dir.join("dict-wgpu/dictionary.safetensors")),
    );
    assert_eq!(a.names(), b.names());
    for name in a.names() {
        let d = max_abs_diff(&a.get(&name).f, &b.get(&name).f);
        assert!(
            d <= TRAIN_TOLERANCE,
            "train {name}: wgpu vs cpu max abs diff {d}"
        );
    }

    // analyze: the CPU dictionary and embeddings on each backend; the same classes, MDS
    // within 1e-4.
    for backend in ["cpu", "wgpu"] {
        let out = format!("bundle-{backend}");
        run(
            &dir,
            &[
                "analyze",
                "--model",
                &model,
                "--dict",
                "dict-cpu",
                "--embeddings",
                "emb-cpu.safetensors",
                "--out",
                &out,
                "--min-support",
                "2",
                "--backend",
                backend,
            ],
        );
    }
    let load = |b: &str| {
        monoscope::io::bundle::load(&dir.join(b), &burn::tensor::Device::flex())
            .unwrap()
            .features
            .features
    };
    let (a, b) = (load("bundle-cpu"), load("bundle-wgpu"));
    assert_eq!(a.len(), 64);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.class, y.class, "feature {}", x.id);
        assert_eq!(x.support, y.support, "feature {}", x.id);
        let d = (x.mds.unwrap_or(0.0) - y.mds.unwrap_or(0.0)).abs();
        assert!(d <= 1e-4, "feature {} MDS differs by {d}", x.id);
    }
}

/// Dictionary weights after the same 19 Adam steps from one checkpoint on both backends:
/// f32 sums in another order moved them by 7e-8 (measured on lavapipe); a wrong gradient or
/// a lost step moves weights by about lr = 4e-4 per step, since Adam scales every update to
/// about lr.
const TRAIN_TOLERANCE: f32 = 1e-5;

/// `bench-train` and `bench-analyze` take `--backend` (the GPU measurements of the README
/// run them on wgpu against PyTorch CUDA): on tiny shapes each runs on both backends and
/// says in its JSON which backend and how many warm-up steps it used.
#[test]
fn training_and_analyze_benchmarks_run_on_each_backend() {
    let dir = common::temp_dir("bench-backends");
    let shape = ["--d", "16", "--features", "32", "--k", "4"];
    for backend in ["cpu", "wgpu"] {
        let train = format!("train-{backend}.json");
        let mut args = vec!["bench-train", "--backend", backend, "--kind", "topk"];
        args.extend(shape);
        args.extend([
            "--batch", "64", "--steps", "2", "--warmup", "2", "--json", &train,
        ]);
        run(&dir, &args);
        let v: serde_json::Value = serde_json::from_slice(&common::read(dir.join(&train))).unwrap();
        let r = &v["results"][0];
        assert_eq!(r["backend"], backend);
        assert_eq!(r["warmup"], 2);
        let rate = r["samples_per_s"].as_f64().unwrap();
        assert!(rate.is_finite() && rate > 0.0, "{backend}: {rate}");

        let analyze = format!("analyze-{backend}.json");
        let mut args = vec!["bench-analyze", "--backend", backend, "--pairs", "300"];
        args.extend(shape);
        args.extend(["--json", &analyze]);
        run(&dir, &args);
        let v: serde_json::Value =
            serde_json::from_slice(&common::read(dir.join(&analyze))).unwrap();
        let r = &v["results"][0];
        assert_eq!(r["backend"], backend);
        let secs = r["seconds"].as_f64().unwrap();
        assert!(secs.is_finite() && secs > 0.0, "{backend}: {secs}");
    }
}
