//! The web app's wasm entry point: trunk builds this example (`[build] example = "web"` in
//! Trunk.toml) for wasm32-unknown-unknown. It only links the library, whose `#[wasm_bindgen]`
//! API (`src/web`) thereby becomes the module's exports.
//!
//! Why not the library's cdylib directly: trunk 0.21 needs exactly one cdylib/bin artifact,
//! and the lib and the `monoscope` bin share the name `monoscope`, so neither `data-bin` nor
//! `data-target-name` can single out one of them. `--example web` can.
use monoscope as _;

fn main() {}
