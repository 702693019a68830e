// The page's wasm builds link as "reactors" (issue 12): every export runs the code it names.
// A module that no export calls `__wasm_call_ctors` from is taken by wasm-ld for a run-once
// "command", and each of its exports is wrapped (`<name>.command_export`) in a call of every
// static constructor: burn's and cubecl's `inventory` registrations ran again on each call
// into the engine, 11% of a split pass's time or more (src/web/mod.rs `start`, README
// "In the browser"). Checked on trunk's wasm-bindgen output of each build, which keeps the
// function names (wasm-opt drops them from dist/).

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const TARGET = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), ".cache/monoscope/target");

// A LEB128 unsigned integer at `at`: [value, next offset].
function leb(buf, at) {
  let [value, shift] = [0, 0];
  for (;;) {
    const b = buf[at++];
    value += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return [value, at];
    shift += 7;
  }
}

// The module's "name" custom section (the function names), as one string. Read from the
// bytes, not compiled: Node compiles the relaxed-SIMD build only behind a flag.
function functionNames(file) {
  const buf = readFileSync(file);
  assert.equal(buf.readUInt32LE(0), 0x6d736100, `${file} is not a wasm module`);
  for (let at = 8; at < buf.length; ) {
    const id = buf[at];
    const [size, body] = leb(buf, at + 1);
    if (id === 0) {
      const [len, name] = leb(buf, body);
      if (buf.toString("latin1", name, name + len) === "name") return buf.toString("latin1", name + len, body + size);
    }
    at = body + size;
  }
  assert.fail(`${file} has no name section`);
}

for (const [build, dir] of [["SIMD128", "release"], ["relaxed SIMD", "wasm-relaxed"]]) {
  test(`the ${build} build is a reactor: no export re-runs the static constructors`, () => {
    const file = path.join(TARGET, "wasm-bindgen", dir, "monoscope_bg.wasm");
    assert.ok(existsSync(file), `${file} not found: run \`trunk build --release\` first`);
    const names = functionNames(file);
    assert.ok(names.includes("__wasm_call_ctors"), "the constructors are linked (and named)");
    assert.ok(names.includes("engine_split_image"), "the engine's exports are named");
    const wrapped = names.match(/[\w$.]+\.command_export/g) || [];
    assert.deepEqual(wrapped.slice(0, 5), [], `${wrapped.length} exports wrapped by the command ABI`);
  });
}
