//! The demo world (issue 4): procedurally generated scenes whose ground truth is known,
//! for training a small CLIP that ships with the web app. [`scene`] generates images and
//! captions with factor records; [`vocab`] builds the word-level `tokenizer.json`.
//! [`train`] trains the demo CLIP (native only).

pub mod decoder;
pub mod factors;
#[cfg(not(target_arch = "wasm32"))]
pub mod images;
pub mod scene;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
pub mod vocab;
