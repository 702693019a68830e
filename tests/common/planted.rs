//! The planted world: synthetic paired embeddings built from known unit atoms, a third
//! used only by images, a third only by texts and a third by both members of a pair, so
//! a dictionary's recovery of the atoms and of their modalities can be measured.

use burn::tensor::Device;
use monoscope::analysis::mds::{ClassRule, FeatureClass, MdsAccumulator, classify};
use monoscope::base::{Modality, Pairs, SplitMix};
use monoscope::dict::Dictionary;

/// Planted world: unit atoms in R^d; a third used only by images, a third only by texts,
/// a third by both members of a pair (with the same coefficient).
pub struct Planted {
    /// The atoms, unit rows.
    pub atoms: Vec<Vec<f32>>,
    /// The paired embeddings.
    pub pairs: Pairs,
}

/// Group of the image-only atoms.
pub const IMG: usize = 0;
/// Group of the text-only atoms.
pub const TXT: usize = 1;
/// Group of the shared atoms.
pub const BOTH: usize = 2;

/// The group of an atom.
pub fn group(atom: usize, per_group: usize) -> usize {
    atom / per_group
}

/// `n` pairs over 3 x `per_group` random unit atoms in R^d.
pub fn planted(d: usize, per_group: usize, n: usize, seed: u64) -> Planted {
    let mut rng = SplitMix(seed);
    let mut gauss = || {
        // Box-Muller from two uniforms.
        let u1 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 + 1e-12;
        let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    };
    let atoms: Vec<Vec<f32>> = (0..3 * per_group)
        .map(|_| {
            let v: Vec<f32> = (0..d).map(|_| gauss()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect();
    let mut pick = SplitMix(seed ^ 0xABCD);
    let (mut images, mut texts) = (Vec::with_capacity(n * d), Vec::with_capacity(n * d));
    for _ in 0..n {
        let mut img = vec![0f32; d];
        let mut txt = vec![0f32; d];
        let add = |v: &mut Vec<f32>, a: usize, c: f32| {
            for (x, y) in v.iter_mut().zip(&atoms[a]) {
                *x += c * y;
            }
        };
        let coef = |r: &mut SplitMix| 0.5 + (r.next_u64() % 1000) as f32 / 1000.0;
        // One shared atom (same in both), one image-only, one text-only.
        let s = BOTH * per_group + pick.below(per_group);
        let c = coef(&mut pick);
        add(&mut img, s, c);
        add(&mut txt, s, c);
        let i = IMG * per_group + pick.below(per_group);
        let c = coef(&mut pick);
        add(&mut img, i, c);
        let t = TXT * per_group + pick.below(per_group);
        let c = coef(&mut pick);
        add(&mut txt, t, c);
        images.extend(img);
        texts.extend(txt);
    }
    Planted {
        atoms,
        pairs: Pairs::new(images, texts, d).unwrap(),
    }
}

/// How well a trained dictionary recovers a planted world.
pub struct Recovery {
    /// For each atom: the decoder row closest to it and their cosine.
    pub best: Vec<(usize, f32)>,
    /// Atoms matched at cosine >= 0.9.
    pub recovered: Vec<usize>,
    /// Recovered atoms whose best feature has the planted class (zscore rule, SPEC §3).
    pub right_class: usize,
    /// (group, class, MDS, support) of every recovered atom's feature, for messages.
    pub detail: Vec<(usize, FeatureClass, Option<f64>, u64)>,
}

impl Recovery {
    /// Fraction of atoms recovered.
    pub fn fraction(&self) -> f64 {
        self.recovered.len() as f64 / self.best.len() as f64
    }
}

/// Matches decoder rows to atoms and classifies the matched features by MDS.
pub fn recovery(dictionary: &Dictionary, world: &Planted, per_group: usize) -> Recovery {
    let device = Device::flex();
    let rows = |t| monoscope::base::host::host_rows(t).unwrap();
    // A split dictionary's slot j has an image atom and a text atom: both are searched,
    // and a match names the slot (index mod K).
    let decoder: Vec<Vec<f32>> = match dictionary {
        Dictionary::Sae(sae) => rows(sae.w_dec.val()),
        Dictionary::Split(s) => [rows(s.image.w_dec.val()), rows(s.text.w_dec.val())].concat(),
        Dictionary::Ncl(_) => panic!("an SAE"),
    };
    let k = dictionary.features();
    let best: Vec<(usize, f32)> = world
        .atoms
        .iter()
        .map(|atom| {
            decoder
                .iter()
                .enumerate()
                .map(|(i, row)| (i % k, row.iter().zip(atom).map(|(a, b)| a * b).sum::<f32>()))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap()
        })
        .collect();
    let recovered: Vec<usize> = (0..world.atoms.len())
        .filter(|&a| best[a].1 >= 0.9)
        .collect();
    let n = world.pairs.n;
    let mut acc = MdsAccumulator::new(1e-6);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let a = dictionary.encode(world.pairs.rows(true, chunk, &device), Modality::Image);
        let b = dictionary.encode(world.pairs.rows(false, chunk, &device), Modality::Text);
        acc.add(a, b);
    }
    let mds = acc.finish().unwrap();
    let (classes, _) = classify(&mds, ClassRule::Zscore, 10);
    let expected = |a: usize| match group(a, per_group) {
        IMG => FeatureClass::ImgD,
        TXT => FeatureClass::TextD,
        _ => FeatureClass::CrossD,
    };
    let right_class = recovered
        .iter()
        .filter(|&&a| classes[best[a].0] == expected(a))
        .count();
    let detail = recovered
        .iter()
        .map(|&a| {
            let f = best[a].0;
            (group(a, per_group), classes[f], mds[f].mds, mds[f].support)
        })
        .collect();
    Recovery {
        best,
        recovered,
        right_class,
        detail,
    }
}
