//! `probe`, `attack` and `control`: file handling and printing around `monoscope::apps`.

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use monoscope::apps::attack::{
    AttackConfig, ImageOutcome, Pgd, nearest_wrong, outcome, perturbation_norms, summarize,
};
use monoscope::apps::control::{Scales, edit, npy_bytes, safetensors_bytes};
use monoscope::apps::cosine;
use monoscope::apps::probe::{DEFAULT_PROMPTS, Group, ProbeConfig, probe as run_probe};
use monoscope::inspect::{Lens, Modality};
use monoscope::pipeline::rows;
use monoscope::{Embedder, Error, Result, read_file, write_atomic};

use super::{Backend, bar, device};

/// File extensions read as images from folders.
const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "jpe"];
/// Images per forward pass when embedding groups.
const EMBED_BATCH: usize = 32;

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

/// Preprocessed pixels of the readable images; unreadable ones are reported and skipped.
fn load_pixels(e: &Embedder, files: &[PathBuf]) -> (Vec<PathBuf>, Vec<Vec<f32>>) {
    let mut kept = Vec::new();
    let mut pixels = Vec::new();
    for f in files {
        match read_file(f).and_then(|b| e.preprocess(&b)) {
            Ok(p) => {
                kept.push(f.clone());
                pixels.push(p);
            }
            Err(err) => eprintln!("{}: skipped: {err}", f.display()),
        }
    }
    (kept, pixels)
}

fn embed_all(e: &Embedder, pixels: &[Vec<f32>], what: &str) -> Result<Vec<Vec<f32>>> {
    let progress = bar(pixels.len() as u64, what);
    let mut out = Vec::with_capacity(pixels.len());
    for chunk in pixels.chunks(EMBED_BATCH) {
        out.extend(rows(e.embed_pixels(chunk)?)?);
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    Ok(out)
}

fn text_rows(e: &Embedder, texts: &[String]) -> Result<Vec<Vec<f32>>> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (batch, truncated) = e.prompt_batch(&refs)?;
    for (t, cut) in texts.iter().zip(truncated) {
        if cut {
            eprintln!("warning: prompt {t:?} is longer than the model's context; truncated");
        }
    }
    rows(e.model.embed_texts(&batch))
}

fn json_out<T: serde::Serialize>(path: &Path, v: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| Error::Invalid(e.to_string()))?;
    write_atomic(path, &bytes)
}

fn load(model: &Path, bundle: &Path, backend: Backend) -> Result<(Embedder, Lens)> {
    let dev = device(backend)?;
    let e = Embedder::from_dir(model, &dev)?;
    // The dictionary runs on the CPU: it sees few rows and is read back at once.
    let lens = Lens::load(bundle, &burn::tensor::Device::flex())?;
    lens.check_model(e.config.projection_dim)?;
    Ok((e, lens))
}

/// `monoscope probe`.
#[allow(clippy::too_many_arguments)]
pub fn probe(
    model: &Path,
    bundle: &Path,
    groups: &[PathBuf],
    mut prompts: Vec<String>,
    bootstrap: usize,
    top: usize,
    json: Option<PathBuf>,
    backend: Backend,
) -> Result<()> {
    if prompts.is_empty() && groups.len() == DEFAULT_PROMPTS.len() {
        prompts = DEFAULT_PROMPTS.iter().map(|p| p.to_string()).collect();
    }
    if prompts.len() != groups.len() || groups.len() < 2 {
        return Err(Error::Invalid(format!(
            "give one --prompt per --group (at least two): {} groups, {} prompts",
            groups.len(),
            prompts.len()
        )));
    }
    let (e, lens) = load(model, bundle, backend)?;
    let decoder = lens.decoder()?;
    let t = text_rows(&e, &prompts)?;
    let mut gs = Vec::new();
    for (i, dir) in groups.iter().enumerate() {
        let (kept, pixels) = load_pixels(&e, &image_files(dir)?);
        if kept.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: no readable images",
                dir.display()
            )));
        }
        let emb = embed_all(&e, &pixels, &format!("group {}", i + 1))?;
        let acts = lens.activations(&emb, Modality::Image)?;
        gs.push(Group {
            name: dir.display().to_string(),
            expected: i,
            embeddings: emb,
            activations: acts,
        });
    }
    let config = ProbeConfig {
        bootstrap,
        top_features: top,
        seed: 0,
    };
    let report = run_probe(decoder, &prompts, &t, &gs, &config)?;
    for g in &report.groups {
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
    if let Some(p) = json {
        json_out(&p, &report)?;
    }
    Ok(())
}

fn to_png(planes01: &[f32], side: usize) -> Result<Vec<u8>> {
    let rgba = monoscope::world::decoder::planar_to_rgba(planes01, side);
    let img = image::RgbaImage::from_raw(side as u32, side as u32, rgba)
        .ok_or_else(|| Error::Invalid("image buffer size".into()))?;
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| Error::Image(e.to_string()))?;
    Ok(png.into_inner())
}

fn host4(t: Tensor<4>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Device(format!("{e:?}")))
}

/// `monoscope attack`.
#[allow(clippy::too_many_arguments)]
pub fn attack(
    model: &Path,
    bundle: &Path,
    inputs: &[PathBuf],
    labels: &[String],
    target: &str,
    config: AttackConfig,
    batch: usize,
    out: Option<PathBuf>,
    backend: Backend,
) -> Result<()> {
    config.validate()?;
    if labels.len() < 2 {
        return Err(Error::Invalid("give at least two --label prompts".into()));
    }
    let fixed_target = match target {
        "nearest" => None,
        t => Some(labels.iter().position(|l| l == t).ok_or_else(|| {
            Error::Invalid(format!("--target {t:?} is not one of the --label prompts"))
        })?),
    };
    let (e, lens) = load(model, bundle, backend)?;
    let decoder = lens.decoder()?;
    let t = text_rows(&e, labels)?;
    let mut files = Vec::new();
    for i in inputs {
        files.extend(image_files(i)?);
    }
    let (files, pixels) = load_pixels(&e, &files);
    if files.is_empty() {
        return Err(Error::Invalid("no readable images".into()));
    }
    if let Some(dir) = &out {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let side = e.config.vision.image_size;
    let progress = bar((files.len() * config.steps) as u64, "attack");
    let mut outcomes: Vec<ImageOutcome> = Vec::new();
    let mut per_image = Vec::new();
    for (chunk_i, chunk) in pixels.chunks(batch.max(1)).enumerate() {
        let clean = rows(e.embed_pixels(chunk)?)?;
        let targets: Vec<usize> = clean
            .iter()
            .map(|x| fixed_target.unwrap_or_else(|| nearest_wrong(x, &t)))
            .collect();
        let target_rows: Vec<Vec<f32>> = targets.iter().map(|&j| t[j].clone()).collect();
        let label_sets = vec![t.clone(); chunk.len()];
        let mut pgd = Pgd::new(
            &e.model,
            &e.processor,
            chunk,
            &target_rows,
            Some(&lens),
            config,
            e.device(),
        )?
        .with_labels(&label_sets, &targets)?;
        while !pgd.done() {
            let obj = pgd.step().into_scalar::<f32>();
            progress.set_message(format!("objective {obj:.3}"));
            progress.inc(chunk.len() as u64);
        }
        let (c01, a01) = pgd.images();
        let (c01, a01) = (host4(c01)?, host4(a01)?);
        let norms = perturbation_norms(&c01, &a01, chunk.len());
        let adv = rows(e.model.embed_images(pgd.adversarial_pixels()))?;
        let zc = lens.activations(&clean, Modality::Image)?;
        let za = lens.activations(&adv, Modality::Image)?;
        let per = 3 * side * side;
        for i in 0..chunk.len() {
            let o = outcome(
                decoder,
                &t,
                targets[i],
                (&clean[i], &zc[i]),
                (&adv[i], &za[i]),
                norms[i].0,
                norms[i].1,
            );
            let file = &files[chunk_i * batch.max(1) + i];
            if let Some(dir) = &out {
                let stem = format!("{:04}", chunk_i * batch.max(1) + i);
                let c = &c01[i * per..(i + 1) * per];
                let a = &a01[i * per..(i + 1) * per];
                // Difference, amplified to fill 0..1 around mid-grey.
                let amp = 0.5 / config.eps;
                let diff: Vec<f32> = c.iter().zip(a).map(|(x, y)| 0.5 + (y - x) * amp).collect();
                write_atomic(&dir.join(format!("{stem}-clean.png")), &to_png(c, side)?)?;
                write_atomic(
                    &dir.join(format!("{stem}-adversarial.png")),
                    &to_png(a, side)?,
                )?;
                write_atomic(
                    &dir.join(format!("{stem}-difference.png")),
                    &to_png(&diff, side)?,
                )?;
            }
            let mut row = o.describe(labels);
            row["image"] = serde_json::json!(file.display().to_string());
            per_image.push(row);
            outcomes.push(o);
        }
    }
    progress.finish_and_clear();
    let s = summarize(config, &outcomes, &lens.classes);
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
    println!(
        "activation shift per class (sum |dz|, per feature): ImgD {:.4} ({:.5}), TextD {:.4} ({:.5}), CrossD {:.4} ({:.5}), rare {:.4}",
        s.class_shift[0],
        s.class_shift_per_feature[0],
        s.class_shift[1],
        s.class_shift_per_feature[1],
        s.class_shift[2],
        s.class_shift_per_feature[2],
        s.class_shift[3]
    );
    for row in &s.defense {
        println!(
            "defense without {:?}: restores {}/{} successful attacks; keeps {}/{} clean predictions",
            row.removed, row.restored, row.of, row.clean_kept, row.clean_total
        );
    }
    if let Some(dir) = &out {
        json_out(
            &dir.join("report.json"),
            &serde_json::json!({"labels": labels, "summary": s, "images": per_image}),
        )?;
        eprintln!("images and report.json written to {}", dir.display());
    }
    Ok(())
}

/// What `control` edits.
pub enum ControlInput {
    /// A prompt (text embedding).
    Prompt(String),
    /// An image file (image embedding).
    Image(PathBuf),
}

/// `monoscope control`.
pub fn control(
    model: &Path,
    bundle: &Path,
    input: ControlInput,
    class: [f32; 4],
    features: &[String],
    out: &Path,
    decoder_dir: Option<&Path>,
) -> Result<()> {
    let mut scales = Scales {
        class,
        features: Vec::new(),
    };
    for f in features {
        let (id, s) = f
            .split_once('=')
            .ok_or_else(|| Error::Invalid(format!("--feature {f:?}: expected ID=SCALE")))?;
        let id: usize = id
            .trim()
            .parse()
            .map_err(|_| Error::Invalid(format!("--feature {f:?}: bad id")))?;
        let s: f32 = s
            .trim()
            .parse()
            .map_err(|_| Error::Invalid(format!("--feature {f:?}: bad scale")))?;
        scales.features.push((id, s));
    }
    let (e, lens) = load(model, bundle, Backend::Cpu)?;
    let decoder = lens.decoder()?;
    let (x, modality, source) = match &input {
        ControlInput::Prompt(p) => (
            text_rows(&e, std::slice::from_ref(p))?.remove(0),
            Modality::Text,
            p.clone(),
        ),
        ControlInput::Image(path) => {
            let px = read_file(path).and_then(|b| e.preprocess(&b))?;
            (
                rows(e.embed_pixels(&[px])?)?.remove(0),
                Modality::Image,
                path.display().to_string(),
            )
        }
    };
    let z = lens
        .activations(std::slice::from_ref(&x), modality)?
        .remove(0);
    let edited = edit(decoder, &x, &z, modality, &scales)?;
    let d = edited.embedding.len();
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            path: parent.display().to_string(),
            source,
        })?;
    }
    let mut meta = std::collections::HashMap::new();
    let kind = if modality == Modality::Text {
        "prompt"
    } else {
        "image"
    };
    meta.insert(kind.to_string(), source);
    meta.insert(
        "scales".to_string(),
        serde_json::to_string(&scales).map_err(|e| Error::Invalid(e.to_string()))?,
    );
    meta.insert("bundle".to_string(), bundle.display().to_string());
    write_atomic(out, &safetensors_bytes(&edited.embedding, &[1, d], meta)?)?;
    let npy = out.with_extension("npy");
    write_atomic(&npy, &npy_bytes(&edited.embedding, &[1, d]))?;
    println!(
        "edited embedding: cosine to the original {:.4}; written to {} and {}",
        cosine(&x, &edited.embedding),
        out.display(),
        npy.display()
    );
    let changed = edited
        .before
        .iter()
        .zip(&edited.after)
        .filter(|(a, b)| a != b)
        .count();
    println!("{changed} active features changed");
    if let Some(dir) = decoder_dir {
        use monoscope::world::decoder::{CONFIG_FILE, WEIGHTS_FILE, from_bytes};
        let dev = burn::tensor::Device::flex();
        let dec = from_bytes(
            &read_file(&dir.join(CONFIG_FILE))?,
            &read_file(&dir.join(WEIGHTS_FILE))?,
            &dev,
        )?;
        let side = dec.side();
        for (name, v) in [("before", &x), ("after", &edited.embedding)] {
            let input = Tensor::<2>::from_data(
                burn::tensor::TensorData::new(v.clone(), [1, v.len()]),
                &dev,
            );
            let planes = host4(dec.forward(input))?;
            let path = out.with_extension(format!("{name}.png"));
            write_atomic(&path, &to_png(&planes, side)?)?;
            println!("decoded image {name} the edit: {}", path.display());
        }
    }
    Ok(())
}
