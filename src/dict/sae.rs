//! Sparse autoencoders (SPEC §1): z = act(W_enc (x - b_dec) + b_enc), x_hat = W_dec z + b_dec.
//!
//! JumpReLU (Rajamanoharan et al. 2024, arXiv 2407.14435, eq. 4):
//! z_k = ReLU(pre_k) · H(pre_k - θ_k), with H the Heaviside step (SAELens'
//! `JumpReLUSAE.encode`: `relu(hidden_pre) * (hidden_pre > threshold)`).
//!
//! Tensors use SAELens' layout and names (`W_enc` [d, K], `W_dec` [K, d], `b_enc` [K],
//! `b_dec` [d]), so SAELens checkpoints load without transposes; the rows of `W_dec` are
//! the dictionary atoms and are kept at unit norm during training.

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::base::host::is_cpu_backend;

/// The activation of a sparse autoencoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaeActivation {
    /// Keep the k largest pre-activations (then ReLU them), zero the rest.
    TopK(usize),
    /// Plain ReLU (trained with an L1 penalty).
    Relu,
    /// ReLU gated by a threshold per atom (`threshold` [K]).
    JumpRelu,
}

/// A sparse autoencoder.
#[derive(Module, Debug)]
pub struct Sae {
    /// Encoder, [d, K].
    pub w_enc: Param<Tensor<2>>,
    /// Encoder bias, [K].
    pub b_enc: Param<Tensor<1>>,
    /// Decoder, [K, d]; row k is atom k.
    pub w_dec: Param<Tensor<2>>,
    /// Decoder bias (also subtracted from inputs), [d].
    pub b_dec: Param<Tensor<1>>,
    /// JumpReLU thresholds θ, [K] (JumpReLU activation only; SAELens' `threshold`).
    pub threshold: Option<Param<Tensor<1>>>,
    #[module(skip)]
    act: SaeActivation,
    /// Whether `b_dec` is subtracted from inputs (SAELens' `apply_b_dec_to_input`).
    #[module(skip)]
    center_input: bool,
}

/// Random unit-norm atoms, encoder = decoder transposed, zero biases (the initialisation
/// of Gao et al. 2024, "Scaling and evaluating sparse autoencoders").
pub fn init(d: usize, features: usize, act: SaeActivation, device: &Device) -> Sae {
    let atoms = unit_rows(Tensor::<2>::random(
        [features, d],
        Distribution::Normal(0.0, 1.0),
        device,
    ));
    Sae {
        w_enc: Param::from_tensor(atoms.clone().transpose()),
        b_enc: Param::from_tensor(Tensor::zeros([features], device)),
        w_dec: Param::from_tensor(atoms),
        b_dec: Param::from_tensor(Tensor::zeros([d], device)),
        threshold: (act == SaeActivation::JumpRelu)
            .then(|| Param::from_tensor(Tensor::zeros([features], device))),
        act,
        center_input: true,
    }
}

/// Scales every row to unit L2 norm. [rows, cols] -> [rows, cols]
pub fn unit_rows(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

impl Sae {
    /// Sets whether `b_dec` is subtracted from inputs before encoding (default true).
    pub fn with_center_input(mut self, center: bool) -> Self {
        self.center_input = center;
        self
    }

    /// Whether `b_dec` is subtracted from inputs before encoding.
    pub fn centers_input(&self) -> bool {
        self.center_input
    }

    /// The activation.
    pub fn activation(&self) -> SaeActivation {
        self.act
    }

    /// Sets every JumpReLU threshold to `value` (no effect on other activations). The new
    /// value keeps the old one's gradient tracking: without it, autodiff left the thresholds
    /// of a fresh dictionary out of its first training step.
    pub fn with_threshold_value(mut self, value: f32) -> Self {
        self.threshold = self.threshold.map(|t| {
            t.map(|t| {
                let tracked = t.is_require_grad();
                let t = t.zeros_like() + value;
                if tracked { t.require_grad() } else { t }
            })
        });
        self
    }

    /// The JumpReLU thresholds broadcast over `n` rows, without gradient. [n, K]
    /// (zeros for other activations, where ReLU alone gates).
    pub fn thresholds(&self, n: usize) -> Tensor<2> {
        let k = self.w_dec.dims()[0];
        match &self.threshold {
            Some(t) => t.val().detach().unsqueeze::<2>().expand([n, k]),
            None => Tensor::zeros([n, k], &self.w_dec.device()),
        }
    }

    /// Pre-activations W_enc (x - b_dec) + b_enc. [n, d] -> [n, K]
    pub fn pre_activations(&self, x: Tensor<2>) -> Tensor<2> {
        let centred = if self.center_input {
            x - self.b_dec.val().unsqueeze::<2>()
        } else {
            x
        };
        centred.matmul(self.w_enc.val()) + self.b_enc.val().unsqueeze::<2>()
    }

    /// Activations from pre-activations. [n, K] -> [n, K]
    pub fn activate(&self, pre: Tensor<2>) -> Tensor<2> {
        match self.act {
            SaeActivation::Relu => relu(pre),
            SaeActivation::TopK(k) => keep_top_k(pre, k),
            SaeActivation::JumpRelu => {
                let [n, _] = pre.dims();
                let closed = pre.clone().lower_equal(self.thresholds(n));
                relu(pre).mask_fill(closed, 0.0)
            }
        }
    }

    /// Feature activations. [n, d] -> [n, K]
    pub fn encode(&self, x: Tensor<2>) -> Tensor<2> {
        self.activate(self.pre_activations(x))
    }

    /// Reconstruction. [n, K] -> [n, d]
    pub fn decode(&self, z: Tensor<2>) -> Tensor<2> {
        z.matmul(self.w_dec.val()) + self.b_dec.val().unsqueeze::<2>()
    }
}

/// ReLU of the k largest entries of each row, zeros elsewhere. [n, K] -> [n, K]
///
/// The k-th largest value of each row is found without gradient and used as a
/// threshold, so gradients flow to the kept entries only. Ties at the threshold keep
/// every tied entry (measure-zero for real-valued pre-activations).
pub fn keep_top_k(pre: Tensor<2>, k: usize) -> Tensor<2> {
    let [_, features] = pre.dims();
    let k = k.min(features);
    let device = pre.device();
    if k > 0 && !device.is_autodiff() && is_cpu_backend(&device) {
        return keep_top_k_on_host(pre, k);
    }
    keep_top_k_by_threshold(pre, k)
}

/// [`keep_top_k`] with tensor operations (every device; gradients flow).
fn keep_top_k_by_threshold(pre: Tensor<2>, k: usize) -> Tensor<2> {
    let threshold = kth_largest(&pre, k); // [n, 1]
    let below = pre.clone().lower(threshold);
    relu(pre).mask_fill(below, 0.0)
}

/// [`keep_top_k`] without gradient on the CPU backend, in place on the host: the rows read
/// back without a copy, each row's k-th largest selected and everything below it or not
/// positive zeroed, and the buffer handed back as the result. The tensor path copies
/// `pre` to read it (another reference holds it) and makes three more [n, K] tensors
/// (the mask, the ReLU, the masked ReLU): a third of `analyze`'s encode at K 4096.
/// The same values (NaN becomes 0 here).
fn keep_top_k_on_host(pre: Tensor<2>, k: usize) -> Tensor<2> {
    let [_, features] = pre.dims();
    let device = pre.device();
    let mut data = pre.into_data().convert::<f32>();
    let Ok(v) = data.as_mut_slice::<f32>() else {
        return keep_top_k_by_threshold(Tensor::from_data(data, &device), k);
    };
    crate::base::par::par_rows_with(v, features, Vec::new, |work, _, row| {
        let t = crate::base::select::kth_largest(row, k, work);
        for x in row.iter_mut() {
            // Not `x < t || x <= 0`: NaN fails both comparisons and must go too.
            if !(*x >= t && *x > 0.0) {
                *x = 0.0;
            }
        }
    });
    Tensor::<2>::from_data(data, &device)
}

/// The k-th largest value of each row, without gradient. [n, K] -> [n, 1]
///
/// On the CPU backend the rows are read back and selected in linear time
/// (`select_nth_unstable`), on all cores natively: burn's `topk` sorts whole rows and
/// took 530 ms for [4096, 4096] where this takes a few dozen (the TopK training step's
/// largest cost after the GEMMs). Other devices use `topk`, which needs no read-back (the
/// browser's WebGPU device only allows asynchronous ones).
pub fn kth_largest(pre: &Tensor<2>, k: usize) -> Tensor<2> {
    let [n, features] = pre.dims();
    let k = k.clamp(1, features.max(1));
    let device = pre.device();
    if is_cpu_backend(&device) {
        let data = pre.clone().detach().into_data().convert::<f32>();
        // Borrowed, not copied: a second 64 MB copy cost 25 ms per training step.
        if let Ok(v) = data.as_slice::<f32>() {
            let out = select_rows(v, features, k);
            return Tensor::<2>::from_data(TensorData::new(out, [n, 1]), &device);
        }
    }
    pre.clone().detach().topk(k, 1).narrow(1, k - 1, 1)
}

/// k-th largest of each row of a row-major [n, cols] buffer (NaN sorts lowest).
fn select_rows(v: &[f32], cols: usize, k: usize) -> Vec<f32> {
    let rows = v.len() / cols.max(1);
    crate::base::par::par_map(rows, |range| {
        let mut work = Vec::new();
        range
            .map(|r| crate::base::select::kth_largest(&v[r * cols..(r + 1) * cols], k, &mut work))
            .collect::<Vec<f32>>()
    })
    .concat()
}

#[cfg(test)]
mod select_tests {
    use super::*;

    #[test]
    fn linear_selection_equals_burns_topk() {
        let device = Device::flex();
        for (n, cols, k) in [(3, 7, 1), (100, 257, 32), (70, 40, 40), (5, 4, 2)] {
            let t: Tensor<2> = Tensor::random([n, cols], Distribution::Default, &device);
            // Ties: round so that equal values appear.
            let t = (t * 8.0).round();
            let fast = kth_largest(&t, k).into_data().try_to_vec::<f32>().unwrap();
            let slow = t
                .clone()
                .topk(k, 1)
                .narrow(1, k - 1, 1)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            assert_eq!(fast, slow, "n {n} cols {cols} k {k}");
        }
        assert_eq!(select_rows(&[f32::NAN, 1.0, 3.0, 2.0], 4, 2), vec![2.0]);
    }

    /// The CPU backend's in-place TopK equals the thresholded tensor path (which autodiff
    /// and the GPU use), ties and negatives included, over enough rows for several threads.
    #[test]
    fn host_top_k_equals_the_tensor_path() {
        let device = Device::flex();
        for (n, cols, k) in [(3, 7, 1), (300, 257, 32), (70, 40, 40), (5, 4, 2)] {
            let t: Tensor<2> = Tensor::random([n, cols], Distribution::Default, &device);
            let t = (t * 8.0).round() - 2.0;
            let host = keep_top_k_on_host(t.clone(), k).into_data();
            let tensor = keep_top_k_by_threshold(t.clone(), k).into_data();
            assert_eq!(host, tensor, "n {n} cols {cols} k {k}");
            assert_eq!(keep_top_k(t, k).into_data(), tensor);
        }
    }
}
