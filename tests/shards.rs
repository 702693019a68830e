//! Extraction split over processes (issue 12, item 5): `extract --shard I/N` takes the
//! entries whose id is I modulo N, and `merge` joins the N shard files into exactly the
//! file one process writes. Here 3 shards run as 3 concurrent processes (one of them killed
//! once and re-run, so it resumes), and mismatched shard sets are refused.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{cli, cli_ok, read, root};

fn pairs(dir: &Path) {
    let mut lines = vec!["# image\tcaption".to_string()];
    for rep in 0..20 {
        lines.extend(common::demo_pair_lines(rep));
        // Entries that are skipped land in every shard's share too.
        lines.push(format!("missing-{rep}.png\tno such image"));
    }
    lines.push("a line without a tab".into());
    std::fs::write(dir.join("pairs.tsv"), lines.join("\n") + "\n").unwrap();
}

fn extract_args(model: &str, out: &str, shard: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = [
        "extract",
        "--model",
        model,
        "--data",
        "pairs.tsv",
        "--out",
        out,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend([
        "--batch".into(),
        "4".into(),
        "--checkpoint-every".into(),
        "1".into(),
    ]);
    if let Some(s) = shard {
        a.extend(["--shard".into(), s.into()]);
    }
    a
}

fn spawn(dir: &Path, args: &[String]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_monoscope"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn three_concurrent_shards_merge_to_the_single_process_file() {
    let dir = common::temp_dir("shards");
    pairs(&dir);
    let demo = root().join("assets/demo/clip").display().to_string();
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli_ok(&args, Some(&dir))
    };
    run(extract_args(&demo, "single.safetensors", None));

    // Shard 1 is killed once early, then all three run at the same time; shard 1 resumes
    // from its checkpoint.
    let mut first = spawn(&dir, &extract_args(&demo, "s1.safetensors", Some("1/3")));
    let partial = dir.join("s1.safetensors.partial");
    while !partial.exists() && first.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(1));
    }
    first.kill().ok();
    first.wait().unwrap();
    assert!(
        partial.exists() && !dir.join("s1.safetensors").exists(),
        "shard 1 was not stopped mid-way"
    );
    let children: Vec<_> = (0..3)
        .map(|i| {
            let out = format!("s{i}.safetensors");
            spawn(&dir, &extract_args(&demo, &out, Some(&format!("{i}/3"))))
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Shards in any order.
    run([
        "merge",
        "merged.safetensors",
        "s2.safetensors",
        "s0.safetensors",
        "s1.safetensors",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect());
    assert!(
        read(dir.join("merged.safetensors")) == read(dir.join("single.safetensors")),
        "the merged shards differ from the single-process extraction"
    );

    // Refused: a missing shard, a shard given twice, a shard of another model, a non-shard.
    let tiny = root().join("assets/tiny-clip").display().to_string();
    run(extract_args(&tiny, "tiny-s2.safetensors", Some("2/3")));
    for (shards, why) in [
        (
            vec!["s0.safetensors", "s1.safetensors"],
            "shard 2/3 is missing",
        ),
        (
            vec!["s0.safetensors", "s1.safetensors", "s1.safetensors"],
            "given twice",
        ),
        (
            vec!["s0.safetensors", "s1.safetensors", "tiny-s2.safetensors"],
            "another extraction",
        ),
        (vec!["single.safetensors", "s1.safetensors"], "not a shard"),
    ] {
        let mut args = vec!["merge", "bad.safetensors"];
        args.extend(shards);
        let (ok, _, err) = cli(&args, Some(&dir));
        assert!(!ok && err.contains(why), "{args:?}: {err}");
    }
    // A shard file cannot be resumed as another shard.
    let args = extract_args(&demo, "s1.safetensors", Some("0/3"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, err) = cli(&args, Some(&dir));
    assert!(!ok && err.contains("holds shard"), "{err}");
    let (ok, _, err) = cli(
        &[
            "extract",
            "--model",
            &demo,
            "--data",
            "pairs.tsv",
            "--out",
            "x",
            "--shard",
            "3/3",
        ],
        Some(&dir),
    );
    assert!(!ok && err.contains("I must be in 0..N"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Decoding on worker threads ahead of the forward pass (issue 12, item 4) changes nothing
/// in the output: the same rows in the same order, the same skipped entries with the same
/// reasons (a missing file, a truncated JPEG, a file that is no image), for in-line decoding
/// and for 1 and 3 workers (batches of 4, so the last batch is a short one).
#[test]
fn decode_workers_give_the_in_line_output_bit_for_bit() {
    let dir = common::temp_dir("decode-workers");
    pairs(&dir);
    let images = root().join("tests/fixtures/images");
    let mut tsv = String::from_utf8(read(dir.join("pairs.tsv"))).unwrap();
    for bad in ["truncated.jpg", "not_an_image.png"] {
        tsv.push_str(&format!("{}\tbroken {bad}\n", images.join(bad).display()));
    }
    tsv.push_str(&format!(
        "{}\tan astronaut\n",
        images.join("astronaut.jpg").display()
    ));
    std::fs::write(dir.join("pairs.tsv"), tsv).unwrap();
    let demo = root().join("assets/demo/clip").display().to_string();
    let mut outputs = Vec::new();
    for threads in ["0", "1", "3"] {
        let out = format!("threads-{threads}.safetensors");
        let mut args = extract_args(&demo, &out, None);
        args.extend(["--decode-threads".into(), threads.into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, stderr) = cli_ok(&args, Some(&dir));
        let notes: Vec<String> = stderr
            .lines()
            .filter(|l| l.contains("skipped:"))
            .map(String::from)
            .collect();
        outputs.push((threads, read(dir.join(&out)), notes));
    }
    let (_, first, first_notes) = &outputs[0];
    assert_eq!(
        first_notes.len(),
        23,
        "20 missing images, 2 broken, 1 bad line: {first_notes:?}"
    );
    for (threads, bytes, notes) in &outputs[1..] {
        assert!(
            bytes == first,
            "--decode-threads {threads} wrote other bytes than 0"
        );
        assert_eq!(notes, first_notes, "--decode-threads {threads}");
    }
}
