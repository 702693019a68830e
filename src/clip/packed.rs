//! The towers' linear layers on the packed GEMM ([`crate::base::gemm`]): tensors of the
//! CPU backend (flex) in and out, the weight packed at a layer's first use and kept while
//! the layer holds the same weight tensor (natively; the page reads the layer's own weight
//! instead and lays out a few panels at a time, [`gemm::packs_once`]).
//!
//! The path runs where [`enabled`] says so (flex without autodiff, on an x86_64 CPU with
//! AVX2 and FMA unless `MONOSCOPE_GEMM=flex`, or in the page's wasm with SIMD128);
//! everywhere else the layers run burn's own `linear` as before.

use std::sync::{Arc, Mutex};

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::nn::Linear;
use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::base::engines::{fork_cols, splits};
use crate::base::gemm::{self, ColumnWriter, PackedRows, PackedWeight};

/// Whether linear layers on `device` take the packed path.
pub fn enabled(device: &Device) -> bool {
    gemm::preferred() && splits(device)
}

/// A linear layer's packed weight, made at first use. Cloning a module gives an empty cell
/// (the clone packs again if it is used), and a cell whose layer now holds another weight
/// or bias tensor (loaded from a checkpoint, say) packs again: the cell keeps the tensors it
/// packed and compares their storage and layout with the layer's on every call.
#[derive(Default)]
pub struct PackCell(Mutex<Option<Packed>>);

struct Packed {
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    packed: Arc<PackedWeight>,
}

impl Clone for PackCell {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for PackCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PackCell")
    }
}

fn flex<const D: usize>(t: Tensor<D>) -> Option<FlexTensor> {
    t.try_into_primitive::<Flex>().ok()
}

/// Same storage, same view.
fn same(a: &FlexTensor, b: &FlexTensor) -> bool {
    Arc::ptr_eq(&a.data_arc(), &b.data_arc()) && a.layout() == b.layout()
}

/// `t`'s values in row-major order (a copy only where `t` is a strided view), or `None`
/// unless it is an f32 flex tensor.
fn values(t: &FlexTensor) -> Option<FlexTensor> {
    let t = if t.is_contiguous() {
        t.clone()
    } else {
        t.to_contiguous()
    };
    t.as_slice::<f32>()?;
    Some(t)
}

impl PackCell {
    /// `linear`'s weight and bias packed, or `None` where they are not f32 flex tensors.
    pub fn get(&self, linear: &Linear) -> Option<Arc<PackedWeight>> {
        let bias = linear.bias.as_ref().map(|b| b.val());
        self.get_parts(&linear.weight.val(), bias.as_ref())
    }

    /// `weight` ([in, out], any view) and `bias` ([out]) packed, or `None` where they are
    /// not f32 flex tensors.
    pub fn get_parts(
        &self,
        weight: &Tensor<2>,
        bias: Option<&Tensor<1>>,
    ) -> Option<Arc<PackedWeight>> {
        let [k, n] = weight.dims();
        let weight = flex(weight.clone())?;
        let bias = match bias {
            Some(b) => Some(flex(b.clone())?),
            None => None,
        };
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = slot.as_ref() {
            let same_bias = match (&p.bias, &bias) {
                (Some(a), Some(b)) => same(a, b),
                (None, None) => true,
                _ => false,
            };
            if same(&p.weight, &weight) && same_bias {
                return Some(p.packed.clone());
            }
        }
        let w = values(&weight)?;
        let b = match &bias {
            Some(b) => Some(values(b)?),
            None => None,
        };
        let b = b.as_ref().and_then(|b| b.as_slice::<f32>());
        let packed = Arc::new(if gemm::packs_once() {
            PackedWeight::new(w.as_slice::<f32>()?, k, n, b)
        } else {
            // The page reads the layer's own storage (no copy: `w` is the layer's tensor
            // wherever it is contiguous, as burn's `Linear` weights are).
            PackedWeight::borrowed(Arc::new(HostValues(w)), k, n, b)
        });
        *slot = Some(Packed {
            weight,
            bias,
            packed: packed.clone(),
        });
        Some(packed)
    }
}

/// `act(x · weight + bias) + residual` on the packed path: `x` [rows, in], `weight` [in,
/// out], `residual` [rows, out]; output columns shared with the idle engines this thread
/// was lent ([`fork_cols`]). `None` where the path does not run (see [`enabled`]) or the
/// tensors are not f32: the caller then runs burn's ops.
pub fn product(
    cell: &PackCell,
    weight: &Tensor<2>,
    bias: Option<&Tensor<1>>,
    x: &Tensor<2>,
    act: gemm::Activation,
    residual: Option<&Tensor<2>>,
) -> Option<Tensor<2>> {
    if !enabled(&x.device()) {
        return None;
    }
    let w = cell.get_parts(weight, bias)?;
    let rows = self::rows(x)?;
    let res = match residual {
        Some(r) => Some(host(r)?),
        None => None,
    };
    let [m, _] = x.dims();
    let [_, n] = weight.dims();
    let out = ColumnWriter::new(m, 0..n);
    let res = res.as_ref().map(HostValues::as_slice);
    fork_cols(n, |cols| out.write(&rows, &w, cols, act, res));
    Some(tensor(out.into_vec(), [m, n]))
}

/// `softmax(scores * scale + mask)` over the last dimension of `scores` ([batch, heads,
/// queries, keys], heads `head0..` of the layer) on host values ([`gemm::softmax_rows`]);
/// `mask`: row-major values of an additive mask of the given dims, broadcastable to the
/// layer's [batch, all heads, queries, keys]. `Err(scores)` where the path does not run
/// ([`enabled`]), the scores are not f32 or the mask does not broadcast so: the caller then
/// runs burn's ops.
pub fn softmax(
    scores: Tensor<4>,
    scale: f32,
    mask: Option<(&[f32], [usize; 4])>,
    head0: usize,
) -> Result<Tensor<4>, Box<Tensor<4>>> {
    let dims @ [b, h, tq, t] = scores.dims();
    let broadcasts = |(m, [mb, mh, mt, ms]): (&[f32], [usize; 4])| {
        ms == t && (mb == 1 || mb == b) && (mt == 1 || mt == tq) && m.len() == mb * mh * mt * ms
    };
    if !enabled(&scores.device()) || scores.dtype() != DType::F32 || !mask.is_none_or(broadcasts) {
        return Err(Box::new(scores));
    }
    let mut values = flex(scores)
        .and_then(|t| t.into_data().try_into_vec::<f32>().ok())
        .expect("an f32 flex tensor (checked above)");
    let row = |r: usize| {
        let (m, [mb, mh, mt, ms]) = mask?;
        let (i, hl, bi) = (r % tq, (r / tq) % h, r / (tq * h));
        let pick = |n: usize, at: usize| if n == 1 { 0 } else { at };
        let at = ((pick(mb, bi) * mh + pick(mh, head0 + hl)) * mt + pick(mt, i)) * ms;
        Some(&m[at..at + ms])
    };
    gemm::softmax_rows(&mut values, t, scale, row);
    Ok(tensor(values, dims))
}

/// `x`: [rows, in] packed for the micro-kernel, or `None` unless it is an f32 flex tensor.
pub fn rows(x: &Tensor<2>) -> Option<PackedRows> {
    let [m, k] = x.dims();
    let t = values(&flex(x.clone())?)?;
    Some(PackedRows::new(t.as_slice::<f32>()?, m, k))
}

/// `x`'s values, row-major (for a residual), or `None` unless it is an f32 flex tensor.
pub fn host<const D: usize>(x: &Tensor<D>) -> Option<HostValues> {
    values(&flex(x.clone())?).map(HostValues)
}

/// A flex tensor's f32 values, borrowed from its storage.
pub struct HostValues(FlexTensor);

impl AsRef<[f32]> for HostValues {
    fn as_ref(&self) -> &[f32] {
        self.as_slice()
    }
}

impl HostValues {
    /// The values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        self.0
            .as_slice::<f32>()
            .expect("checked to be contiguous f32 in `host`")
    }
}

/// A flex tensor of `shape` holding `values` (row-major), without a copy.
pub fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    Tensor::from_primitive::<Flex>(FlexTensor::from_data(TensorData::new(values, shape)))
}
