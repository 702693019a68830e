// WebAssembly features the engine worker's choice of build depends on (www/worker.js).

// The smallest module with f32x4.relaxed_madd: (func (param v128 v128 v128) (result v128)
// local.get 0 local.get 1 local.get 2 f32x4.relaxed_madd). tests/wasm/gemm.test.mjs checks
// that it validates exactly where relaxed SIMD is on.
export const RELAXED_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
  0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b, 0x01, 0x7b, // type: (v128 x3) -> v128
  0x03, 0x02, 0x01, 0x00, // one function of that type
  0x0a, 0x0d, 0x01, 0x0b, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02, // code: 3 local.get
  0xfd, 0x85, 0x02, 0x0b, // f32x4.relaxed_madd (0xfd 0x105), end
]);

// Whether this engine has WebAssembly relaxed SIMD (validation only: nothing is compiled).
export function hasRelaxedSimd() {
  try {
    return WebAssembly.validate(RELAXED_PROBE);
  } catch (_) {
    return false;
  }
}
