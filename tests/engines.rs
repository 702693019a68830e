//! A batch split over single-threaded CPU engines (issue 12, `base::engines`): parts of
//! PART_ROWS rows cover the batch in order, and embeddings of a split batch equal those of
//! each input on its own (1e-5: the same f32 ops, GEMMs blocked over other row counts).

mod common;

use burn::tensor::Device;
use monoscope::base::engines::{PART_ROWS, split_rows, splits};
use monoscope::base::host::host_rows;

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
