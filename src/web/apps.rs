//! The applications (probe, attack, control) at the wasm boundary: convert, delegate to
//! [`crate::Lab`], convert back.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Device;
use js_sys::{Array, Float32Array, Function, Object, Promise, Uint8Array};
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{Engine, js_err, report_progress, set};
use crate::apps::attack::{AttackConfig, Objective};
use crate::apps::control::{Scales, npy_bytes, safetensors_bytes};
use crate::apps::probe::{DEFAULT_BOOTSTRAP, ProbeConfig};
use crate::lab::Lab;
use crate::lab::attack::{AttackRun, Target};
use crate::lab::control::ControlInput;
use crate::lab::probe::ProbeGroups;
use crate::world::decoder::planar_to_rgba;

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
    /// `None` once finished.
    run: Rc<RefCell<Option<AttackRun>>>,
    lab: Rc<Lab>,
    steps_total: usize,
}

#[wasm_bindgen]
impl AttackSession {
    /// Steps done.
    pub fn steps_done(&self) -> usize {
        self.run
            .borrow()
            .as_ref()
            .map_or(self.steps_total, AttackRun::steps_done)
    }

    /// Steps in total.
    pub fn steps_total(&self) -> usize {
        self.steps_total
    }

    /// Whether all steps are done.
    pub fn done(&self) -> bool {
        self.run.borrow().as_ref().is_none_or(AttackRun::done)
    }

    /// One PGD step; resolves to the objective before the step.
    pub fn step(&self) -> Promise {
        let pending = self.run.borrow_mut().as_mut().map(AttackRun::step);
        future_to_promise(async move {
            let pending = pending.ok_or_else(|| js_err("the attack is finished"))?;
            let v = pending.read().await.map_err(js_err)?;
            Ok(JsValue::from_f64(v as f64))
        })
    }

    /// Evaluates the attack; resolves to `{report (JSON string), side, clean, adversarial,
    /// difference}` with RGBA images at the model's input size (the difference amplified
    /// around mid-grey).
    pub fn finish(&self) -> Promise {
        let (run, lab) = (self.run.borrow_mut().take(), self.lab.clone());
        future_to_promise(async move {
            let run = run.ok_or_else(|| js_err("the attack is finished"))?;
            let r = run.finish(&lab).await.map_err(js_err)?;
            let report = serde_json::to_string(&r.image_report(0)).map_err(js_err)?;
            let out = Object::new();
            set(&out, "report", &JsValue::from_str(&report))?;
            set(&out, "side", &JsValue::from(r.side as u32))?;
            let img = &r.images[0];
            for (name, planes) in [
                ("clean", &img.clean),
                ("adversarial", &img.adversarial),
                ("difference", &img.difference),
            ] {
                let rgba = planar_to_rgba(planes, r.side);
                set(&out, name, &Uint8Array::from(rgba.as_slice()))?;
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
        let lab = self.lab.clone();
        future_to_promise(async move {
            let req: ProbeRequest = serde_json::from_str(&request).map_err(js_err)?;
            if images.length() as usize != groups.len() {
                return Err(js_err("one group index per image"));
            }
            let mut sorted = ProbeGroups::new(req.names.clone());
            for (i, img) in images.iter().enumerate() {
                let g = groups[i] as usize;
                let name = req.names.get(g).map_or("?", String::as_str);
                let pixels = lab.preprocess(&Uint8Array::new(&img).to_vec());
                sorted
                    .add(g, &format!("image {} of {name}", i + 1), pixels)
                    .map_err(js_err)?;
            }
            let config = ProbeConfig {
                bootstrap: req.bootstrap.unwrap_or(DEFAULT_BOOTSTRAP),
                ..ProbeConfig::default()
            };
            let outcome = lab
                .probe(&req.prompts, sorted, &config, report_progress(&progress))
                .await
                .map_err(js_err)?;
            let json = serde_json::to_string(&outcome).map_err(js_err)?;
            Ok(JsValue::from_str(&json))
        })
    }

    /// Starts a PGD attack on one encoded image. `request`: JSON `{labels: [...], target:
    /// index or null (nearest wrong label), eps, steps, step_size?, objective: "embedding" |
    /// "ImgD" | "TextD" | "CrossD"}`. Runs on the engine's backend (WebGPU or CPU).
    pub fn attack_begin(&self, bytes: Vec<u8>, request: String) -> Promise {
        let lab = self.lab.clone();
        future_to_promise(async move {
            let req: AttackRequest = serde_json::from_str(&request).map_err(js_err)?;
            let config = AttackConfig {
                eps: req.eps,
                steps: req.steps,
                step_size: req.step_size,
                objective: req.objective.parse::<Objective>().map_err(js_err)?,
            };
            let target = req.target.map_or(Target::Nearest, Target::Label);
            let pixels = lab.preprocess(&bytes).map_err(js_err)?;
            let run = lab
                .attack_begin(&[pixels], &req.labels, target, config)
                .await
                .map_err(js_err)?;
            Ok(AttackSession {
                steps_total: run.steps_total(),
                run: Rc::new(RefCell::new(Some(run))),
                lab,
            }
            .into())
        })
    }

    /// Loads the demo world's image decoder (`decoder.json`, `decoder.safetensors`).
    pub fn load_decoder(&self, config: Vec<u8>, weights: Vec<u8>) -> Result<(), JsValue> {
        let dec = crate::world::decoder::from_bytes(&config, &weights, &Device::flex())
            .map_err(js_err)?;
        self.lab.set_decoder(dec).map_err(js_err)
    }

    /// Modality-specific control of a prompt. `scales`: JSON `{class: [ImgD, TextD, CrossD,
    /// Rare], features: [[id, scale], ...]}`. Resolves to `{embedding, original,
    /// before, after}` (Float32Arrays) plus, with a decoder loaded, `side`, `image_before`
    /// and `image_after` (RGBA).
    pub fn control(&self, text: String, scales: String) -> Promise {
        let lab = self.lab.clone();
        future_to_promise(async move {
            let scales: Scales = serde_json::from_str(&scales).map_err(js_err)?;
            let r = lab
                .control(ControlInput::Prompt(text), &scales)
                .await
                .map_err(js_err)?;
            let out = Object::new();
            for (name, v) in [
                ("embedding", &r.embedding),
                ("original", &r.original),
                ("before", &r.before),
                ("after", &r.after),
            ] {
                set(&out, name, &Float32Array::from(v.as_slice()))?;
            }
            if let Some(d) = &r.decoded {
                set(&out, "side", &JsValue::from(d.side as u32))?;
                set(&out, "image_before", &Uint8Array::from(d.before.as_slice()))?;
                set(&out, "image_after", &Uint8Array::from(d.after.as_slice()))?;
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
