//! Tokenizer and preprocessing against their references, and bad inputs: every one must
//! give a clear error, never a panic.

mod common;

use burn::tensor::Device;
use common::*;
use monoscope::clip::preprocess::ImageProcessor;
use monoscope::clip::tokenizer::ClipTokenizer;
use monoscope::{Embedder, Error, ModelFiles};

fn tokenizer() -> ClipTokenizer {
    let json = std::fs::read(root().join("assets/clip-tokenizer/tokenizer.json")).unwrap();
    ClipTokenizer::from_bytes(&json, 77).unwrap()
}

#[test]
fn tokenizer_matches_transformers_and_open_clip() {
    let tok = tokenizer();
    let cases: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("tests/fixtures/tokenizer_cases.json")).unwrap(),
    )
    .unwrap();
    let cases = cases
        .as_array()
        .or_else(|| cases["cases"].as_array())
        .expect("a list of cases");
    assert!(cases.len() >= 50, "only {} tokenizer cases", cases.len());
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let mut same_as_open_clip = 0;
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let got = tok.encode(text).unwrap();
        assert!(got.ids.len() <= 77);
        assert_eq!(
            got.ids,
            ids(&case["hf_ids"]),
            "transformers disagrees on {text:?}"
        );
        let oc = ids(&case["open_clip_ids"]);
        if case["differs"].as_bool() == Some(true) {
            assert_ne!(
                got.ids, oc,
                "case {text:?} is marked as differing but does not"
            );
        } else {
            assert_eq!(got.ids, oc, "open_clip disagrees on {text:?}");
            same_as_open_clip += 1;
        }
    }
    // The known differences (ftfy / HTML unescaping and literal special tokens in
    // open_clip) are the exception: each is marked in the fixture and checked above.
    assert!(
        same_as_open_clip >= 50,
        "only {same_as_open_clip} of {} match open_clip",
        cases.len()
    );
}

#[test]
fn long_prompts_are_truncated_with_eos_last() {
    let tok = tokenizer();
    let long = "a very long prompt ".repeat(40);
    let e = tok.encode(&long).unwrap();
    assert!(e.truncated);
    assert_eq!(e.ids.len(), 77);
    assert_eq!(*e.ids.last().unwrap(), tok.eos());
    let empty = tok.encode("").unwrap();
    assert_eq!(empty.ids.len(), 2);
    assert!(!empty.truncated);
}

#[test]
fn preprocessing_matches_clip_image_processor() {
    let dir = root().join("tests/fixtures/images");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("preprocess.json")).unwrap()).unwrap();
    let reference = TensorFile::open(&dir.join("preprocess_reference.safetensors"));
    let size = meta["processor"]["size"]["shortest_edge"].as_u64().unwrap() as usize;
    let p = ImageProcessor::for_size(size);
    let images = meta["images"].as_array().unwrap();
    assert!(images.len() >= 8);
    for img in images {
        let (key, file) = (img["key"].as_str().unwrap(), img["file"].as_str().unwrap());
        let bytes = std::fs::read(dir.join(file)).unwrap();
        // Decoding and RGB conversion (alpha over white, first GIF frame): JPEG decoders
        // may differ by a few levels, lossless formats must agree exactly.
        let rgb = p.decode(&bytes).unwrap_or_else(|e| panic!("{key}: {e}"));
        let want_rgb = reference.get(&format!("rgb.{key}"));
        assert_eq!(
            want_rgb.shape,
            vec![rgb.height() as usize, rgb.width() as usize, 3],
            "{key}"
        );
        let worst = rgb
            .as_raw()
            .iter()
            .zip(&want_rgb.u)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        let limit = if file.ends_with(".jpg") { 8 } else { 1 };
        assert!(
            worst <= limit,
            "{key}: decoded pixels differ by up to {worst}"
        );

        let got = p.pixels(&rgb).unwrap();
        let m = mean_abs_diff(&got, &reference.get(key).f);
        // PIL and the image crate use the same cubic kernel but differ in fixed-point
        // rounding; the bar is 0.02 mean absolute difference in normalised units.
        assert!(m <= 0.02, "{key}: mean abs diff {m}");
    }
}

#[test]
fn bad_images_give_errors() {
    let p = ImageProcessor::for_size(32);
    let dir = root().join("tests/fixtures/images");
    for bad in ["not_an_image.png", "truncated.jpg"] {
        match p.process(&std::fs::read(dir.join(bad)).unwrap()) {
            Err(Error::Image(_)) => {}
            Err(other) => panic!("{bad}: wrong error kind: {other}"),
            Ok(_) => panic!("{bad} was accepted"),
        }
    }
    assert!(matches!(p.process(&[]), Err(Error::Image(_))));
    // A header claiming a huge image is refused before any pixel is decoded.
    let mut small = ImageProcessor::for_size(32);
    small.max_pixels = 100;
    match small.process(&std::fs::read(dir.join("coffee.jpg")).unwrap()) {
        Err(err) => assert!(
            err.to_string().contains("more than the 100 accepted"),
            "{err}"
        ),
        Ok(_) => panic!("an image over the pixel limit was accepted"),
    }
}

/// Photos come in layouts the fixtures above do not cover (`scripts/make_image_fixtures.py`):
/// each decodes to the RGB pixels PIL gives transformers' CLIPProcessor (first frame,
/// alpha over white), within what two JPEG decoders' rounding allows; the size is the
/// stored one (EXIF orientation is ignored, as PIL's `Image.open` and so transformers do).
/// One deliberate difference: for 16-bit images PIL clamps each value to 255 (a mostly
/// white picture) while monoscope scales by 257 (the picture as it looks).
#[test]
fn photo_layouts_decode_like_pil() {
    let dir = root().join("tests/fixtures/images/layouts");
    let expected: serde_json::Value =
        serde_json::from_slice(&read(dir.join("expected.json"))).unwrap();
    let processor = ImageProcessor::for_size(32);
    for (name, e) in expected.as_object().unwrap() {
        let rgb = processor
            .decode(&read(dir.join(name)))
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        let size = [rgb.width() as u64, rgb.height() as u64];
        assert_eq!(
            size.to_vec(),
            e["size"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect::<Vec<_>>(),
            "{name}"
        );
        let hex = e["rgb"].as_str().unwrap();
        let pil: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let ours = rgb.into_raw();
        if name == "gray16.png" {
            // Ours: the 16-bit values / 257; PIL's: min(value, 255).
            assert!(
                pil.iter().filter(|&&v| v == 255).count() > pil.len() * 9 / 10,
                "{name}"
            );
            let mean = ours.iter().map(|&v| v as f64).sum::<f64>() / ours.len() as f64;
            assert!((mean - 127.5).abs() < 5.0, "{name}: mean {mean}");
            continue;
        }
        let mean_abs = ours
            .iter()
            .zip(&pil)
            .map(|(&a, &b)| (a as f64 - b as f64).abs())
            .sum::<f64>()
            / ours.len() as f64;
        // Lossless layouts are exact; JPEG decoders (zune-jpeg here, libjpeg in PIL) differ
        // in IDCT and chroma upsampling rounding by a level or two per pixel.
        let tolerance = if name.ends_with(".jpg") { 3.0 } else { 0.0 };
        assert!(
            mean_abs <= tolerance,
            "{name}: mean abs difference {mean_abs} from PIL"
        );
    }
}

fn fixture_files(dir: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let d = root().join(dir);
    (
        read(d.join("config.json")),
        read(d.join("model.safetensors")),
        read(d.join("tokenizer.json")),
    )
}

fn load(config: &[u8], weights: &[u8], tokenizer: &[u8]) -> Result<Embedder, Error> {
    Embedder::from_bytes(
        ModelFiles {
            config,
            weights,
            tokenizer,
            preprocessor: None,
        },
        &Device::flex(),
    )
}

#[test]
fn bad_checkpoints_give_errors_naming_the_problem() {
    let (config, weights, tok) = fixture_files("tests/fixtures/tiny-gelu");
    assert!(load(&config, &weights, &tok).is_ok());

    let err = load(&config, &weights[..weights.len() / 2], &tok).unwrap_err();
    assert!(matches!(err, Error::Weights(_)), "{err}");

    // A config that disagrees with the tensors: every affected tensor is named.
    let mut c: serde_json::Value = serde_json::from_slice(&config).unwrap();
    c["text_config"]["intermediate_size"] = 48.into();
    let err = load(&serde_json::to_vec(&c).unwrap(), &weights, &tok)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("text_model.encoder.layers.0.mlp.fc1.weight"),
        "{err}"
    );
    assert!(
        err.contains("text_model.encoder.layers.1.mlp.fc2.weight"),
        "{err}"
    );

    // One layer fewer in the config: the checkpoint's extra tensors are unexpected.
    let mut c: serde_json::Value = serde_json::from_slice(&config).unwrap();
    c["vision_config"]["num_hidden_layers"] = 1.into();
    let err = load(&serde_json::to_vec(&c).unwrap(), &weights, &tok)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unexpected tensor vision_model.encoder.layers.1."),
        "{err}"
    );

    let mut c: serde_json::Value = serde_json::from_slice(&config).unwrap();
    c["text_config"]
        .as_object_mut()
        .unwrap()
        .remove("hidden_size");
    let err = load(&serde_json::to_vec(&c).unwrap(), &weights, &tok)
        .unwrap_err()
        .to_string();
    assert_eq!(err, "config: text_config.hidden_size is missing");

    let err = load(&config, &weights, b"{}").unwrap_err();
    assert!(matches!(err, Error::Tokenizer(_)), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    let (config, weights, tok) = fixture_files("tests/fixtures/tiny-gelu");
    let file = TensorFile::from_bytes(weights);
    let st = file.parse();
    let dropped = "vision_model.post_layernorm.bias";
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != dropped)
        .collect();
    let bytes = safetensors::serialize(kept, None).unwrap();
    let err = load(&config, &bytes, &tok).unwrap_err().to_string();
    assert!(err.contains(&format!("missing tensor {dropped}")), "{err}");
}

#[test]
fn every_checkpoint_tensor_is_used_and_round_trips() {
    // Loading succeeds only if no tensor is missing or unused; saving writes the same
    // names and values back.
    let (config, weights, tok) = fixture_files("tests/fixtures/tiny-gelu");
    let e = load(&config, &weights, &tok).unwrap();
    let saved = monoscope::io::weights::save_module(&e.model).unwrap();
    let a = TensorFile::from_bytes(weights);
    let b = TensorFile::from_bytes(saved);
    let names = a.names();
    assert_eq!(names, b.names());
    for n in &names {
        assert_eq!(a.raw(n), b.raw(n), "{n}");
    }
}

#[test]
fn cli_embed_writes_the_documented_json() {
    let (stdout, _) = cli_ok(
        &[
            "embed",
            "--model",
            "assets/tiny-clip",
            "--image",
            "tests/fixtures/images/coffee.jpg",
            "--image",
            "tests/fixtures/images/gray.png",
            "--text",
            "a cup of coffee",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["images"].as_array().unwrap().len(), 2);
    assert_eq!(v["texts"][0], "a cup of coffee");
    for e in v["image_embeds"]
        .as_array()
        .unwrap()
        .iter()
        .chain(v["text_embeds"].as_array().unwrap())
    {
        let x: Vec<f32> = e
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_f64().unwrap() as f32)
            .collect();
        let norm: f32 = x.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}

#[test]
fn cli_errors_are_one_line() {
    for args in [
        vec![
            "embed",
            "--model",
            "assets/tiny-clip",
            "--image",
            "tests/fixtures/images/not_an_image.png",
        ],
        vec![
            "embed",
            "--model",
            "assets/tiny-clip",
            "--image",
            "no/such/file.png",
        ],
        vec!["embed", "--model", "no/such/dir", "--text", "x"],
        vec!["embed", "--model", "tests/fixtures/images", "--text", "x"],
        vec!["info", "--model", "no/such/dir"],
    ] {
        let (ok, _, stderr) = cli(&args, None);
        assert!(!ok, "{args:?} should fail");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
    let (stdout, _) = cli_ok(&["info", "--model", "tests/fixtures/tiny-legacy"], None);
    assert!(
        stdout.contains("ArgmaxId") && stdout.contains("parameters:"),
        "{stdout}"
    );
}

#[test]
fn init_writes_a_real_architecture_that_loads() {
    // ViT-B/32 in f16 (302 MB): the real shape and tokenizer, written, read back, used.
    let dir = std::env::temp_dir().join(format!("monoscope-init-{}", std::process::id()));
    let out = dir.to_str().unwrap();
    cli_ok(
        &[
            "init", "--preset", "vit-b-32", "--dtype", "f16", "--out", out,
        ],
        None,
    );
    let (stdout, _) = cli_ok(&["info", "--model", out], None);
    // openai/clip-vit-base-patch32's parameter count (transformers' num_parameters()).
    assert!(stdout.contains("parameters: 151277313"), "{stdout}");
    let weights = read(dir.join("model.safetensors"));
    let file = TensorFile::from_bytes(weights);
    let names = file.names();
    assert_eq!(names.len(), 398, "tensors of CLIPModel without buffers");
    let e = Embedder::from_dir(&dir, &Device::flex()).unwrap();
    // The real BPE vocabulary: "a photo of a cat" as CLIP's tokenizer encodes it.
    let ids = e.tokenizer.encode("a photo of a cat").unwrap().ids;
    assert_eq!(&ids[..6], &[49406, 320, 1125, 539, 320, 2368]);
    let t =
        monoscope::base::host::host_rows(e.embed_texts(&["a photo of a cat"]).unwrap()).unwrap();
    assert_eq!(t[0].len(), 512);
    assert!(t[0].iter().all(|x| x.is_finite()));
    std::fs::remove_dir_all(&dir).ok();
    let (ok, _, err) = cli(&["init", "--preset", "vit-x", "--out", out], None);
    assert!(!ok && err.contains("vit-b-32"), "{err}");
}
