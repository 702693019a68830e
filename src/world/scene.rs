//! Seeded, deterministic scenes: small RGB images of one to three objects, several
//! captions per image, and the value of every factor.
//!
//! Factors come in three kinds, the point of the demo (SPEC §2's classes):
//! - shared (in pixels and in captions): shape, colour, size, position, count, relation;
//! - image-only (never in captions): background pattern, lighting gradient, noise level,
//!   outline style;
//! - text-only (never in pixels): template, synonym choice, filler words, politeness,
//!   typos, word order.

use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use crate::base::SplitMix;

/// Object shapes (shared).
pub const SHAPES: [&str; 4] = ["circle", "square", "triangle", "cross"];
/// Object colours (shared), with their RGB values.
pub const COLOURS: [(&str, [u8; 3]); 6] = [
    ("red", [220, 40, 40]),
    ("green", [40, 180, 60]),
    ("blue", [40, 80, 220]),
    ("yellow", [235, 210, 40]),
    ("purple", [150, 60, 190]),
    ("orange", [245, 140, 30]),
];
/// Object sizes (shared), as radius fractions of the image side.
pub const SIZES: [(&str, f32); 2] = [("small", 0.11), ("large", 0.2)];
/// Horizontal positions of a single object (shared).
pub const POSITIONS: [(&str, f32); 3] = [("left", 0.25), ("center", 0.5), ("right", 0.75)];
/// Background patterns (image-only).
pub const BACKGROUNDS: [&str; 4] = ["plain", "stripes", "dots", "checker"];
/// Lighting gradients (image-only).
pub const LIGHTING: [&str; 3] = ["even", "from_left", "from_top"];
/// Noise levels (image-only), as pixel standard deviations.
pub const NOISE: [(&str, f32); 3] = [("clean", 0.0), ("grainy", 12.0), ("noisy", 28.0)];
/// Outline styles (image-only).
pub const OUTLINES: [&str; 2] = ["none", "dark"];
/// Caption templates (text-only); `{obj}` is the object phrase.
pub const TEMPLATES: [&str; 4] = [
    "a picture of {obj}",
    "an image showing {obj}",
    "{obj}",
    "there is {obj} here",
];
/// Politeness prefixes (text-only).
pub const POLITENESS: [&str; 3] = ["", "please look at", "kindly see"];
/// Filler words (text-only).
pub const FILLERS: [&str; 3] = ["", "just", "really"];
/// Synonyms for sizes and shapes (text-only choice among them).
pub const SYNONYMS: [(&str, &str); 4] = [
    ("small", "tiny"),
    ("large", "big"),
    ("square", "box"),
    ("circle", "disc"),
];

/// One object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    /// Index into [`SHAPES`].
    pub shape: usize,
    /// Index into [`COLOURS`].
    pub colour: usize,
    /// Index into [`SIZES`].
    pub size: usize,
    /// Centre, as fractions of the side.
    pub x: f32,
    /// Centre, as fractions of the side.
    pub y: f32,
}

/// Every factor of a scene.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factors {
    /// The objects (1 to 3), left to right.
    pub objects: Vec<Object>,
    /// Index into [`POSITIONS`] when there is one object.
    pub position: Option<usize>,
    /// Index into [`BACKGROUNDS`].
    pub background: usize,
    /// Index into [`LIGHTING`].
    pub lighting: usize,
    /// Index into [`NOISE`].
    pub noise: usize,
    /// Index into [`OUTLINES`].
    pub outline: usize,
}

/// Text-only choices of one caption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptionStyle {
    /// Index into [`TEMPLATES`].
    pub template: usize,
    /// Index into [`POLITENESS`].
    pub politeness: usize,
    /// Index into [`FILLERS`].
    pub filler: usize,
    /// Whether synonyms replace the plain words.
    pub synonyms: bool,
    /// Whether one word has a typo (two letters swapped).
    pub typo: bool,
    /// For two objects: whether the relation is said from the right ("B right of A").
    pub reversed: bool,
}

/// A generated sample.
#[derive(Debug, Clone)]
pub struct Scene {
    /// The image.
    pub image: RgbImage,
    /// Its factors.
    pub factors: Factors,
    /// Captions and their text-only choices.
    pub captions: Vec<(String, CaptionStyle)>,
}

fn uniform(rng: &mut SplitMix) -> f32 {
    (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32
}

/// The name under which a scene is stored in embeddings files and bundles:
/// `scene:<seed>:<index>`, so anything holding the generator can redraw it.
pub fn name(seed: u64, index: u64) -> String {
    format!("scene:{seed}:{index}")
}

/// Parses a [`name`] back into (seed, index).
pub fn parse_name(name: &str) -> crate::error::Result<(u64, u64)> {
    let bad =
        || crate::error::Error::Invalid(format!("{name:?} is not a scene:<seed>:<index> name"));
    let rest = name.strip_prefix("scene:").ok_or_else(bad)?;
    let (seed, index) = rest.split_once(':').ok_or_else(bad)?;
    Ok((
        seed.parse().map_err(|_| bad())?,
        index.parse().map_err(|_| bad())?,
    ))
}

/// Redraws the scene named `scene:<seed>:<index>` (how the demo bundle refers to its
/// images) at `side` pixels, as RGBA.
pub fn render_named(name: &str, side: u32) -> crate::error::Result<Vec<u8>> {
    let (seed, index) = parse_name(name)?;
    if !(8..=1024).contains(&side) {
        return Err(crate::error::Error::Invalid(format!(
            "scene side {side} out of range 8..=1024"
        )));
    }
    let img = generate(seed, index, side, 0).image;
    Ok(img.pixels().flat_map(|p| [p[0], p[1], p[2], 255]).collect())
}

/// Generates scene `index` of the world with `seed`; the same pair gives the same scene.
pub fn generate(seed: u64, index: u64, side: u32, captions: usize) -> Scene {
    let mut rng = SplitMix(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let count = 1 + rng.below(3);
    let mut objects = Vec::with_capacity(count);
    let position = (count == 1).then(|| rng.below(POSITIONS.len()));
    for i in 0..count {
        let x = match position {
            Some(p) => POSITIONS[p].1,
            None => (i as f32 + 0.5) / count as f32,
        };
        objects.push(Object {
            shape: rng.below(SHAPES.len()),
            colour: rng.below(COLOURS.len()),
            size: rng.below(SIZES.len()),
            x,
            y: 0.5 + (uniform(&mut rng) - 0.5) * 0.2,
        });
    }
    let factors = Factors {
        objects,
        position,
        background: rng.below(BACKGROUNDS.len()),
        lighting: rng.below(LIGHTING.len()),
        noise: rng.below(NOISE.len()),
        outline: rng.below(OUTLINES.len()),
    };
    let image = render(&factors, side, &mut rng);
    let captions = (0..captions)
        .map(|_| {
            let style = CaptionStyle {
                template: rng.below(TEMPLATES.len()),
                politeness: rng.below(POLITENESS.len()),
                filler: rng.below(FILLERS.len()),
                synonyms: rng.below(2) == 1,
                typo: rng.below(8) == 0,
                reversed: rng.below(2) == 1,
            };
            (caption(&factors, &style, &mut rng), style)
        })
        .collect();
    Scene {
        image,
        factors,
        captions,
    }
}

fn word(w: &str, synonyms: bool) -> &str {
    if synonyms {
        SYNONYMS
            .iter()
            .find(|(a, _)| *a == w)
            .map(|(_, b)| *b)
            .unwrap_or(w)
    } else {
        w
    }
}

fn object_phrase(o: &Object, syn: bool) -> String {
    format!(
        "a {} {} {}",
        word(SIZES[o.size].0, syn),
        COLOURS[o.colour].0,
        word(SHAPES[o.shape], syn)
    )
}

/// A caption: shared factors only, phrased with the text-only choices.
pub fn caption(f: &Factors, s: &CaptionStyle, rng: &mut SplitMix) -> String {
    let syn = s.synonyms;
    let obj = match f.objects.len() {
        1 => {
            let place = match POSITIONS[f.position.unwrap_or(1)].0 {
                "center" => "in the center".to_string(),
                side => format!("on the {side}"),
            };
            format!("{} {place}", object_phrase(&f.objects[0], syn))
        }
        2 if s.reversed => format!(
            "{} right of {}",
            object_phrase(&f.objects[1], syn),
            object_phrase(&f.objects[0], syn)
        ),
        2 => format!(
            "{} left of {}",
            object_phrase(&f.objects[0], syn),
            object_phrase(&f.objects[1], syn)
        ),
        n => {
            let parts: Vec<String> = f.objects.iter().map(|o| object_phrase(o, syn)).collect();
            format!(
                "{} objects: {}",
                ["zero", "one", "two", "three"][n.min(3)],
                parts.join(" and ")
            )
        }
    };
    let body = TEMPLATES[s.template].replace("{obj}", &obj);
    let mut words: Vec<String> = [POLITENESS[s.politeness], FILLERS[s.filler]]
        .into_iter()
        .filter(|w| !w.is_empty())
        .map(String::from)
        .chain(body.split(' ').map(String::from))
        .collect();
    if s.typo {
        let long: Vec<usize> = (0..words.len()).filter(|&i| words[i].len() >= 4).collect();
        if !long.is_empty() {
            let i = long[rng.below(long.len())];
            let mut c: Vec<char> = words[i].chars().collect();
            let j = 1 + rng.below(c.len() - 2);
            c.swap(j, j + 1);
            words[i] = c.into_iter().collect();
        }
    }
    words.join(" ")
}

fn inside(shape: usize, dx: f32, dy: f32, r: f32) -> bool {
    match SHAPES[shape] {
        "circle" => dx * dx + dy * dy <= r * r,
        "square" => dx.abs() <= r * 0.85 && dy.abs() <= r * 0.85,
        "triangle" => dy <= r * 0.8 && dy >= -r && dx.abs() <= (dy + r) * 0.6,
        _ => (dx.abs() <= r * 0.3 && dy.abs() <= r) || (dy.abs() <= r * 0.3 && dx.abs() <= r),
    }
}

fn render(f: &Factors, side: u32, rng: &mut SplitMix) -> RgbImage {
    let s = side as f32;
    let mut img = RgbImage::new(side, side);
    let noise = NOISE[f.noise].1;
    for py in 0..side {
        for px in 0..side {
            let (u, v) = (px as f32 / s, py as f32 / s);
            let base = match BACKGROUNDS[f.background] {
                "stripes" if ((u * 8.0) as i32) % 2 == 0 => 200.0,
                "dots" if ((u * 10.0).fract() - 0.5).hypot((v * 10.0).fract() - 0.5) < 0.2 => 195.0,
                "checker" if (((u * 6.0) as i32) + ((v * 6.0) as i32)) % 2 == 0 => 205.0,
                _ => 230.0,
            };
            let light = match LIGHTING[f.lighting] {
                "from_left" => 1.15 - 0.4 * u,
                "from_top" => 1.15 - 0.4 * v,
                _ => 1.0,
            };
            let mut rgb = [base; 3];
            for o in &f.objects {
                let r = SIZES[o.size].1;
                let (dx, dy) = (u - o.x, v - o.y);
                if inside(o.shape, dx, dy, r) {
                    let c = COLOURS[o.colour].1;
                    let edge =
                        OUTLINES[f.outline] == "dark" && !inside(o.shape, dx * 1.15, dy * 1.15, r);
                    rgb = if edge {
                        [30.0; 3]
                    } else {
                        [c[0] as f32, c[1] as f32, c[2] as f32]
                    };
                }
            }
            let mut out = [0u8; 3];
            for ch in 0..3 {
                let n = if noise > 0.0 {
                    (uniform(rng) - 0.5) * 2.0 * noise
                } else {
                    0.0
                };
                out[ch] = (rgb[ch] * light + n).clamp(0.0, 255.0) as u8;
            }
            img.put_pixel(px, py, Rgb(out));
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        assert_eq!(parse_name(&name(7, 1 << 40)).unwrap(), (7, 1 << 40));
        for bad in ["scene:1", "scene:a:2", "img:1:2", "scene:1:2:3", ""] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
    }
}
