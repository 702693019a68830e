//! The hand-written training steps (`train::sparse`: TopK, random, aligned and split kinds;
//! `train::relu`: the ReLU and JumpReLU kinds) against the autodiff step they replace.

mod common;

use burn::tensor::Device;
use common::planted::planted;
use monoscope::base::host::host_vec;
use monoscope::dict::{DictConfig, DictKind, Dictionary};
use monoscope::train::dict::{TrainConfig, Trainer};

fn weights(t: &Trainer) -> Vec<(&'static str, Vec<f32>)> {
    let saes = match &t.dict {
        Dictionary::Sae(sae) => vec![sae],
        Dictionary::Split(split) => vec![&split.image, &split.text],
        Dictionary::Ncl(_) => panic!("the sparse step trains SAEs"),
    };
    saes.into_iter()
        .flat_map(|sae| {
            let threshold = sae
                .threshold
                .as_ref()
                .map(|t| host_vec(t.val().inner()).unwrap());
            [
                ("W_enc", host_vec(sae.w_enc.val().inner()).unwrap()),
                ("b_enc", host_vec(sae.b_enc.val().inner()).unwrap()),
                ("W_dec", host_vec(sae.w_dec.val().inner()).unwrap()),
                ("b_dec", host_vec(sae.b_dec.val().inner()).unwrap()),
            ]
            .into_iter()
            .chain(threshold.map(|t| ("threshold", t)))
        })
        .collect()
}

/// Both steps compute the same loss and gradients in another summation order (f32 sums of
/// up to 256 terms differ by a few ulps), and Adam's first steps move every weight by about
/// lr whatever the gradient's size, so after a few steps the weights agree to a small
/// fraction of lr (1e-3 here): 2e-5 absolute is 2% of one step. A wrong gradient (a sign,
/// a missing term, a latent's ReLU gate) moves some weight by about lr per step and fails.
const WEIGHT_TOL: f32 = 2e-5;

#[test]
fn hand_written_topk_split_and_relu_steps_equal_the_autodiff_step() {
    // 256 rows and 192 latents: the host loops run on more than one thread (64 items each
    // at least). A dead window of one batch makes AuxK run from the first step, over the
    // latents no row kept.
    let (d, features) = (24, 192);
    let world = planted(d, 8, 400, 3);
    let device = Device::flex();
    // A split dictionary's SAEs see 128 rows each: a window of 128 samples. ReLU's auxiliary
    // term is its L1 penalty, always there; its inputs are centred or not.
    for (kind, k, aux_k, dead_window, center) in [
        (DictKind::Topk, 5, 8, 1_000_000, true),
        (DictKind::Topk, 4, 16, 256, true),
        (DictKind::Topk, 6, 512, 256, true),
        (DictKind::Split, 4, 16, 128, true),
        (DictKind::Random, 4, 16, 256, true),
        (DictKind::Aligned, 5, 16, 256, true),
        (DictKind::Aligned, 2, 8, 1_000_000, true),
        (DictKind::Relu, 0, 0, 1_000_000, true),
        (DictKind::Relu, 0, 0, 1_000_000, false),
        (DictKind::Jumprelu, 0, 0, 1_000_000, true),
        (DictKind::Jumprelu, 0, 0, 1_000_000, false),
    ] {
        // ReLU's default λ_1 and JumpReLU's λ_0 move weights by less than lr; larger ones
        // check their terms.
        let dict = DictConfig {
            k,
            l1: if kind == DictKind::Relu { 0.3 } else { 0.0 },
            l0: if kind == DictKind::Jumprelu {
                0.05
            } else {
                0.0
            },
            ..DictConfig::new(kind, d).with_features(features)
        };
        let train = TrainConfig {
            steps: 6,
            batch: 256,
            lr: Some(1e-3),
            aux_k,
            dead_window,
            ..TrainConfig::default()
        };
        let mut sparse = Trainer::new(dict.clone(), train.clone(), &device).unwrap();
        let mut dense = Trainer::new(dict, train, &device).unwrap().dense();
        assert!(sparse.is_hand_written() && !dense.is_hand_written());
        // Tests run on parallel threads and share the device's seeded generator: one
        // initial draw for both.
        if let Dictionary::Sae(sae) = &sparse.dict {
            sparse.dict = Dictionary::Sae(sae.clone().with_center_input(center));
        }
        dense.dict = sparse.dict.clone();
        let mut aux_seen = false;
        for step in 0..6 {
            let a = sparse.step(&world.pairs).unwrap();
            let b = dense.step(&world.pairs).unwrap();
            let what = format!("{kind:?}, k {k}, aux_k {aux_k}, step {step}: {a:?} {b:?}");
            assert!(
                (a.loss - b.loss).abs() <= 1e-5 * b.loss.abs().max(1.0),
                "{what}: loss {} vs {}",
                a.loss,
                b.loss
            );
            assert!(
                (a.aux - b.aux).abs() <= 1e-5 * b.aux.abs().max(1.0),
                "{what}: aux {} vs {}",
                a.aux,
                b.aux
            );
            aux_seen |= b.aux != 0.0;
            assert_eq!(a.dead_fraction, b.dead_fraction, "{what}");
            assert_eq!(sparse.state.since_fired, dense.state.since_fired, "{what}");
            for ((name, x), (_, y)) in weights(&sparse).into_iter().zip(weights(&dense)) {
                let worst = x
                    .iter()
                    .zip(&y)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0f32, f32::max);
                assert!(worst <= WEIGHT_TOL, "{what}: {name} differs by {worst}");
            }
        }
        assert_eq!(
            aux_seen,
            dead_window < 1_000_000
                || matches!(
                    kind,
                    DictKind::Relu | DictKind::Jumprelu | DictKind::Aligned
                ),
            "{kind:?}, k {k}: AuxK ran only with a short dead window, L1, L0 and the pair term always"
        );
    }
}

#[test]
fn hand_written_steps_repeat_bit_for_bit() {
    let world = planted(16, 4, 300, 5);
    let device = Device::flex();
    for kind in [DictKind::Topk, DictKind::Relu, DictKind::Jumprelu] {
        let dict = DictConfig {
            k: 3,
            ..DictConfig::new(kind, 16).with_features(160)
        };
        let train = TrainConfig {
            steps: 4,
            batch: 200,
            dead_window: 200,
            ..TrainConfig::default()
        };
        // Tests run on parallel threads and share the device's seeded generator, so the
        // initial weights are drawn once.
        let init = Trainer::new(dict.clone(), train.clone(), &device)
            .unwrap()
            .dict;
        let run = || {
            let mut t = Trainer::new(dict.clone(), train.clone(), &device).unwrap();
            assert!(t.is_hand_written());
            t.dict = init.clone();
            let losses: Vec<u64> = (0..4)
                .map(|_| t.step(&world.pairs).unwrap().loss.to_bits())
                .collect();
            (losses, weights(&t))
        };
        let (first, second) = (run(), run());
        assert_eq!(first.0, second.0, "{kind:?}");
        for ((name, x), (_, y)) in first.1.iter().zip(&second.1) {
            assert!(
                x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
                "{kind:?}: {name} differs between two runs"
            );
        }
    }
}
