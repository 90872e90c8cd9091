// package-lock.json installs on every platform: each optional dependency of
// every locked package (workerd's, esbuild's, sharp's per-OS/CPU binaries) has
// its own lock entry. npm >= 10.3 drops other platforms' entries when the lock
// is rewritten next to an installed node_modules (npm/cli#7961); `npm ci` on a
// Mac would then install no workerd. See scripts/setup.sh for how to refresh.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./support/worker.mjs";

const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8"));
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));

/** Node's lookup: node_modules/a/node_modules/b, then up to the root. */
function resolve(from, name) {
  for (let dir = from; ; ) {
    const p = `${dir ? `${dir}/` : ""}node_modules/${name}`;
    if (lock.packages[p]) return p;
    if (!dir) return null;
    const i = dir.lastIndexOf("/node_modules/");
    dir = i < 0 ? "" : dir.slice(0, i);
  }
}

test("every optional dependency of every locked package has a lock entry", () => {
  const missing = [];
  let checked = 0;
  for (const [path, entry] of Object.entries(lock.packages)) {
    for (const name of Object.keys(entry.optionalDependencies ?? {})) {
      checked++;
      if (!resolve(path, name)) missing.push(`${name} (optional dependency of ${path || "the root"})`);
    }
  }
  assert.ok(checked > 0, "no optional dependencies at all: is this the right lock?");
  assert.deepEqual(missing, [], "refresh the lock without node_modules: rm -rf node_modules && npm install --package-lock-only");
});

test("workerd is locked for macOS, Linux and Windows", () => {
  for (const p of ["darwin-64", "darwin-arm64", "linux-64", "linux-arm64", "windows-64"])
    assert.ok(lock.packages[`node_modules/@cloudflare/workerd-${p}`], `@cloudflare/workerd-${p} missing`);
});

test("the lock matches package.json (npm ci would refuse otherwise)", () => {
  assert.deepEqual(lock.packages[""].devDependencies, pkg.devDependencies);
  for (const [name, version] of Object.entries(pkg.devDependencies))
    assert.equal(lock.packages[`node_modules/${name}`]?.version, version, name);
});
