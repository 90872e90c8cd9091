// What the worker wasm is made of: its code bytes grouped by crate (or by
// family, where one family dominates), from the copy of the release build
// that scripts/build.sh keeps as wasm-bindgen wrote it, names and all
// (target/size/index_bg.wasm), before `wasm-opt -Os`: after it the names are
// gone, and its inlining, merging and function order (scripts/build.sh) move
// bytes between functions. `node bench/size.mjs [file.wasm]` prints
// the table on its own.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const NAMED_INPUT = join(ROOT, "target/size/index_bg.wasm");

/** Sections, function body sizes and function names of a wasm binary. */
export function parseWasm(buf) {
  let p = 8;
  const u32 = () => {
    let r = 0, s = 0, b;
    do { b = buf[p++]; r += (b & 0x7f) * 2 ** s; s += 7; } while (b & 0x80);
    return r;
  };
  const bytes = () => { const n = u32(); const v = buf.subarray(p, p + n); p += n; return v; };
  const name = () => bytes().toString("utf8");
  const skipLimits = () => { const flags = u32(); u32(); if (flags & 1) u32(); };
  const skipRefType = () => { const t = buf[p++]; if (t === 0x63 || t === 0x64) u32(); };
  const sections = [];
  const bodies = [];
  const names = new Map();
  let importedFuncs = 0, data = 0;
  while (p < buf.length) {
    const id = buf[p++];
    const size = u32();
    const start = p, end = p + size;
    if (id === 0) {
      const n = name();
      sections.push({ id, name: n, size });
      if (n === "name") {
        while (p < end) {
          const sub = buf[p++], len = u32(), subEnd = p + len;
          if (sub === 1) {
            const count = u32();
            for (let i = 0; i < count; i++) { const idx = u32(); names.set(idx, name()); }
          }
          p = subEnd;
        }
      }
    } else {
      sections.push({ id, size });
      if (id === 2) {
        const count = u32();
        for (let i = 0; i < count; i++) {
          name(); name();
          const kind = buf[p++];
          if (kind === 0) { u32(); importedFuncs++; }
          else if (kind === 1) { skipRefType(); skipLimits(); }
          else if (kind === 2) skipLimits();
          else if (kind === 3) { skipRefType(); p++; }
          else if (kind === 4) { p++; u32(); }
          else throw new Error(`size: unknown import kind ${kind} (build the named copy without compact imports)`);
        }
      } else if (id === 10) {
        const count = u32();
        for (let i = 0; i < count; i++) { const n = u32(); bodies.push({ index: importedFuncs + i, size: n }); p += n; }
      } else if (id === 11) {
        data = size;
      }
    }
    p = start + size;
  }
  return { sections, bodies, names, data };
}

// The crate a function is charged to. A serde_json or serde_wasm_bindgen
// deserializer instantiated for one of our types is charged to that format
// (it exists because of how we decode); derive(Serialize/Deserialize) code of
// our types is its own family; handler bodies inlined into the future poll
// wrappers are charged to the async handlers.
export function family(fn) {
  if (!fn) return "(unnamed)";
  if (/serde_json/.test(fn)) return "serde_json (incl. its instances for our types)";
  if (/serde_wasm_bindgen/.test(fn)) return "serde_wasm_bindgen (incl. its instances for our types)";
  const crates = [...fn.matchAll(/([A-Za-z_][A-Za-z0-9_]*)(?:\[[0-9a-f]+\])?::/g)].map((m) => m[1]).filter((c) => c !== "impl");
  const first = crates[0];
  if (first === "dropple_edge") {
    if (/serde(_core)?::/.test(fn)) return "dropple_edge: serde derive code (visitors, field matchers)";
    // Legacy mangling writes a closure `{{closure}}`, v0 mangling `{closure#0}`.
    if (/\{\{closure\}\}|\{closure#\d+\}/.test(fn)) return "dropple_edge: async handler bodies";
    return "dropple_edge: other";
  }
  if (/Future>::poll/.test(fn)) return "dropple_edge: async handler bodies";
  if (first === "serde" || first === "serde_core") return "serde (generic impls)";
  if (!first || ["core", "alloc", "std"].includes(first)) {
    if (/fmt|flt2dec|panic/.test(fn)) return "std: fmt, float printing, panics";
    return "std: core, alloc";
  }
  if (first === "worker" || first === "worker_sys") return "worker (workers-rs)";
  if (first === "wasm_bindgen" || first === "js_sys" || first === "web_sys" || first === "wasm_bindgen_futures") return "wasm-bindgen, js-sys";
  if (first === "curve25519_dalek" || first === "ed25519_dalek") return "ed25519-dalek, curve25519-dalek";
  if (first === "miniz_oxide" || first === "flate2") return "flate2, miniz_oxide";
  return first;
}

/** Bytes per family: code (function bodies) plus the data section as its own row. */
export function contributors(buf) {
  const { bodies, names, data, sections } = parseWasm(buf);
  const total = sections.filter((s) => !(s.id === 0 && s.name !== "target_features")).reduce((a, s) => a + s.size, 0);
  const by = new Map();
  for (const b of bodies) {
    const f = family(names.get(b.index));
    const e = by.get(f) ?? { bytes: 0, fns: 0 };
    e.bytes += b.size; e.fns += 1;
    by.set(f, e);
  }
  const rows = [...by].map(([name, e]) => ({ name, ...e }));
  rows.push({ name: "data segments (.rodata: strings, tables)", bytes: data, fns: 0 });
  rows.sort((a, b) => b.bytes - a.bytes);
  return { rows, total };
}

/** The named copy of the current release build (null when the build kept none). */
export function namedBuild() {
  return existsSync(NAMED_INPUT) ? readFileSync(NAMED_INPUT) : null;
}

/** The ten largest contributors as markdown rows, or null. */
export function sizeTable(n = 10) {
  const buf = namedBuild();
  if (!buf) return null;
  const { rows, total } = contributors(buf);
  const kib = (x) => (x / 1024).toFixed(1);
  const lines = rows.slice(0, n).map((r) =>
    `| ${r.name} | ${kib(r.bytes)} | ${((100 * r.bytes) / total).toFixed(1)} % | ${r.fns || ""} |`);
  const rest = rows.slice(n).reduce((a, r) => a + r.bytes, 0);
  lines.push(`| everything else | ${kib(rest)} | ${((100 * rest) / total).toFixed(1)} % | |`);
  return { lines, total };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  const buf = file ? readFileSync(file) : namedBuild();
  if (!buf) { console.error("size: no named copy; run scripts/build.sh first"); process.exit(1); }
  const { rows, total } = contributors(buf);
  console.log(`total ${(total / 1024).toFixed(1)} KiB (without names)`);
  for (const r of rows.slice(0, Number(process.argv[3] ?? 25))) console.log(`${(r.bytes / 1024).toFixed(1).padStart(8)} KiB  ${String(r.fns).padStart(5)}  ${r.name}`);
}
