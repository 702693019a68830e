//! The applications (probe, attack, control) at the wasm boundary: convert, delegate to
//! `crate::apps`, convert back.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::{Device, Tensor, TensorData};
use js_sys::{Array, Float32Array, Function, Object, Promise, Uint8Array};
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{Engine, js_err, set};
use crate::analysis::mds::FeatureClass;
use crate::apps::attack::{
    AttackConfig, Objective, Pgd, nearest_wrong, outcome, perturbation_norms, summarize,
};
use crate::apps::control::{Scales, edit, npy_bytes, safetensors_bytes};
use crate::apps::probe::{Group, ProbeConfig, probe};
use crate::apps::{HostDecoder, cosine};
use crate::inspect::{Lens, Modality};
use crate::pipeline::{Embedder, rows_async};
use crate::world::decoder::planar_to_rgba;

/// Images per forward pass when the probe embeds its groups.
const PROBE_CHUNK: usize = 16;

/// Runs `f` with the loaded bundle's lens and its host decoder (SAEs only).
fn with_decoder<T>(
    lens: &RefCell<Option<Lens>>,
    f: impl FnOnce(&Lens, &HostDecoder) -> Result<T, JsValue>,
) -> Result<T, JsValue> {
    let lens = lens.borrow();
    let lens = lens
        .as_ref()
        .ok_or_else(|| js_err("this needs a result bundle"))?;
    f(lens, lens.decoder().map_err(js_err)?)
}

async fn text_rows(embedder: &Embedder, texts: &[String]) -> Result<Vec<Vec<f32>>, JsValue> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (batch, _) = embedder.prompt_batch(&refs).map_err(js_err)?;
    rows_async(embedder.model.embed_texts(&batch))
        .await
        .map_err(js_err)
}

async fn host4(t: Tensor<4>) -> Result<Vec<f32>, JsValue> {
    t.into_data_async()
        .await
        .map_err(|e| js_err(format!("{e:?}")))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| js_err(format!("{e:?}")))
}

fn activations(
    lens: &RefCell<Option<Lens>>,
    rows: &[Vec<f32>],
    m: Modality,
) -> Result<Vec<Vec<f32>>, JsValue> {
    let lens = lens.borrow();
    let lens = lens
        .as_ref()
        .ok_or_else(|| js_err("this needs a result bundle"))?;
    lens.activations(rows, m).map_err(js_err)
}

#[derive(Deserialize)]
struct ProbeRequest {
    prompts: Vec<String>,
    names: Vec<String>,
    #[serde(default)]
    bootstrap: Option<usize>,
}

#[derive(Deserialize)]
struct AttackRequest {
    labels: Vec<String>,
    /// Index into labels, or None for the nearest wrong label.
    #[serde(default)]
    target: Option<usize>,
    eps: f32,
    steps: usize,
    #[serde(default)]
    step_size: Option<f32>,
    /// "embedding", "ImgD", "TextD" or "CrossD".
    objective: String,
}

/// A running adversarial attack on one image: call `step()` until `done()`, then
/// `finish()`. The page can stop between steps (cancel) and shows progress.
#[wasm_bindgen]
pub struct AttackSession {
    pgd: Rc<RefCell<Pgd>>,
    embedder: Rc<Embedder>,
    lens: Rc<RefCell<Option<Lens>>>,
    labels: Vec<String>,
    label_rows: Vec<Vec<f32>>,
    /// The clean image's embedding (computed when the attack began).
    clean: Vec<f32>,
    target: usize,
    config: AttackConfig,
}

#[wasm_bindgen]
impl AttackSession {
    /// Steps done.
    pub fn steps_done(&self) -> usize {
        self.pgd.borrow().step
    }

    /// Steps in total.
    pub fn steps_total(&self) -> usize {
        self.config.steps
    }

    /// Whether all steps are done.
    pub fn done(&self) -> bool {
        self.pgd.borrow().done()
    }

    /// One PGD step; resolves to the objective before the step.
    pub fn step(&self) -> Promise {
        let pgd = self.pgd.clone();
        future_to_promise(async move {
            let obj = pgd.borrow_mut().step();
            let v = obj
                .into_data_async()
                .await
                .map_err(|e| js_err(format!("{e:?}")))?
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| js_err(format!("{e:?}")))?;
            Ok(JsValue::from_f64(v[0] as f64))
        })
    }

    /// Evaluates the attack; resolves to `{report (JSON string), side, clean, adversarial,
    /// difference}` with RGBA images at the model's input size (the difference amplified
    /// around mid-grey).
    pub fn finish(&self) -> Promise {
        let (pgd, embedder, lens) = (self.pgd.clone(), self.embedder.clone(), self.lens.clone());
        let (labels, label_rows, clean, target, config) = (
            self.labels.clone(),
            self.label_rows.clone(),
            self.clean.clone(),
            self.target,
            self.config,
        );
        future_to_promise(async move {
            let (c, a, adv_px) = {
                let p = pgd.borrow();
                let (c, a) = p.images();
                (c, a, p.adversarial_pixels())
            };
            let (c01, a01) = (host4(c).await?, host4(a).await?);
            let norms = perturbation_norms(&c01, &a01, 1);
            let side = embedder.config.vision.image_size;
            let adv = rows_async(embedder.model.embed_images(adv_px))
                .await
                .map_err(js_err)?
                .remove(0);
            let (o, summary) = with_decoder(&lens, |l, decoder| {
                let z = l
                    .activations(&[clean.clone(), adv.clone()], Modality::Image)
                    .map_err(js_err)?;
                let o = outcome(
                    decoder,
                    &label_rows,
                    target,
                    (&clean, &z[0]),
                    (&adv, &z[1]),
                    norms[0].0,
                    norms[0].1,
                );
                let summary = summarize(config, std::slice::from_ref(&o), &decoder.classes);
                Ok((o, summary))
            })?;
            let mut report = o.describe(&labels);
            report["labels"] = serde_json::json!(labels);
            report["class_shift_per_feature"] = serde_json::json!(summary.class_shift_per_feature);
            report["clean_similarity"] = serde_json::json!(cosine(&clean, &label_rows[target]));
            report["adversarial_similarity"] = serde_json::json!(cosine(&adv, &label_rows[target]));
            let amp = 0.5 / config.eps;
            let diff: Vec<f32> = c01
                .iter()
                .zip(&a01)
                .map(|(x, y)| 0.5 + (y - x) * amp)
                .collect();
            let out = Object::new();
            set(&out, "report", &JsValue::from_str(&report.to_string()))?;
            set(&out, "side", &JsValue::from(side as u32))?;
            for (name, planes) in [
                ("clean", &c01),
                ("adversarial", &a01),
                ("difference", &diff),
            ] {
                set(
                    &out,
                    name,
                    &Uint8Array::from(planar_to_rgba(planes, side).as_slice()),
                )?;
            }
            Ok(out.into())
        })
    }
}

#[wasm_bindgen]
impl Engine {
    /// Attribute probe. `request`: JSON `{prompts: [...], names: [...], bootstrap?}` (group
    /// i should match prompt i); `images`: array of encoded files; `groups`: group index of
    /// each image. Unreadable images are skipped and listed. `progress(done, total)` after
    /// each batch. Resolves to the report as JSON (plus `skipped`).
    pub fn probe(
        &self,
        request: String,
        images: Array,
        groups: Vec<u32>,
        progress: Function,
    ) -> Promise {
        let (embedder, lens) = (self.embedder.clone(), self.lens.clone());
        future_to_promise(async move {
            let req: ProbeRequest = serde_json::from_str(&request).map_err(js_err)?;
            if req.prompts.len() != req.names.len() || req.prompts.len() < 2 {
                return Err(js_err("the probe needs one prompt per group, at least two"));
            }
            if images.length() as usize != groups.len() {
                return Err(js_err("one group index per image"));
            }
            with_decoder(&lens, |_, _| Ok(()))?; // fail before the work
            let t = text_rows(&embedder, &req.prompts).await?;
            let mut pixels = vec![Vec::new(); req.names.len()];
            let mut skipped = Vec::new();
            for (i, img) in images.iter().enumerate() {
                let g = groups[i] as usize;
                if g >= req.names.len() {
                    return Err(js_err(format!("image {i}: group {g} does not exist")));
                }
                let bytes = Uint8Array::new(&img).to_vec();
                match embedder.preprocess(&bytes) {
                    Ok(p) => pixels[g].push(p),
                    Err(e) => skipped.push(format!("image {} of {}: {e}", i + 1, req.names[g])),
                }
            }
            let total: usize = pixels.iter().map(Vec::len).sum();
            let mut done = 0;
            let mut gs = Vec::new();
            for (gi, px) in pixels.iter().enumerate() {
                if px.is_empty() {
                    return Err(js_err(format!(
                        "group {:?} has no readable images",
                        req.names[gi]
                    )));
                }
                let mut emb = Vec::new();
                for chunk in px.chunks(PROBE_CHUNK) {
                    let t = embedder.embed_pixels(chunk).map_err(js_err)?;
                    emb.extend(rows_async(t).await.map_err(js_err)?);
                    done += chunk.len();
                    let _ = progress.call2(
                        &JsValue::NULL,
                        &JsValue::from(done as u32),
                        &JsValue::from(total as u32),
                    );
                }
                let acts = activations(&lens, &emb, Modality::Image)?;
                gs.push(Group {
                    name: req.names[gi].clone(),
                    expected: gi,
                    embeddings: emb,
                    activations: acts,
                });
            }
            let config = ProbeConfig {
                bootstrap: req
                    .bootstrap
                    .unwrap_or(crate::apps::probe::DEFAULT_BOOTSTRAP),
                ..ProbeConfig::default()
            };
            let report = with_decoder(&lens, |_, decoder| {
                probe(decoder, &req.prompts, &t, &gs, &config).map_err(js_err)
            })?;
            let mut json = serde_json::to_value(&report).map_err(js_err)?;
            json["skipped"] = serde_json::json!(skipped);
            Ok(JsValue::from_str(&json.to_string()))
        })
    }

    /// Starts a PGD attack on one encoded image. `request`: JSON `{labels: [...], target:
    /// index or null (nearest wrong label), eps, steps, step_size?, objective: "embedding" |
    /// "ImgD" | "TextD" | "CrossD"}`. Runs on the engine's backend (WebGPU or CPU).
    pub fn attack_begin(&self, bytes: Vec<u8>, request: String) -> Promise {
        let (embedder, lens) = (self.embedder.clone(), self.lens.clone());
        future_to_promise(async move {
            let req: AttackRequest = serde_json::from_str(&request).map_err(js_err)?;
            if req.labels.len() < 2 {
                return Err(js_err("the attack needs at least two labels"));
            }
            let objective = match req.objective.as_str() {
                "embedding" => Objective::Embedding,
                "ImgD" => Objective::Class(FeatureClass::ImgD),
                "TextD" => Objective::Class(FeatureClass::TextD),
                "CrossD" => Objective::Class(FeatureClass::CrossD),
                o => return Err(js_err(format!("unknown objective {o:?}"))),
            };
            let config = AttackConfig {
                eps: req.eps,
                steps: req.steps,
                step_size: req.step_size,
                objective,
            };
            config.validate().map_err(js_err)?;
            with_decoder(&lens, |_, _| Ok(()))?; // the report needs a decoder: fail before the work
            let t = text_rows(&embedder, &req.labels).await?;
            let pixels = embedder.preprocess(&bytes).map_err(js_err)?;
            let clean = rows_async(
                embedder
                    .embed_pixels(std::slice::from_ref(&pixels))
                    .map_err(js_err)?,
            )
            .await
            .map_err(js_err)?
            .remove(0);
            let target = match req.target {
                Some(i) if i < t.len() => i,
                Some(i) => return Err(js_err(format!("target {i} is not a label index"))),
                None => nearest_wrong(&clean, &t),
            };
            let pgd = {
                let l = lens.borrow();
                Pgd::new(
                    &embedder.model,
                    &embedder.processor,
                    &[pixels],
                    &[t[target].clone()],
                    l.as_ref(),
                    config,
                    embedder.device(),
                )
                .and_then(|p| p.with_labels(std::slice::from_ref(&t), &[target]))
                .map_err(js_err)?
            };
            Ok(AttackSession {
                pgd: Rc::new(RefCell::new(pgd)),
                embedder,
                lens,
                labels: req.labels,
                label_rows: t,
                clean,
                target,
                config,
            }
            .into())
        })
    }

    /// Loads the demo world's image decoder (`decoder.json`, `decoder.safetensors`).
    pub fn load_decoder(&self, config: Vec<u8>, weights: Vec<u8>) -> Result<(), JsValue> {
        let dec = crate::world::decoder::from_bytes(&config, &weights, &Device::flex())
            .map_err(js_err)?;
        if dec.fc1.weight.dims()[0] != self.embedder.config.projection_dim {
            return Err(js_err("the decoder was made for another embedding width"));
        }
        *self.decoder.borrow_mut() = Some(dec);
        Ok(())
    }

    /// Modality-specific control of a prompt. `scales`: JSON `{class: [ImgD, TextD, CrossD,
    /// Rare], features: [[id, scale], ...]}`. Resolves to `{embedding, original,
    /// before, after}` (Float32Arrays) plus, with a decoder loaded, `side`, `image_before`
    /// and `image_after` (RGBA).
    pub fn control(&self, text: String, scales: String) -> Promise {
        let (embedder, lens, decoder) = (
            self.embedder.clone(),
            self.lens.clone(),
            self.decoder.clone(),
        );
        future_to_promise(async move {
            let scales: Scales = serde_json::from_str(&scales).map_err(js_err)?;
            with_decoder(&lens, |_, _| Ok(()))?;
            let x = text_rows(&embedder, &[text]).await?.remove(0);
            let e = with_decoder(&lens, |l, decoder| {
                let z = l
                    .activations(std::slice::from_ref(&x), Modality::Text)
                    .map_err(js_err)?
                    .remove(0);
                edit(decoder, &x, &z, Modality::Text, &scales).map_err(js_err)
            })?;
            let out = Object::new();
            set(
                &out,
                "embedding",
                &Float32Array::from(e.embedding.as_slice()),
            )?;
            set(&out, "original", &Float32Array::from(x.as_slice()))?;
            set(&out, "before", &Float32Array::from(e.before.as_slice()))?;
            set(&out, "after", &Float32Array::from(e.after.as_slice()))?;
            if let Some(dec) = decoder.borrow().as_ref() {
                let side = dec.side();
                let dev = Device::flex();
                let decode = |v: &[f32]| -> Result<Vec<u8>, JsValue> {
                    let t = Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, v.len()]), &dev);
                    let planes = dec
                        .forward(t)
                        .into_data()
                        .convert::<f32>()
                        .try_into_vec::<f32>()
                        .map_err(|e| js_err(format!("{e:?}")))?;
                    Ok(planar_to_rgba(&planes, side))
                };
                set(&out, "side", &JsValue::from(side as u32))?;
                set(
                    &out,
                    "image_before",
                    &Uint8Array::from(decode(&x)?.as_slice()),
                )?;
                set(
                    &out,
                    "image_after",
                    &Uint8Array::from(decode(&e.embedding)?.as_slice()),
                )?;
            }
            Ok(out.into())
        })
    }

    /// An edited embedding as a safetensors file (tensor `embedding` [1, d]; `metadata`:
    /// JSON object of strings stored in the header).
    pub fn export_safetensors(
        &self,
        embedding: Vec<f32>,
        metadata: String,
    ) -> Result<Vec<u8>, JsValue> {
        let meta: std::collections::HashMap<String, String> =
            serde_json::from_str(&metadata).map_err(js_err)?;
        safetensors_bytes(&embedding, &[1, embedding.len()], meta).map_err(js_err)
    }

    /// An edited embedding as a `.npy` file ([1, d] float32).
    pub fn export_npy(&self, embedding: Vec<f32>) -> Vec<u8> {
        npy_bytes(&embedding, &[1, embedding.len()])
    }
}
