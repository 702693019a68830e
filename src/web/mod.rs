//! The wasm boundary: converts JS values and delegates to [`crate::Embedder`]. No model
//! logic lives here. Loaded inside a Web Worker by `www/worker.js`.

use std::rc::Rc;

use burn::tensor::Device;
use js_sys::{Float32Array, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::pipeline::{Embedder, ModelFiles, rows_async};

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

/// A loaded model in the browser.
#[wasm_bindgen]
pub struct Engine {
    embedder: Rc<Embedder>,
    backend: String,
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
        })
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
