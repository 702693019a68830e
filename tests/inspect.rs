//! The lens the web page uses (bundle -> activations of new inputs) and occlusion heatmaps,
//! on the shipped demo model and bundle.

mod common;

use burn::tensor::Device;
use common::{TensorFile, demo_dir, demo_embedder, demo_lens, read};
use monoscope::base::host::host_rows as rows;
use monoscope::inspect::{Lens, Modality, occlusion_drops, occlusions};

/// TopK SAE encoder written out with loops, from the raw safetensors file and the
/// manifest's means: the reference the lens must match.
fn reference_encode(x: &[f32], mean: &[f32], k: usize) -> Vec<f32> {
    let st = TensorFile::open(&demo_dir().join("bundle/dictionary.safetensors"));
    let [w_enc, b_enc, b_dec] = ["W_enc", "b_enc", "b_dec"].map(|n| st.get(n).f);
    let (d, kk) = (x.len(), b_enc.len());
    let mut pre = b_enc.clone();
    for i in 0..d {
        let xi = x[i] - mean[i] - b_dec[i];
        for (j, p) in pre.iter_mut().enumerate() {
            *p += xi * w_enc[i * kk + j];
        }
    }
    let mut sorted = pre.clone();
    sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
    let threshold = sorted[k - 1];
    pre.iter()
        .map(|&p| if p >= threshold { p.max(0.0) } else { 0.0 })
        .collect()
}

#[test]
fn lens_matches_a_hand_written_encoder_with_the_bundle_means() {
    let device = Device::flex();
    let e = demo_embedder(&device);
    let lens = demo_lens(&device);
    lens.check_model(e.config.projection_dim).unwrap();
    let means = lens.means.clone().expect("the demo bundle is centred");
    let (mi, mt) = (means.image, means.text);
    let k = 8; // the demo dictionary's TopK k (assets/demo/bundle/manifest.json)

    let img = e
        .preprocess(&read(demo_dir().join("images/scene-0.png")))
        .unwrap();
    let x_img = rows(e.embed_pixels(&[img]).unwrap()).unwrap().remove(0);
    let x_txt = rows(e.embed_texts(&["a big red box in the center"]).unwrap())
        .unwrap()
        .remove(0);
    for (x, mean, m) in [
        (&x_img, &mi, Modality::Image),
        (&x_txt, &mt, Modality::Text),
    ] {
        let got = rows(lens.encode(std::slice::from_ref(x), m).unwrap())
            .unwrap()
            .remove(0);
        let want = reference_encode(x, mean, k);
        // f32 sums of 32 products in a different order: 1e-5 is far above rounding
        // (~1e-7 relative) and far below the activations (~1e-1).
        for (j, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-5, "{m:?} feature {j}: {g} vs {w}");
        }
        assert_eq!(got.iter().filter(|v| **v > 0.0).count(), k, "{m:?}");
    }

    let s = lens.summary(Some("db1f0fa59e8ce2df"));
    assert_eq!(s.features, 256);
    assert_eq!(s.model_matches, Some(true));
    assert!(s.center && s.has_decoder);
    assert_eq!(s.class_counts.iter().sum::<usize>(), 256);
}

#[test]
fn lens_refuses_bad_bundles_with_clear_errors() {
    let device = Device::flex();
    let lens = demo_lens(&device);
    let err = lens.check_model(512).unwrap_err().to_string();
    assert!(err.contains("32-d") && err.contains("512-d"), "{err}");
    assert!(
        lens.encode(&[vec![0.0; 31]], Modality::Image)
            .unwrap_err()
            .to_string()
            .contains("width 31")
    );

    let manifest: serde_json::Value =
        serde_json::from_slice(&read(demo_dir().join("bundle/manifest.json"))).unwrap();
    let features = read(demo_dir().join("bundle/features.json"));
    let weights = read(demo_dir().join("bundle/dictionary.safetensors"));
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut m = manifest.clone();
        edit(&mut m);
        Lens::from_bytes(
            &serde_json::to_vec(&m).unwrap(),
            &features,
            &weights,
            &device,
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let e = with(&|m| m["dataset"]["modality_means"]["image"] = serde_json::json!([1.0, 2.0]));
    assert!(e.contains("modality_means.image has 2 values"), "{e}");
    let e = with(&|m| m["dataset"]["modality_means"] = serde_json::Value::Null);
    assert!(e.contains("modality_means is missing"), "{e}");
    let e = with(&|m| m["dataset"]["modality_means"]["text"] = serde_json::json!("x"));
    assert!(e.contains("list of numbers"), "{e}");
    // Truncated weights and malformed features are refused too.
    assert!(
        Lens::from_bytes(
            &read(demo_dir().join("bundle/manifest.json")),
            &features,
            &weights[..1000],
            &device
        )
        .is_err()
    );
    assert!(
        Lens::from_bytes(
            &read(demo_dir().join("bundle/manifest.json")),
            b"{}",
            &weights,
            &device
        )
        .is_err()
    );
}

#[test]
fn occlusion_heatmap_points_at_the_object() {
    // A single-object scene on a plain background: hiding patches of the object must
    // change the image's most active feature more than hiding background patches.
    use monoscope::world::scene::{SIZES, generate};
    let device = Device::flex();
    let e = demo_embedder(&device);
    let lens = demo_lens(&device);
    let v = &e.config.vision;
    let mut checked = 0;
    let mut wins = 0;
    for index in 0..400u64 {
        let s = generate(0, (3u64 << 40) + index, v.image_size as u32, 0);
        let f = &s.factors;
        if f.objects.len() != 1 || f.background != 0 || f.noise != 0 {
            continue;
        }
        let mut png = std::io::Cursor::new(Vec::new());
        s.image.write_to(&mut png, image::ImageFormat::Png).unwrap();
        let pixels = e.preprocess(png.get_ref()).unwrap();
        let (gr, gc, occ) =
            occlusions(&pixels, v.num_channels, v.image_size, v.patch_size).unwrap();
        let mut inputs = vec![pixels];
        inputs.extend(occ);
        let embeds = rows(e.embed_pixels(&inputs).unwrap()).unwrap();
        let acts = rows(lens.encode(&embeds, Modality::Image).unwrap()).unwrap();
        let drops = occlusion_drops(&acts[0], &acts[1..]);
        let kk = lens.features();
        assert_eq!(drops.len(), gr * gc * kk);
        let top = (0..kk)
            .max_by(|a, b| acts[0][*a].partial_cmp(&acts[0][*b]).unwrap())
            .unwrap();
        // Patches whose centre lies within the object's radius.
        let o = &f.objects[0];
        let r = SIZES[o.size].1 + 0.5 / gr as f32;
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for p in 0..gr * gc {
            let (cy, cx) = (
                ((p / gc) as f32 + 0.5) / gr as f32,
                ((p % gc) as f32 + 0.5) / gc as f32,
            );
            let near = (cx - o.x).abs() <= r && (cy - o.y).abs() <= r;
            let d = drops[p * kk + top].abs();
            if near { on.push(d) } else { off.push(d) }
        }
        if on.is_empty() || off.is_empty() {
            continue;
        }
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        checked += 1;
        if mean(&on) > mean(&off) {
            wins += 1;
        }
        if checked == 10 {
            break;
        }
    }
    eprintln!("object patches won in {wins} of {checked} scenes");
    assert!(
        checked >= 5,
        "only {checked} plain single-object scenes found"
    );
    assert!(
        wins * 10 >= checked * 8,
        "object patches drove the top feature more in only {wins} of {checked} scenes"
    );
}
