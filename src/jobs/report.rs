//! `monoscope report`: a terminal summary of a result bundle and its MDS histogram
//! (classes coloured, thresholds marked) as SVG.

use std::path::Path;

use burn::tensor::Device;
use plotters::prelude::*;

use crate::analysis::mds::FeatureClass;
use crate::error::{Error, Result};
use crate::io::bundle::{self, Bundle};

/// Histogram bins over [0, 1].
const BINS: usize = 20;

/// The classes drawn, with their names.
const COLOURS: [(FeatureClass, &str); 3] = [
    (FeatureClass::ImgD, "ImgD"),
    (FeatureClass::TextD, "TextD"),
    (FeatureClass::CrossD, "CrossD"),
];

/// The web app's stylesheet: the one place class colours are defined (`--class-ImgD`
/// etc. of its light theme), so the SVG matches the page's badges and legend.
const STYLESHEET: &str = include_str!("../../www/style.css");

/// A class's colour from [`STYLESHEET`] (its first, light-theme `--class-NAME: #rrggbb`).
fn class_colour(name: &str) -> Result<RGBColor> {
    let key = format!("--class-{name}:");
    let hex = STYLESHEET
        .lines()
        .find_map(|l| l.trim().strip_prefix(key.as_str()))
        .map(|v| v.trim().trim_end_matches(';').trim_start_matches('#'))
        .filter(|h| h.len() == 6)
        .ok_or_else(|| Error::Invalid(format!("www/style.css defines no {key} #rrggbb")))?;
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16);
    match (byte(0), byte(2), byte(4)) {
        (Ok(r), Ok(g), Ok(b)) => Ok(RGBColor(r, g, b)),
        _ => Err(Error::Invalid(format!(
            "www/style.css: bad colour for {key}"
        ))),
    }
}

/// Prints the summary and writes the histogram to `svg`.
pub fn report(dir: &Path, svg: &Path, top: usize) -> Result<()> {
    let b = bundle::load(dir, &Device::flex())?;
    print!("{}", summary(&b, top));
    histogram(&b, svg)?;
    println!("histogram: {}", svg.display());
    Ok(())
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The text summary.
pub fn summary(b: &Bundle, top: usize) -> String {
    let m = &b.manifest;
    let mut s = String::new();
    let [i, t, c, r] = m.class_counts;
    s += &format!(
        "dictionary: {:?}, {} features on d = {}\n",
        m.dictionary.config.kind, m.dictionary.config.features, m.dictionary.config.d
    );
    s += &format!("pairs: {}\n", m.dataset.pairs);
    s += &format!("classes: ImgD {i}, TextD {t}, CrossD {c}, rare {r}\n");
    let th = &m.thresholds;
    s += &format!(
        "rule {:?}: ImgD > {:.3}, TextD < {:.3} (MDS mean {:.3}, std {:.3})\n",
        th.rule, th.img, th.text, th.mean, th.std
    );
    let mut mds: Vec<f64> = b
        .features
        .features
        .iter()
        .filter(|f| f.class != FeatureClass::Rare)
        .filter_map(|f| f.mds)
        .collect();
    mds.sort_by(f64::total_cmp);
    s += &format!(
        "MDS of classified features: min {:.3}, q25 {:.3}, median {:.3}, q75 {:.3}, max {:.3}\n",
        quantile(&mds, 0.0),
        quantile(&mds, 0.25),
        quantile(&mds, 0.5),
        quantile(&mds, 0.75),
        quantile(&mds, 1.0)
    );
    if let Ok(w) = serde_json::to_value(&m.metrics.win_rates) {
        s += &format!("win rates (images, texts) [rate, comparisons]: {w}\n");
    }
    for (class, name) in COLOURS {
        let mut list: Vec<_> = b
            .features
            .features
            .iter()
            .filter(|f| f.class == class)
            .collect();
        list.sort_by_key(|f| std::cmp::Reverse(f.support));
        s += &format!("\ntop {name} features (by support):\n");
        for f in list.iter().take(top) {
            let labels: Vec<&str> = f.labels.iter().map(|(w, _)| w.as_str()).collect();
            s += &format!(
                "  #{:<6} MDS {:.3}  support {:<7} EmbSim img {} txt {}  labels: {}\n",
                f.id,
                f.mds.unwrap_or(f64::NAN),
                f.support,
                f.emb_sim_image.map_or("-".into(), |v| format!("{v:.3}")),
                f.emb_sim_text.map_or("-".into(), |v| format!("{v:.3}")),
                if labels.is_empty() {
                    "-".to_string()
                } else {
                    labels.join(", ")
                }
            );
        }
    }
    s
}

/// Writes the MDS histogram as SVG: stacked counts per bin and class, dashed lines at the
/// class thresholds.
pub fn histogram(b: &Bundle, path: &Path) -> Result<()> {
    let mut counts = [[0usize; BINS]; 3];
    for f in &b.features.features {
        let (Some(m), Some(ci)) = (f.mds, COLOURS.iter().position(|(c, _)| *c == f.class)) else {
            continue;
        };
        counts[ci][((m * BINS as f64) as usize).min(BINS - 1)] += 1;
    }
    let peak = (0..BINS)
        .map(|j| counts.iter().map(|c| c[j]).sum::<usize>())
        .max()
        .unwrap_or(0)
        .max(1);
    let err = |e: &dyn std::fmt::Display| Error::Invalid(format!("{}: {e}", path.display()));
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Modality Dominance Score", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..1f64, 0usize..peak + peak / 10 + 1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("MDS (0 = text only, 1 = image only)")
        .y_desc("features")
        .draw()
        .map_err(|e| err(&e))?;
    let w = 1.0 / BINS as f64;
    for (ci, (_, name)) in COLOURS.iter().enumerate() {
        let colour = class_colour(name)?;
        let bars = (0..BINS).map(|j| {
            let below: usize = counts[..ci].iter().map(|c| c[j]).sum();
            let x = j as f64 * w;
            Rectangle::new(
                [(x, below), (x + w, below + counts[ci][j])],
                colour.filled(),
            )
        });
        chart
            .draw_series(bars)
            .map_err(|e| err(&e))?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    let th = b.manifest.thresholds;
    for x in [th.img, th.text] {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x, 0), (x, peak)],
                6,
                4,
                BLACK.stroke_width(1),
            ))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_colours_come_from_the_stylesheet() {
        // www/style.css, light theme.
        assert_eq!(class_colour("ImgD").unwrap(), RGBColor(0xc2, 0x41, 0x0c));
        for (_, name) in COLOURS {
            class_colour(name).unwrap();
        }
        assert!(class_colour("Nope").is_err());
    }
}
