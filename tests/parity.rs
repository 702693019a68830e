//! Parity with transformers' `CLIPModel` on the random-init fixtures of
//! `scripts/make_fixtures.py` (both activations, f16 and f32 weights, the legacy config),
//! for the towers and every hidden state on each backend the CLI offers (`--backend cpu`:
//! flex; `--backend wgpu`: Vulkan, lavapipe on the CI machines).
//!
//! Tolerances: embeddings are unit vectors computed in f32 by both sides; only the order
//! of floating-point sums differs (burn's matmul vs MKL), which moves results by ~1e-6,
//! so 1e-4 (the bar) leaves a wide margin while still catching any real error
//! (a wrong activation, mask or pooling index moves embeddings by > 1e-2). Hidden states
//! are not normalised, so their bound scales with their magnitude.

mod common;

use burn::tensor::Device;
use common::*;
use monoscope::Embedder;
use monoscope::base::host::host_rows as rows;
use monoscope::clip::TextBatch;

/// Every backend value of the CLI. No wgpu adapter is a failure, not a skip:
/// scripts/install-tools.sh installs lavapipe (mesa-vulkan-drivers) for this test. The wgpu
/// runtime can be set up once per process, and the tests share it.
fn devices() -> Vec<(&'static str, Device)> {
    static WGPU: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    let wgpu = WGPU.get_or_init(|| {
        Device::wgpu_options().init().unwrap_or_else(|e| {
            panic!("no wgpu adapter (apt-get install mesa-vulkan-drivers): {e}")
        })
    });
    vec![("cpu", Device::flex()), ("wgpu", wgpu.clone())]
}

/// The fixture models on every backend: (backend name, device, fixture dir).
fn cases() -> Vec<(&'static str, Device, &'static str)> {
    devices()
        .into_iter()
        .flat_map(|(b, d)| FIXTURES.iter().map(move |f| (b, d.clone(), *f)))
        .collect()
}

fn load(dir: &str, device: &Device) -> (Embedder, TensorFile, serde_json::Value) {
    let d = root().join(dir);
    let embedder = Embedder::from_dir(&d, device).unwrap_or_else(|e| panic!("{dir}: {e}"));
    let reference = TensorFile::open(&d.join("reference.safetensors"));
    let meta: serde_json::Value = serde_json::from_slice(&read(d.join("reference.json"))).unwrap();
    (embedder, reference, meta)
}

fn flat(t: burn::tensor::Tensor<3>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn states_bound(reference: &[f32]) -> f32 {
    1e-4 * (1.0 + reference.iter().fold(0f32, |m, x| m.max(x.abs())))
}

#[test]
fn vision_tower_matches_transformers() {
    for (backend, device, dir) in cases() {
        let (e, r, _) = load(dir, &device);
        let dir = format!("{dir} on {backend}");
        let pv = r.get("pixel_values");
        let [b, c, h, w] = pv.shape[..] else {
            panic!("pixel_values rank")
        };
        let pixels: Vec<Vec<f32>> = pv.f.chunks(c * h * w).map(<[f32]>::to_vec).collect();
        assert_eq!(pixels.len(), b);
        // Without the states the last layer computes the class token's row alone
        // (`Encoder::forward_pooled`): both passes must give transformers' embeddings.
        for keep_states in [false, true] {
            let (proj, out) = e
                .model
                .image_features(e.pixel_batch(&pixels).unwrap(), keep_states);
            let embeds: Vec<f32> = rows(monoscope::base::host::l2_normalize(proj))
                .unwrap()
                .concat();
            let d = max_abs_diff(&embeds, &r.get("image_embeds").f);
            assert!(d <= 1e-4, "{dir} ({keep_states}): image_embeds diff {d}");
            let pooled: Vec<f32> = rows(out.pooled).unwrap().concat();
            let want = r.get("vision_pooled").f;
            let d = max_abs_diff(&pooled, &want);
            assert!(
                d <= states_bound(&want),
                "{dir} ({keep_states}): vision_pooled diff {d}"
            );
            assert_eq!(out.hidden_states.is_empty(), !keep_states);
        }
        let (_, out) = e
            .model
            .image_features(e.pixel_batch(&pixels).unwrap(), true);
        assert_eq!(
            out.hidden_states.len(),
            e.config.vision.num_hidden_layers + 1
        );
        for (i, s) in out.hidden_states.into_iter().enumerate() {
            let want = r.get(&format!("vision_hidden_states.{i}")).f;
            let d = max_abs_diff(&flat(s), &want);
            assert!(
                d <= states_bound(&want),
                "{dir}: vision hidden state {i} diff {d}"
            );
        }
    }
}

#[test]
fn text_tower_matches_transformers() {
    for (backend, device, dir) in cases() {
        let (e, r, _) = load(dir, &device);
        let dir = format!("{dir} on {backend}");
        let ids = r.get("input_ids");
        let mask = r.get("attention_mask");
        let t = ids.shape[1];
        let seqs: Vec<Vec<u32>> = ids
            .i
            .chunks(t)
            .zip(mask.i.chunks(t))
            .map(|(row, m)| {
                row.iter()
                    .zip(m)
                    .filter(|(_, m)| **m == 1)
                    .map(|(id, _)| *id as u32)
                    .collect()
            })
            .collect();
        let batch = TextBatch::new(&seqs, &e.config.text, e.device()).unwrap();
        // Both passes: the last layer on the pooled rows alone, and on every row.
        for keep_states in [false, true] {
            let (proj, out) = e.model.text_features(&batch, keep_states);
            let embeds: Vec<f32> = rows(monoscope::base::host::l2_normalize(proj))
                .unwrap()
                .concat();
            let d = max_abs_diff(&embeds, &r.get("text_embeds").f);
            assert!(d <= 1e-4, "{dir} ({keep_states}): text_embeds diff {d}");
            let want = r.get("text_pooled").f;
            let d = max_abs_diff(&rows(out.pooled).unwrap().concat(), &want);
            assert!(
                d <= states_bound(&want),
                "{dir} ({keep_states}): text_pooled diff {d}"
            );
            assert_eq!(out.hidden_states.is_empty(), !keep_states);
        }
        let (_, out) = e.model.text_features(&batch, true);
        // Our batch is padded to its longest prompt, the reference to 77: compare the
        // real (unpadded) positions, which padding cannot influence in either.
        let tmax = seqs.iter().map(Vec::len).max().unwrap();
        for (i, s) in out.hidden_states.into_iter().enumerate() {
            let got = flat(s);
            let want = r.get(&format!("text_hidden_states.{i}"));
            let width = want.shape[2];
            for (row, seq) in seqs.iter().enumerate() {
                let g = &got[row * tmax * width..(row * tmax + seq.len()) * width];
                let w = &want.f[row * t * width..(row * t + seq.len()) * width];
                let d = max_abs_diff(g, w);
                assert!(
                    d <= states_bound(w),
                    "{dir}: text hidden state {i} row {row} diff {d}"
                );
            }
        }
    }
}

#[test]
fn end_to_end_files_and_prompts_match_transformers() {
    for dir in FIXTURES {
        let (e, r, meta) = load(dir, &Device::flex());
        let texts: Vec<&str> = meta["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let got = rows(e.embed_texts(&texts).unwrap()).unwrap();
        let want = r.get("text_embeds");
        let dim = want.shape[1];
        for (i, g) in got.iter().enumerate() {
            let w = &want.f[i * dim..(i + 1) * dim];
            assert!(
                max_abs_diff(g, w) <= 1e-4,
                "{dir}: prompt {:?} differs by {}",
                texts[i],
                max_abs_diff(g, w)
            );
        }

        let files: Vec<&str> = meta["image_files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            files.len() >= 4,
            "the fixture should cover photos and odd images"
        );
        let want_px = r.get("file_pixel_values");
        let want_emb = r.get("file_image_embeds");
        let n = want_px.f.len() / files.len();
        for (i, f) in files.iter().enumerate() {
            let px = e
                .preprocess(&std::fs::read(root().join(f)).unwrap())
                .unwrap();
            let m = mean_abs_diff(&px, &want_px.f[i * n..(i + 1) * n]);
            assert!(m <= 0.02, "{dir}: {f}: pixel mean abs diff {m}");
            let emb = rows(e.embed_pixels(&[px]).unwrap()).unwrap().remove(0);
            let cos = cosine(&emb, &want_emb.f[i * dim..(i + 1) * dim]);
            assert!(cos >= 0.999, "{dir}: {f}: cosine {cos}");
        }
    }
}

#[test]
fn pooling_rule_follows_the_config() {
    // Probe rows pool differently under the two rules: row 0 has no start/end token,
    // row 1 has two end tokens (see reference.json's probe_note).
    for dir in FIXTURES {
        let (e, r, _) = load(dir, &Device::flex());
        let ids = r.get("probe_input_ids");
        let t = ids.shape[1];
        let seqs: Vec<Vec<u32>> = ids
            .i
            .chunks(t)
            .map(|row| row.iter().map(|&x| x as u32).collect())
            .collect();
        let batch = TextBatch::new(&seqs, &e.config.text, e.device()).unwrap();
        let (proj, out) = e.model.text_features(&batch, false);
        let want = r.get("probe_text_pooled").f;
        let d = max_abs_diff(&rows(out.pooled).unwrap().concat(), &want);
        assert!(
            d <= states_bound(&want),
            "{dir}: probe pooled diff {d} (pooling {:?})",
            e.config.text.pooling()
        );
        let d = max_abs_diff(
            &rows(monoscope::base::host::l2_normalize(proj))
                .unwrap()
                .concat(),
            &r.get("probe_text_embeds").f,
        );
        assert!(d <= 1e-4, "{dir}: probe embeds diff {d}");
    }
}
