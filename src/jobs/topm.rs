//! The m largest activations per feature, kept while batches stream past.

use burn::tensor::Tensor;

use crate::base::host::{self, is_cpu_backend};
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

    /// `acts` [rows, K]; `offset` is the global index of row 0. On the CPU backend the
    /// activations are scanned on the host ([`Self::add_on_host`]); on other devices each
    /// feature's top m of the batch are picked on the device and only those are read back
    /// ([`Self::add_on_device`]).
    pub fn add(&mut self, acts: Tensor<2>, offset: usize) -> Result<()> {
        if is_cpu_backend(&acts.device()) {
            self.add_on_host(acts, offset)
        } else {
            self.add_on_device(acts, offset)
        }
    }

    /// One pass over the whole batch on the host: on the CPU backend a device-side top-m
    /// per feature (a sort of every column) cost more than the dictionary itself.
    pub fn add_on_host(&mut self, acts: Tensor<2>, offset: usize) -> Result<()> {
        let [_, k] = acts.dims();
        let data = acts.into_data().convert::<f32>();
        // Borrowed, not copied (a copy per batch was a measurable share of analyze).
        self.add_host_rows(host::slice(&data)?, k, offset)
    }

    /// [`Self::add_on_host`] for a batch already on the host: `v` [rows, K] row-major.
    pub fn add_host_rows(&mut self, v: &[f32], k: usize, offset: usize) -> Result<()> {
        self.check_width(k)?;
        if !v.len().is_multiple_of(k.max(1)) {
            return Err(Error::Invalid(format!(
                "top-m batch of {} values is not a [rows, {k}] matrix",
                v.len()
            )));
        }
        // Features shared out over the cores: each thread reads every row's columns of its
        // features, in row order, so the lists do not depend on the thread count.
        let m = self.m;
        crate::base::par::par_zip_mut(&mut self.lists, &mut self.floor, |first, lists, floor| {
            let cols = first..first + lists.len();
            for (r, row) in v.chunks(k.max(1)).enumerate() {
                for (f, &x) in row[cols.clone()].iter().enumerate() {
                    offer(m, &mut lists[f], &mut floor[f], x, offset + r);
                }
            }
        });
        self.finish_batch();
        Ok(())
    }

    /// Batches must have one column per list.
    fn check_width(&self, k: usize) -> Result<()> {
        if k != self.lists.len() {
            return Err(Error::Invalid(format!(
                "top-m batch of {k} features for {} lists",
                self.lists.len()
            )));
        }
        Ok(())
    }

    /// Each feature's top m of the batch picked on the device (burn's top-k reduction along
    /// the rows), and only those m x K values and rows read back: a GPU otherwise sends the
    /// whole batch (1024 x 4096 x 4 B per modality at the defaults) to the host and the host
    /// scans it. Exact: the reduction breaks ties towards the lower row, as [`Self::lists`]
    /// does, so every entry of the final lists is among its batch's top m.
    pub fn add_on_device(&mut self, acts: Tensor<2>, offset: usize) -> Result<()> {
        let [rows, k] = acts.dims();
        self.check_width(k)?;
        let m = self.m.min(rows);
        if m == 0 || k == 0 {
            return Ok(());
        }
        let (values, index) = acts.topk_with_indices(m, 0); // [m, K] each
        let values = values.into_data().convert::<f32>();
        let index = index.into_data().convert::<i64>();
        let (values, index) = (host::slice::<f32>(&values)?, host::slice::<i64>(&index)?);
        for (vrow, irow) in values.chunks(k).zip(index.chunks(k)) {
            for (f, (&x, &r)) in vrow.iter().zip(irow).enumerate() {
                let r = usize::try_from(r)
                    .ok()
                    .filter(|r| *r < rows)
                    .ok_or_else(|| Error::Device(format!("top-m row {r} outside 0..{rows}")))?;
                offer(
                    self.m,
                    &mut self.lists[f],
                    &mut self.floor[f],
                    x,
                    offset + r,
                );
            }
        }
        self.finish_batch();
        Ok(())
    }

    /// Every list at most m long and sorted, once a batch is in.
    fn finish_batch(&mut self) {
        for (list, floor) in self.lists.iter_mut().zip(&mut self.floor) {
            if list.len() > self.m {
                compact(self.m, list, floor);
            } else {
                list.sort_by(order);
            }
        }
    }
}

/// Largest value first, then the lower row.
fn order(a: &(f32, usize), b: &(f32, usize)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Keeps (x, row) in one feature's list if it beats the floor (NaN never does).
fn offer(m: usize, list: &mut Vec<(f32, usize)>, floor: &mut f32, x: f32, row: usize) {
    if x > *floor {
        list.push((x, row));
        if list.len() >= 2 * m.max(1) {
            compact(m, list, floor);
        }
    }
}

/// One feature's list cut to its m best; the floor rises to the m-th once m are kept.
fn compact(m: usize, list: &mut Vec<(f32, usize)>, floor: &mut f32) {
    list.sort_by(order);
    list.truncate(m);
    if m > 0 && list.len() == m {
        *floor = list[m - 1].0;
    }
}

#[cfg(test)]
mod tests {
    use super::TopM;
    use burn::tensor::{Device, Tensor, TensorData};

    /// Every feature's top m of `vals` ([n, k] row-major), positive only, by a full sort.
    fn full_sort(vals: &[f32], n: usize, k: usize, m: usize) -> Vec<Vec<(f32, usize)>> {
        (0..k)
            .map(|f| {
                let mut want: Vec<(f32, usize)> = (0..n)
                    .map(|r| (vals[r * k + f], r))
                    .filter(|(v, _)| *v > 0.0)
                    .collect();
                want.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                want.truncate(m);
                want
            })
            .collect()
    }

    /// Both paths on the CPU backend (the device path through burn's `topk_with_indices`;
    /// `tests/backends.rs` runs it on wgpu): values with many ties and zeros, in batches of
    /// 20 and a last one shorter than m, over enough features for the host scan to share
    /// them out over the cores.
    #[test]
    fn top_m_equals_a_full_sort_over_batches() {
        let device = Device::flex();
        let (k, m, n) = (150, 5, 63);
        let vals: Vec<f32> = (0..n * k).map(|i| ((i * 7919) % 13) as f32 - 4.0).collect();
        for on_device in [false, true] {
            let mut top = TopM::new(k, m);
            for (b, chunk) in vals.chunks(20 * k).enumerate() {
                let t = Tensor::<2>::from_data(
                    TensorData::new(chunk.to_vec(), [chunk.len() / k, k]),
                    &device,
                );
                if on_device {
                    top.add_on_device(t, b * 20).unwrap();
                } else {
                    top.add_on_host(t, b * 20).unwrap();
                }
            }
            assert_eq!(
                top.lists,
                full_sort(&vals, n, k, m),
                "on device: {on_device}"
            );
        }
        // A batch of another width is refused, on both paths.
        let mut top = TopM::new(k, m);
        let narrow =
            || Tensor::<2>::from_data(TensorData::new(vec![1.0; 20 * 3], [20, 3]), &device);
        assert!(top.add_on_host(narrow(), 0).is_err());
        assert!(top.add_on_device(narrow(), 0).is_err());
        assert!(top.add_host_rows(&vals[..20 * k + 1], k, 0).is_err());
        // m = 0 keeps nothing (and does not fail).
        let mut none = TopM::new(k, 0);
        let t = Tensor::<2>::from_data(TensorData::new(vals[..20 * k].to_vec(), [20, k]), &device);
        none.add(t, 0).unwrap();
        assert!(none.lists.iter().all(Vec::is_empty));
    }
}
