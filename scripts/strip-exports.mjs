// Drops from the worker's wasm the exports of the classes its JavaScript glue
// can never hold an object of, so that `wasm-opt` removes their code.
//
// workers-rs and wasm-streams declare classes with #[wasm_bindgen] (a stream
// sink, a byte source, R2 range and minify and container options). Every
// method of such a class is a wasm export, and an export is a root no linker
// or optimizer may remove, whether or not anything uses it. JavaScript can
// reach an object of such a class only through the glue: its constructor
// (`new X()`, which calls `x_new`) or `X.__wrap(ptr)`, which the glue calls
// when Rust hands an object out. A class whose glue has neither is
// unreachable from both sides, and so is every export of it. The worker
// hands out none of them (its SSE responses are the runtime's own
// TransformStream, R2 bodies are put as bytes); they were ~5 KiB of gzipped
// code.
//
//   node scripts/strip-exports.mjs build/index.js build/index_bg.wasm
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** Class names (as in `__wbg_<name>_free`) that the glue can never hold. */
export function unreachableClasses(glue) {
  const starts = [...glue.matchAll(/var [\w$]+=class(?: [\w$]+)?\{/g)].map((m) => m.index);
  const out = [];
  for (const [i, start] of starts.entries()) {
    const body = glue.slice(start, starts[i + 1] ?? glue.length);
    const free = body.match(/__wbg_([a-z0-9]+)_free\(/);
    if (!free) continue;
    const name = free[1];
    const wrapped = /static __wrap\(/.test(body);
    const constructed = /constructor\(/.test(body) || new RegExp(`\\.${name}_new\\(`).test(body);
    if (!wrapped && !constructed) out.push(name);
  }
  return out;
}

const leb = (buf, p) => {
  let r = 0, s = 0, b;
  do { b = buf[p++]; r += (b & 0x7f) * 2 ** s; s += 7; } while (b & 0x80);
  return [r, p];
};
const encodeLeb = (n) => {
  const out = [];
  do { let b = n & 0x7f; n = Math.floor(n / 128); if (n) b |= 0x80; out.push(b); } while (n);
  return out;
};

/** The wasm without the exports `drop(name)` selects; returns [bytes, dropped names]. */
export function withoutExports(wasm, drop) {
  const parts = [wasm.subarray(0, 8)];
  const dropped = [];
  let p = 8;
  while (p < wasm.length) {
    const id = wasm[p];
    const [size, body] = leb(wasm, p + 1);
    const end = body + size;
    if (id !== 7) {
      parts.push(wasm.subarray(p, end));
    } else {
      let [count, q] = leb(wasm, body);
      const kept = [];
      for (let i = 0; i < count; i++) {
        const start = q;
        const [len, nameAt] = leb(wasm, q);
        const name = wasm.subarray(nameAt, nameAt + len).toString("utf8");
        const [, next] = leb(wasm, nameAt + len + 1); // kind byte, then index
        q = next;
        if (drop(name)) dropped.push(name);
        else kept.push(wasm.subarray(start, q));
      }
      const content = Buffer.concat([Buffer.from(encodeLeb(kept.length)), ...kept]);
      parts.push(Buffer.from([7, ...encodeLeb(content.length)]), content);
    }
    p = end;
  }
  return [Buffer.concat(parts), dropped];
}

/** The names a wasm exports. */
export function exportNames(wasm) {
  const names = [];
  withoutExports(wasm, (name) => { names.push(name); return false; });
  return names;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [glueFile, wasmFile] = process.argv.slice(2);
  const classes = unreachableClasses(readFileSync(glueFile, "utf8"));
  // A class's exports: `__wbg_<c>_free`, `__wbg_get_<c>_*`, `__wbg_set_<c>_*`, `<c>_*`.
  const ofClass = (name) =>
    classes.some((c) => name === `__wbg_${c}_free` || name.startsWith(`__wbg_get_${c}_`) || name.startsWith(`__wbg_set_${c}_`) || name.startsWith(`${c}_`));
  const [out, dropped] = withoutExports(readFileSync(wasmFile), ofClass);
  writeFileSync(wasmFile, out);
  console.log(`build: dropped ${dropped.length} exports of classes JavaScript cannot hold (${classes.join(", ") || "none"})`);
}
