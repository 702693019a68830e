//! Crash safety of every long command (issue 13): `extract`, `train`, `analyze`,
//! `world-train` and `world-decoder` are killed with SIGKILL at random moments and run
//! again (with `--resume` where the command has it), and must end with files
//! byte-identical to an uninterrupted run of the same settings. After every kill, what the
//! command left is either refused by its loader or identical to the uninterrupted output:
//! no partial or mixed file is ever accepted as complete.
//!
//! The kills land uniformly over the uninterrupted run's duration (measured first), from a
//! fixed seed. Kills per command: `MONOSCOPE_CRASH_KILLS` (default [`DEFAULT_KILLS`], what
//! `cargo test` runs; the note's long run used 20). A resumed run that finishes before its
//! kill must also match; the next one starts over.
//!
//! `train` and `analyze` run into directories that already hold the outputs of a run
//! with other settings, so a kill between two file writes would leave a mix of old and new
//! files: the records of `io::FileRecord` must refuse it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use monoscope::base::SplitMix;
use monoscope::io::embeddings::EmbeddingsFile;

use common::{cli_ok, copy_dir, root};

/// Kills per command in `cargo test`.
const DEFAULT_KILLS: usize = 3;

fn kills() -> usize {
    std::env::var("MONOSCOPE_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_KILLS)
}

/// One command under test.
struct Job {
    name: &'static str,
    /// Arguments of every run (relative paths resolve in the run's directory).
    args: Vec<String>,
    /// Output files compared at the end, relative to the run's directory.
    outputs: Vec<&'static str>,
    /// Logs, compared at the end only (a run rewrites them as it goes).
    logs: Vec<&'static str>,
    /// Loads what a run left; `Err` means the loader refused it.
    verify: fn(&Path) -> monoscope::Result<()>,
}

fn run(job: &Job, dir: &Path) {
    let args: Vec<&str> = job.args.iter().map(String::as_str).collect();
    cli_ok(&args, Some(dir));
}

/// Starts the command, kills it after `after`, waits for it; true if it was still running.
fn run_and_kill(job: &Job, dir: &Path, after: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_monoscope"))
        .args(&job.args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // `Child::kill` is SIGKILL on Unix: no destructor, no flush, no cleanup runs.
    child.kill().ok();
    child.wait().unwrap();
    true
}

fn read_files(names: &[&str], dir: &Path) -> Vec<Option<Vec<u8>>> {
    names
        .iter()
        .map(|o| std::fs::read(dir.join(o)).ok())
        .collect()
}

fn read_outputs(job: &Job, dir: &Path) -> Vec<Option<Vec<u8>>> {
    read_files(&job.outputs, dir)
}

fn fresh_dir(name: &str) -> PathBuf {
    common::temp_dir(&format!("crash-{name}"))
}

/// Runs `job` uninterrupted in `setup`'s copy, then killed `kills()` times and finished in
/// another copy, and compares. `seed_stream` varies the kill moments between commands.
fn crash_and_resume(job: &Job, setup: &Path, seed_stream: u64) {
    let reference = fresh_dir(&format!("{}-ref", job.name));
    copy_dir(setup, &reference);
    let start = Instant::now();
    run(job, &reference);
    let took = start.elapsed();
    let expected = read_outputs(job, &reference);
    for (o, e) in job.outputs.iter().zip(&expected) {
        assert!(
            e.is_some(),
            "{}: the uninterrupted run wrote no {o}",
            job.name
        );
    }

    let crashed = fresh_dir(&format!("{}-crash", job.name));
    copy_dir(setup, &crashed);
    let before = read_outputs(job, &crashed);
    let mut rng = SplitMix(0xC4A5_0000 + seed_stream);
    let (mut killed, mut refused, mut finished) = (0, 0, 0);
    // A resumed run has less left to do, so a kill drawn over the whole run's duration may
    // come after it ends; then that run is checked and the next one starts over from the
    // set-up, so every kill counted lands mid-run.
    for _ in 0..4 * kills() {
        if killed == kills() {
            break;
        }
        let at = took.mul_f64((rng.next_u64() % 1000) as f64 / 1000.0);
        if run_and_kill(job, &crashed, at) {
            killed += 1;
        } else {
            finished += 1;
            assert!(
                read_outputs(job, &crashed) == expected,
                "{}: a run resumed after kills finished with other outputs",
                job.name
            );
            std::fs::remove_dir_all(&crashed).unwrap();
            copy_dir(setup, &crashed);
            continue;
        }
        match (job.verify)(&crashed) {
            Err(_) => refused += 1,
            // Accepted: then it is the new output (files not written yet may be missing),
            // or the old one untouched; never a mix.
            Ok(()) => {
                let now = read_outputs(job, &crashed);
                let new = now
                    .iter()
                    .zip(&expected)
                    .all(|(n, e)| n.is_none() || n == e);
                assert!(
                    new || now == before,
                    "{}: after a kill at {at:?} the outputs load but are neither the old ones nor the uninterrupted run's",
                    job.name
                );
            }
        }
    }
    run(job, &crashed);
    let got = read_outputs(job, &crashed);
    for (log, (e, g)) in job.logs.iter().zip(
        read_files(&job.logs, &reference)
            .iter()
            .zip(&read_files(&job.logs, &crashed)),
    ) {
        assert!(
            e.is_some() && e == g,
            "{}: {log} differs after {killed} kills",
            job.name
        );
    }
    for ((o, e), g) in job.outputs.iter().zip(&expected).zip(&got) {
        assert!(
            e == g,
            "{}: {o} differs from the uninterrupted run's after {killed} kills",
            job.name
        );
    }
    println!(
        "crash {}: uninterrupted {:.1} s; {killed} runs killed mid-way ({refused} left outputs their loader refused), {finished} resumed runs finished before their kill; all final outputs byte-identical",
        job.name,
        took.as_secs_f64(),
    );
    std::fs::remove_dir_all(&reference).ok();
    std::fs::remove_dir_all(&crashed).ok();
}

fn demo_model() -> String {
    root().join("assets/demo/clip").display().to_string()
}

/// A pairs list of the demo images, several captions each.
fn pairs_setup(dir: &Path) {
    let lines: Vec<String> = (0..150).flat_map(common::demo_pair_lines).collect();
    std::fs::write(dir.join("pairs.tsv"), lines.join("\n") + "\n").unwrap();
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn verify_embeddings(dir: &Path) -> monoscope::Result<()> {
    EmbeddingsFile::from_bytes(&monoscope::read_file(&dir.join("emb.safetensors"))?).map(drop)
}

fn verify_dict(dir: &Path) -> monoscope::Result<()> {
    monoscope::io::dictionary::load_dir(&dir.join("dict"), &Device::flex()).map(drop)
}

fn verify_bundle(dir: &Path) -> monoscope::Result<()> {
    monoscope::io::bundle::load(&dir.join("bundle"), &Device::flex()).map(drop)
}

fn verify_world(dir: &Path) -> monoscope::Result<()> {
    monoscope::Embedder::from_dir(&dir.join("world"), &Device::flex()).map(drop)
}

fn verify_decoder(dir: &Path) -> monoscope::Result<()> {
    monoscope::world::decoder::load_dir(&dir.join("decoder"), &Device::flex()).map(drop)
}

fn extract_job() -> Job {
    Job {
        name: "extract",
        args: strings(&[
            "extract",
            "--model",
            &demo_model(),
            "--data",
            "pairs.tsv",
            "--out",
            "emb.safetensors",
            "--batch",
            "4",
            "--checkpoint-every",
            "1",
        ]),
        outputs: vec!["emb.safetensors"],
        logs: vec![],
        verify: verify_embeddings,
    }
}

fn train_job(seed: &str) -> Job {
    Job {
        name: "train",
        args: strings(&[
            "train",
            "--embeddings",
            "emb.safetensors",
            "--kind",
            "topk",
            "--features",
            "64",
            "--k",
            "4",
            "--steps",
            "2500",
            "--batch",
            "64",
            "--seed",
            seed,
            "--log-every",
            "50",
            "--checkpoint-every",
            "100",
            "--resume",
            "--out",
            "dict",
        ]),
        outputs: vec!["dict/dict.json", "dict/dictionary.safetensors"],
        logs: vec!["dict/metrics.jsonl"],
        verify: verify_dict,
    }
}

fn analyze_job(top_m: &str) -> Job {
    Job {
        name: "analyze",
        args: strings(&[
            "analyze",
            "--model",
            &demo_model(),
            "--dict",
            "dict",
            "--embeddings",
            "emb.safetensors",
            "--top-m",
            top_m,
            "--vocab",
            &root()
                .join("assets/vocab/english.txt")
                .display()
                .to_string(),
            "--out",
            "bundle",
        ]),
        outputs: vec![
            "bundle/manifest.json",
            "bundle/features.json",
            "bundle/dictionary.safetensors",
        ],
        logs: vec![],
        verify: verify_bundle,
    }
}

/// extract, then train and analyze on its output (their set-ups hold the outputs of other
/// settings, see the module doc).
#[test]
fn extract_train_analyze_survive_kills() {
    let setup = fresh_dir("setup");
    pairs_setup(&setup);
    crash_and_resume(&extract_job(), &setup, 1);
    run(&extract_job(), &setup);

    // Old outputs: a dictionary of another seed, a bundle with other settings.
    run(&train_job("99"), &setup);
    std::fs::remove_dir_all(setup.join("dict/checkpoint")).unwrap();
    crash_and_resume(&train_job("5"), &setup, 2);

    run(&analyze_job("3"), &setup);
    crash_and_resume(&analyze_job("5"), &setup, 3);

    // The window between two file writes is too short for random kills to hit often, so
    // the mixes such a kill would leave are made by hand: each must be refused.
    let old = |f: &str| common::read(setup.join(f));
    let mixed = fresh_dir("mixed");
    std::fs::rename(setup.join("dict"), mixed.join("dict-old")).unwrap();
    run(&train_job("5"), &setup);
    copy_dir(&setup.join("dict"), &mixed.join("dict"));
    std::fs::write(
        mixed.join("dict/dictionary.safetensors"),
        common::read(mixed.join("dict-old/dictionary.safetensors")),
    )
    .unwrap();
    let err = verify_dict(&mixed).unwrap_err().to_string();
    assert!(
        err.contains("dictionary.safetensors") && err.contains("another run"),
        "{err}"
    );

    let features_of_top_m_3 = old("bundle/features.json");
    run(&analyze_job("5"), &setup);
    copy_dir(&setup.join("bundle"), &mixed.join("bundle"));
    std::fs::write(mixed.join("bundle/features.json"), features_of_top_m_3).unwrap();
    let err = verify_bundle(&mixed).unwrap_err().to_string();
    assert!(
        err.contains("features.json") && err.contains("manifest.json"),
        "{err}"
    );

    // Every file cut short is refused by its loader.
    copy_dir(&setup.join("bundle"), &mixed.join("bundle"));
    for (file, verify) in [
        (
            "emb.safetensors",
            verify_embeddings as fn(&Path) -> monoscope::Result<()>,
        ),
        ("dict/dict.json", verify_dict),
        ("dict/dictionary.safetensors", verify_dict),
        ("bundle/manifest.json", verify_bundle),
        ("bundle/features.json", verify_bundle),
        ("bundle/dictionary.safetensors", verify_bundle),
    ] {
        let target = mixed.join(file);
        if file == "emb.safetensors" || file.starts_with("dict/") {
            copy_dir(&setup.join("dict"), &mixed.join("dict"));
            std::fs::copy(setup.join("emb.safetensors"), mixed.join("emb.safetensors")).unwrap();
        }
        let whole = common::read(setup.join(file));
        verify(&mixed).unwrap_or_else(|e| panic!("{file} whole: {e}"));
        for cut in [whole.len() - 1, whole.len() / 2, 9] {
            std::fs::write(&target, &whole[..cut]).unwrap();
            assert!(
                verify(&mixed).is_err(),
                "{file} cut to {cut} bytes was accepted"
            );
        }
        std::fs::write(&target, &whole).unwrap();
    }
    std::fs::remove_dir_all(&mixed).ok();
    std::fs::remove_dir_all(&setup).ok();
}

#[test]
fn world_train_survives_kills() {
    let setup = fresh_dir("world-setup");
    let job = Job {
        name: "world-train",
        args: strings(&[
            "world-train",
            "--out",
            "world",
            "--steps",
            "60",
            "--batch",
            "16",
            "--side",
            "32",
            "--checkpoint-every",
            "6",
            "--eval-scenes",
            "16",
            "--resume",
        ]),
        outputs: vec![
            "world/model.safetensors",
            "world/config.json",
            "world/tokenizer.json",
            "world/labels.txt",
            "world/world.json",
        ],
        logs: vec![],
        verify: verify_world,
    };
    crash_and_resume(&job, &setup, 4);
    std::fs::remove_dir_all(&setup).ok();
}

#[test]
fn world_decoder_survives_kills() {
    let setup = fresh_dir("decoder-setup");
    let job = Job {
        name: "world-decoder",
        args: strings(&[
            "world-decoder",
            "--model",
            &demo_model(),
            "--scenes",
            "500",
            "--steps",
            "300",
            "--batch",
            "8",
            "--hidden",
            "32",
            "--side",
            "8",
            "--checkpoint-every",
            "20",
            "--resume",
            "--out",
            "decoder",
        ]),
        outputs: vec!["decoder/decoder.json", "decoder/decoder.safetensors"],
        logs: vec![],
        verify: verify_decoder,
    };
    crash_and_resume(&job, &setup, 5);
    std::fs::remove_dir_all(&setup).ok();
}
