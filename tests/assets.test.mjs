// Versioned asset names (no build step): every module and stylesheet is
// referenced with the content stamp scripts/version-assets.mjs computes, and
// the committed files carry the current stamps. No worker needed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PUBLIC, plan, restamp, stale } from "../scripts/version-assets.mjs";

test("every committed asset stamp is current (else run: node scripts/version-assets.mjs)", () => {
  assert.deepEqual(stale(), []);
});

test("pages, modules and the service worker only reference stamped assets", () => {
  const { stamps, release } = plan();
  const refs = [];
  for (const f of readdirSync(PUBLIC).filter((f) => f.endsWith(".html"))) {
    const html = readFileSync(join(PUBLIC, f), "utf8");
    for (const m of html.matchAll(/(?:src|href)="(\/(?:js|css)\/[^"]+)"/g)) refs.push([f, m[1]]);
    assert.match(html, /<script type="module" src="\/js\/[a-z-]+\.js\?v=[0-9a-f]{10}"><\/script>/, `${f} loads a stamped module`);
    assert.match(html, /href="\/css\/app\.css\?v=[0-9a-f]{10}"/, `${f} loads the stamped stylesheet`);
  }
  for (const f of readdirSync(join(PUBLIC, "js"))) {
    const js = readFileSync(join(PUBLIC, "js", f), "utf8");
    for (const m of js.matchAll(/\bfrom\s*"(\.\/[^"]+)"/g)) refs.push([`js/${f}`, m[1].replace("./", "/js/")]);
  }
  const sw = readFileSync(join(PUBLIC, "sw.js"), "utf8");
  for (const m of sw.matchAll(/"(\/(?:js|css)\/[^"]+)"/g)) refs.push(["sw.js", m[1]]);
  assert.ok(refs.length > 40, `found ${refs.length} references`);
  for (const [from, url] of refs) {
    const [path, v] = url.split("?v=");
    assert.equal(v, stamps[path.slice(1)], `${from} → ${url}`);
  }
  // Every module and stylesheet is in the service worker's precache list.
  for (const key of Object.keys(stamps)) assert.ok(sw.includes(`"/${key}?v=${stamps[key]}"`), `sw.js precaches /${key}`);
  assert.ok(sw.includes(`const VERSION = "${release}";`), "the service worker's cache name follows the release");
});

test("a change to a module is caught, and re-stamping propagates it to its importers and the pages", () => {
  const dir = mkdtempSync(join(tmpdir(), "dropple-assets-"));
  try {
    const pub = join(dir, "public");
    cpSync(PUBLIC, pub, { recursive: true });
    const before = plan(pub);
    appendFileSync(join(pub, "js", "api.js"), "\n// changed\n");
    const bad = stale(pub).map((p) => p.replace(/^public\//, ""));
    // api.js itself is not stale (its text has no stamps); everyone importing it is.
    for (const f of ["js/auth.js", "js/ui.js", "js/teach.js", "teach.html", "learn.html", "sw.js"]) assert.ok(bad.includes(f), `${f} is stale`);
    const after = plan(pub);
    for (const f of ["js/api.js", "js/auth.js", "js/ui.js", "js/teach.js", "js/learn.js"]) assert.notEqual(after.stamps[f], before.stamps[f], `${f} gets a new stamp`);
    assert.equal(after.stamps["js/canvas.js"], before.stamps["js/canvas.js"], "an unrelated module keeps its stamp");
    assert.equal(after.stamps["css/app.css"], before.stamps["css/app.css"]);
    assert.notEqual(after.release, before.release);
    const { rewritten } = restamp(pub);
    assert.ok(rewritten.includes("public/js/teach.js") && !rewritten.includes("public/js/api.js"), rewritten.join(", "));
    assert.deepEqual(stale(pub), [], "re-stamping is complete");
    assert.deepEqual(restamp(pub).rewritten, [], "and idempotent");
    assert.match(readFileSync(join(pub, "js", "api.js"), "utf8"), /\/\/ changed\n$/, "the edit itself is kept");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
