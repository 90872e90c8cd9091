// The development loop behind `npm run dev` (scripts/dev.sh builds once and
// applies the migrations first):
//
// - serves the worker with `wrangler dev` on 127.0.0.1:${PORT:-8787}, local
//   state in .state/ (kept across reloads and restarts), and seeds the demo org;
// - watches src/ (and Cargo.toml, Cargo.lock): a change rebuilds the worker with
//   the development build (scripts/build.sh --dev, into build-dev/, apart from
//   the release build in build/); worker-build swaps the new files in, and
//   wrangler, which watches its entry point, reloads it. Changes made during a
//   build are picked up by one more build right after it;
// - watches public/: wrangler serves static assets straight from public/, so a
//   change is served at once; a change to a module or stylesheet also rewrites
//   the content stamps (scripts/version-assets.mjs) so the next page load asks
//   for the new file instead of the year-long cached old one.
//
import { spawn } from "node:child_process";
import { readdirSync, statSync, watch } from "node:fs";
import { join, relative } from "node:path";
import { ROOT, timedBuild, fmtPhases } from "./build-timed.mjs";
import { restamp, PUBLIC } from "./version-assets.mjs";

const PORT = Number(process.env.PORT ?? 8787);
const STATE = process.env.DEV_STATE ?? ".state";
const base = `http://127.0.0.1:${PORT}`;
const env = { ...process.env, PATH: `${join(ROOT, "node_modules/.bin")}:${process.env.PATH}`, WRANGLER_SEND_METRICS: "false" };
const log = (...a) => console.log("dev:", ...a);

// ------------------------------------------------------------------ server

const wrangler = spawn(join(ROOT, "node_modules/.bin/wrangler"),
  ["dev", "build-dev/index.js", "--ip", "127.0.0.1", "--port", String(PORT), "--persist-to", STATE, "--show-interactive-dev-session=false"],
  { cwd: ROOT, env, stdio: ["ignore", "inherit", "inherit"], detached: true });
wrangler.once("exit", (code, signal) => {
  log(`wrangler dev exited (${signal ?? code})`);
  shutdown(1);
});

let closing = false;
function shutdown(code = 0) {
  if (closing) return;
  closing = true;
  for (const w of watchers) w.close();
  try { process.kill(-wrangler.pid, "SIGTERM"); } catch {}
  process.exitCode = code;
}
process.on("SIGINT", () => shutdown(0));
process.on("SIGTERM", () => shutdown(0));

if (!process.env.DEV_NO_SEED) {
  const seed = spawn(process.execPath, [join(ROOT, "scripts/seed.mjs"), base], { cwd: ROOT, env, stdio: "inherit" });
  seed.once("exit", (code) => { if (code !== 0) log("seeding failed (see above); the server keeps running"); });
}

// ------------------------------------------------------------------ worker rebuilds

let building = false, again = false, changed = new Set();
async function rebuild() {
  if (building) { again = true; return; }
  building = true;
  do {
    again = false;
    const what = [...changed].slice(0, 3).join(", ") + (changed.size > 3 ? ", …" : "");
    changed = new Set();
    log(`${what} changed: rebuilding (development build)`);
    const r = await timedBuild(["--dev"], { env, echo: (l) => { if (/error|warning: unused|^build:/i.test(l)) console.log(l); } });
    if (closing) break;
    if (!r.ok) {
      console.log(r.output.split("\n").filter((l) => !/^\s*(Compiling|Checking|Downloaded)\b/.test(l)).slice(-60).join("\n"));
      log("build failed: still serving the previous worker; fix and save again");
    } else if (r.upToDate) {
      log("build: up to date");
    } else {
      log(`rebuilt in ${(r.ms / 1000).toFixed(1)} s (${fmtPhases(r.phases)}); wrangler reloads it`);
      if (process.env.DEV_REPORT) console.log(`dev-report ${JSON.stringify({ build_ms: r.ms, phases: r.phases })}`);
    }
  } while (again && !closing);
  building = false;
}

// ------------------------------------------------------------------ static assets

function restampOnChange(file) {
  try {
    const { rewritten } = restamp();
    if (rewritten.length) log(`${file} changed: stamps rewritten in ${rewritten.join(", ")}`);
  } catch (e) {
    log(`${file} changed: stamps not rewritten (${e.message})`);
  }
}

// ------------------------------------------------------------------ watchers

/** Calls `fn(path)` once per burst of events on the same path (editors write in several steps). */
function debounced(fn, ms) {
  const timers = new Map();
  return (path) => {
    clearTimeout(timers.get(path));
    timers.set(path, setTimeout(() => { timers.delete(path); fn(path); }, ms));
  };
}

/**
 * Watch every directory under `root` (one non-recursive watcher each, new
 * directories included) and call `fn(relative path)` on any change. Not
 * `fs.watch(root, {recursive: true})`: on Linux, Node implements that with a
 * watcher per file, which loses a file as soon as an editor (or git, or
 * `sed -i`) saves it by replacing it. A directory watcher sees every name.
 */
function watchTree(root, fn) {
  const dirs = new Map();
  const add = (dir) => {
    if (dirs.has(dir)) return;
    let w;
    try { w = watch(dir, (_e, name) => {
      if (!name) return;
      const full = join(dir, name);
      try { if (statSync(full).isDirectory()) { add(full); return; } } catch {}
      fn(relative(root, full));
    }); } catch { return; }
    dirs.set(dir, w);
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) add(join(dir, e.name));
  };
  add(root);
  return { close: () => { for (const w of dirs.values()) w.close(); } };
}

const watchers = [];
const onSource = debounced((path) => { changed.add(path); rebuild(); }, 100);
watchers.push(watchTree(join(ROOT, "src"), (f) => { if (f.endsWith(".rs")) onSource(join("src", f)); }));
watchers.push(watch(ROOT, (_e, f) => { if (f === "Cargo.toml" || f === "Cargo.lock") onSource(f); }));
const onAsset = debounced((path) => restampOnChange(path), 50);
watchers.push(watchTree(PUBLIC, (f) => {
  if (/^(js|css)[\\/][^\\/]+\.(js|css)$/.test(f)) onAsset(relative(ROOT, join(PUBLIC, f)));
}));
log(`watching src/, Cargo.toml and public/; serving ${base} (Ctrl-C stops)`);
