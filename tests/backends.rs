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

/// The wgpu device (lavapipe here). The wgpu runtime can be set up once per process, and
/// the tests, which run on threads of one process, share it.
fn wgpu() -> burn::tensor::Device {
    static WGPU: std::sync::OnceLock<burn::tensor::Device> = std::sync::OnceLock::new();
    WGPU.get_or_init(|| {
        burn::tensor::Device::wgpu_options()
            .init()
            .unwrap_or_else(|e| {
                panic!("no wgpu adapter (apt-get install mesa-vulkan-drivers): {e}")
            })
    })
    .clone()
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
/// says in its JSON which backend and how many warm-up steps it used; `bench-analyze`'s
/// profiles account for its phases.
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

        // analyze with one warm-up run and both profiles.
        let analyze = format!("analyze-{backend}.json");
        let mut args = vec!["bench-analyze", "--backend", backend, "--pairs", "300"];
        args.extend(shape);
        args.extend(["--warmup", "1", "--kernels", "--stages", "--json", &analyze]);
        run(&dir, &args);
        let v: serde_json::Value =
            serde_json::from_slice(&common::read(dir.join(&analyze))).unwrap();
        let r = &v["results"][0];
        assert_eq!(r["backend"], backend);
        let secs = r["seconds"].as_f64().unwrap();
        assert!(secs.is_finite() && secs > 0.0, "{backend}: {secs}");
        assert_eq!(
            r["warmup_seconds"].as_array().unwrap().len(),
            1,
            "{backend}"
        );
        // The GPU runs kernels (products, and the top-m reductions of each batch); the CPU
        // backend none.
        let launches = r["kernels"]["launches"].as_u64().unwrap();
        assert_eq!(
            launches > 0,
            backend == "wgpu",
            "{backend}: {launches} launches"
        );
        // Every phase ran once, the pass over the pairs holding the top-m lists of its one
        // batch (300 pairs < 1024) and the phases within the run's wall time.
        let stages = r["stages"]["stages"].as_array().unwrap();
        let stage = |name: &str| {
            stages
                .iter()
                .find(|s| s["name"] == name)
                .unwrap_or_else(|| panic!("{backend}: no stage {name}: {stages:?}"))
        };
        use monoscope::jobs::analyze::{
            STAGE_EMB_SIM, STAGE_LABELS, STAGE_QUALITY, STAGE_STREAM, STAGE_TOP_M, STAGE_WIN_RATES,
        };
        let mut phases = 0.0;
        for name in [
            STAGE_STREAM,
            STAGE_EMB_SIM,
            STAGE_WIN_RATES,
            STAGE_QUALITY,
            STAGE_LABELS,
        ] {
            assert_eq!(stage(name)["count"], 1, "{backend}: {name}");
            phases += stage(name)["ms"].as_f64().unwrap();
        }
        let top_m = stage(STAGE_TOP_M)["ms"].as_f64().unwrap();
        assert!(
            top_m <= stage(STAGE_STREAM)["ms"].as_f64().unwrap(),
            "{backend}"
        );
        let wall = r["stages"]["wall_ms"].as_f64().unwrap();
        assert!(phases <= wall, "{backend}: phases {phases} ms of {wall} ms");
    }
}

/// `bench --kernels` and `bench --stages` (issue 12: where the time goes). On wgpu
/// (lavapipe here) the kernel profile of a fixture model's passes accounts for every launch
/// and every millisecond it reports and names the products; flex runs no GPU kernels, and
/// its kernel profile says so with zero launches rather than inventing any. On flex the
/// stage profile accounts for the engines' time and finds each encoder-layer stage once
/// per layer, part and pass.
#[test]
fn bench_profiles_account_for_their_time() {
    use burn::tensor::Device;
    use monoscope::base::stages::{ENGINE_TIME, LENT, LENT_WAIT, OWN, PARTS};
    use monoscope::bench::Profiles;
    use monoscope::clip::ClipConfig;

    let config = ClipConfig::from_json(&common::read(
        root().join("tests/fixtures/tiny-gelu/config.json"),
    ))
    .unwrap();
    let wgpu = wgpu();
    let passes = 3;
    let kernels = Profiles {
        kernels: true,
        stages: false,
    };
    let results =
        monoscope::bench::run("wgpu", &wgpu, &config, &[2], (2, passes), kernels, |_| {}).unwrap();
    assert_eq!(results.len(), 2, "image and text");
    for r in &results {
        let k = r.kernels.as_ref().expect("asked for kernels");
        let what = &r.tower;
        assert_eq!(k.passes, passes);
        // The same work each pass: the same launches.
        assert!(
            k.launches > 0 && k.launches % passes == 0,
            "{what}: {} launches",
            k.launches
        );
        // Every launch is in the table once, or counted as not measured.
        let listed: usize = k.kernels.iter().map(|r| r.launches).sum();
        assert_eq!(listed + k.unmeasured, k.launches, "{what}");
        let by_family: usize = k.families.iter().map(|r| r.launches).sum();
        assert_eq!(by_family, listed, "{what}");
        // The families and the kernels each add up to the kernel time.
        for rows in [&k.kernels, &k.families] {
            let ms: f64 = rows.iter().map(|r| r.ms).sum();
            assert!(
                (ms - k.kernel_ms).abs() <= 1e-9 * k.kernel_ms.max(1.0),
                "{what}: {ms} vs {}",
                k.kernel_ms
            );
        }
        // Each layer has at least its six products (q, k, v, output, fc1, fc2).
        let layers = if what == "image" {
            config.vision.num_hidden_layers
        } else {
            config.text.num_hidden_layers
        };
        let matmul = k
            .families
            .iter()
            .find(|r| r.name == "matmul")
            .expect("products");
        assert!(
            matmul.launches >= passes * layers * 6,
            "{what}: {} products",
            matmul.launches
        );
        // Busy time is at most the span and at most the sum of the kernels (overlaps
        // count once); lavapipe gives device timestamps, so there is a span to measure.
        assert_eq!(k.host_timed, 0, "{what}: host-timed kernels on lavapipe");
        assert!(
            k.busy_ms > 0.0 && k.busy_ms <= k.span_ms * (1.0 + 1e-9),
            "{what}: {k:?}"
        );
        assert!(k.busy_ms <= k.kernel_ms * (1.0 + 1e-9), "{what}: {k:?}");
        assert!(k.table(5).contains("matmul"), "{what}");
    }

    // The CPU path: ViT-B/32's shapes with one layer a tower (the layer on host values
    // needs quick_gelu, which the fixtures above do not use). Batch 1 is one part with the
    // other engines lent to it; batch 9 is two parts (8 rows and 1).
    let mut config = ClipConfig::vit_b_32();
    config.vision.num_hidden_layers = 1;
    config.text.num_hidden_layers = 1;
    let flex = Device::flex();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let both = Profiles {
        kernels: true,
        stages: true,
    };
    let passes = 2;
    let results =
        monoscope::bench::run("cpu", &flex, &config, &[1, 9], (1, passes), both, |_| {}).unwrap();
    assert_eq!(results.len(), 4);
    for r in &results {
        let what = format!("{} batch {}", r.tower, r.batch);
        let k = r.kernels.as_ref().expect("asked for kernels");
        assert_eq!(
            (k.launches, k.kernel_ms, k.families.len()),
            (0, 0.0, 0),
            "{what}"
        );
        assert!(k.table(5).contains("no CubeCL kernels ran"), "{what}");

        let s = r.stages.as_ref().expect("asked for stages");
        assert_eq!(s.passes, passes);
        let (engines, parts, lent) = (s.ms(ENGINE_TIME), s.ms(PARTS), s.ms(LENT));
        assert!(parts > 0.0, "{what}: {s:?}");
        // No engine is busier than the wall time of the splits it works in.
        assert!(parts + lent <= engines * (1.0 + 1e-9), "{what}: {s:?}");
        let n_parts = r.batch.div_ceil(monoscope::base::engines::PART_ROWS);
        let count = |name: &str| {
            s.stages
                .iter()
                .find(|x| x.name == name)
                .map_or(0, |x| x.count)
        };
        assert_eq!(count(PARTS) as usize, n_parts * passes, "{what}");
        let layer_stages: Vec<_> = s
            .stages
            .iter()
            .filter(|x| x.name.starts_with("layer: "))
            .collect();
        if monoscope::clip::packed::enabled(&flex) {
            assert_eq!(layer_stages.len(), 6, "{what}: {s:?}");
            for x in &layer_stages {
                assert_eq!(x.count as usize, n_parts * passes, "{what}: {}", x.name);
            }
        } else {
            assert!(
                layer_stages.is_empty(),
                "{what}: the host path does not run here"
            );
        }
        let in_layers: f64 = layer_stages.iter().map(|x| x.ms).sum();
        assert!(in_layers <= parts * (1.0 + 1e-9), "{what}: {s:?}");
        // A lone part borrows the idle engines; with a part per engine none is idle.
        if r.batch == 1 && cores > 1 {
            assert!(count(LENT) > 0 && count(LENT_WAIT) > 0, "{what}: {s:?}");
        }
        // Every fork that lent work ran its own share and waited for the rest.
        assert_eq!(count(OWN), count(LENT_WAIT), "{what}: {s:?}");
        assert!(
            s.ms(OWN) + s.ms(LENT_WAIT) <= parts * (1.0 + 1e-9),
            "{what}: {s:?}"
        );
        if cores == 1 {
            assert_eq!(count(LENT), 0, "{what}: {s:?}");
        }
        assert!(s.table().contains("running parts"), "{what}");
    }
    // Off again: work after the recording adds nothing to any later one.
    assert!(!monoscope::base::stages::on());
}

/// `analyze`'s top-m per feature picked on a GPU device (issue 12: only each batch's top m
/// read back) equals the host's scan of whole batches, exactly: values with ties (which
/// the device must break towards the lower row, as the host does), zeros and negatives,
/// random values, and a last batch shorter than m.
#[test]
fn device_top_m_equals_the_host_scan() {
    use burn::tensor::{Device, Tensor, TensorData};
    use monoscope::jobs::topm::TopM;

    let wgpu = wgpu();
    let (k, m, n, batch) = (33, 6, 203, 40);
    let mut state = 7u64;
    let ties: Vec<f32> = (0..n * k).map(|i| ((i * 7919) % 13) as f32 - 4.0).collect();
    let random: Vec<f32> = (0..n * k)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.3
        })
        .collect();
    for (what, vals) in [("ties", ties), ("random", random)] {
        let (mut host, mut device) = (TopM::new(k, m), TopM::new(k, m));
        for (b, chunk) in vals.chunks(batch * k).enumerate() {
            let data = TensorData::new(chunk.to_vec(), [chunk.len() / k, k]);
            host.add_on_host(
                Tensor::<2>::from_data(data.clone(), &Device::flex()),
                b * batch,
            )
            .unwrap();
            device
                .add(Tensor::<2>::from_data(data, &wgpu), b * batch)
                .unwrap();
        }
        assert!(host.lists.iter().all(|l| l.len() == m), "{what}");
        assert_eq!(device.lists, host.lists, "{what}");
    }
}
