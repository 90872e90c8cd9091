// scripts/build.sh drops the exports of classes the worker's JavaScript glue
// can never hold (scripts/strip-exports.mjs). Checked on the release build
// that npm test runs: what the glue can reach is still exported, the rest is
// gone, and the export section the script rewrites parses back.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./support/worker.mjs";
import { exportNames, unreachableClasses, withoutExports } from "../scripts/strip-exports.mjs";

const glue = readFileSync(join(ROOT, "build/index.js"), "utf8");
const wasm = readFileSync(join(ROOT, "build/index_bg.wasm"));

test("only classes the glue can neither construct nor wrap are unreachable", () => {
  const dead = unreachableClasses(glue);
  assert.ok(!dead.includes("classroom"), "the Durable Object class is constructed by the runtime");
  // SSE responses are the runtime's own TransformStream: no Rust stream source is handed out.
  for (const name of ["intounderlyingsource", "intounderlyingsink", "intounderlyingbytesource"]) {
    assert.ok(dead.includes(name), `${name} unreachable: ${dead.join(", ")}`);
  }
});

test("the shipped wasm keeps every export the glue can call and none of the dropped ones", () => {
  const names = exportNames(wasm);
  for (const kept of ["fetch", "queue", "scheduled", "classroom_new", "classroom_fetch", "classroom_alarm", "classroom_webSocketMessage"]) {
    assert.ok(names.includes(kept), `${kept} is exported`);
  }
  for (const gone of ["intounderlyingsink_write", "intounderlyingbytesource_pull", "intounderlyingsource_pull", "__wbg_r2range_free"]) {
    assert.ok(!names.includes(gone), `${gone} was dropped`);
  }
});

test("rewriting the export section keeps every other byte", () => {
  const [same, none] = withoutExports(wasm, () => false);
  assert.deepEqual(none, []);
  assert.ok(same.equals(wasm));
  const [fewer, dropped] = withoutExports(wasm, (n) => n === "scheduled");
  assert.deepEqual(dropped, ["scheduled"]);
  assert.deepEqual(exportNames(fewer), exportNames(wasm).filter((n) => n !== "scheduled"));
});
