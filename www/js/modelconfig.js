// A model's config.json, checked in the page before the engine reads it (issue 13). The
// engine (Rust, `ClipConfig::from_json` and the size plan) validates every number; the
// page only refuses a config.json too large to be one before reading it: real CLIP
// configs are 1-10 kB, and a hostile one of megabytes would otherwise be read, copied to
// the worker and parsed.

import { fmtBytes } from "./dom.js";

// Largest config.json read (real CLIP configs are 1-10 kB).
export const MAX_CONFIG_BYTES = 1 << 20;

// Refuses a config.json of `bytes` bytes (0: not known yet) before it is read.
export function checkConfigSize(bytes) {
  if (bytes > MAX_CONFIG_BYTES) {
    throw new Error(`config.json is ${fmtBytes(bytes)}; a CLIP config.json is a few kB (at most ${fmtBytes(MAX_CONFIG_BYTES)} is read)`);
  }
}
