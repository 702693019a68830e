//! Demo-world scenes drawn as PNG files with an `index.json` (the web page's demo inputs
//! and probe groups; `monoscope world-images`).

use std::path::Path;

use serde::Serialize;

use super::scene;
use crate::base::fs::{create_dir, write_atomic, write_json};
use crate::error::{Error, Result};

/// One drawn scene in `index.json` (fields in the order the shipped files have them).
#[derive(Debug, Clone, Serialize)]
pub struct DrawnScene {
    /// The scene's first caption.
    pub caption: String,
    /// File name in the output directory.
    pub file: String,
    /// `scene:<seed>:<index>`.
    pub scene: String,
}

/// Draws `count` held-out scenes (far past those `world-extract` and `world-factors`
/// use), optionally only single-object scenes of one colour, into `out`.
pub fn draw_scenes(
    seed: u64,
    side: u32,
    count: usize,
    colour: Option<&str>,
    out: &Path,
) -> Result<Vec<DrawnScene>> {
    create_dir(out)?;
    let start = 2 * super::train::HELD_OUT_START;
    let wanted = colour.map(colour_index).transpose()?;
    let picked = (start..).filter(|&i| match wanted {
        None => true,
        Some(c) => {
            let f = scene::generate(seed, i, side, 0).factors;
            f.objects.len() == 1 && f.objects[0].colour == c
        }
    });
    let mut index = Vec::new();
    for (i, n) in picked.take(count).enumerate() {
        let s = scene::generate(seed, n, side, 1);
        let file = format!("scene-{i}.png");
        let mut png = std::io::Cursor::new(Vec::new());
        s.image
            .write_to(&mut png, image::ImageFormat::Png)
            .map_err(|e| Error::Image(e.to_string()))?;
        write_atomic(&out.join(&file), png.get_ref())?;
        index.push(DrawnScene {
            caption: s.captions[0].0.clone(),
            file,
            scene: scene::name(seed, n),
        });
    }
    write_json(&out.join("index.json"), &index)?;
    Ok(index)
}

/// The index of a colour name of the demo world.
fn colour_index(name: &str) -> Result<usize> {
    scene::COLOURS
        .iter()
        .position(|(n, _)| *n == name)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "unknown colour {name:?}; the demo world has {:?}",
                scene::COLOURS.map(|(n, _)| n)
            ))
        })
}
