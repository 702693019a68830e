//! The wasm boundary: converts JS values and delegates to [`crate::Embedder`]. No model
//! logic lives here. Loaded inside a Web Worker by `www/worker.js`.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Device;
use js_sys::{Float32Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

mod apps;

use crate::inspect::{Lens, Modality, occlusion_drops, occlusions};
use crate::io::bundle::fnv1a64;
use crate::pipeline::{Embedder, ModelFiles, rows_async};

/// Images per forward pass when computing an occlusion heatmap: small enough that the
/// page gets progress reports often, large enough to keep the GPU busy.
const HEATMAP_CHUNK: usize = 8;

/// Installs a panic hook that logs panics to the console (the worker then reports the
/// trap to the page, which restarts it).
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// Picks the device: "webgpu", "cpu", or "auto" (WebGPU when an adapter exists).
async fn choose_device(backend: &str) -> Result<(Device, &'static str), JsValue> {
    match backend {
        "cpu" => Ok((Device::flex(), "cpu")),
        "webgpu" => Device::wgpu_options()
            .init_async()
            .await
            .map(|d| (d, "webgpu"))
            .map_err(|e| js_err(format!("WebGPU is not available: {e}"))),
        "auto" => match Device::wgpu_options().init_async().await {
            Ok(d) => Ok((d, "webgpu")),
            Err(_) => Ok((Device::flex(), "cpu")),
        },
        other => Err(js_err(format!(
            "unknown backend {other:?} (auto, webgpu or cpu)"
        ))),
    }
}

/// A loaded model (and optionally a result bundle) in the browser.
#[wasm_bindgen]
pub struct Engine {
    embedder: Rc<Embedder>,
    backend: String,
    model_hash: String,
    /// The bundle's dictionary. It always runs on the CPU backend: it sees one row (or a
    /// heatmap's few dozen) at a time, which costs microseconds, and staying off the GPU
    /// avoids read-backs that WebGPU only allows asynchronously.
    lens: Rc<RefCell<Option<Lens>>>,
    /// The demo world's embedding -> image decoder, when the page loads one.
    decoder: Rc<RefCell<Option<crate::world::decoder::ImageDecoder>>>,
}

fn set(obj: &Object, key: &str, value: &JsValue) -> Result<(), JsValue> {
    Reflect::set(obj, &JsValue::from_str(key), value).map(|_| ())
}

/// `{embedding, activations}` of one embedding.
fn analysis_object(
    lens: &RefCell<Option<Lens>>,
    row: &[f32],
    modality: Modality,
) -> Result<Object, JsValue> {
    let out = Object::new();
    set(&out, "embedding", &Float32Array::from(row))?;
    set(&out, "activations", &activations(lens, row, modality)?)?;
    Ok(out)
}

/// Activations of one embedding, or `undefined` without a bundle.
fn activations(
    lens: &RefCell<Option<Lens>>,
    row: &[f32],
    modality: Modality,
) -> Result<JsValue, JsValue> {
    let lens = lens.borrow();
    let Some(lens) = lens.as_ref() else {
        return Ok(JsValue::UNDEFINED);
    };
    let z = lens
        .activations(&[row.to_vec()], modality)
        .map_err(js_err)?
        .remove(0);
    Ok(Float32Array::from(z.as_slice()).into())
}

#[wasm_bindgen]
impl Engine {
    /// Loads a model from the bytes of `config.json`, `model.safetensors` and
    /// `tokenizer.json`. `backend`: "auto", "webgpu" or "cpu".
    pub async fn create(
        backend: String,
        config_json: Vec<u8>,
        weights: Vec<u8>,
        tokenizer_json: Vec<u8>,
    ) -> Result<Engine, JsValue> {
        let (device, name) = choose_device(&backend).await?;
        let files = ModelFiles {
            config: &config_json,
            weights: &weights,
            tokenizer: &tokenizer_json,
            preprocessor: None,
        };
        let embedder = Embedder::from_bytes(files, &device).map_err(js_err)?;
        Ok(Engine {
            embedder: Rc::new(embedder),
            backend: name.to_string(),
            model_hash: fnv1a64(&weights),
            lens: Rc::new(RefCell::new(None)),
            decoder: Rc::new(RefCell::new(None)),
        })
    }

    /// FNV-1a 64 hash of `model.safetensors` (bundles record the hash of their model).
    pub fn model_hash(&self) -> String {
        self.model_hash.clone()
    }

    /// Loads a result bundle (`manifest.json`, `features.json`, `dictionary.safetensors`)
    /// for the loaded model; returns its summary as JSON. Replaces any earlier bundle
    /// only when the new one is valid.
    pub fn load_bundle(
        &self,
        manifest: Vec<u8>,
        features: Vec<u8>,
        weights: Vec<u8>,
    ) -> Result<String, JsValue> {
        let lens =
            Lens::from_bytes(&manifest, &features, &weights, &Device::flex()).map_err(js_err)?;
        lens.check_model(self.embedder.config.projection_dim)
            .map_err(js_err)?;
        let summary = lens.summary(Some(&self.model_hash));
        *self.lens.borrow_mut() = Some(lens);
        serde_json::to_string(&summary).map_err(js_err)
    }

    /// Forgets the bundle.
    pub fn clear_bundle(&self) {
        *self.lens.borrow_mut() = None;
    }

    /// Whether a bundle is loaded.
    pub fn has_bundle(&self) -> bool {
        self.lens.borrow().is_some()
    }

    /// Embedding and feature activations of an encoded image file; resolves to
    /// `{embedding: Float32Array, activations: Float32Array | undefined}`.
    pub fn analyze_image(&self, bytes: Vec<u8>) -> Promise {
        let (embedder, lens) = (self.embedder.clone(), self.lens.clone());
        future_to_promise(async move {
            let pixels = embedder.preprocess(&bytes).map_err(js_err)?;
            let t = embedder.embed_pixels(&[pixels]).map_err(js_err)?;
            let row = rows_async(t).await.map_err(js_err)?.remove(0);
            Ok(analysis_object(&lens, &row, Modality::Image)?.into())
        })
    }

    /// Embedding and feature activations of a prompt; resolves to `{embedding,
    /// activations, truncated}` (`truncated`: longer than the model's context).
    pub fn analyze_text(&self, text: String) -> Promise {
        let (embedder, lens) = (self.embedder.clone(), self.lens.clone());
        future_to_promise(async move {
            let (batch, truncated) = embedder.prompt_batch(&[text.as_str()]).map_err(js_err)?;
            let t = embedder.model.embed_texts(&batch);
            let row = rows_async(t).await.map_err(js_err)?.remove(0);
            let out = analysis_object(&lens, &row, Modality::Text)?;
            set(&out, "truncated", &JsValue::from_bool(truncated[0]))?;
            Ok(out.into())
        })
    }

    /// Occlusion heatmap of an encoded image for every feature; resolves to `{rows, cols,
    /// drops}` with `drops[p * K + k]` = activation k of the image minus that with patch p
    /// (row-major over CLIP's patch grid) greyed out. `progress(done, total)` is called
    /// after every batch. Needs a bundle.
    pub fn heatmap(&self, bytes: Vec<u8>, progress: Function) -> Promise {
        let (embedder, lens) = (self.embedder.clone(), self.lens.clone());
        future_to_promise(async move {
            if lens.borrow().is_none() {
                return Err(js_err("a heatmap needs a result bundle"));
            }
            let v = &embedder.config.vision;
            let pixels = embedder.preprocess(&bytes).map_err(js_err)?;
            let (rows, cols, occluded) =
                occlusions(&pixels, v.num_channels, v.image_size, v.patch_size).map_err(js_err)?;
            let mut inputs = vec![pixels];
            inputs.extend(occluded);
            let total = inputs.len();
            let mut embeds = Vec::with_capacity(total);
            for chunk in inputs.chunks(HEATMAP_CHUNK) {
                let t = embedder.embed_pixels(chunk).map_err(js_err)?;
                embeds.extend(rows_async(t).await.map_err(js_err)?);
                let _ = progress.call2(
                    &JsValue::NULL,
                    &JsValue::from(embeds.len() as u32),
                    &JsValue::from(total as u32),
                );
            }
            let acts = {
                let lens = lens.borrow();
                let lens = lens
                    .as_ref()
                    .ok_or_else(|| js_err("the bundle was unloaded during the heatmap"))?;
                lens.activations(&embeds, Modality::Image).map_err(js_err)?
            };
            let drops = occlusion_drops(&acts[0], &acts[1..]);
            let out = Object::new();
            set(&out, "rows", &JsValue::from(rows as u32))?;
            set(&out, "cols", &JsValue::from(cols as u32))?;
            set(&out, "drops", &Float32Array::from(drops.as_slice()))?;
            Ok(out.into())
        })
    }

    /// Redraws a demo-world example named `scene:<seed>:<index>` (how the demo bundle
    /// refers to its images) at `side` pixels; returns `{width, height, rgba}`.
    pub fn render_scene(&self, name: String, side: u32) -> Result<JsValue, JsValue> {
        let (seed, index) = crate::world::scene::parse_name(&name).map_err(js_err)?;
        if !(8..=1024).contains(&side) {
            return Err(js_err(format!("scene side {side} out of range 8..=1024")));
        }
        let img = crate::world::scene::generate(seed, index, side, 0).image;
        let rgba: Vec<u8> = img.pixels().flat_map(|p| [p[0], p[1], p[2], 255]).collect();
        let out = Object::new();
        set(&out, "width", &JsValue::from(side))?;
        set(&out, "height", &JsValue::from(side))?;
        set(&out, "rgba", &Uint8Array::from(rgba.as_slice()))?;
        Ok(out.into())
    }

    /// The backend in use: "webgpu" or "cpu".
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// JSON description of the model (config and parameter counts).
    pub fn info_json(&self) -> Result<String, JsValue> {
        serde_json::to_string(&self.embedder.info()).map_err(js_err)
    }

    /// L2-normalised embedding of an encoded image file; resolves to a Float32Array.
    pub fn embed_image(&self, bytes: Vec<u8>) -> Promise {
        let embedder = self.embedder.clone();
        future_to_promise(async move {
            let pixels = embedder.preprocess(&bytes).map_err(js_err)?;
            let t = embedder.embed_pixels(&[pixels]).map_err(js_err)?;
            let row = rows_async(t).await.map_err(js_err)?.remove(0);
            Ok(Float32Array::from(row.as_slice()).into())
        })
    }

    /// L2-normalised embedding of a prompt; resolves to a Float32Array.
    pub fn embed_text(&self, text: String) -> Promise {
        let embedder = self.embedder.clone();
        future_to_promise(async move {
            let t = embedder.embed_texts(&[text.as_str()]).map_err(js_err)?;
            let row = rows_async(t).await.map_err(js_err)?.remove(0);
            Ok(Float32Array::from(row.as_slice()).into())
        })
    }
}
