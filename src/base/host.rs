//! Reading tensors back to the host, and the small vector maths done there.
//!
//! Synchronous read-back works on every CPU backend and on native GPU backends; the
//! browser's WebGPU device can only be read asynchronously ([`rows_async`]).

use burn::tensor::{Bool, Device, Element, Tensor, TensorData};

use crate::error::{Error, Result};

/// Whether `device` is burn's CPU backend (flex), bare or under autodiff: the device whose
/// tensors live in host memory, so host loops over them cost no transfer. The one test of
/// this, for every place that takes a host path on the CPU and a tensor path elsewhere.
pub fn is_cpu_backend(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

fn device_err(e: impl std::fmt::Debug) -> Error {
    Error::Device(format!("{e:?}"))
}

/// `data`'s values borrowed as a slice of `E` (no copy: the read-back buffer itself), or
/// a device error where its element type is not `E`.
pub fn slice<E: Element>(data: &TensorData) -> Result<&[E]> {
    data.as_slice::<E>().map_err(device_err)
}

fn to_f32(data: TensorData) -> Result<Vec<f32>> {
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(device_err)
}

fn split_rows(flat: Vec<f32>, cols: usize) -> Vec<Vec<f32>> {
    flat.chunks(cols.max(1)).map(<[f32]>::to_vec).collect()
}

/// Any tensor's values as a flat, row-major `Vec<f32>` (synchronous read-back).
pub fn host_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    to_f32(t.into_data())
}

/// A [rows, cols] tensor read back synchronously, one `Vec` per row.
pub fn host_rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, cols] = t.dims();
    Ok(split_rows(host_vec(t)?, cols))
}

/// [`host_vec`] without blocking (the only read-back WebGPU allows).
pub async fn host_vec_async<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    to_f32(t.into_data_async().await.map_err(device_err)?)
}

/// [`host_rows`] without blocking.
pub async fn rows_async(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, cols] = t.dims();
    Ok(split_rows(host_vec_async(t).await?, cols))
}

/// The first value of a tensor (a loss, an objective) as f64; NaN if it is empty.
pub fn scalar<const D: usize>(t: Tensor<D>) -> Result<f64> {
    Ok(host_vec(t)?.first().copied().unwrap_or(f32::NAN) as f64)
}

/// A boolean tensor read back synchronously.
pub fn host_bools(t: Tensor<1, Bool>) -> Result<Vec<bool>> {
    t.into_data()
        .convert::<u8>()
        .try_into_vec::<u8>()
        .map(|v| v.into_iter().map(|b| b != 0).collect())
        .map_err(device_err)
}

/// Divides each row by its L2 norm (on the device). [batch, dim] -> [batch, dim]
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12); // [batch, 1]
    x / norm
}

/// Cosine similarity of two host vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// A host vector scaled to unit L2 norm (unchanged when it is zero).
pub fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_and_normalize_by_hand() {
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(normalize(vec![3.0, 4.0]), vec![0.6, 0.8]);
        assert_eq!(normalize(vec![0.0, 0.0]), vec![0.0, 0.0]);
    }
}
