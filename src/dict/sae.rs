//! Sparse autoencoders (SPEC §1): z = act(W_enc (x - b_dec) + b_enc), x_hat = W_dec z + b_dec.
//!
//! Tensors use SAELens' layout and names (`W_enc` [d, K], `W_dec` [K, d], `b_enc` [K],
//! `b_dec` [d]), so SAELens checkpoints load without transposes; the rows of `W_dec` are
//! the dictionary atoms and are kept at unit norm during training.

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

/// The activation of a sparse autoencoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaeActivation {
    /// Keep the k largest pre-activations (then ReLU them), zero the rest.
    TopK(usize),
    /// Plain ReLU (trained with an L1 penalty).
    Relu,
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

    /// The activation.
    pub fn activation(&self) -> SaeActivation {
        self.act
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
    let threshold = pre.clone().detach().topk(k, 1).narrow(1, k - 1, 1); // [n, 1]
    let below = pre.clone().lower(threshold);
    relu(pre).mask_fill(below, 0.0)
}
