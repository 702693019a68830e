//! The `analyze` job (SPEC §2-§3): stream paired embeddings through a dictionary,
//! score every feature's modality (MDS), classify, measure EmbSim on each feature's
//! top-m samples per modality, compare with raw CLIP dimensions and random directions
//! (WinRate), and label features with the vocabulary entries that activate them most.

#[cfg(not(target_arch = "wasm32"))]
pub use native::*;
use serde::{Deserialize, Serialize};

use super::mds::{ClassRule, FeatureClass};

/// Settings of an analysis.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalyzeConfig {
    /// Class rule.
    pub rule: ClassRule,
    /// Features supported by fewer pairs are rare.
    pub min_support: u64,
    /// Activation floor for MDS support.
    pub eps: f64,
    /// Samples per feature and modality for EmbSim and top examples (SPEC §3: 20).
    pub top_m: usize,
    /// Labels per feature (SPEC §3: 5).
    pub labels: usize,
    /// Subtract each modality's mean embedding before the dictionary (SPEC §2 `center`).
    pub center: bool,
    /// Pairs per batch.
    pub batch: usize,
    /// Seed of the random-direction baseline.
    pub seed: u64,
}

impl Default for AnalyzeConfig {
    fn default() -> Self {
        Self {
            rule: ClassRule::Zscore,
            min_support: super::mds::DEFAULT_MIN_SUPPORT,
            eps: super::mds::DEFAULT_EPS,
            top_m: 20,
            labels: 5,
            center: false,
            batch: 1024,
            seed: 0,
        }
    }
}

/// One feature's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureReport {
    /// Feature index.
    pub id: usize,
    /// Modality Dominance Score.
    pub mds: Option<f64>,
    /// Class.
    pub class: FeatureClass,
    /// Pairs with image + text activation above eps.
    pub support: u64,
    /// Mean activation on images.
    pub mean_image: f64,
    /// Mean activation on texts.
    pub mean_text: f64,
    /// EmbSim of the top image samples.
    pub emb_sim_image: Option<f64>,
    /// EmbSim of the top text samples.
    pub emb_sim_text: Option<f64>,
    /// Best vocabulary entries with their activation.
    pub labels: Vec<(String, f32)>,
    /// Top image samples: (row, activation).
    pub top_images: Vec<(usize, f32)>,
    /// Top text samples: (row, activation).
    pub top_texts: Vec<(usize, f32)>,
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    //! The analysis job itself (native: it reads results back synchronously).

    use burn::tensor::{Device, Tensor};
    use serde::{Deserialize, Serialize};

    use super::{AnalyzeConfig, FeatureReport};
    use crate::analysis::mds::{FeatureClass, MdsAccumulator, Thresholds, classify};
    use crate::analysis::metrics::{emb_sim, win_rate};
    use crate::dict::Dictionary;
    use crate::dict::train::{Evaluation, Pairs, SplitMix, evaluate};
    use crate::error::{Error, Result};

    /// WinRate of the dictionary's EmbSim over a baseline, per modality.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct WinRates {
        /// Over raw CLIP dimensions: (rate, comparisons) for images, texts.
        pub vs_raw_dims: [(f64, usize); 2],
        /// Over random directions.
        pub vs_random_directions: [(f64, usize); 2],
    }

    /// Everything `analyze` computes.
    #[derive(Debug, Clone, Serialize)]
    pub struct Analysis {
        /// Per feature.
        pub features: Vec<FeatureReport>,
        /// Thresholds of the class rule.
        pub thresholds: Thresholds,
        /// Counts of ImgD, TextD, CrossD, Rare.
        pub class_counts: [usize; 4],
        /// WinRates.
        pub win_rates: WinRates,
        /// Reconstruction quality per modality (on up to 4096 pairs).
        pub quality: Evaluation,
    }

    /// Keeps the m largest positive (value, row) per feature.
    struct TopM {
        m: usize,
        lists: Vec<Vec<(f32, usize)>>,
        /// Per feature: the smallest kept value once m are kept (candidates must beat it).
        floor: Vec<f32>,
    }

    impl TopM {
        fn new(k: usize, m: usize) -> Self {
            Self {
                m,
                lists: vec![Vec::new(); k],
                floor: vec![0.0; k],
            }
        }

        fn compact(&mut self, f: usize) {
            let list = &mut self.lists[f];
            list.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            list.truncate(self.m);
            if list.len() == self.m {
                self.floor[f] = list[self.m - 1].0;
            }
        }

        /// `acts` [rows, K]; `offset` is the global index of row 0. One pass over the
        /// activations on the host: a device-side top-m per feature (a sort of every
        /// column) cost more than the dictionary itself.
        fn add(&mut self, acts: Tensor<2>, offset: usize) -> Result<()> {
            let [_, k] = acts.dims();
            let data = acts.into_data().convert::<f32>();
            // Borrowed, not copied (a copy per batch was a measurable share of analyze).
            let v = data
                .as_slice::<f32>()
                .map_err(|e| Error::Device(format!("{e:?}")))?;
            for (r, row) in v.chunks(k.max(1)).enumerate() {
                for (f, &x) in row.iter().enumerate() {
                    if x > self.floor[f] {
                        self.lists[f].push((x, offset + r));
                        if self.lists[f].len() >= 2 * self.m.max(1) {
                            self.compact(f);
                        }
                    }
                }
            }
            for f in 0..self.lists.len() {
                if self.lists[f].len() > self.m {
                    self.compact(f);
                } else {
                    let list = &mut self.lists[f];
                    list.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                }
            }
            Ok(())
        }
    }

    /// EmbSim of every baseline "feature", a direction in embedding space (the columns of
    /// `directions`, [d, features]): its top-m rows by projection, and their embeddings'
    /// mean pairwise cosine. Projections run on the device in batches.
    fn baseline_emb_sims(
        pairs: &Pairs,
        image: bool,
        directions: &Tensor<2>,
        m: usize,
        batch: usize,
        device: &Device,
    ) -> Result<Vec<f64>> {
        let [d, features] = directions.dims();
        let mut top = TopM::new(features, m);
        let all: Vec<usize> = (0..pairs.n).collect();
        for (c, chunk) in all.chunks(batch.max(1)).enumerate() {
            top.add(
                pairs.rows(image, chunk, device).matmul(directions.clone()),
                c * batch,
            )?;
        }
        let emb = if image { &pairs.images } else { &pairs.texts };
        Ok(top
            .lists
            .iter()
            .filter_map(|l| {
                emb_sim(
                    &l.iter()
                        .map(|(_, i)| &emb[i * d..(i + 1) * d])
                        .collect::<Vec<_>>(),
                )
            })
            .collect())
    }

    /// Runs the analysis. `vocab` holds vocabulary entries and their text embeddings
    /// ([entries, d], same space as `pairs`) for auto-labels; `progress` is told the number
    /// of pairs done.
    pub fn analyze(
        dict: &Dictionary,
        pairs: &Pairs,
        vocab: Option<(&[String], Tensor<2>)>,
        config: &AnalyzeConfig,
        device: &Device,
        mut progress: impl FnMut(usize),
    ) -> Result<Analysis> {
        let input = if config.center {
            pairs.centered()
        } else {
            pairs.clone()
        };
        let k = dict.features();
        let mut acc = MdsAccumulator::new(config.eps);
        let (mut top_i, mut top_t) = (TopM::new(k, config.top_m), TopM::new(k, config.top_m));
        let all: Vec<usize> = (0..pairs.n).collect();
        for (c, chunk) in all.chunks(config.batch.max(1)).enumerate() {
            let a = dict.encode(input.rows(true, chunk, device));
            let b = dict.encode(input.rows(false, chunk, device));
            top_i.add(a.clone(), c * config.batch)?;
            top_t.add(b.clone(), c * config.batch)?;
            acc.add(a, b);
            progress(chunk.len());
        }
        let mds = acc.finish()?;
        let (classes, thresholds) = classify(&mds, config.rule, config.min_support);

        // Auto-labels: top vocabulary entries per feature.
        let mut labels: Vec<Vec<(String, f32)>> = vec![Vec::new(); k];
        if let Some((words, embeds)) = vocab {
            let mut top = TopM::new(k, config.labels);
            let [n_words, _] = embeds.dims();
            let embeds = if config.center {
                let (_, mt) = pairs.modality_means();
                embeds - Tensor::<1>::from_floats(mt.as_slice(), device).unsqueeze::<2>()
            } else {
                embeds
            };
            for start in (0..n_words).step_by(config.batch.max(1)) {
                let len = config.batch.min(n_words - start);
                top.add(dict.encode(embeds.clone().narrow(0, start, len)), start)?;
            }
            for (f, list) in top.lists.into_iter().enumerate() {
                labels[f] = list
                    .into_iter()
                    .map(|(v, i)| (words[i].clone(), v))
                    .collect();
            }
        }

        let d = pairs.d;
        let sims = |top: &TopM, emb: &[f32]| -> Vec<Option<f64>> {
            top.lists
                .iter()
                .map(|l| {
                    emb_sim(
                        &l.iter()
                            .map(|(_, i)| &emb[i * d..(i + 1) * d])
                            .collect::<Vec<_>>(),
                    )
                })
                .collect()
        };
        let (sim_i, sim_t) = (sims(&top_i, &pairs.images), sims(&top_t, &pairs.texts));

        // Baselines: the d raw dimensions and d random unit directions.
        let raw = Tensor::<2>::eye(d, device);
        let mut rng = SplitMix(config.seed);
        let mut random = vec![0f32; d * d];
        for v in random.iter_mut() {
            *v = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        }
        let random = crate::dict::sae::unit_rows(Tensor::<2>::from_data(
            burn::tensor::TensorData::new(random, [d, d]),
            device,
        ))
        .transpose();
        let classified = |s: &[Option<f64>]| -> Vec<f64> {
            s.iter()
                .zip(&classes)
                .filter(|(_, c)| **c != FeatureClass::Rare)
                .filter_map(|(v, _)| *v)
                .collect()
        };
        let (ours_i, ours_t) = (classified(&sim_i), classified(&sim_t));
        let m = config.top_m;
        let win_rates = WinRates {
            vs_raw_dims: [
                win_rate(
                    &ours_i,
                    &baseline_emb_sims(pairs, true, &raw, m, config.batch, device)?,
                ),
                win_rate(
                    &ours_t,
                    &baseline_emb_sims(pairs, false, &raw, m, config.batch, device)?,
                ),
            ],
            vs_random_directions: [
                win_rate(
                    &ours_i,
                    &baseline_emb_sims(pairs, true, &random, m, config.batch, device)?,
                ),
                win_rate(
                    &ours_t,
                    &baseline_emb_sims(pairs, false, &random, m, config.batch, device)?,
                ),
            ],
        };

        let mut class_counts = [0usize; 4];
        for c in &classes {
            class_counts[match c {
                FeatureClass::ImgD => 0,
                FeatureClass::TextD => 1,
                FeatureClass::CrossD => 2,
                FeatureClass::Rare => 3,
            }] += 1;
        }
        let features = (0..k)
            .map(|f| FeatureReport {
                id: f,
                mds: mds[f].mds,
                class: classes[f],
                support: mds[f].support,
                mean_image: mds[f].mean_image,
                mean_text: mds[f].mean_text,
                emb_sim_image: sim_i[f],
                emb_sim_text: sim_t[f],
                labels: std::mem::take(&mut labels[f]),
                top_images: top_i.lists[f].iter().map(|(v, i)| (*i, *v)).collect(),
                top_texts: top_t.lists[f].iter().map(|(v, i)| (*i, *v)).collect(),
            })
            .collect();
        let quality = evaluate(dict, &input, 4096, 0, device)?;
        Ok(Analysis {
            features,
            thresholds,
            class_counts,
            win_rates,
            quality,
        })
    }

    #[cfg(test)]
    mod tests {
        use super::TopM;
        use burn::tensor::{Device, Tensor, TensorData};

        #[test]
        fn top_m_equals_a_full_sort_over_batches() {
            let device = Device::flex();
            let (k, m, n) = (7, 5, 60);
            // Values with ties and zeros; rows arrive in three batches.
            let vals: Vec<f32> = (0..n * k).map(|i| ((i * 7919) % 13) as f32 - 4.0).collect();
            let mut top = TopM::new(k, m);
            for (b, chunk) in vals.chunks(20 * k).enumerate() {
                let t = Tensor::<2>::from_data(TensorData::new(chunk.to_vec(), [20, k]), &device);
                top.add(t, b * 20).unwrap();
            }
            for f in 0..k {
                let mut want: Vec<(f32, usize)> = (0..n)
                    .map(|r| (vals[r * k + f], r))
                    .filter(|(v, _)| *v > 0.0)
                    .collect();
                want.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                want.truncate(m);
                assert_eq!(top.lists[f], want, "feature {f}");
            }
        }
    }
}
