//! The demo world (issue 4): procedurally generated scenes whose ground truth is known,
//! for training a small CLIP that ships with the web app. [`scene`] generates images and
//! captions with factor records; [`vocab`] builds the word-level `tokenizer.json`.
//! Training the demo CLIP is not written yet.

pub mod scene;
pub mod vocab;
