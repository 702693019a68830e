//! `probe`, `attack` and `control`: files in, [`Lab`] in between, reports out.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, read_sync};
use clap::Args;
use monoscope::apps::attack::{
    AttackConfig, DEFAULT_STEPS, ImageOutcome, Objective, parse_eps, summarize,
};
use monoscope::apps::control::{Scales, npy_bytes, parse_feature_scale, safetensors_bytes};
use monoscope::apps::cosine;
use monoscope::apps::probe::{
    DEFAULT_BOOTSTRAP, DEFAULT_PROMPTS, DEFAULT_TOP_FEATURES, ProbeConfig,
};
use monoscope::base::fs::{create_dir, read_file, write_atomic, write_json};
use monoscope::inspect::Lens;
use monoscope::lab::attack::{AttackResult, Target};
use monoscope::lab::control::{ControlInput, png_bytes};
use monoscope::lab::probe::ProbeGroups;
use monoscope::world::decoder::{load_dir as load_decoder, planar_to_rgba};
use monoscope::{Embedder, Error, Lab, Result};

use crate::args::{BackendArg, ModelBundleArgs};
use crate::progress::bar;

/// File extensions read as images from folders.
const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "jpe"];

/// Image files of a folder (sorted), or the file itself.
fn image_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The model on the chosen backend and the bundle's lens. The dictionary runs on the CPU:
/// it sees few rows and is read back at once.
fn open_lab(m: &ModelBundleArgs, device: &Device) -> Result<Lab> {
    let lab = Lab::new(Embedder::from_dir(&m.model, device)?, None);
    lab.set_lens(Lens::load(&m.bundle, &Device::flex())?)?;
    Ok(lab)
}

/// Prompts embedded for the applications, with a warning for each truncated one.
fn warn_truncated(texts: &[String], truncated: &[bool]) {
    for (t, cut) in texts.iter().zip(truncated) {
        if *cut {
            eprintln!("warning: prompt {t:?} is longer than the model's context; truncated");
        }
    }
}

/// `monoscope probe`.
#[derive(Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    model: ModelBundleArgs,
    /// Image folder of one group (repeat, in prompt order).
    #[arg(long = "group", required = true)]
    groups: Vec<PathBuf>,
    /// One prompt per group (default: "a photo of a man", "a photo of a woman").
    #[arg(long = "prompt")]
    prompts: Vec<String>,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = DEFAULT_BOOTSTRAP)]
    bootstrap: usize,
    /// Features listed per group.
    #[arg(long, default_value_t = DEFAULT_TOP_FEATURES)]
    top: usize,
    /// Also write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    backend: BackendArg,
}

/// Runs `probe`.
pub fn probe(a: ProbeArgs) -> Result<()> {
    let mut prompts = a.prompts;
    if prompts.is_empty() && a.groups.len() == DEFAULT_PROMPTS.len() {
        prompts = DEFAULT_PROMPTS.iter().map(|p| p.to_string()).collect();
    }
    if prompts.len() != a.groups.len() || a.groups.len() < 2 {
        return Err(Error::Invalid(format!(
            "give one --prompt per --group (at least two): {} groups, {} prompts",
            a.groups.len(),
            prompts.len()
        )));
    }
    let lab = open_lab(&a.model, &a.backend.device()?)?;
    let names: Vec<String> = a.groups.iter().map(|g| g.display().to_string()).collect();
    let mut groups = ProbeGroups::new(names);
    for (i, dir) in a.groups.iter().enumerate() {
        for f in image_files(dir)? {
            let pixels = read_file(&f).and_then(|b| lab.preprocess(&b));
            groups.add(i, &f.display().to_string(), pixels)?;
        }
    }
    for line in groups.skipped() {
        eprintln!("{line}");
    }
    warn_truncated(&prompts, &lab.truncated_prompts(&prompts)?);
    let config = ProbeConfig {
        bootstrap: a.bootstrap,
        top_features: a.top,
        seed: 0,
    };
    let progress = bar(groups.total() as u64, "probe");
    let outcome = read_sync(lab.probe(&prompts, groups, &config, |done, _| {
        progress.set_position(done as u64)
    }))?;
    progress.finish_and_clear();
    for g in &outcome.report.groups {
        println!("group {} (expected {:?})", g.name, g.expected);
        println!("  {:<16} {:>9} {:>8}  95% CI", "variant", "correct", "acc");
        for a in &g.accuracy {
            println!(
                "  {:<16} {:>4}/{:<4} {:>8.3}  [{:.3}, {:.3}]",
                a.variant, a.correct, a.total, a.accuracy, a.ci95[0], a.ci95[1]
            );
        }
        println!("  features whose removal moves this group most (margin change):");
        for m in &g.movers {
            println!(
                "    #{:<6} {:<6} {:+.4}  (active on {})",
                m.feature,
                format!("{:?}", m.class),
                m.delta_margin,
                m.active_on
            );
        }
    }
    match a.json {
        Some(p) => write_json(&p, &outcome.report),
        None => Ok(()),
    }
}

/// `monoscope attack`.
#[derive(Args)]
pub struct AttackArgs {
    #[command(flatten)]
    model: ModelBundleArgs,
    /// Image files or folders (repeat).
    #[arg(long = "image", required = true)]
    images: Vec<PathBuf>,
    /// Zero-shot prompts (repeat; at least two).
    #[arg(long = "label", required = true)]
    labels: Vec<String>,
    /// Target prompt: one of the labels, or "nearest" (per image, the most similar
    /// wrong label).
    #[arg(long, default_value = "nearest")]
    target: String,
    /// L-infinity radius in 0..1 pixel units ("4/255" or 0.0157).
    #[arg(long, default_value = "4/255", value_parser = parse_eps)]
    eps: f32,
    /// PGD steps.
    #[arg(long, default_value_t = DEFAULT_STEPS)]
    steps: usize,
    /// Step size (default eps/4), like --eps.
    #[arg(long, value_parser = parse_eps)]
    step_size: Option<f32>,
    /// What to pull toward the target: "embedding" (the target's cosine margin over the
    /// other labels) or one class's features: ImgD, TextD, CrossD.
    #[arg(long, default_value = "embedding", value_parser = str::parse::<Objective>)]
    objective: Objective,
    /// Images per PGD batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Output directory: report.json and clean / adversarial / difference PNGs.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    backend: BackendArg,
}

/// Runs `attack`.
pub fn attack(a: AttackArgs) -> Result<()> {
    let config = AttackConfig {
        eps: a.eps,
        steps: a.steps,
        step_size: a.step_size,
        objective: a.objective,
    };
    config.validate()?;
    if a.labels.len() < 2 {
        return Err(Error::Invalid("give at least two --label prompts".into()));
    }
    let target = Target::parse(&a.target, &a.labels).map_err(|_| {
        Error::Invalid(format!(
            "--target {:?} is not one of the --label prompts",
            a.target
        ))
    })?;
    let lab = open_lab(&a.model, &a.backend.device()?)?;
    warn_truncated(&a.labels, &lab.truncated_prompts(&a.labels)?);
    let mut files = Vec::new();
    for i in &a.images {
        files.extend(image_files(i)?);
    }
    let mut kept = Vec::new();
    let mut pixels = Vec::new();
    for f in files {
        match read_file(&f).and_then(|b| lab.preprocess(&b)) {
            Ok(p) => {
                kept.push(f);
                pixels.push(p);
            }
            Err(err) => eprintln!("{}: skipped: {err}", f.display()),
        }
    }
    if kept.is_empty() {
        return Err(Error::Invalid("no readable images".into()));
    }
    if let Some(dir) = &a.out {
        create_dir(dir)?;
    }
    let progress = bar((kept.len() * config.steps) as u64, "attack");
    let mut outcomes: Vec<ImageOutcome> = Vec::new();
    let mut per_image = Vec::new();
    for chunk in pixels.chunks(a.batch.max(1)) {
        let mut run = read_sync(lab.attack_begin(chunk, &a.labels, target, config))?;
        while !run.done() {
            let obj = read_sync(run.step().read())?;
            progress.set_message(format!("objective {obj:.3}"));
            progress.inc(chunk.len() as u64);
        }
        let result = read_sync(run.finish(&lab))?;
        for (i, o) in result.outcomes.iter().enumerate() {
            let n = outcomes.len();
            if let Some(dir) = &a.out {
                write_images(dir, n, &result, i)?;
            }
            let mut row = o.describe(&a.labels);
            row["image"] = serde_json::json!(kept[n].display().to_string());
            per_image.push(row);
            outcomes.push(o.clone());
        }
    }
    progress.finish_and_clear();
    let lens = lab.lens()?;
    let s = summarize(config, &outcomes, &lens.classes);
    print_summary(&s);
    if let Some(dir) = &a.out {
        write_json(
            &dir.join("report.json"),
            &serde_json::json!({"labels": a.labels, "summary": s, "images": per_image}),
        )?;
        eprintln!("images and report.json written to {}", dir.display());
    }
    Ok(())
}

/// `NNNN-clean.png`, `-adversarial.png`, `-difference.png` of image `i` of a batch.
fn write_images(dir: &Path, n: usize, r: &AttackResult, i: usize) -> Result<()> {
    let img = &r.images[i];
    for (name, planes) in [
        ("clean", &img.clean),
        ("adversarial", &img.adversarial),
        ("difference", &img.difference),
    ] {
        let png = png_bytes(planar_to_rgba(planes, r.side), r.side)?;
        write_atomic(&dir.join(format!("{n:04}-{name}.png")), &png)?;
    }
    Ok(())
}

fn print_summary(s: &monoscope::apps::attack::AttackSummary) {
    println!(
        "attacked {} images ({} already predicted as their target, skipped): success {}/{} = {:.1}%",
        s.attacked,
        s.skipped,
        s.successes,
        s.attacked,
        100.0 * s.success_rate
    );
    println!(
        "perturbation: mean L-inf {:.4} ({:.2}/255), mean L2 {:.3}",
        s.mean_linf,
        s.mean_linf * 255.0,
        s.mean_l2
    );
    let (c, p) = (s.class_shift, s.class_shift_per_feature);
    println!(
        "activation shift per class (sum |dz|, per feature): ImgD {:.4} ({:.5}), TextD {:.4} ({:.5}), CrossD {:.4} ({:.5}), rare {:.4}",
        c[0], p[0], c[1], p[1], c[2], p[2], c[3]
    );
    for row in &s.defense {
        println!(
            "defense without {:?}: restores {}/{} successful attacks; keeps {}/{} clean predictions",
            row.removed, row.restored, row.of, row.clean_kept, row.clean_total
        );
    }
}

/// `monoscope control`.
#[derive(Args)]
pub struct ControlArgs {
    #[command(flatten)]
    model: ModelBundleArgs,
    /// The prompt to edit.
    #[arg(long, required_unless_present = "image", conflicts_with = "image")]
    prompt: Option<String>,
    /// Or an image to edit (its image embedding, e.g. for unCLIP decoders).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Scale of ImgD features.
    #[arg(long, default_value_t = 1.0)]
    imgd: f32,
    /// Scale of TextD features.
    #[arg(long, default_value_t = 1.0)]
    textd: f32,
    /// Scale of CrossD features.
    #[arg(long, default_value_t = 1.0)]
    crossd: f32,
    /// Single feature scale, ID=SCALE (repeat).
    #[arg(long = "feature", value_parser = parse_feature_scale)]
    features: Vec<(usize, f32)>,
    /// Output .safetensors file (a .npy is written next to it).
    #[arg(long)]
    out: PathBuf,
    /// Demo-world image decoder directory: also write OUT.before.png / OUT.after.png.
    #[arg(long)]
    decoder: Option<PathBuf>,
}

/// Runs `control`.
pub fn control(a: ControlArgs) -> Result<()> {
    let scales = Scales {
        class: [a.imgd, a.textd, a.crossd, 1.0],
        features: a.features,
    };
    // The edit itself runs on the host; one prompt or image embeds fast on the CPU.
    let lab = open_lab(&a.model, &Device::flex())?;
    if let Some(dir) = &a.decoder {
        lab.set_decoder(load_decoder(dir, &Device::flex())?)?;
    }
    let (input, kind, source) = match (&a.prompt, &a.image) {
        (Some(p), _) => {
            let one = std::slice::from_ref(p);
            warn_truncated(one, &lab.truncated_prompts(one)?);
            (ControlInput::Prompt(p.clone()), "prompt", p.clone())
        }
        (None, Some(path)) => {
            let px = read_file(path).and_then(|b| lab.preprocess(&b))?;
            (
                ControlInput::Pixels(px),
                "image",
                path.display().to_string(),
            )
        }
        (None, None) => return Err(Error::Invalid("give --prompt or --image".into())),
    };
    let r = read_sync(lab.control(input, &scales))?;
    let out = &a.out;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(parent)?;
    }
    let meta = [
        (kind.to_string(), source),
        (
            "scales".to_string(),
            serde_json::to_string(&scales).map_err(|e| Error::Invalid(e.to_string()))?,
        ),
        ("bundle".to_string(), a.model.bundle.display().to_string()),
    ]
    .into_iter()
    .collect();
    let d = r.embedding.len();
    write_atomic(out, &safetensors_bytes(&r.embedding, &[1, d], meta)?)?;
    let npy = out.with_extension("npy");
    write_atomic(&npy, &npy_bytes(&r.embedding, &[1, d]))?;
    println!(
        "edited embedding: cosine to the original {:.4}; written to {} and {}",
        cosine(&r.original, &r.embedding),
        out.display(),
        npy.display()
    );
    println!("{} active features changed", r.changed_features());
    if let Some(decoded) = r.decoded {
        for (name, rgba) in [("before", decoded.before), ("after", decoded.after)] {
            let path = out.with_extension(format!("{name}.png"));
            write_atomic(&path, &png_bytes(rgba, decoded.side)?)?;
            println!("decoded image {name} the edit: {}", path.display());
        }
    }
    Ok(())
}
