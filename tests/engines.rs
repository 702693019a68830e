//! A batch split over single-threaded CPU engines (issue 12, `base::engines`): parts of
//! PART_ROWS rows cover the batch in order, and embeddings of a split batch equal those of
//! each input on its own (1e-5: the same f32 ops, GEMMs blocked over other row counts).
//! Idle engines share a lone part's linear layers by output columns (`fork_cols`) without
//! changing a bit.

mod common;

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use monoscope::base::engines::{
    FORK_COL_ALIGN, MIN_FORK_COLS, PART_ROWS, fork_cols, split_rows, splits,
};
use monoscope::base::host::host_rows;
use monoscope::base::host::l2_normalize;
use monoscope::clip::blocks::{EncoderConfig, MASKED};
use monoscope::clip::config::Activation;

#[test]
fn parts_cover_the_batch_in_order() {
    let flex = Device::flex();
    assert!(splits(&flex));
    assert!(
        !splits(&flex.clone().autodiff()),
        "autodiff batches run whole"
    );
    for rows in [1, 2, 8, 9, 17, 32, 33] {
        let parts = split_rows(rows, &flex, |r| r);
        // Parts of PART_ROWS rows whatever the core count, so the bits do not depend on it.
        assert_eq!(parts.len(), rows.div_ceil(PART_ROWS), "{rows} rows");
        assert_eq!(parts[0].start, 0);
        assert_eq!(parts.last().unwrap().end, rows);
        for w in parts.windows(2) {
            assert_eq!(w[0].end, w[1].start, "{parts:?}");
            assert_eq!(w[0].len(), PART_ROWS, "{parts:?}");
        }
        // Every part ran on a one-thread engine, a batch of one part too.
        let threads = split_rows(rows, &flex, |_| rayon::current_num_threads());
        assert!(threads.iter().all(|&n| n == 1), "{threads:?}");
    }
    // An empty batch is one empty part (callers concatenate the parts).
    assert_eq!(split_rows(0, &flex, |r| r), vec![0..0]);
    assert_eq!(split_rows(33, &flex.autodiff(), |r| r), vec![0..33]);
}

#[test]
fn a_split_batch_embeds_like_single_inputs() {
    let device = Device::flex();
    let embedder = common::demo_embedder(&device);
    let dir = common::demo_dir().join("images");
    // 20 inputs: three parts (8, 8, 4 rows).
    let pixels: Vec<Vec<f32>> = (0..20)
        .map(|i| {
            let bytes = common::read(dir.join(format!("scene-{}.png", i % 6)));
            embedder.preprocess(&bytes).unwrap()
        })
        .collect();
    let prompts: Vec<String> = (0..20)
        .map(|i| format!("a {} shape number {i}", ["red", "big blue", "small"][i % 3]))
        .collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();

    let images = host_rows(embedder.embed_pixels(&pixels).unwrap()).unwrap();
    let texts = host_rows(embedder.embed_texts(&prompts).unwrap()).unwrap();
    for i in 0..20 {
        let one = host_rows(embedder.embed_pixels(&pixels[i..i + 1]).unwrap()).unwrap();
        let diff = common::max_abs_diff(&images[i], &one[0]);
        assert!(diff <= 1e-5, "image {i}: {diff}");
        let one = host_rows(embedder.embed_texts(&prompts[i..i + 1]).unwrap()).unwrap();
        let diff = common::max_abs_diff(&texts[i], &one[0]);
        assert!(diff <= 1e-5, "prompt {i}: {diff}");
    }
}

#[test]
fn idle_engines_are_lent_to_a_lone_part() {
    let flex = Device::flex();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // One part (batch 1): the part's engine shares 3072 columns with every idle engine.
    let runs = split_rows(1, &flex, |_| {
        fork_cols(3072, |r| {
            (r, std::thread::current().name().map(String::from))
        })
    })
    .remove(0);
    let ranges: Vec<_> = runs.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(ranges[0].start, 0);
    assert_eq!(ranges.last().unwrap().end, 3072);
    for w in ranges.windows(2) {
        assert_eq!(w[0].end, w[1].start, "{ranges:?}");
        assert_eq!(w[1].start % FORK_COL_ALIGN, 0, "{ranges:?}");
        assert!(w[0].len() >= MIN_FORK_COLS, "{ranges:?}");
    }
    let threads: std::collections::BTreeSet<_> = runs.iter().map(|(_, t)| t.clone()).collect();
    if cores > 1 {
        // 3072 / 32 engines = 96 columns each; more engines than that share fewer ranges.
        assert_eq!(ranges.len(), cores.min(3072 / MIN_FORK_COLS), "{ranges:?}");
        assert_eq!(
            threads.len(),
            ranges.len(),
            "each range on its own engine: {threads:?}"
        );
        assert!(threads.iter().all(|t| {
            t.as_deref()
                .is_some_and(|n| n.starts_with("monoscope-engine-"))
        }));
    } else {
        assert_eq!(ranges.len(), 1);
    }
    // Too few columns to share: one range; a short last range joins the one before.
    assert_eq!(
        split_rows(1, &flex, |_| fork_cols(MIN_FORK_COLS + 20, |r| r)).remove(0),
        vec![0..MIN_FORK_COLS + 20]
    );
    let tail = split_rows(1, &flex, |_| fork_cols(3 * MIN_FORK_COLS - 8, |r| r)).remove(0);
    assert!(tail.iter().all(|r| r.len() >= MIN_FORK_COLS), "{tail:?}");
    // A part for every engine: none is idle, nothing is lent.
    let busy = split_rows(cores * PART_ROWS, &flex, |_| fork_cols(3072, |r| r).len());
    assert!(busy.iter().all(|&n| n == 1), "{busy:?}");
    // Outside the engines (other callers, autodiff): one range.
    assert_eq!(fork_cols(3072, |r| r), vec![0..3072]);
}

#[test]
fn columns_shared_with_idle_engines_keep_the_bits() {
    let device = Device::flex();
    let embedder = common::demo_embedder(&device);
    let dir = common::demo_dir().join("images");
    let pixels = embedder
        .preprocess(&common::read(dir.join("scene-0.png")))
        .unwrap();
    // Batch 1 through the engines: on a multi-core machine the demo model's MLP expansions
    // (256 columns) are shared with the idle engine.
    let forked = host_rows(
        embedder
            .embed_pixels(std::slice::from_ref(&pixels))
            .unwrap(),
    )
    .unwrap();
    // The same forward pass on one thread that no engine helps.
    let one = one_thread();
    let whole = one.install(|| {
        let batch = embedder.pixel_batch(std::slice::from_ref(&pixels)).unwrap();
        host_rows(l2_normalize(embedder.model.image_features(batch, false).0)).unwrap()
    });
    assert_eq!(forked, whole, "bit for bit");
    // And a prompt (the text tower).
    let forked = host_rows(embedder.embed_texts(&["a big red circle"]).unwrap()).unwrap();
    let whole = one.install(|| {
        let (batch, _) = embedder.text_batch(&["a big red circle"]).unwrap();
        host_rows(l2_normalize(embedder.model.text_features(&batch, false).0)).unwrap()
    });
    assert_eq!(forked, whole, "bit for bit");
}

/// Bit patterns of a tensor's values.
fn bits<const D: usize>(t: Tensor<D>) -> Vec<u32> {
    t.into_data()
        .try_to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// A one-thread pool that no engine helps: the unhelped forward pass to compare with.
fn one_thread() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
}

#[test]
fn a_vit_b_layer_shared_by_columns_keeps_the_bits() {
    // One ViT-B/32 encoder layer (width 768, MLP 3072, 12 heads) at batch 1 (50 tokens)
    // and a 77-token prompt: every linear layer is cut by columns on a multi-core machine.
    // Then heads of 88 (ViT-g's size, not a multiple of the packed GEMM's 16-column panels):
    // 6 heads of 88 on 2 engines would be cut after 3 heads, at column 264.
    let device = Device::flex();
    let one = one_thread();
    for (width, heads, intermediate) in [(768, 12, 3072), (528, 6, 1056)] {
        let layer = EncoderConfig {
            width,
            intermediate,
            layers: 1,
            heads,
            act: Activation::QuickGelu,
            eps: 1e-5,
        }
        .init(&device);
        for tokens in [50, 77] {
            let x =
                Tensor::<3>::random([1, tokens, width], Distribution::Normal(0.0, 1.0), &device);
            // The prompt gets the text tower's causal mask ([batch, 1, tokens, tokens]).
            let mask = (tokens == 77).then(|| {
                let m: Vec<f32> = (0..tokens * tokens)
                    .map(|i| if i % tokens > i / tokens { MASKED } else { 0.0 })
                    .collect();
                Tensor::<4>::from_data(TensorData::new(m, [1, 1, tokens, tokens]), &device)
            });
            let forward = || bits(layer.forward(x.clone(), mask.clone(), false).0);
            let lent = split_rows(1, &device, |_| forward());
            let whole = one.install(forward);
            assert_eq!(
                lent[0], whole,
                "width {width}, {tokens} tokens: bit for bit"
            );
        }
    }
}

#[test]
fn a_linear_layer_cut_into_column_ranges_keeps_the_bits_at_vit_b_shapes() {
    use burn::nn::LinearConfig;
    use burn::tensor::module::linear;
    let device = Device::flex();
    // ViT-B/32's attention and MLP shapes at batch 1 and 8 (50, 77 and 400 token rows):
    // the inner dimension is where GEMM blocking could reorder sums, and it is never cut.
    let one = one_thread();
    for (d_in, d_out) in [(768, 768), (768, 3072), (3072, 768)] {
        let layer = LinearConfig::new(d_in, d_out).init(&device);
        let (w, b) = (layer.weight.val(), layer.bias.as_ref().unwrap().val());
        for rows in [50, 77, 400] {
            let x = Tensor::<2>::random([rows, d_in], Distribution::Normal(0.0, 1.0), &device);
            let whole = one.install(|| bits(layer.forward(x.clone())));
            // Ranges as fork_cols cuts them (multiples of 32, at least MIN_FORK_COLS = 96)
            // and two that are not aligned (last ranges of 68 and 72 columns: more than
            // 64 is what keeps gemm off its small-product blocking at 50 rows).
            for step in [96, 128, 192, 384, 1536, 100, 200] {
                let parts: Vec<Tensor<2>> = (0..d_out)
                    .step_by(step)
                    .map(|a| {
                        let cols = a..(a + step).min(d_out);
                        one.install(|| {
                            linear(
                                x.clone(),
                                w.clone().slice([0..d_in, cols.clone()]),
                                Some(b.clone().slice([cols])),
                            )
                        })
                    })
                    .collect();
                let cut = bits(Tensor::cat(parts, 1));
                let differ = cut.iter().zip(&whole).filter(|(a, b)| a != b).count();
                assert_eq!(
                    differ, 0,
                    "{rows} rows, {d_in} -> {d_out}, ranges of {step}: values that differ"
                );
            }
        }
    }
}

/// A panic in a range a lent engine runs reaches the caller (after every range has
/// finished, as they borrow the caller's data), and the engines serve the next batch as
/// before; a split inside a part runs whole on the part's engine instead of waiting for
/// engines that are taken.
#[test]
fn a_lent_engine_panic_reaches_the_caller_and_the_engines_go_on() {
    let flex = Device::flex();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for _ in 0..3 {
        let caught = std::panic::catch_unwind(|| {
            split_rows(1, &flex, |_| {
                fork_cols(3072, |r| {
                    assert!(r.start == 0, "range {r:?} fails");
                    r
                })
            })
        });
        // With one core there is no lent engine: the only range is the caller's own.
        assert_eq!(caught.is_err(), cores > 1);
        let ok = split_rows(1, &flex, |_| fork_cols(3072, |r| r.len())).remove(0);
        assert_eq!(ok.iter().sum::<usize>(), 3072);
    }
    let nested = split_rows(1, &flex, |_| split_rows(20, &flex, |r| r));
    assert_eq!(nested, vec![vec![0..20]]);
}

/// Batches split from several threads at once take the engines in turn: none waits for an
/// engine that another split holds (each lent engine serves its split until that ends).
#[test]
fn concurrent_splits_take_the_engines_in_turn() {
    let flex = Device::flex();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for rows in [1, 9, 1, 20] {
                    let parts = split_rows(rows, &flex, |_| fork_cols(3072, |r| r.len()));
                    assert!(parts.iter().all(|p| p.iter().sum::<usize>() == 3072));
                }
            });
        }
    });
}
