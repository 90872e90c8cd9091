// The developer's loop, measured (bench/run.mjs calls it; also runnable alone:
// `node bench/devloop.mjs` prints the figures): `npm run dev`
// (scripts/dev.mjs) on a free port with its own fresh state, then
//
// - a one-line change in a core module (the message of `invalid token` in
//   src/identity.rs): time from writing the file to the first response of the
//   running server that carries the new text (rebuild with the development
//   build, wrangler's reload), and how the rebuild spent its time;
// - a one-line change in public/js (a comment appended to public/js/ui.js):
//   time until the server sends the new file, and until the pages reference
//   its new content stamp (scripts/version-assets.mjs run by the watcher).
//
// Every edit is undone (and measured the same way); the files are restored
// byte for byte in any case.
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync, readdirSync, mkdtempSync, rmSync, utimesSync } from "node:fs";
import { tmpdir, loadavg, cpus } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ROOT, freePort, migrate } from "../tests/support/worker.mjs";
import { timedBuild } from "../scripts/build-timed.mjs";

const CORE_FILE = join(ROOT, "src/identity.rs");
const CORE_LINE = 'AppError::unauthorized(format!("invalid token: {why}"))';
const WEB_FILE = join(ROOT, "public/js/ui.js");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Every file the asset stamps may rewrite, to put back byte for byte. */
function snapshotPublic() {
  const files = [];
  const pub = join(ROOT, "public");
  for (const f of readdirSync(pub)) if (/\.(html|js)$/.test(f)) files.push(join(pub, f));
  for (const d of ["js", "css"]) for (const f of readdirSync(join(pub, d))) files.push(join(pub, d, f));
  return new Map(files.map((f) => [f, readFileSync(f)]));
}

async function until(pred, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try { if (await pred()) return; } catch { /* server reloading */ }
    if (Date.now() > end) throw new Error(`dev loop: ${what} not seen within ${timeoutMs / 1000} s`);
    await sleep(20);
  }
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };

export async function devLoop({ cycles = 2, log = () => {} } = {}) {
  const core = readFileSync(CORE_FILE, "utf8");
  if (!core.includes(CORE_LINE)) throw new Error(`dev loop: ${CORE_FILE} no longer contains ${CORE_LINE}; pick another line`);
  const web = readFileSync(WEB_FILE);
  const pub = snapshotPublic();

  // The development build, once (not measured as part of the loop).
  log("dev loop: development build");
  const first = await timedBuild(["--dev"]);
  if (!first.ok) throw new Error(`dev build failed:\n${first.output.slice(-3000)}`);

  const state = mkdtempSync(join(tmpdir(), "dropple-devloop-"));
  migrate(state);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [join(ROOT, "scripts/dev.mjs")], {
    cwd: ROOT, stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, PORT: String(port), DEV_STATE: state, DEV_NO_SEED: "1", DEV_REPORT: "1", CI: "true", NO_COLOR: "1" },
  });
  const reports = [];
  let out = "";
  const onData = (d) => {
    out += d;
    for (const m of String(d).matchAll(/^dev-report (.*)$/gm)) reports.push(JSON.parse(m[1]));
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", (d) => { out += d; });
  const exited = new Promise((r) => child.once("exit", r));

  const probe = async () => {
    const r = await fetch(`${base}/v1/runs/x/events`, { headers: { authorization: "Bearer x" }, signal: AbortSignal.timeout(5000) });
    return (await r.json()).error.message;
  };
  const pageStamp = async () => (await (await fetch(`${base}/`, { signal: AbortSignal.timeout(5000) })).text()).match(/\/js\/home\.js\?v=([0-9a-f]+)/)?.[1];
  const served = async (path) => (await fetch(base + path, { signal: AbortSignal.timeout(5000) })).text();

  const rust = [], file = [], page = [];
  const load = [loadavg()[0]];
  try {
    await until(async () => (await fetch(`${base}/v1/health`)).status === 200, 120_000, "the first start");
    // Edit and undo, each measured from the write to the first response that shows it.
    for (let i = 0; i < cycles; i++) {
      for (const text of [core.replace(CORE_LINE, CORE_LINE.replace("invalid token:", `invalid token (edit ${i}):`)), core]) {
        const want = text === core ? "invalid token: " : `invalid token (edit ${i}):`;
        const t0 = performance.now();
        writeFileSync(CORE_FILE, text);
        const built = reports.length;
        await until(async () => (await probe()).startsWith(want), 300_000, `the core change "${want}"`);
        rust.push(performance.now() - t0);
        log(`dev loop: core module change served after ${(rust.at(-1) / 1000).toFixed(1)} s`);
        // The worker is served before the rebuild ends (the browser core and
        // the asset stamps come after it): the next edit waits for its end,
        // so that it neither queues behind it nor lands in the middle of it.
        await until(async () => reports.length > built, 300_000, "the end of the rebuild");
      }
    }
    const stamp0 = await pageStamp();
    for (let i = 0; i < cycles * 2; i++) {
      const marker = `// dev-loop probe ${i}`;
      const t0 = performance.now();
      writeFileSync(WEB_FILE, Buffer.concat([web, Buffer.from(`${marker}\n`)]));
      await until(async () => (await served("/js/ui.js")).includes(marker), 30_000, "the public/js change");
      file.push(performance.now() - t0);
      await until(async () => { const s = await pageStamp(); return s && s !== stamp0; }, 30_000, "the new stamps");
      page.push(performance.now() - t0);
      writeFileSync(WEB_FILE, web);
      await until(async () => (await pageStamp()) === stamp0, 30_000, "the stamps put back");
      log(`dev loop: public/js change served after ${file.at(-1).toFixed(0)} ms, pages restamped after ${page.at(-1).toFixed(0)} ms`);
    }
    load.push(loadavg()[0]);
  } finally {
    try { process.kill(child.pid, "SIGTERM"); } catch {}
    await Promise.race([exited, sleep(10_000)]);
    writeFileSync(CORE_FILE, core);
    for (const [f, bytes] of pub) writeFileSync(f, bytes);
    rmSync(state, { recursive: true, force: true });
  }
  const builds = reports.slice(-rust.length);
  const phase = (k) => median(builds.map((b) => b.phases[k] ?? 0));
  return {
    rust: { samples: rust, median: median(rust), build: median(builds.map((b) => b.build_ms)), cargo: phase("cargo"), bindgen: phase("wasm-bindgen"), bundle: phase("bundle"), other: phase("other") },
    web: { file: median(file), page: median(page), samples: file.length },
    firstBuildMs: first.ms,
    load: { from: load[0], to: load.at(-1), cpus: cpus().length },
    log: out,
  };
}

/** Where the release build spends its time after a one-line core change. The
 *  release profile compiles the crate whole (LTO, one codegen unit, not
 *  incremental), so touching the file costs what editing one line does, and
 *  build/ still matches the sources afterwards: one build, not two. */
export async function releaseBuildPhases() {
  const now = new Date();
  utimesSync(CORE_FILE, now, now);
  const r = await timedBuild([]);
  if (!r.ok) throw new Error(`release build failed:\n${r.output.slice(-3000)}`);
  return r;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await devLoop({ log: console.log });
  delete r.log;
  console.log(JSON.stringify(r, null, 2));
}
