//! Encoded image bytes -> normalised pixel tensor, as transformers' `CLIPImageProcessor`:
//! decode, convert to RGB (transparent pixels composited onto white, as transformers'
//! `image_transforms.convert_to_rgb`), resize the shortest
//! edge to `shortest_edge` with bicubic filtering, centre-crop, rescale by 1/255 and
//! normalise per channel.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{ImageFormat, ImageReader, Limits, RgbImage};
use serde_json::Value;

use crate::error::{Error, Result};

/// Channel means of OpenAI CLIP's training data: `openai/CLIP` `clip.py::_transform`,
/// the same numbers as transformers' `OPENAI_CLIP_MEAN`.
pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// Channel standard deviations, same sources (`OPENAI_CLIP_STD`).
// The digits are quoted as published, beyond f32 precision on purpose.
#[allow(clippy::excessive_precision)]
pub const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Largest input accepted, checked from the header before decoding (a 64-megapixel photo).
pub const DEFAULT_MAX_PIXELS: u64 = 64 * 1024 * 1024;
/// Largest intermediate image after the shortest-edge resize; only extreme aspect
/// ratios reach it (e.g. 1 x 3000 at size 224).
pub const MAX_RESIZED_PIXELS: u64 = 64 * 1024 * 1024;
/// Decoder allocation cap passed to `image`'s `Limits` (RGBA16 of the largest input).
const MAX_DECODE_BYTES: u64 = DEFAULT_MAX_PIXELS * 8;

/// Whether a JPEG stream contains its end-of-image marker (FF D9) near its end; some
/// writers pad after it, so a little trailing data is allowed.
fn has_jpeg_end(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Preprocessing settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessor {
    /// Target of the shortest edge after resizing.
    pub shortest_edge: usize,
    /// Side of the square centre crop (the model's `image_size`).
    pub crop: usize,
    /// Per-channel mean subtracted after rescaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
    /// Inputs with more pixels are refused before decoding.
    pub max_pixels: u64,
}

impl ImageProcessor {
    /// The OpenAI CLIP settings for a model of input size `image_size`.
    pub fn for_size(image_size: usize) -> Self {
        Self {
            shortest_edge: image_size,
            crop: image_size,
            mean: OPENAI_CLIP_MEAN,
            std: OPENAI_CLIP_STD,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }

    /// Reads a hub `preprocessor_config.json` (size, crop, mean, std), falling back to
    /// [`ImageProcessor::for_size`] for anything it does not state.
    pub fn from_hf_json(bytes: &[u8], image_size: usize) -> Result<Self> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| {
            Error::Config(format!("preprocessor_config.json is not valid JSON: {e}"))
        })?;
        let mut p = Self::for_size(image_size);
        let side = |x: &Value, keys: &[&str]| -> Option<usize> {
            if let Some(n) = x.as_u64() {
                return Some(n as usize);
            }
            keys.iter()
                .find_map(|k| x.get(*k).and_then(Value::as_u64))
                .map(|n| n as usize)
        };
        if let Some(s) = v
            .get("size")
            .and_then(|x| side(x, &["shortest_edge", "height"]))
        {
            p.shortest_edge = s;
        }
        if let Some(s) = v.get("crop_size").and_then(|x| side(x, &["height"])) {
            p.crop = s;
        }
        let triple = |key: &str| -> Result<Option<[f32; 3]>> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => {
                    let a: Vec<f32> = serde_json::from_value(x.clone()).map_err(|_| {
                        Error::Config(format!("preprocessor_config.json: {key} must be 3 numbers"))
                    })?;
                    <[f32; 3]>::try_from(a).map(Some).map_err(|_| {
                        Error::Config(format!("preprocessor_config.json: {key} must be 3 numbers"))
                    })
                }
            }
        };
        if let Some(m) = triple("image_mean")? {
            p.mean = m;
        }
        if let Some(s) = triple("image_std")? {
            p.std = s;
        }
        if p.crop != image_size {
            return Err(Error::Config(format!(
                "preprocessor crop size {} differs from the model's image_size {image_size}",
                p.crop
            )));
        }
        if p.shortest_edge < p.crop || p.std.iter().any(|&s| s <= 0.0) {
            return Err(Error::Config(
                "preprocessor_config.json: size below crop, or a non-positive std".into(),
            ));
        }
        Ok(p)
    }

    /// Decodes an encoded image (PNG, JPEG, WebP, GIF's first frame, BMP) to RGB8,
    /// refusing oversized images before any pixel is decoded.
    pub fn decode(&self, bytes: &[u8]) -> Result<RgbImage> {
        let reader = || {
            ImageReader::new(Cursor::new(bytes))
                .with_guessed_format()
                .map_err(|e| Error::Image(format!("cannot read: {e}")))
        };
        let probe = reader()?;
        match probe.format() {
            None => {
                return Err(Error::Image(
                    "not a recognised image (PNG, JPEG, WebP, GIF or BMP expected)".into(),
                ));
            }
            // The JPEG decoder fills a cut-off file with grey and succeeds; PIL (and so
            // transformers) refuses it. A complete JPEG ends with the EOI marker.
            Some(ImageFormat::Jpeg) if !has_jpeg_end(bytes) => {
                return Err(Error::Image(
                    "the JPEG file is truncated (no end-of-image marker)".into(),
                ));
            }
            Some(_) => {}
        }
        // Reading the header allocates nothing, so the decoder's allocation limit (which the
        // PNG decoder applies to the declared size) must not stop it: our own pixel limit
        // below says what is wrong.
        let mut probe = probe;
        probe.no_limits();
        let (w, h) = probe.into_dimensions().map_err(|e| match e {
            // On wasm32 the PNG decoder still applies a size limit of its own to the declared
            // size; that can only mean an image far over ours.
            image::ImageError::Limits(_) => Error::Image(format!(
                "its header declares a size beyond the decoder's memory limit, more than the {} pixels accepted (nothing was decoded)",
                self.max_pixels
            )),
            other => Error::Image(format!("cannot read the header: {other}")),
        })?;
        let pixels = w as u64 * h as u64;
        if pixels > self.max_pixels {
            return Err(Error::Image(format!(
                "{w}x{h} is {pixels} pixels, more than the {} accepted (read from the header; nothing was decoded)",
                self.max_pixels
            )));
        }
        if pixels == 0 {
            return Err(Error::Image("the image is empty (0 pixels)".into()));
        }
        let mut limits = Limits::default();
        limits.max_alloc = Some(MAX_DECODE_BYTES);
        let mut decoder = reader()?;
        decoder.limits(limits);
        let img = decoder
            .decode()
            .map_err(|e| Error::Image(format!("cannot decode: {e}")))?;
        if !img.color().has_alpha() {
            return Ok(img.to_rgb8());
        }
        // transformers' convert_to_rgb: PIL alpha_composite over opaque white, i.e.
        // round((c * a + 255 * (255 - a)) / 255).
        let rgba = img.to_rgba8();
        Ok(RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
            let [r, g, b, a] = rgba.get_pixel(x, y).0;
            let (a, inv) = (a as u32, 255 - a as u32);
            let mix = |c: u8| ((c as u32 * a + 255 * inv + 127) / 255) as u8;
            image::Rgb([mix(r), mix(g), mix(b)])
        }))
    }

    /// Resize + crop + normalise an RGB image to CHW floats, [3 * crop * crop].
    pub fn pixels(&self, rgb: &RgbImage) -> Result<Vec<f32>> {
        let (w, h) = rgb.dimensions();
        let (short, long) = if w <= h { (w, h) } else { (h, w) };
        // transformers' get_resize_output_image_size: the long side is truncated, not rounded.
        let new_short = self.shortest_edge as u64;
        let new_long = new_short * long as u64 / short as u64;
        if new_short * new_long > MAX_RESIZED_PIXELS {
            return Err(Error::Image(format!(
                "aspect ratio {w}x{h} is too extreme to resize"
            )));
        }
        let (nw, nh) = if w <= h {
            (new_short, new_long)
        } else {
            (new_long, new_short)
        };
        // Catmull-Rom is the a = -0.5 cubic PIL uses for BICUBIC, with the same support
        // widening on downscale (antialiasing).
        let resized = if (nw, nh) == (w as u64, h as u64) {
            rgb.clone()
        } else {
            image::imageops::resize(rgb, nw as u32, nh as u32, FilterType::CatmullRom)
        };
        let c = self.crop as u32;
        let top = (nh as u32).saturating_sub(c) / 2;
        let left = (nw as u32).saturating_sub(c) / 2;
        let n = (c * c) as usize;
        let mut out = vec![0f32; 3 * n];
        for y in 0..c {
            for x in 0..c {
                let px = resized.get_pixel(left + x, top + y);
                for ch in 0..3 {
                    let v = px[ch] as f32 / 255.0;
                    out[ch * n + (y * c + x) as usize] = (v - self.mean[ch]) / self.std[ch];
                }
            }
        }
        Ok(out)
    }

    /// Decode + [`ImageProcessor::pixels`].
    pub fn process(&self, bytes: &[u8]) -> Result<Vec<f32>> {
        self.pixels(&self.decode(bytes)?)
    }
}
