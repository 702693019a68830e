//! The three applications on the demo world, where the ground truth is known.

mod common;

use burn::tensor::Device;
use common::{TensorFile, cli, cli_ok, demo_dir, demo_embedder, demo_lens};
use monoscope::Embedder;
use monoscope::analysis::mds::FeatureClass;
use monoscope::apps::attack::{
    AttackConfig, AttackSummary, Objective, Pgd, outcome, perturbation_norms, summarize,
};
use monoscope::apps::cosine;
use monoscope::apps::probe::{Group, ProbeConfig, probe};
use monoscope::base::host::host_rows;
use monoscope::inspect::{Lens, Modality};
use monoscope::world::scene::{COLOURS, SHAPES, Scene, generate};

fn demo() -> (Embedder, Lens, Device) {
    let device = Device::flex();
    (demo_embedder(&device), demo_lens(&device), device)
}

/// Single-object held-out scenes (indices far from training and from other tests).
fn single_objects(side: u32, start: u64, n: usize, keep: impl Fn(&Scene) -> bool) -> Vec<Scene> {
    (0..u64::MAX)
        .map(|i| generate(0, start + i, side, 1))
        .filter(|s| s.factors.objects.len() == 1 && keep(s))
        .take(n)
        .collect()
}

fn pixels(e: &Embedder, s: &Scene) -> Vec<f32> {
    e.processor.pixels(&s.image).unwrap()
}

fn embed_texts(e: &Embedder, texts: &[String]) -> Vec<Vec<f32>> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    host_rows(e.embed_texts(&refs).unwrap()).unwrap()
}

#[test]
fn probe_on_a_shared_factor_colour_lives_in_crossd_features() {
    let (e, lens, _) = demo();
    let dec = lens.decoder().unwrap();
    let side = e.config.vision.image_size as u32;
    let colours = ["red", "blue"];
    let prompts: Vec<String> = colours.iter().map(|c| c.to_string()).collect();
    let t = embed_texts(&e, &prompts);
    let groups: Vec<Group> = colours
        .iter()
        .enumerate()
        .map(|(gi, c)| {
            let ci = COLOURS.iter().position(|(n, _)| n == c).unwrap();
            let scenes = single_objects(side, 5 << 40, 60, |s| s.factors.objects[0].colour == ci);
            let px: Vec<Vec<f32>> = scenes.iter().map(|s| pixels(&e, s)).collect();
            let emb = host_rows(e.embed_pixels(&px).unwrap()).unwrap();
            let acts = lens.activations(&emb, Modality::Image).unwrap();
            Group {
                name: c.to_string(),
                expected: gi,
                embeddings: emb,
                activations: acts,
            }
        })
        .collect();
    let r = probe(dec, &prompts, &t, &groups, &ProbeConfig::default()).unwrap();
    let acc = |g: usize, v: usize| r.groups[g].accuracy[v].accuracy;
    for g in 0..2 {
        let a: Vec<String> = r.groups[g]
            .accuracy
            .iter()
            .map(|a| {
                format!(
                    "{} {:.2} [{:.2},{:.2}]",
                    a.variant, a.accuracy, a.ci95[0], a.ci95[1]
                )
            })
            .collect();
        eprintln!("{}: {a:?}", r.groups[g].name);
        eprintln!("  movers: {:?}", r.groups[g].movers);
        let ci = r.groups[g].accuracy[0].ci95;
        assert!(ci[0] <= acc(g, 0) && acc(g, 0) <= ci[1]);
        assert_eq!(r.groups[g].accuracy[0].total, 60);
    }
    // The CLIP embedding and the reconstruction both tell the colours apart.
    for g in 0..2 {
        assert!(acc(g, 0) >= 0.9, "clip accuracy {}", acc(g, 0));
        assert!(acc(g, 1) >= 0.8, "reconstruction accuracy {}", acc(g, 1));
    }
    // Colour is a shared factor: removing CrossD features hurts most.
    let mean = |v: usize| (acc(0, v) + acc(1, v)) / 2.0;
    assert!(
        mean(4) < mean(2) && mean(4) < mean(3),
        "without ImgD {:.2}, TextD {:.2}, CrossD {:.2}",
        mean(2),
        mean(3),
        mean(4)
    );
}

/// Which factor the zero-shot prompts ask about.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Task {
    /// "a {colour} {true shape}" for the six colours.
    Colour,
    /// "a {true colour} {shape}" for the four shapes.
    Shape,
}

/// Attacks 60 single-object held-out scenes toward the nearest wrong prompt of `task`
/// with the default PGD (10 steps, step eps/4) at `eps`; returns the summary and the
/// clean zero-shot accuracy.
fn attack_scenes(task: Task, eps: f32, objective: Objective) -> (AttackSummary, f64) {
    let (e, lens, device) = demo();
    let dec = lens.decoder().unwrap();
    let side = e.config.vision.image_size as u32;
    let scenes = single_objects(side, 6 << 40, 60, |_| true);
    let px: Vec<Vec<f32>> = scenes.iter().map(|s| pixels(&e, s)).collect();
    let clean_emb = host_rows(e.embed_pixels(&px).unwrap()).unwrap();
    let (mut labels, mut targets, mut target_idx, mut truths) = (vec![], vec![], vec![], vec![]);
    for (s, x) in scenes.iter().zip(&clean_emb) {
        let o = &s.factors.objects[0];
        let (texts, truth): (Vec<String>, usize) = match task {
            Task::Colour => (
                COLOURS
                    .iter()
                    .map(|(c, _)| format!("a {c} {}", SHAPES[o.shape]))
                    .collect(),
                o.colour,
            ),
            Task::Shape => (
                SHAPES
                    .iter()
                    .map(|sh| format!("a {} {sh}", COLOURS[o.colour].0))
                    .collect(),
                o.shape,
            ),
        };
        let t = embed_texts(&e, &texts);
        // Target: the prompt CLIP finds most similar after the true one (the nearest wrong
        // class, the usual choice when no target is given).
        let target = (0..t.len())
            .filter(|&j| j != truth)
            .max_by(|&a, &b| cosine(x, &t[a]).partial_cmp(&cosine(x, &t[b])).unwrap())
            .unwrap();
        targets.push(t[target].clone());
        target_idx.push(target);
        truths.push(truth);
        labels.push(t);
    }
    let config = AttackConfig {
        eps,
        objective,
        ..AttackConfig::default()
    };
    let mut pgd = Pgd::new(
        &e.model,
        &e.processor,
        &px,
        &targets,
        Some(&lens),
        config,
        &device,
    )
    .unwrap()
    .with_labels(&labels, &target_idx)
    .unwrap();
    let mut objectives = Vec::new();
    while !pgd.done() {
        objectives.push(pgd.step().into_scalar::<f32>());
    }
    assert!(objectives.last() > objectives.first(), "{objectives:?}");
    let (clean01, adv01) = pgd.images();
    let n = scenes.len();
    let host = |t: burn::tensor::Tensor<4>| {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    };
    let norms = perturbation_norms(&host(clean01), &host(adv01), n);
    let adv_emb = host_rows(e.model.embed_images(pgd.adversarial_pixels())).unwrap();
    let zc = lens.activations(&clean_emb, Modality::Image).unwrap();
    let za = lens.activations(&adv_emb, Modality::Image).unwrap();
    let outcomes: Vec<_> = (0..n)
        .map(|i| {
            outcome(
                dec,
                &labels[i],
                target_idx[i],
                (&clean_emb[i], &zc[i]),
                (&adv_emb[i], &za[i]),
                norms[i].0,
                norms[i].1,
            )
        })
        .collect();
    let clean_right = (0..n).filter(|&i| outcomes[i].clean == truths[i]).count();
    let s = summarize(config, &outcomes, &lens.classes);
    eprintln!(
        "{task:?} {objective:?} eps {:.4}: clean accuracy {clean_right}/{n}, {}",
        eps,
        serde_json::to_string(&s).unwrap()
    );
    (s, clean_right as f64 / n as f64)
}

#[test]
fn attack_on_the_demo_world_at_eps_8_over_255() {
    let eps = 8.0 / 255.0;
    // Shapes: the bar (>= 80% success on >= 50 images at eps 8/255).
    let (shape, clean) = attack_scenes(Task::Shape, eps, Objective::Embedding);
    assert!(clean >= 0.8, "clean shape accuracy {clean}");
    assert!(shape.attacked >= 50, "{} attacked", shape.attacked);
    assert!(
        shape.success_rate >= 0.8,
        "shape success {:.2}",
        shape.success_rate
    );
    assert!(
        shape.mean_linf <= eps as f64 + 1e-6,
        "linf {}",
        shape.mean_linf
    );
    // Colours are the demo CLIP's most robust factor (large saturated patches leave
    // little room inside [0, 1]): measured 72% here; the test pins >= 60%.
    let (colour, clean) = attack_scenes(Task::Colour, eps, Objective::Embedding);
    assert!(clean >= 0.95, "clean colour accuracy {clean}");
    assert!(
        colour.success_rate >= 0.6,
        "colour success {:.2}",
        colour.success_rate
    );
    // The defense rows count what they claim to.
    for s in [&shape, &colour] {
        for row in &s.defense {
            assert_eq!(row.of, s.successes);
            assert!(row.restored <= row.of && row.clean_kept <= row.clean_total);
        }
        assert_eq!(s.defense[0].removed, FeatureClass::ImgD);
        assert_eq!(s.defense[1].removed, FeatureClass::TextD);
    }
}

#[test]
fn class_restricted_attack_moves_mostly_that_class() {
    // Restricted to CrossD features, the attack must change CrossD activations more
    // (per feature) than ImgD or TextD ones.
    let (s, _) = attack_scenes(
        Task::Colour,
        8.0 / 255.0,
        Objective::Class(FeatureClass::CrossD),
    );
    let p = s.class_shift_per_feature;
    assert!(
        p[2] > p[0] && p[2] > p[1],
        "per-feature shift ImgD/TextD/CrossD {p:?}"
    );
}

#[test]
fn control_removing_crossd_changes_the_decoded_colour_more_than_textd() {
    use burn::tensor::{Tensor, TensorData};
    use monoscope::apps::control::{Scales, edit};
    use monoscope::world::decoder::from_bytes;
    let (e, lens, device) = demo();
    let dec = lens.decoder().unwrap();
    let dir = demo_dir().join("decoder");
    let image_decoder = from_bytes(
        &std::fs::read(dir.join("decoder.json")).unwrap(),
        &std::fs::read(dir.join("decoder.safetensors")).unwrap(),
        &device,
    )
    .unwrap();
    let decode = |v: &[f32]| -> Vec<f32> {
        let x = Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, v.len()]), &device);
        image_decoder
            .forward(x)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    };
    let l1 = |a: &[f32], b: &[f32]| {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
    };
    let scaled = |class: usize, s: f32| {
        let mut sc = Scales::default();
        sc.class[class] = s;
        sc
    };
    let (mut cross, mut text0, mut text2, mut wins) = (0f32, 0f32, 0f32, 0);
    let mut n = 0;
    for (c, _) in COLOURS {
        for sh in SHAPES {
            let x = embed_texts(&e, &[format!("a {c} {sh}")]).remove(0);
            let z = lens
                .activations(std::slice::from_ref(&x), Modality::Text)
                .unwrap()
                .remove(0);
            let same = edit(dec, &x, &z, Modality::Text, &Scales::default()).unwrap();
            // All scales 1: the edit is the identity (the residual is kept).
            assert!(cosine(&same.embedding, &x) > 0.9999);
            let base = decode(&x);
            let change = |s: Scales| {
                let ed = edit(dec, &x, &z, Modality::Text, &s).unwrap();
                l1(&decode(&ed.embedding), &base)
            };
            let (a, b, b2) = (
                change(scaled(2, 0.0)),
                change(scaled(1, 0.0)),
                change(scaled(1, 2.0)),
            );
            cross += a;
            text0 += b;
            text2 += b2;
            wins += usize::from(a > b.max(b2));
            n += 1;
        }
    }
    let (cross, text0, text2) = (cross / n as f32, text0 / n as f32, text2 / n as f32);
    eprintln!(
        "mean |pixel change| (0..1): CrossD removed {cross:.4}, TextD removed {text0:.4}, TextD x2 {text2:.4}; CrossD larger in {wins}/{n} prompts"
    );
    assert!(
        cross > 1.5 * text0.max(text2),
        "{cross} vs {text0} / {text2}"
    );
    assert!(wins * 10 >= n * 8, "{wins}/{n}");
}

#[test]
fn cli_probe_attack_and_control_end_to_end() {
    let tmp = std::env::temp_dir().join(format!("monoscope-apps-cli-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (e, _, _) = demo();
    let side = e.config.vision.image_size as u32;
    // Two groups of single-object scenes by colour, plus a corrupt file in one group.
    for (name, colour) in [("red", 0usize), ("blue", 2)] {
        assert_eq!(COLOURS[colour].0, name);
        let dir = tmp.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let scenes = single_objects(side, 7 << 40, 8, |s| s.factors.objects[0].colour == colour);
        for (i, s) in scenes.iter().enumerate() {
            s.image.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
    std::fs::write(tmp.join("red/broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let run = |args: &[&str]| cli_ok(args, None);
    let model = demo_dir().join("clip");
    let bundle = demo_dir().join("bundle");
    let (m, b) = (model.to_str().unwrap(), bundle.to_str().unwrap());
    let t = |p: &str| tmp.join(p).to_str().unwrap().to_string();

    let (out, err) = run(&[
        "probe",
        "--model",
        m,
        "--bundle",
        b,
        "--group",
        &t("red"),
        "--group",
        &t("blue"),
        "--prompt",
        "red",
        "--prompt",
        "blue",
        "--bootstrap",
        "200",
        "--json",
        &t("probe.json"),
    ]);
    assert!(err.contains("broken.png: skipped"), "{err}");
    assert!(out.contains("without CrossD"), "{out}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.join("probe.json")).unwrap()).unwrap();
    assert_eq!(report["groups"].as_array().unwrap().len(), 2);
    assert_eq!(report["groups"][0]["accuracy"].as_array().unwrap().len(), 5);
    assert_eq!(report["groups"][0]["accuracy"][0]["total"], 8);

    let labels: Vec<String> = COLOURS
        .iter()
        .map(|(c, _)| format!("a {c} circle"))
        .collect();
    let mut args: Vec<String> = ["attack", "--model", m, "--bundle", b, "--image"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(t("blue"));
    for l in &labels {
        args.extend(["--label".to_string(), l.clone()]);
    }
    args.extend(
        ["--eps", "8/255", "--steps", "3", "--out", &t("attack")]
            .iter()
            .map(|s| s.to_string()),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, _) = run(&refs);
    assert!(
        out.contains("success") && out.contains("defense without ImgD"),
        "{out}"
    );
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.join("attack/report.json")).unwrap()).unwrap();
    assert_eq!(rep["images"].as_array().unwrap().len(), 8);
    for f in [
        "0000-clean.png",
        "0000-adversarial.png",
        "0000-difference.png",
    ] {
        let img = image::open(tmp.join("attack").join(f)).unwrap();
        assert_eq!(img.width(), side);
    }
    // Bad requests are clear errors.
    let (ok, _, stderr) = cli(
        &[
            "attack",
            "--model",
            m,
            "--bundle",
            b,
            "--image",
            &t("blue"),
            "--label",
            "a",
            "--label",
            "b",
            "--target",
            "c",
        ],
        None,
    );
    assert!(!ok);
    assert!(stderr.contains("not one of the --label"));

    let (out, _) = run(&[
        "control",
        "--model",
        m,
        "--bundle",
        b,
        "--prompt",
        "a red circle",
        "--crossd",
        "0",
        "--feature",
        "3=2",
        "--out",
        &t("edit/red.safetensors"),
        "--decoder",
        demo_dir().join("decoder").to_str().unwrap(),
    ]);
    assert!(out.contains("cosine to the original"), "{out}");
    let (ok, _, stderr) = cli(
        &[
            "control",
            "--model",
            m,
            "--bundle",
            b,
            "--prompt",
            "  ",
            "--out",
            &t("x.safetensors"),
        ],
        None,
    );
    assert!(!ok);
    assert!(stderr.contains("empty prompt"));
    let edited = TensorFile::open(&tmp.join("edit/red.safetensors"));
    assert_eq!(edited.get("embedding").shape, [1, 32]);
    let npy = std::fs::read(tmp.join("edit/red.npy")).unwrap();
    assert!(npy.starts_with(b"\x93NUMPY") && npy.len() > 32 * 4);
    for f in ["edit/red.before.png", "edit/red.after.png"] {
        assert!(image::open(tmp.join(f)).is_ok(), "{f}");
    }
    std::fs::remove_dir_all(&tmp).ok();
}
