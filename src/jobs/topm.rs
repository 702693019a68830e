//! The m largest activations per feature, kept while batches stream past.

use burn::tensor::Tensor;

use crate::error::{Error, Result};

/// Keeps the m largest positive (value, row) per feature.
pub struct TopM {
    m: usize,
    /// Per feature: (value, row), largest first.
    pub lists: Vec<Vec<(f32, usize)>>,
    /// Per feature: the smallest kept value once m are kept (candidates must beat it).
    floor: Vec<f32>,
}

impl TopM {
    /// Empty lists for `k` features, `m` entries each.
    pub fn new(k: usize, m: usize) -> Self {
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
    pub fn add(&mut self, acts: Tensor<2>, offset: usize) -> Result<()> {
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
