//! The wasm boundary: converts JS values and delegates to [`crate::Lab`]. No model logic
//! lives here. Loaded inside a Web Worker by `www/worker.js`.

use std::rc::Rc;

use burn::tensor::Device;
use js_sys::{Array, Float32Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

mod apps;
mod build;
mod split;

use crate::clip::footprint::WASM32_MEMORY_BYTES;
use crate::inspect::Lens;
use crate::io::bundle::fnv1a64;
use crate::lab::{InputReport, Lab};
use crate::pipeline::{Embedder, ModelFiles};

unsafe extern "C" {
    /// The static constructors (burn's and cubecl's `inventory` registrations), which
    /// wasm-ld gathers into this function.
    fn __wasm_call_ctors();
}

/// Runs the static constructors once, and installs a panic hook that logs panics to the
/// console (the worker then reports the trap to the page, which restarts it).
///
/// Calling the constructors here, from an export, is what makes wasm-ld link the module as a
/// "reactor": where no export calls them, it takes the module for a run-once "command" and
/// wraps every export in a call of all constructors, which cost 11% of a page's split pass
/// (`scripts/profile_web.mjs --split 2`; inventory's docs, "WebAssembly and constructors").
#[wasm_bindgen(start)]
pub fn start() {
    // SAFETY: wasm-bindgen calls the start function once, right after instantiation and
    // before any other export; the constructors only register static items.
    unsafe { __wasm_call_ctors() };
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

/// Bytes of this instance's linear memory. It only grows, so this is also its peak.
fn memory_bytes() -> u64 {
    core::arch::wasm32::memory_size(0) as u64 * 65536
}

/// Whether a model fits before its weights are downloaded: `config_json` and the size of
/// `model.safetensors` (0 when not known yet). Returns `{parameters, tensors, needed_bytes,
/// in_use_bytes, limit_bytes}` as JSON, or fails with a message saying why it cannot fit.
/// Compares two result bundles (each `manifest.json`, `features.json`,
/// `dictionary.safetensors` and a label); returns `{comparison, svg}` as JSON, as
/// `monoscope compare` computes them (without Bridge Scores and factor table).
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn compare_bundles(
    a_label: String,
    a_manifest: Vec<u8>,
    a_features: Vec<u8>,
    a_dictionary: Vec<u8>,
    b_label: String,
    b_manifest: Vec<u8>,
    b_features: Vec<u8>,
    b_dictionary: Vec<u8>,
) -> Result<String, JsValue> {
    use crate::lab::compare::{BundleBytes, compare_bundles};
    let a = BundleBytes {
        label: &a_label,
        manifest: &a_manifest,
        features: &a_features,
        dictionary: &a_dictionary,
    };
    let b = BundleBytes {
        label: &b_label,
        manifest: &b_manifest,
        features: &b_features,
        dictionary: &b_dictionary,
    };
    // The CPU backend, as for the bundle the page analyses with (synchronous read-backs).
    let report = compare_bundles(&a, &b, &Device::flex()).map_err(js_err)?;
    serde_json::to_string(&report).map_err(js_err)
}

#[wasm_bindgen]
pub fn plan_model(config_json: Vec<u8>, weights_bytes: f64) -> Result<String, JsValue> {
    let config = crate::clip::ClipConfig::from_json(&config_json).map_err(js_err)?;
    let footprint = config.footprint(&Device::flex());
    let weights = weights_bytes.max(0.0) as u64;
    let (in_use, limit) = (memory_bytes(), WASM32_MEMORY_BYTES);
    footprint
        .check_fits(weights, in_use, limit)
        .map_err(js_err)?;
    Ok(serde_json::json!({
        "parameters": footprint.parameters,
        "tensors": footprint.tensors,
        "needed_bytes": footprint.load_peak_bytes(weights),
        "in_use_bytes": in_use,
        "limit_bytes": limit,
    })
    .to_string())
}

/// Bytes of WebAssembly memory this instance holds (its peak: wasm memory never shrinks).
#[wasm_bindgen]
pub fn wasm_memory_bytes() -> f64 {
    memory_bytes() as f64
}

/// A loaded model (and optionally a result bundle) in the browser.
#[wasm_bindgen]
pub struct Engine {
    lab: Rc<Lab>,
    backend: String,
}

fn set(obj: &Object, key: &str, value: &JsValue) -> Result<(), JsValue> {
    Reflect::set(obj, &JsValue::from_str(key), value).map(|_| ())
}

/// `{embedding, activations}` (activations `undefined` without a bundle).
fn analysis_object(r: &InputReport) -> Result<Object, JsValue> {
    let out = Object::new();
    set(
        &out,
        "embedding",
        &Float32Array::from(r.embedding.as_slice()),
    )?;
    let acts = match &r.activations {
        Some(a) => Float32Array::from(a.as_slice()).into(),
        None => JsValue::UNDEFINED,
    };
    set(&out, "activations", &acts)?;
    Ok(out)
}

/// One entry per input: `{embedding, activations, truncated}` or `{error: message}`.
fn analyses_array(reports: Vec<crate::error::Result<InputReport>>) -> Result<JsValue, JsValue> {
    let out = Array::new();
    for r in reports {
        let entry = match r {
            Ok(r) => {
                let obj = analysis_object(&r)?;
                set(&obj, "truncated", &JsValue::from_bool(r.truncated))?;
                obj
            }
            Err(e) => {
                let obj = Object::new();
                set(&obj, "error", &JsValue::from_str(&e.to_string()))?;
                obj
            }
        };
        out.push(&entry);
    }
    Ok(out.into())
}

/// The bytes of each Uint8Array in a JS Array.
fn byte_arrays(list: &Array) -> Vec<Vec<u8>> {
    list.iter().map(|b| Uint8Array::new(&b).to_vec()).collect()
}

/// `progress(done, total)` for the page (a failing callback must not stop the work).
fn report_progress(progress: &Function) -> impl FnMut(usize, usize) + '_ {
    move |done, total| {
        let _ = progress.call2(
            &JsValue::NULL,
            &JsValue::from(done as u32),
            &JsValue::from(total as u32),
        );
    }
}

#[wasm_bindgen]
impl Engine {
    /// Loads a model from the bytes of `config.json`, `model.safetensors` and
    /// `tokenizer.json`. `backend`: "auto", "webgpu" or "cpu". `progress(placed, total)`
    /// is called as parameter tensors are placed on the device.
    pub async fn create(
        backend: String,
        config_json: Vec<u8>,
        weights: Vec<u8>,
        tokenizer_json: Vec<u8>,
        progress: Option<Function>,
    ) -> Result<Engine, JsValue> {
        let (device, name) = choose_device(&backend).await?;
        let files = ModelFiles {
            config: &config_json,
            weights: &weights,
            tokenizer: &tokenizer_json,
            preprocessor: None,
        };
        let mut report = progress.as_ref().map(report_progress);
        let mut on_tensor = |placed, total| {
            if let Some(r) = report.as_mut() {
                r(placed, total);
            }
        };
        let embedder =
            Embedder::from_bytes_with_progress(files, &device, &mut on_tensor).map_err(js_err)?;
        Ok(Engine {
            lab: Rc::new(Lab::new(embedder, Some(fnv1a64(&weights)))),
            backend: name.to_string(),
        })
    }

    /// FNV-1a 64 hash of `model.safetensors` (bundles record the hash of their model).
    pub fn model_hash(&self) -> String {
        self.lab.model_hash().unwrap_or_default().to_string()
    }

    /// Loads a result bundle (`manifest.json`, `features.json`, `dictionary.safetensors`)
    /// for the loaded model; returns its summary as JSON. Replaces any earlier bundle
    /// only when the new one is valid. The dictionary always runs on the CPU backend: it
    /// sees one row (or a heatmap's few dozen) at a time, which costs microseconds, and
    /// staying off the GPU avoids read-backs that WebGPU only allows asynchronously.
    pub fn load_bundle(
        &self,
        manifest: Vec<u8>,
        features: Vec<u8>,
        weights: Vec<u8>,
    ) -> Result<String, JsValue> {
        let lens =
            Lens::from_bytes(&manifest, &features, &weights, &Device::flex()).map_err(js_err)?;
        let summary = self.lab.set_lens(lens).map_err(js_err)?;
        serde_json::to_string(&summary).map_err(js_err)
    }

    /// Forgets the bundle.
    pub fn clear_bundle(&self) {
        self.lab.clear_lens();
    }

    /// Embedding and feature activations of an encoded image file; resolves to
    /// `{embedding: Float32Array, activations: Float32Array | undefined}`.
    pub fn analyze_image(&self, bytes: Vec<u8>) -> Promise {
        let lab = self.lab.clone();
        future_to_promise(async move {
            let r = lab.analyze_image(&bytes).await.map_err(js_err)?;
            Ok(analysis_object(&r)?.into())
        })
    }

    /// Embedding and feature activations of a prompt; resolves to `{embedding,
    /// activations, truncated}` (`truncated`: longer than the model's context).
    pub fn analyze_text(&self, text: String) -> Promise {
        let lab = self.lab.clone();
        future_to_promise(async move {
            let r = lab.analyze_text(&text).await.map_err(js_err)?;
            let out = analysis_object(&r)?;
            set(&out, "truncated", &JsValue::from_bool(r.truncated))?;
            Ok(out.into())
        })
    }

    /// [`Engine::analyze_image`] for several files (an Array of Uint8Array) in one forward
    /// pass; resolves to an Array with, per file, its analysis or `{error: message}`.
    pub fn analyze_images(&self, images: Array) -> Promise {
        let lab = self.lab.clone();
        let images = byte_arrays(&images);
        future_to_promise(async move {
            let reports = lab.analyze_images(&images).await.map_err(js_err)?;
            analyses_array(reports)
        })
    }

    /// [`Engine::analyze_text`] for several prompts (an Array of strings) in one forward
    /// pass; resolves to an Array with, per prompt, its analysis or `{error: message}`.
    pub fn analyze_texts(&self, texts: Array) -> Promise {
        let lab = self.lab.clone();
        let texts: Vec<String> = texts
            .iter()
            .map(|t| t.as_string().unwrap_or_default())
            .collect();
        future_to_promise(async move {
            let reports = lab.analyze_texts(&texts).await.map_err(js_err)?;
            analyses_array(reports)
        })
    }

    /// Occlusion heatmap of an encoded image for every feature; resolves to `{rows, cols,
    /// drops}` with `drops[p * K + k]` = activation k of the image minus that with patch p
    /// (row-major over CLIP's patch grid) greyed out. `progress(done, total)` is called
    /// after every batch. Needs a bundle.
    pub fn heatmap(&self, bytes: Vec<u8>, progress: Function) -> Promise {
        let lab = self.lab.clone();
        future_to_promise(async move {
            let h = lab
                .heatmap(&bytes, report_progress(&progress))
                .await
                .map_err(js_err)?;
            let out = Object::new();
            set(&out, "rows", &JsValue::from(h.rows as u32))?;
            set(&out, "cols", &JsValue::from(h.cols as u32))?;
            set(&out, "drops", &Float32Array::from(h.drops.as_slice()))?;
            Ok(out.into())
        })
    }

    /// Redraws a demo-world example named `scene:<seed>:<index>` (how the demo bundle
    /// refers to its images) at `side` pixels; returns `{width, height, rgba}`.
    pub fn render_scene(&self, name: String, side: u32) -> Result<JsValue, JsValue> {
        let rgba = crate::world::scene::render_named(&name, side).map_err(js_err)?;
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
        serde_json::to_string(&self.lab.embedder().info()).map_err(js_err)
    }

    /// L2-normalised embedding of an encoded image file; resolves to a Float32Array.
    pub fn embed_image(&self, bytes: Vec<u8>) -> Promise {
        let lab = self.lab.clone();
        future_to_promise(async move {
            let row = lab.embed_image(&bytes).await.map_err(js_err)?;
            Ok(Float32Array::from(row.as_slice()).into())
        })
    }

    /// L2-normalised embeddings of encoded image files (an Array of Uint8Array) in one
    /// forward pass; resolves to an Array of Float32Array.
    pub fn embed_images(&self, images: Array) -> Promise {
        let lab = self.lab.clone();
        let images = byte_arrays(&images);
        future_to_promise(async move {
            let rows = lab.embed_images(&images).await.map_err(js_err)?;
            let out = Array::new();
            for row in rows {
                out.push(&Float32Array::from(row.as_slice()));
            }
            Ok(out.into())
        })
    }

    /// L2-normalised embedding of a prompt; resolves to a Float32Array.
    pub fn embed_text(&self, text: String) -> Promise {
        let lab = self.lab.clone();
        future_to_promise(async move {
            let row = lab.embed_text(&text).await.map_err(js_err)?;
            Ok(Float32Array::from(row.as_slice()).into())
        })
    }
}
