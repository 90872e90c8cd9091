#!/usr/bin/env node
// Versioned names for the web app's static assets, without a build step.
//
// Every module and stylesheet under public/js and public/css is referenced as
// `/js/x.js?v=<hash>` (pages, the service worker) or `./x.js?v=<hash>` (imports
// between modules). The hash is the first 10 hex digits of the SHA-256 of the
// file *after* its own import stamps are written, so a change in a module also
// changes the stamp of every module that imports it, all the way up to the
// pages: nothing stale can mix with something fresh. public/_headers gives the
// versioned paths a year of `immutable` caching and the pages and the service
// worker `no-cache`.
//
//   node scripts/version-assets.mjs          rewrite every stamp in public/
//   node scripts/version-assets.mjs --check  exit 1 (listing them) if a stamp is stale
//
// The service worker's cache name (`VERSION`) is a hash of all the stamps, so
// a new release installs a fresh shell cache and drops the old one.

import { createHash } from "node:crypto";
import { readFileSync, writeFileSync, readdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const PUBLIC = join(dirname(fileURLToPath(import.meta.url)), "..", "public");

const sha = (s) => createHash("sha256").update(s).digest("hex").slice(0, 10);
// `from "./api.js"`, `import "./x.js?v=…"`, `import("./x.js")`: relative specifiers only.
const IMPORT = /(\bfrom\s*|\bimport\s*\(?\s*)(["'])\.\/([A-Za-z0-9_.-]+\.js)(?:\?v=[0-9a-f]*)?\2/g;
// `/js/x.js`, `/css/x.css` (optionally stamped) inside quotes, in pages and the service worker.
const ASSET_REF = /(["'])\/(js|css)\/([A-Za-z0-9_.-]+\.(?:js|css))(?:\?v=[0-9a-f]*)?\1/g;

/** Compute every stamp and the rewritten text of every file that references one. */
export function plan(root = PUBLIC) {
  const src = {};
  for (const dir of ["js", "css"]) {
    for (const f of readdirSync(join(root, dir)).sort()) {
      if (/\.(js|css)$/.test(f)) src[`${dir}/${f}`] = readFileSync(join(root, dir, f), "utf8");
    }
  }
  const deps = (text) => [...text.matchAll(IMPORT)].map((m) => `js/${m[3]}`);
  const stamps = {};
  const out = {};
  const visiting = new Set();
  const visit = (key) => {
    if (stamps[key]) return stamps[key];
    if (!(key in src)) throw new Error(`unknown module ${key}`);
    if (visiting.has(key)) throw new Error(`import cycle through ${key}: stamps need an acyclic graph`);
    visiting.add(key);
    for (const d of key.startsWith("js/") ? deps(src[key]) : []) visit(d);
    const text = key.startsWith("js/")
      ? src[key].replace(IMPORT, (_m, pre, q, name) => `${pre}${q}./${name}?v=${stamps[`js/${name}`]}${q}`)
      : src[key];
    out[`public/${key}`] = text;
    stamps[key] = sha(text);
    visiting.delete(key);
    return stamps[key];
  };
  for (const key of Object.keys(src)) visit(key);

  const ref = (_m, q, dir, name) => {
    const key = `${dir}/${name}`;
    if (!stamps[key]) throw new Error(`reference to a missing asset /${key}`);
    return `${q}/${key}?v=${stamps[key]}${q}`;
  };
  for (const f of readdirSync(root).filter((f) => f.endsWith(".html")).sort()) {
    out[`public/${f}`] = readFileSync(join(root, f), "utf8").replace(ASSET_REF, ref);
  }
  const release = sha(Object.entries(stamps).sort().map(([k, v]) => `${k}=${v}`).join("\n"));
  out["public/sw.js"] = readFileSync(join(root, "sw.js"), "utf8")
    .replace(ASSET_REF, ref)
    .replace(/const VERSION = "[^"]*";/, `const VERSION = "${release}";`);
  return { stamps, release, out };
}

/** Files whose committed text differs from what the stamps require. */
export function stale(root = PUBLIC) {
  const { out } = plan(root);
  return Object.entries(out)
    .filter(([rel, text]) => readFileSync(join(root, "..", rel), "utf8") !== text)
    .map(([rel]) => rel);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const check = process.argv.includes("--check");
  const bad = stale();
  if (check) {
    if (bad.length) {
      console.error(`stale asset stamps in: ${bad.join(", ")}\nrun: node scripts/version-assets.mjs`);
      process.exit(1);
    }
    console.log("asset stamps: up to date");
  } else {
    const { out, release } = plan();
    for (const rel of bad) writeFileSync(join(PUBLIC, "..", rel), out[rel]);
    console.log(bad.length ? `asset stamps: rewrote ${bad.join(", ")} (release ${release})` : `asset stamps: up to date (release ${release})`);
  }
}
