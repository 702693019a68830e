//! The packed GEMM of the towers' linear layers (issue 12, `base::gemm`, `clip::packed`).
//!
//! Its contract is exact: every output value is one chain of f32 fused multiply-adds over
//! the inner dimension in order, then the bias. So the tests compare bit for bit with that
//! chain written out in scalar Rust (`f32::mul_add`), at ViT-B/32's shapes and at ragged
//! ones, with output columns cut between threads. Only the activation's `exp` is an
//! approximation, compared with f64 maths at a stated tolerance. These tests run the
//! kernel wherever it can run (any x86_64 CPU with AVX2 and FMA, AVX-512 ones included).

use std::sync::Arc;

use burn::module::Param;
use burn::nn::LinearConfig;
use burn::tensor::{Device, Tensor, TensorData};
use monoscope::base::gemm::{Activation, ColumnWriter, NR, PackedRows, PackedWeight, available};
use monoscope::clip::packed::PackCell;

// Shapes, inputs and the defining chain, shared with the WebAssembly tests (tests/wasm/).
#[path = "common/gemm_cases.rs"]
#[allow(dead_code)]
mod cases;
use cases::{SHAPES, chain, differing, random, ranges};

/// Whether the kernel can run here; on x86_64 it must (every machine this project runs on
/// has AVX2 and FMA), elsewhere the packed path never runs (`gemm::preferred`).
fn kernel() -> bool {
    #[cfg(target_arch = "x86_64")]
    assert!(
        available(),
        "every x86_64 machine this project runs on has AVX2 and FMA"
    );
    available()
}

#[test]
fn every_value_is_one_fma_chain_in_order() {
    if !kernel() {
        return;
    }
    for (m, k, n) in SHAPES {
        let x = random(m * k, 1);
        let w = random(k * n, 2);
        let b = random(n, 3);
        let want = chain(&x, &w, Some(&b), [m, k, n], true);
        // The packed copy, and the layer's own weight laid out per call (the page's way).
        let packed = PackedWeight::new(&w, k, n, Some(&b));
        let borrowed = PackedWeight::borrowed(Arc::new(w.clone()), k, n, Some(&b));
        let rows = PackedRows::new(&x, m, k);
        for (parts, packed) in [1, 2, 3]
            .into_iter()
            .flat_map(|p| [(p, &packed), (p, &borrowed)])
        {
            let out = ColumnWriter::new(m, 0..n);
            std::thread::scope(|s| {
                for cols in ranges(n, parts, NR) {
                    let (out, rows, packed) = (&out, &rows, &packed);
                    s.spawn(move || out.write(rows, packed, cols, Activation::Identity, None));
                }
            });
            let differ = differing(&out.into_vec(), &want);
            let copy = packed.is_copy();
            assert_eq!(
                differ, 0,
                "[{m}, {k}] x [{k}, {n}] in {parts} parts (packed copy: {copy})"
            );
        }
        // One row on its own gives the same bits as in its batch.
        let last = m - 1;
        let alone = ColumnWriter::new(1, 0..n);
        let one = PackedRows::new(&x[last * k..], 1, k);
        alone.write(&one, &packed, 0..n, Activation::Identity, None);
        assert_eq!(
            alone.into_vec(),
            want[last * n..].to_vec(),
            "row {last} alone"
        );
    }
}

#[test]
fn a_window_of_columns_is_written_where_it_belongs() {
    if !kernel() {
        return;
    }
    let (m, k, n) = (9, 100, 200);
    let (x, w) = (random(m * k, 4), random(k * n, 5));
    let want = chain(&x, &w, None, [m, k, n], true);
    let packed = PackedWeight::new(&w, k, n, None);
    let rows = PackedRows::new(&x, m, k);
    // Columns 64..192 (two heads of 64, say), written as two ranges.
    let out = ColumnWriter::new(m, 64..192);
    out.write(&rows, &packed, 64..128, Activation::Identity, None);
    out.write(&rows, &packed, 128..192, Activation::Identity, None);
    let got = out.into_vec();
    for i in 0..m {
        assert_eq!(got[i * 128..(i + 1) * 128], want[i * n + 64..i * n + 192]);
    }
}

#[test]
fn quick_gelu_and_the_residual_are_added_after_the_bias() {
    if !kernel() {
        return;
    }
    let (m, k, n) = (50, 768, 3072);
    let (x, w, b) = (random(m * k, 6), random(k * n, 7), random(n, 8));
    let residual: Vec<f32> = random(m * n, 9).iter().map(|v| v * 3.0).collect();
    let lin = chain(&x, &w, Some(&b), [m, k, n], true);
    let packed = PackedWeight::new(&w, k, n, Some(&b));
    let rows = PackedRows::new(&x, m, k);
    let out = ColumnWriter::new(m, 0..n);
    out.write(&rows, &packed, 0..n, Activation::QuickGelu, Some(&residual));
    let got = out.into_vec();
    // The product before the activation is exact (test above); what is left is the
    // activation: `v * sigmoid(1.702 v)` with an `exp` within 2 ulp, one division and two
    // multiplications, so a few ulp of the result; 1e-6 relative (8 ulp) plus 1e-6 absolute
    // (values near 0, where the residual's rounding dominates) bounds it.
    let mut worst = 0.0f64;
    for ((&g, &v), &r) in got.iter().zip(&lin).zip(&residual) {
        let v = v as f64;
        let want = v / (1.0 + (-1.702 * v).exp()) + r as f64;
        let err = (g as f64 - want).abs() / (1e-6 + 1e-6 * want.abs());
        worst = worst.max(err);
    }
    assert!(
        worst <= 1.0,
        "quick_gelu + residual off by {worst} of the tolerance"
    );
    // Large magnitudes saturate instead of overflowing: sigmoid(1.702 v) is 0 or 1.
    let k = 1;
    let x = vec![1.0f32; 4];
    let w: Vec<f32> = [-1e4f32, -60.0, 60.0, 1e4]
        .into_iter()
        .chain([0.0; 12])
        .collect();
    let packed = PackedWeight::new(&w, k, 16, None);
    let out = ColumnWriter::new(4, 0..16);
    out.write(
        &PackedRows::new(&x, 4, k),
        &packed,
        0..16,
        Activation::QuickGelu,
        None,
    );
    let got = out.into_vec();
    assert!(
        got[0].abs() < 1e-30 && got[1].abs() < 1e-30,
        "{:?}",
        &got[..2]
    );
    assert_eq!(&got[2..4], &[60.0, 1e4]);
}

#[test]
#[cfg(target_arch = "x86_64")]
#[should_panic(expected = "written twice")]
fn a_column_range_cannot_be_written_twice() {
    assert!(kernel());
    let packed = PackedWeight::new(&random(64 * 64, 1), 64, 64, None);
    let rows = PackedRows::new(&random(2 * 64, 2), 2, 64);
    let out = ColumnWriter::new(2, 0..64);
    out.write(&rows, &packed, 0..48, Activation::Identity, None);
    out.write(&rows, &packed, 32..64, Activation::Identity, None);
}

/// `packed` multiplies like `w` ([48, 40], row-major) and `linear`'s bias, bit for bit.
fn check_packed(linear: &burn::nn::Linear, packed: &PackedWeight, w: &[f32], seed: u64) {
    if !kernel() {
        return;
    }
    let b = linear.bias.as_ref().unwrap().val().into_data();
    let b = b.try_to_vec::<f32>().unwrap();
    let x = random(3 * 48, seed);
    let out = ColumnWriter::new(3, 0..40);
    let rows = PackedRows::new(&x, 3, 48);
    out.write(&rows, packed, 0..40, Activation::Identity, None);
    assert_eq!(out.into_vec(), chain(&x, w, Some(&b), [3, 48, 40], true));
}

#[test]
fn a_layer_packs_once_and_again_when_its_weight_changes() {
    let device = Device::flex();
    let mut linear = LinearConfig::new(48, 40).init(&device);
    let cell = PackCell::default();
    let first = cell.get(&linear).expect("flex f32 weights pack");
    assert!(
        Arc::ptr_eq(&first, &cell.get(&linear).unwrap()),
        "packed once"
    );
    // A clone of the module starts empty and packs its own.
    assert!(!Arc::ptr_eq(&first, &cell.clone().get(&linear).unwrap()));
    // New weights (as a checkpoint load gives): packed again, from the new values.
    let w = random(48 * 40, 11);
    linear.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(w.clone(), [48, 40]),
        &device,
    ));
    let second = cell.get(&linear).unwrap();
    assert!(
        !Arc::ptr_eq(&first, &second),
        "a new weight is packed again"
    );
    assert_eq!(second.dims(), [48, 40]);
    check_packed(&linear, &second, &w, 12);
    // A transposed view (not contiguous) is read in its logical order.
    let t: Tensor<2> = Tensor::from_data(TensorData::new(w.clone(), [40, 48]), &device);
    linear.weight = Param::from_tensor(t.clone().swap_dims(0, 1));
    let third = cell.get(&linear).unwrap();
    let logical = t.swap_dims(0, 1).into_data().try_to_vec::<f32>().unwrap();
    check_packed(&linear, &third, &logical, 13);
    // Autodiff tensors are not flex primitives: no packing, burn's path runs.
    let grad = LinearConfig::new(8, 8).init(&device.autodiff());
    assert!(PackCell::default().get(&grad).is_none());
}

#[test]
#[cfg(target_arch = "x86_64")]
#[should_panic(expected = "never written")]
fn an_output_with_columns_never_written_is_not_handed_out() {
    assert!(kernel());
    let packed = PackedWeight::new(&random(64 * 64, 1), 64, 64, None);
    let rows = PackedRows::new(&random(2 * 64, 2), 2, 64);
    let out = ColumnWriter::new(2, 0..64);
    out.write(&rows, &packed, 0..48, Activation::Identity, None);
    out.into_vec();
}
