//! The demo world's generator and tokenizer.

mod common;

use common::{cli, cli_ok, demo_dir, demo_embedder};
use monoscope::clip::tokenizer::ClipTokenizer;
use monoscope::world::scene::{
    BACKGROUNDS, COLOURS, LIGHTING, NOISE, OUTLINES, SHAPES, SYNONYMS, generate,
};
use monoscope::world::vocab::{caption_words, tokenizer_json};

#[test]
fn scenes_are_deterministic() {
    for i in 0..20 {
        let a = generate(42, i, 32, 3);
        let b = generate(42, i, 32, 3);
        assert_eq!(a.image.as_raw(), b.image.as_raw());
        assert_eq!(a.factors, b.factors);
        assert_eq!(a.captions, b.captions);
    }
    assert_ne!(
        generate(42, 0, 32, 1).image.as_raw(),
        generate(43, 0, 32, 1).image.as_raw()
    );
}

#[test]
fn captions_carry_shared_factors_and_never_image_only_ones() {
    let image_only: Vec<&str> = BACKGROUNDS
        .iter()
        .chain(LIGHTING.iter())
        .chain(NOISE.iter().map(|n| &n.0))
        .chain(OUTLINES.iter())
        .copied()
        .filter(|w| !["plain", "none", "even", "clean"].contains(w))
        .collect();
    for i in 0..300 {
        let s = generate(7, i, 16, 4);
        assert!((1..=3).contains(&s.factors.objects.len()));
        for (text, style) in &s.captions {
            for w in &image_only {
                assert!(
                    !text.contains(w),
                    "caption {text:?} leaks image-only factor {w}"
                );
            }
            if style.typo {
                continue;
            }
            for o in &s.factors.objects {
                assert!(
                    text.contains(COLOURS[o.colour].0),
                    "{text:?} misses a colour"
                );
                let shape = SHAPES[o.shape];
                let syn = SYNONYMS
                    .iter()
                    .find(|(a, _)| *a == shape)
                    .map(|(_, b)| *b)
                    .unwrap_or(shape);
                assert!(
                    text.contains(shape) || text.contains(syn),
                    "{text:?} misses a shape"
                );
            }
        }
    }
}

#[test]
fn pixels_carry_the_object_colour() {
    let mut checked = 0;
    for i in 0..200 {
        let s = generate(3, i, 64, 1);
        let f = &s.factors;
        // Clean, evenly lit scenes: the object's centre pixel is its colour exactly
        // (a cross's centre is inside it too; outlines only touch the border).
        if NOISE[f.noise].0 != "clean" || LIGHTING[f.lighting] != "even" {
            continue;
        }
        for o in &f.objects {
            let (x, y) = ((o.x * 64.0) as u32, (o.y * 64.0) as u32);
            assert_eq!(s.image.get_pixel(x, y).0, COLOURS[o.colour].1, "scene {i}");
            checked += 1;
        }
    }
    assert!(checked > 10);
}

#[test]
fn word_level_tokenizer_loads_through_the_clip_path() {
    let words = caption_words(1, 400);
    let json = serde_json::to_vec(&tokenizer_json(&words)).unwrap();
    let tok = ClipTokenizer::from_bytes(&json, 32).unwrap();
    let eos = tok.eos();
    assert_eq!(
        eos as usize,
        words.len() + 3,
        "the end token has the largest id"
    );
    for i in 1000..1050 {
        for (text, style) in generate(1, i, 8, 2).captions {
            let ids = tok.encode(&text).unwrap().ids;
            assert_eq!(*ids.last().unwrap(), eos);
            assert_eq!(ids[0], eos - 1);
            if !style.typo {
                assert!(!ids.contains(&1), "{text:?} has an unknown word: {ids:?}");
            }
        }
    }
}

#[test]
fn world_train_smoke_writes_a_hub_style_model_that_embeds() {
    let dir = std::env::temp_dir().join(format!("monoscope-world-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let run = |args: &[&str]| cli_ok(args, None);
    let out = dir.to_str().unwrap();
    run(&[
        "world-train",
        "--out",
        out,
        "--steps",
        "4",
        "--batch",
        "8",
        "--side",
        "32",
        "--checkpoint-every",
        "2",
        "--eval-scenes",
        "20",
    ]);
    let (ok, stdout, err) = cli(
        &[
            "world-train",
            "--out",
            out,
            "--steps",
            "6",
            "--batch",
            "8",
            "--side",
            "32",
            "--resume",
            "--eval-scenes",
            "20",
        ],
        None,
    );
    assert!(ok && err.contains("resumed at step 4"), "{err}");
    let eval: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(eval["pairs"], 20);
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let scene = generate(0, 1 << 41, 32, 1);
    let png = dir.join("scene.png");
    scene.image.save(&png).unwrap();
    let (stdout, _) = run(&[
        "embed",
        "--model",
        out,
        "--image",
        png.to_str().unwrap(),
        "--text",
        "a red circle",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["image_embeds"][0].as_array().unwrap().len(), 32);

    // The rest of scripts/make_demo.sh's pipeline, in miniature.
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let (emb, dict, bundle, labels) = (
        p("emb.safetensors"),
        p("dict"),
        p("bundle"),
        p("labels.txt"),
    );
    run(&[
        "world-extract",
        "--model",
        out,
        "--scenes",
        "120",
        "--out",
        &emb,
    ]);
    run(&[
        "train",
        "--embeddings",
        &emb,
        "--kind",
        "topk",
        "--features",
        "64",
        "--k",
        "4",
        "--steps",
        "10",
        "--batch",
        "64",
        "--out",
        &dict,
    ]);
    run(&[
        "analyze",
        "--model",
        out,
        "--dict",
        &dict,
        "--embeddings",
        &emb,
        "--vocab",
        &labels,
        "--out",
        &bundle,
        "--min-support",
        "2",
    ]);
    let (ok, stdout, err) = cli(
        &[
            "world-factors",
            "--model",
            out,
            "--bundle",
            &bundle,
            "--scenes",
            "120",
        ],
        None,
    );
    assert!(
        ok && stdout.contains("factors land in the expected class"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn shipped_demo_meets_the_quality_bars_and_the_factor_table() {
    use monoscope::world::factors::{FactorKind, factor_table};
    use monoscope::world::train::{HELD_OUT_START, evaluate, extract_scenes};
    let root = demo_dir();
    let device = burn::tensor::Device::flex();
    let e = demo_embedder(&device);
    let world: serde_json::Value =
        serde_json::from_slice(&common::read(root.join("clip/world.json"))).unwrap();
    let seed = world["world"]["seed"].as_u64().unwrap();

    // Issue 4's bars, on 1000 held-out scenes.
    let q = evaluate(&e.model, &e.config, &e.tokenizer, seed, 1000, &device).unwrap();
    assert!(q.colour_accuracy >= 0.9, "{q:?}");
    assert!(q.shape_accuracy >= 0.9, "{q:?}");
    assert!(q.retrieval_r1 >= 0.5, "{q:?}");

    // The factor table on scenes neither the CLIP nor the dictionary saw; the bundle was
    // made with --center, so inputs are centred with its stored means (the one rule).
    let bundle = monoscope::io::bundle::load(&root.join("bundle"), &device).unwrap();
    assert!(bundle.manifest.analysis.center);
    let means = bundle
        .manifest
        .centring()
        .unwrap()
        .expect("a centred bundle has means");
    let file = extract_scenes(&e, seed, HELD_OUT_START + 2_000_000, 1000, |_| {}).unwrap();
    let pairs = file.pairs.centered_with(&means);
    let all: Vec<usize> = (0..pairs.n).collect();
    let enc = |image: bool| {
        let modality = if image {
            monoscope::base::Modality::Image
        } else {
            monoscope::base::Modality::Text
        };
        monoscope::base::host::host_rows(
            bundle
                .dictionary
                .encode(pairs.rows(image, &all, &device), modality),
        )
        .unwrap()
        .concat()
    };
    let classes: Vec<_> = bundle.features.features.iter().map(|f| f.class).collect();
    let table = factor_table(
        &enc(true),
        &enc(false),
        bundle.dictionary.features(),
        &file.meta.truth,
        &classes,
    );
    let right = table.iter().filter(|r| r.as_expected()).count();
    let summary: Vec<String> = table
        .iter()
        .map(|r| format!("{}:{:?}", r.factor, r.class))
        .collect();
    // Issue 4: a clear majority of factors land where expected (shared -> CrossD,
    // image-only -> ImgD, text-only -> TextD). The shipped demo gets 26 of 37 on its
    // own evaluation scenes; 60% leaves room for the sampling of these fresh scenes.
    assert!(
        right * 10 >= table.len() * 6,
        "{right} of {} as expected: {summary:?}",
        table.len()
    );
    let shared: Vec<_> = table
        .iter()
        .filter(|r| r.kind == FactorKind::Shared)
        .collect();
    let shared_right = shared.iter().filter(|r| r.as_expected()).count();
    assert!(
        shared_right * 4 >= shared.len() * 3,
        "{shared_right} of {} shared factors are CrossD",
        shared.len()
    );
}
