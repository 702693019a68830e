//! `monoscope compare` (issue 15): two small demo-world bundles of different kinds side
//! by side; the table, the JSON and the SVG agree with the bundles, a bundle compared with
//! itself matches every live atom to itself, and the Bridge Scores equal a brute-force
//! computation from the bundle's activations.

mod common;

use burn::tensor::Device;
use common::{cli, cli_ok};
use monoscope::base::Modality;
use monoscope::inspect::Lens;
use monoscope::io::embeddings::EmbeddingsFile;

#[test]
fn compare_two_demo_bundles() {
    let dir = std::env::temp_dir().join(format!("monoscope-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |s: &str| dir.join(s).display().to_string();
    cli_ok(
        &[
            "world-extract",
            "--model",
            "assets/demo/clip",
            "--seed",
            "5",
            "--scenes",
            "400",
            "--out",
            &p("emb.safetensors"),
        ],
        None,
    );
    for kind in ["topk", "jumprelu"] {
        cli_ok(
            &[
                "train",
                "--embeddings",
                &p("emb.safetensors"),
                "--kind",
                kind,
                "--features",
                "48",
                "--k",
                "4",
                "--l0",
                "1.5e-2",
                "--steps",
                "60",
                "--batch",
                "128",
                "--center",
                "--out",
                &p(&format!("{kind}/dict")),
            ],
            None,
        );
        cli_ok(
            &[
                "analyze",
                "--model",
                "assets/demo/clip",
                "--dict",
                &p(&format!("{kind}/dict")),
                "--embeddings",
                &p("emb.safetensors"),
                "--center",
                "--out",
                &p(&format!("{kind}/bundle")),
            ],
            None,
        );
    }
    let (a, b) = (p("topk/bundle"), p("jumprelu/bundle"));
    let (stdout, _) = cli_ok(
        &[
            "compare",
            &a,
            &b,
            &a,
            "--embeddings",
            &p("emb.safetensors"),
            "--top-pairs",
            "3",
            "--json",
            &p("cmp.json"),
            "--svg",
            &p("cmp.svg"),
        ],
        None,
    );
    // Labels: "jumprelu/bundle" (unique with its parent); the repeated bundle in full.
    assert!(stdout.contains("| jumprelu/bundle |"), "{stdout}");
    assert!(stdout.contains(&format!("| {a} |")), "{stdout}");
    for row in [
        "FVU image / text",
        "classes ImgD / TextD / CrossD / Rare (MDS)",
        "classes by Iso-Energy",
        "mean EmbSim image / text",
        "WinRate vs random image / text",
        "top Bridge Score",
    ] {
        assert!(stdout.contains(row), "row {row} missing:\n{stdout}");
    }
    let json: serde_json::Value = serde_json::from_slice(&common::read(p("cmp.json"))).unwrap();
    let rows = json["bundles"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for (row, path) in rows.iter().zip([&a, &b, &a]) {
        let manifest: serde_json::Value =
            serde_json::from_slice(&common::read(format!("{path}/manifest.json"))).unwrap();
        assert_eq!(row["class_counts"], manifest["class_counts"]);
        assert_eq!(row["kind"], manifest["dictionary"]["config"]["kind"]);
        assert_eq!(row["quality"], manifest["metrics"]["quality"]);
        let energy: Vec<u64> = row["energy_class_counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(energy.iter().sum::<u64>(), 48);
    }
    assert_eq!(rows[0]["kind"], "topk");
    assert_eq!(rows[1]["kind"], "jumprelu");

    // topk against itself (bundles 0 and 2): every live atom is its own match, same class.
    let overlaps = json["overlaps"].as_array().unwrap();
    assert_eq!(overlaps.len(), 3);
    let own = overlaps
        .iter()
        .find(|o| o["a"] == 0 && o["b"] == 2)
        .unwrap();
    assert_eq!(own["matched"], own["of"]);
    assert_eq!(own["same_class"], own["matched"]);

    // Bridge Scores by brute force from the bundle's own activations.
    let device = Device::flex();
    let lens = Lens::load(std::path::Path::new(&a), &device).unwrap();
    let emb = EmbeddingsFile::from_bytes(&common::read(p("emb.safetensors"))).unwrap();
    let rows_of = |image: bool| -> Vec<Vec<f32>> {
        let src = if image {
            &emb.pairs.images
        } else {
            &emb.pairs.texts
        };
        src.chunks(emb.pairs.d).map(<[f32]>::to_vec).collect()
    };
    let zi = lens.activations(&rows_of(true), Modality::Image).unwrap();
    let zt = lens.activations(&rows_of(false), Modality::Text).unwrap();
    let bundle = monoscope::io::bundle::load(std::path::Path::new(&a), &device).unwrap();
    let monoscope::dict::Dictionary::Sae(sae) = &bundle.dictionary else {
        panic!("an SAE")
    };
    let w_dec = monoscope::base::host::host_rows(sae.w_dec.val()).unwrap();
    let atom = |k: usize| -> Vec<f32> {
        let n = w_dec[k].iter().map(|x| x * x).sum::<f32>().sqrt();
        w_dec[k].iter().map(|x| x / n).collect()
    };
    let top = &rows[0]["bridge"].as_array().unwrap()[0];
    let (i, j) = (
        top["image_feature"].as_u64().unwrap() as usize,
        top["text_feature"].as_u64().unwrap() as usize,
    );
    assert_ne!(i, j);
    // B_kl = E[z_k(image) z_l(text)] <d_k, d_l>, in f64 from the bundle's own activations.
    let score = |k: usize, l: usize| -> f64 {
        let co = zi
            .iter()
            .zip(&zt)
            .map(|(a, b)| a[k] as f64 * b[l] as f64)
            .sum::<f64>()
            / zi.len() as f64;
        let cos: f64 = atom(k)
            .iter()
            .zip(atom(l))
            .map(|(a, b)| (*a * b) as f64)
            .sum();
        co * cos
    };
    let want = score(i, j);
    let got = top["score"].as_f64().unwrap();
    // f32 sums over 400 pairs on both sides: 1e-4 relative.
    let slack = 1e-4 * want.abs().max(1e-9);
    assert!(
        (got - want).abs() <= slack,
        "bridge {got} vs brute force {want}"
    );
    // ... and no other pair of different features scores higher.
    for k in 0..48 {
        for l in (0..48).filter(|l| *l != k) {
            assert!(
                score(k, l) <= want + slack,
                "pair ({k}, {l}) scores {} > {want}",
                score(k, l)
            );
        }
    }

    let svg = String::from_utf8(common::read(p("cmp.svg"))).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        svg.matches("<title>").count(),
        1 + svg.matches("<rect").count() - 4
    );

    // The page's path (bundle bytes in, `lab::compare`) gives the CLI's rows.
    let files = |dir: &str, label: &'static str| {
        let f = |name: &str| common::read(format!("{dir}/{name}"));
        (
            label,
            f("manifest.json"),
            f("features.json"),
            f("dictionary.safetensors"),
        )
    };
    let (fa, fb) = (files(&a, "a"), files(&b, "b"));
    fn bytes<'a>(
        f: &'a (&'static str, Vec<u8>, Vec<u8>, Vec<u8>),
    ) -> monoscope::lab::compare::BundleBytes<'a> {
        monoscope::lab::compare::BundleBytes {
            label: f.0,
            manifest: &f.1,
            features: &f.2,
            dictionary: &f.3,
        }
    }
    let page = monoscope::lab::compare::compare_bundles(&bytes(&fa), &bytes(&fb), &device).unwrap();
    let page = serde_json::to_value(&page.comparison).unwrap();
    for (i, row) in page["bundles"].as_array().unwrap().iter().enumerate() {
        for key in [
            "class_counts",
            "energy_class_counts",
            "quality",
            "mean_emb_sim",
            "win_rates",
        ] {
            assert_eq!(row[key], rows[i][key], "{key} of bundle {i}");
        }
    }
    assert_eq!(page["overlaps"][0], overlaps[0]);

    // A broken bundle is named in a clear error.
    let (ok, _, stderr) = cli(&["compare", &a, &p("nothing-here")], None);
    assert!(!ok && stderr.contains("nothing-here"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}
