//! Non-negative contrastive learning head (SPEC §1, after Wang et al., ICLR 2024, made
//! multimodal): h(x) = ReLU(W2 ReLU(W1 x + b1) + b2) on frozen embeddings; the K outputs
//! are the features. Trained with the symmetric CLIP InfoNCE loss (see [`info_nce`]).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Device, Int, Tensor};

use crate::base::host::l2_normalize;

/// The head.
#[derive(Module, Debug)]
pub struct Ncl {
    /// d -> hidden.
    pub fc1: Linear,
    /// hidden -> K.
    pub fc2: Linear,
}

/// A fresh head.
pub fn init(d: usize, hidden: usize, features: usize, device: &Device) -> Ncl {
    Ncl {
        fc1: LinearConfig::new(d, hidden).init(device),
        fc2: LinearConfig::new(hidden, features).init(device),
    }
}

impl Ncl {
    /// Non-negative features. [n, d] -> [n, K]
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        relu(self.fc2.forward(relu(self.fc1.forward(x))))
    }
}

/// Symmetric InfoNCE between paired rows of `a` and `b` ([n, K] each): rows are
/// L2-normalised, logits = a b^T / temperature, and the loss is the mean of the
/// image->text and text->image cross-entropies with the diagonal as targets (CLIP's loss).
/// Returns a [1] tensor.
pub fn info_nce(a: Tensor<2>, b: Tensor<2>, temperature: f64) -> Tensor<1> {
    let [n, _] = a.dims();
    let logits = l2_normalize(a).matmul(l2_normalize(b).transpose()) / temperature; // [n, n]
    let targets = Tensor::<1, Int>::arange(0..n as i64, &logits.device()).reshape([n, 1]);
    let diag = |l: Tensor<2>| log_softmax(l, 1).gather(1, targets.clone()).mean().neg();
    (diag(logits.clone()) + diag(logits.transpose())) / 2.0
}
