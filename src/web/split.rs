//! The wasm side of an image's pass cut by token rows or output columns between engine
//! workers (issue 12): converts and delegates to [`SplitPass`] and [`Lab`].
//! `www/worker.js` runs the parts in step, one per worker, and carries the shares between
//! them.

use std::rc::Rc;

use js_sys::{Array, Float32Array, Promise};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{Engine, analysis_object, js_err, set};
use crate::clip::{Cut, SplitPass};
use crate::lab::Lab;

/// One worker's part of an image's pass ([`Engine::split_image`]).
#[wasm_bindgen]
pub struct ImageSplit {
    split: SplitPass,
    lab: Rc<Lab>,
    /// This part's share of the current round: kept here, so that it crosses the wasm
    /// boundary only towards the other parts.
    own: Vec<f32>,
}

#[wasm_bindgen]
impl Engine {
    /// Starts part `part` of `parts` of an encoded image's pass through the image tower,
    /// cut by `cut` (`"rows"`: token rows, `"cols"`: output columns, `"auto"`: columns
    /// where every part gets a head, else rows) between engine workers, each with this
    /// model. Fails for a file that cannot be decoded, a cut that does not fit the tokens
    /// or heads, or a backend without the host path (WebGPU).
    pub fn split_image(
        &self,
        bytes: Vec<u8>,
        part: u32,
        parts: u32,
        cut: String,
    ) -> Result<ImageSplit, JsValue> {
        let cut: Cut = cut.parse().map_err(js_err)?;
        let split = self
            .lab
            .split_image(&bytes, part as usize, parts as usize, cut)
            .map_err(js_err)?;
        Ok(ImageSplit {
            split,
            lab: self.lab.clone(),
            own: Vec::new(),
        })
    }
}

#[wasm_bindgen]
impl ImageSplit {
    /// Whether every layer has run.
    pub fn done(&self) -> bool {
        self.split.done()
    }

    /// This part's share of the current round (a Float32Array: cut by rows, the keys then
    /// values of its token rows; cut by columns, its columns of the round's product), for
    /// the other parts' `gather`.
    pub fn share(&mut self) -> Result<Float32Array, JsValue> {
        self.own = self.split.share().map_err(js_err)?;
        Ok(Float32Array::from(self.own.as_slice()))
    }

    /// Runs the rest of the current round with every part's share (an Array of
    /// Float32Array, in part order; this part's own entry `null`: the values it kept).
    pub fn gather(&mut self, kv: Array) -> Result<(), JsValue> {
        let own_part = self.split.part();
        let parts = kv
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if i == own_part && v.is_null() {
                    return Ok(None);
                }
                v.dyn_into::<Float32Array>()
                    .map(|a| Some(a.to_vec()))
                    .map_err(|_| {
                        js_err(format!(
                            "part {i}'s share must be a Float32Array{}",
                            if i == own_part { " or null" } else { "" }
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&[f32]> = parts
            .iter()
            .map(|p| p.as_deref().unwrap_or(&self.own))
            .collect();
        self.split.gather(&refs).map_err(js_err)
    }

    /// The finished pass's `{embedding, activations, truncated: false}`, on a part that
    /// holds the class token (part 0 holds it in either cut); frees the part.
    pub fn report(self) -> Promise {
        future_to_promise(async move {
            let r = self.lab.split_report(&self.split).await.map_err(js_err)?;
            let out = analysis_object(&r)?;
            set(&out, "truncated", &JsValue::FALSE)?;
            Ok(out.into())
        })
    }
}
