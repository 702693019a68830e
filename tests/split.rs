//! An image's pass cut by token rows or output columns between engines that share no memory
//! (the page's engine workers at batch 1, issue 12): the parts, run in step as the page's
//! workers run them, give the report of the whole pass on one engine bit for bit (the demo
//! model and bundle, the CPU backend's packed path that the page's wasm build also takes).

mod common;

use burn::tensor::{Device, Distribution, Tensor, read_sync};
use common::*;
use monoscope::Lab;
use monoscope::clip::{Cut, SplitPass};

/// Runs `parts` parts of `bytes`'s pass in step; returns the parts, finished.
fn run(lab: &Lab, bytes: &[u8], parts: usize, cut: Cut) -> Vec<SplitPass> {
    let mut split: Vec<SplitPass> = (0..parts)
        .map(|p| lab.split_image(bytes, p, parts, cut).unwrap())
        .collect();
    let mut rounds = 0;
    while !split[0].done() {
        let shares: Vec<Vec<f32>> = split.iter_mut().map(|s| s.share().unwrap()).collect();
        let refs: Vec<&[f32]> = shares.iter().map(Vec::as_slice).collect();
        for s in &mut split {
            s.gather(&refs).unwrap();
        }
        rounds += 1;
    }
    assert!(rounds > 0 && split.iter().all(SplitPass::done));
    split
}

#[test]
fn a_split_pass_gives_the_whole_pass_report_bit_for_bit() {
    let device = Device::flex();
    let lab = Lab::new(demo_embedder(&device), None);
    lab.set_lens(demo_lens(&device)).unwrap();
    for image in ["scene-0.png", "scene-3.png"] {
        let bytes = read(demo_dir().join("images").join(image));
        let whole = read_sync(lab.analyze_image(&bytes)).unwrap();
        assert!(whole.activations.is_some());
        for parts in [1, 2, 3, 5] {
            let split = run(&lab, &bytes, parts, Cut::Rows);
            let got = read_sync(lab.split_report(&split[0])).unwrap();
            assert_eq!(got.embedding, whole.embedding, "{image}, {parts} parts");
            assert_eq!(got.activations, whole.activations, "{image}, {parts} parts");
            // Only the part with the class token has a report.
            for s in &split[1..] {
                assert!(read_sync(lab.split_report(s)).is_err());
            }
        }
        // The page's cut: by columns up to one part per head, then by token rows.
        for (parts, cols) in [(2, true), (4, true), (5, false)] {
            let split = run(&lab, &bytes, parts, Cut::Auto);
            assert_eq!(
                matches!(split[0], SplitPass::Cols(_)),
                cols,
                "{parts} parts"
            );
            let got = read_sync(lab.split_report(&split[0])).unwrap();
            assert_eq!(
                got.embedding, whole.embedding,
                "{image}, {parts} parts, auto"
            );
        }
        // Cut by columns (the demo model has 4 heads: up to 4 parts), every part ends with
        // the class token's row and the same report.
        for parts in [1, 2, 3, 4] {
            for s in run(&lab, &bytes, parts, Cut::Cols) {
                let got = read_sync(lab.split_report(&s)).unwrap();
                let at = format!("{image}, {parts} parts by columns, part {}", s.part());
                assert_eq!(got.embedding, whole.embedding, "{at}");
                assert_eq!(got.activations, whole.activations, "{at}");
            }
        }
    }
}

#[test]
fn a_bad_image_or_cut_is_refused_before_any_work() {
    let device = Device::flex();
    let lab = Lab::new(demo_embedder(&device), None);
    let bytes = read(demo_dir().join("images/scene-1.png"));
    let err = |r: Result<SplitPass, monoscope::error::Error>| match r {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    for cut in [Cut::Rows, Cut::Cols] {
        assert!(!err(lab.split_image(b"not an image", 0, 2, cut)).is_empty());
        let msg = err(lab.split_image(&bytes, 2, 2, cut));
        assert!(msg.contains("part 2 of 2"), "{msg}");
        // An unfinished pass has no report.
        let s = lab.split_image(&bytes, 0, 2, cut).unwrap();
        let msg = read_sync(lab.split_report(&s)).unwrap_err().to_string();
        assert!(msg.contains("no finished class token"), "{msg}");
    }
    // Cut by columns, a part has at least one head (the demo model has 4).
    let msg = err(lab.split_image(&bytes, 0, 5, Cut::Cols));
    assert!(msg.contains("4 heads"), "{msg}");
    let msg = "diagonal".parse::<Cut>().unwrap_err().to_string();
    assert!(msg.contains("\"rows\", \"cols\" or \"auto\""), "{msg}");
}

#[test]
fn token_rows_are_embedded_alone_bit_for_bit() {
    // Each part projects only its own rows' patches (`VisionEmbeddings::forward_rows`):
    // every cut of the tokens, the class token alone included, gives those rows of the
    // whole embedding exactly.
    let device = Device::flex();
    let e = demo_embedder(&device);
    let emb = &e.model.vision_model.embeddings;
    let size = e.config.vision.image_size;
    let pixels = Tensor::<4>::random([1, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
    let whole: Vec<f32> = emb
        .forward(pixels.clone())
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let (tokens, width) = (emb.tokens(), whole.len() / emb.tokens());
    for rows in [0..1, 0..tokens, 1..tokens, 0..3, 2..5, tokens - 1..tokens] {
        let got: Vec<f32> = emb
            .forward_rows(pixels.clone(), rows.clone())
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert_eq!(
            got,
            whole[rows.start * width..rows.end * width],
            "rows {rows:?}"
        );
    }
}
