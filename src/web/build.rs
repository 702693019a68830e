//! Building a bundle in the page (issue 11) at the wasm boundary: convert and delegate to
//! [`crate::lab::build`].

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Device;
use js_sys::{Array, Float32Array, Object, Promise, Uint8Array};
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{Engine, js_err, set};
use crate::lab::Lab;
use crate::lab::build::{BuildSettings, BundleBuild};

/// Parses a caption list the user picked (TSV, CSV with `image,caption` columns, or COCO
/// captions JSON, by the extension of `name`) with the CLI's reader; returns JSON `{pairs:
/// [[id, image, caption], ...], skipped: [[id, reason], ...]}`. The page resolves the image
/// paths among the picked files.
#[wasm_bindgen]
pub fn parse_caption_list(name: String, bytes: Vec<u8>) -> Result<String, JsValue> {
    use crate::io::captions::{ReadOptions, list_format, parse_list};
    let (pairs, skipped) =
        parse_list(list_format(&name), &bytes, &ReadOptions::default()).map_err(js_err)?;
    serde_json::to_string(&serde_json::json!({ "pairs": pairs, "skipped": skipped }))
        .map_err(js_err)
}

/// Names and captions of a batch (the images come as a separate array of bytes).
#[derive(Deserialize)]
struct BatchMeta {
    ids: Vec<usize>,
    names: Vec<String>,
    captions: Vec<String>,
}

/// A bundle being built: `add` batches of pairs, `start_training`, `train` until done,
/// then `finish`. Commands run one at a time (the worker queues them).
#[wasm_bindgen]
pub struct BuildSession {
    build: Rc<RefCell<Option<BundleBuild>>>,
    lab: Rc<Lab>,
}

#[wasm_bindgen]
impl Engine {
    /// Starts building a bundle for the loaded model from pairs described by `source`.
    /// Training and analysis run on the CPU backend (synchronous reads, small matrices).
    pub fn build_begin(&self, source: String) -> BuildSession {
        let d = self.lab.embedder().config.projection_dim;
        BuildSession {
            build: Rc::new(RefCell::new(Some(BundleBuild::new(
                &source,
                d,
                &Device::flex(),
            )))),
            lab: self.lab.clone(),
        }
    }
}

fn taken(cell: &RefCell<Option<BundleBuild>>) -> Result<BundleBuild, JsValue> {
    cell.borrow_mut()
        .take()
        .ok_or_else(|| js_err("the build is finished or busy"))
}

/// `{ids, names, captions, image, text}` of stored rows.
fn rows_object(rows: &crate::lab::build::StoredRows) -> Result<Object, JsValue> {
    let out = Object::new();
    let ids: Vec<u32> = rows.ids.iter().map(|&i| i as u32).collect();
    set(&out, "ids", &js_sys::Uint32Array::from(ids.as_slice()))?;
    let strings = |v: &[String]| v.iter().map(JsValue::from).collect::<Array>();
    set(&out, "names", &strings(&rows.names))?;
    set(&out, "captions", &strings(&rows.captions))?;
    set(&out, "image", &Float32Array::from(rows.image.as_slice()))?;
    set(&out, "text", &Float32Array::from(rows.text.as_slice()))?;
    Ok(out)
}

#[wasm_bindgen]
impl BuildSession {
    /// Embeds a batch: `meta` is JSON `{ids, names, captions}`, `images` an array of
    /// Uint8Arrays (encoded files). Resolves to `{kept, skipped, rows}` where `rows` holds the
    /// new embedded rows (`{ids, names, captions, image, text}`) for the page to store.
    pub fn add(&self, meta: String, images: Array) -> Promise {
        let (cell, lab) = (self.build.clone(), self.lab.clone());
        future_to_promise(async move {
            let meta: BatchMeta = serde_json::from_str(&meta).map_err(js_err)?;
            let bytes: Vec<Vec<u8>> = images
                .iter()
                .map(|v| Uint8Array::new(&v).to_vec())
                .collect();
            if bytes.len() != meta.ids.len()
                || meta.names.len() != meta.ids.len()
                || meta.captions.len() != meta.ids.len()
            {
                return Err(js_err("a batch needs one id, name, caption and image each"));
            }
            let mut build = taken(&cell)?;
            let (start, skipped_before) = (build.pairs(), build.skipped().len());
            let result = lab
                .build_add(&mut build, &meta.ids, &meta.names, &bytes, &meta.captions)
                .await;
            let rows = build.rows_from(start);
            let skipped: Array = build.skipped()[skipped_before..]
                .iter()
                .map(|(_, why)| JsValue::from_str(why))
                .collect();
            cell.borrow_mut().replace(build);
            let kept = result.map_err(js_err)?;
            let out = Object::new();
            set(&out, "kept", &JsValue::from(kept as u32))?;
            set(&out, "skipped", &skipped)?;
            set(&out, "rows", &rows_object(&rows)?.into())?;
            Ok(out.into())
        })
    }

    /// Adds rows stored by an earlier session (`{ids, names, captions}` as JSON; image and
    /// text rows `[n, d]` row-major).
    pub fn add_rows(&self, meta: String, image: Vec<f32>, text: Vec<f32>) -> Result<(), JsValue> {
        let meta: BatchMeta = serde_json::from_str(&meta).map_err(js_err)?;
        let mut cell = self.build.borrow_mut();
        let build = cell
            .as_mut()
            .ok_or_else(|| js_err("the build is finished"))?;
        build
            .add_rows(&meta.ids, &meta.names, &meta.captions, &image, &text)
            .map_err(js_err)
    }

    /// Uses an existing dictionary instead of training: `config` is monoscope's
    /// `dict.json` or SAELens' `cfg.json` (`saelens`), `weights` its safetensors file;
    /// `center` analyses centred embeddings (`analyze --center`).
    pub fn use_dictionary(
        &self,
        config: Vec<u8>,
        weights: Vec<u8>,
        saelens: bool,
        center: bool,
    ) -> Result<(), JsValue> {
        let mut cell = self.build.borrow_mut();
        let build = cell
            .as_mut()
            .ok_or_else(|| js_err("the build is finished"))?;
        build
            .use_dictionary(&config, &weights, saelens, center)
            .map_err(js_err)
    }

    /// Pairs embedded so far.
    pub fn pairs(&self) -> usize {
        self.build.borrow().as_ref().map_or(0, BundleBuild::pairs)
    }

    /// Default settings for the pairs embedded so far, as JSON (`{features, k, steps,
    /// batch, seed}`).
    pub fn default_settings(&self) -> Result<String, JsValue> {
        let n = self.pairs();
        let d = self.lab.embedder().config.projection_dim;
        serde_json::to_string(&BuildSettings::for_data(n, d)).map_err(js_err)
    }

    /// Starts training with `settings` (JSON as from `default_settings`).
    pub fn start_training(&self, settings: String) -> Result<(), JsValue> {
        let settings: BuildSettings = serde_json::from_str(&settings).map_err(js_err)?;
        let mut cell = self.build.borrow_mut();
        let build = cell
            .as_mut()
            .ok_or_else(|| js_err("the build is finished"))?;
        build.start_training(&settings).map_err(js_err)
    }

    /// Runs up to `steps` training steps; returns the status as JSON (`{step, steps, loss,
    /// fvu: [image, text], dead_fraction}`).
    pub fn train(&self, steps: usize) -> Result<String, JsValue> {
        let mut cell = self.build.borrow_mut();
        let build = cell
            .as_mut()
            .ok_or_else(|| js_err("the build is finished"))?;
        let status = build.train(steps).map_err(js_err)?;
        serde_json::to_string(&status).map_err(js_err)
    }

    /// Analyses the trained dictionary; resolves to the bundle's files `{manifest, features,
    /// dictionary}` (Uint8Arrays). The session is used up.
    pub fn finish(&self, model_name: String) -> Promise {
        let (cell, lab) = (self.build.clone(), self.lab.clone());
        future_to_promise(async move {
            let build = taken(&cell)?;
            let [m, f, d] = build.finish(&lab, &model_name).await.map_err(js_err)?;
            let out = Object::new();
            set(&out, "manifest", &Uint8Array::from(m.as_slice()))?;
            set(&out, "features", &Uint8Array::from(f.as_slice()))?;
            set(&out, "dictionary", &Uint8Array::from(d.as_slice()))?;
            Ok(out.into())
        })
    }
}
