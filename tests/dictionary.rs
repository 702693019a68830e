//! Dictionaries on synthetic data with known ground truth.

mod common;

use common::planted::{planted, recovery};

use burn::tensor::{Device, Tensor, TensorData};
use common::{TensorFile, root};
use monoscope::base::{Modality, SplitMix};
use monoscope::dict::{DictConfig, DictKind};
use monoscope::train::dict::{TrainConfig, Trainer};

fn rows_of(t: Tensor<2>) -> Vec<Vec<f32>> {
    monoscope::base::host::host_rows(t).unwrap()
}

#[test]
fn topk_sae_recovers_planted_atoms_and_their_modalities() {
    let (d, per_group, n) = (48, 12, 6000);
    let world = planted(d, per_group, n, 7);
    let device = Device::flex();
    // Every sample mixes exactly two atoms (one shared, one of its own modality), so k = 2.
    let dict = DictConfig {
        features: 96,
        k: 2,
        ..DictConfig::new(DictKind::Topk, d)
    };
    let train = TrainConfig {
        steps: 1500,
        batch: 256,
        lr: Some(3e-3),
        dead_window: 2000,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(dict, train, &device).unwrap();
    let mut last = f64::INFINITY;
    for step in 0..1500 {
        let s = trainer.step(&world.pairs).unwrap();
        if step == 0 {
            last = s.loss;
        }
        if step == 1499 {
            assert!(
                s.loss < last * 0.2,
                "loss fell only from {last} to {}",
                s.loss
            );
        }
    }
    let r = recovery(&trainer.finish(), &world, per_group);
    assert!(
        r.fraction() >= 0.9,
        "recovered {} of {} atoms: {:?}",
        r.recovered.len(),
        world.atoms.len(),
        r.best.iter().map(|b| b.1).collect::<Vec<_>>()
    );
    assert!(
        r.right_class * 100 >= r.recovered.len() * 95,
        "{} of {} recovered atoms have the planted class: {:?}",
        r.right_class,
        r.recovered.len(),
        r.detail
    );
}

#[test]
fn relu_sae_trains_and_is_sparse() {
    let world = planted(32, 8, 2000, 3);
    let dict = DictConfig {
        features: 64,
        l1: 1e-3,
        ..DictConfig::new(DictKind::Relu, 32)
    };
    let train = TrainConfig {
        steps: 400,
        batch: 128,
        lr: Some(2e-3),
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(dict, train, &Device::flex()).unwrap();
    let first = t.step(&world.pairs).unwrap().loss;
    let mut last = first;
    for _ in 0..399 {
        last = t.step(&world.pairs).unwrap().loss;
    }
    assert!(last < first * 0.5, "loss {first} -> {last}");
    let d = t.finish();
    let z = d.encode(
        world
            .pairs
            .rows(true, &(0..100).collect::<Vec<_>>(), &Device::flex()),
        Modality::Image,
    );
    let v: Vec<f32> = rows_of(z).concat();
    assert!(v.iter().all(|x| *x >= 0.0));
}

#[test]
fn ncl_loss_falls_and_features_are_non_negative() {
    let world = planted(32, 8, 2000, 5);
    let dict = DictConfig {
        features: 48,
        hidden: 64,
        ..DictConfig::new(DictKind::Ncl, 32)
    };
    let train = TrainConfig {
        steps: 300,
        batch: 128,
        lr: Some(1e-3),
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(dict, train, &Device::flex()).unwrap();
    let first: f64 = (0..5)
        .map(|_| t.step(&world.pairs).unwrap().loss)
        .sum::<f64>()
        / 5.0;
    for _ in 0..290 {
        t.step(&world.pairs).unwrap();
    }
    let last: f64 = (0..5)
        .map(|_| t.step(&world.pairs).unwrap().loss)
        .sum::<f64>()
        / 5.0;
    assert!(last < first * 0.8, "InfoNCE {first} -> {last}");
    let d = t.finish();
    let z = d.encode(
        world
            .pairs
            .rows(false, &(0..200).collect::<Vec<_>>(), &Device::flex()),
        Modality::Text,
    );
    let v: Vec<f32> = rows_of(z).concat();
    assert!(v.iter().all(|x| *x >= 0.0));
    assert!(v.iter().any(|x| *x > 0.0));
}

#[test]
fn info_nce_gradient_matches_finite_differences() {
    // d/dA of the symmetric InfoNCE, by autodiff and by central differences (f32, so
    // the step and tolerance are loose: h = 1e-2 on O(1) inputs, 5% relative error).
    let device = Device::flex().autodiff();
    let (n, k) = (4, 6);
    let mut rng = SplitMix(11);
    let mut vals = |m: usize| -> Vec<f32> {
        (0..m)
            .map(|_| (rng.below(1000) as f32) / 1000.0 + 0.05)
            .collect()
    };
    let a0 = vals(n * k);
    let b0 = vals(n * k);
    let t = 0.5;
    let loss = |a: &[f32]| -> f64 {
        let dev = Device::flex();
        let a = Tensor::<2>::from_data(TensorData::new(a.to_vec(), [n, k]), &dev);
        let b = Tensor::<2>::from_data(TensorData::new(b0.clone(), [n, k]), &dev);
        monoscope::dict::ncl::info_nce(a, b, t)
            .into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .unwrap()[0]
    };
    let a = Tensor::<2>::from_data(TensorData::new(a0.clone(), [n, k]), &device).require_grad();
    let b = Tensor::<2>::from_data(TensorData::new(b0.clone(), [n, k]), &device);
    let grads = monoscope::dict::ncl::info_nce(a.clone(), b, t).backward();
    let g: Vec<f32> = a
        .grad(&grads)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    let h = 1e-2f32;
    for i in 0..n * k {
        let mut plus = a0.clone();
        plus[i] += h;
        let mut minus = a0.clone();
        minus[i] -= h;
        let fd = (loss(&plus) - loss(&minus)) / (2.0 * h as f64);
        let err = (fd - g[i] as f64).abs();
        assert!(
            err <= 0.05 * fd.abs().max(0.02),
            "entry {i}: autodiff {} vs finite differences {fd}",
            g[i]
        );
    }
}

#[test]
fn saelens_dictionaries_load_and_match_their_reference() {
    let fixtures = root().join("tests/fixtures");
    for name in [
        "saelens-topk",
        "saelens-relu",
        "saelens-topk-legacy",
        "saelens-jumprelu",
    ] {
        let dir = fixtures.join(name);
        let (file, dict) = monoscope::io::dictionary::load_dir(&dir, &Device::flex()).unwrap();
        let r = TensorFile::open(&dir.join("reference.safetensors"));
        let x = r.get("x");
        let input = Tensor::<2>::from_data(
            TensorData::new(x.f, [x.shape[0], x.shape[1]]),
            &Device::flex(),
        );
        let z = dict.encode(input, Modality::Image);
        let x_hat = dict.decode(z.clone(), Modality::Image).unwrap();
        let z: Vec<f32> = rows_of(z).concat();
        let x_hat: Vec<f32> = rows_of(x_hat).concat();
        let max = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max)
        };
        let (want_z, want_x_hat) = (r.get("feature_acts").f, r.get("x_hat").f);
        // f32 on both sides, 16-wide dot products: 1e-5 is ~100 ulps of the values.
        assert!(
            max(&z, &want_z) <= 1e-5,
            "{name}: activations differ by {}",
            max(&z, &want_z)
        );
        assert!(
            max(&x_hat, &want_x_hat) <= 1e-5,
            "{name}: reconstructions differ"
        );
        if file.config.kind == DictKind::Topk {
            for row in z.chunks(file.config.features) {
                assert!(row.iter().filter(|v| **v > 0.0).count() <= file.config.k);
            }
        }
    }
}

#[test]
fn trained_dictionaries_round_trip_through_files() {
    let world = planted(16, 4, 500, 1);
    let dir = std::env::temp_dir().join(format!("monoscope-dict-{}", std::process::id()));
    for kind in [DictKind::Topk, DictKind::Ncl] {
        let dict = DictConfig {
            features: 24,
            hidden: 20,
            k: 3,
            ..DictConfig::new(kind, 16)
        };
        let train = TrainConfig {
            steps: 20,
            batch: 32,
            ..TrainConfig::default()
        };
        let mut t = Trainer::new(dict.clone(), train, &Device::flex()).unwrap();
        for _ in 0..20 {
            t.step(&world.pairs).unwrap();
        }
        let trained = t.finish();
        let file = monoscope::io::dictionary::DictFile {
            format: monoscope::io::dictionary::FORMAT.into(),
            config: dict,
            center_input: true,
            provenance: serde_json::Value::Null,
            weights: None,
        };
        monoscope::io::dictionary::save_dir(&dir, &file, &trained).unwrap();
        let (_, loaded) = monoscope::io::dictionary::load_dir(&dir, &Device::flex()).unwrap();
        let idx: Vec<usize> = (0..50).collect();
        let x = || world.pairs.rows(true, &idx, &Device::flex());
        let a = rows_of(trained.encode(x(), Modality::Image));
        let b = rows_of(loaded.encode(x(), Modality::Image));
        assert_eq!(a, b, "{kind:?}: activations changed through save/load");
    }
    std::fs::remove_dir_all(&dir).ok();
}
