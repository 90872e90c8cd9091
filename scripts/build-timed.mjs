// Runs scripts/build.sh and says where its time went, from the moments its
// steps announce themselves: cargo (compiling the crate to wasm), wasm-bindgen
// (the JS glue), the shim bundle (esbuild) and, for a release build, wasm-opt.
// Used by scripts/dev.mjs after every rebuild and by the bench's dev-loop rows.
import { spawn } from "node:child_process";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

// A line that starts a step, in the order they run. Whatever precedes the
// first marker (the up-to-date check, worker-build's start) counts as "other".
const MARKERS = [
  ["cargo", /Compiling to Wasm/],
  ["wasm-bindgen", /^\s*Finished .*profile/],
  ["bundle", /^\s*(build\/|\.tmp\/|\S+\.js\s+\d)|esbuild|⚡/],
  ["wasm-opt", /^build: wasm-opt/],
  ["other", /^build: size$/],
];

/**
 * Run `bash scripts/build.sh ...args`; resolves {ok, ms, phases, upToDate, output}.
 * `echo(line)` receives every output line as it comes (default: none).
 */
export function timedBuild(args = [], { echo = () => {}, env = process.env } = {}) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn("bash", [join(ROOT, "scripts/build.sh"), ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    const phases = {};
    let current = "other", since = t0, output = "";
    const enter = (name, at) => {
      phases[current] = (phases[current] ?? 0) + (at - since);
      current = name;
      since = at;
    };
    let seen = -1;
    const onLine = (line) => {
      const at = performance.now();
      output += line + "\n";
      echo(line);
      for (let i = seen + 1; i < MARKERS.length; i++) {
        if (MARKERS[i][1].test(line)) { seen = i; enter(MARKERS[i][0], at); break; }
      }
    };
    for (const stream of [child.stdout, child.stderr]) {
      let buf = "";
      stream.setEncoding("utf8");
      stream.on("data", (d) => {
        buf += d;
        const lines = buf.split(/\r?\n|\r/);
        buf = lines.pop();
        lines.forEach(onLine);
      });
      stream.on("end", () => { if (buf) onLine(buf); });
    }
    child.once("close", (code) => {
      const end = performance.now();
      enter("other", end);
      resolve({ ok: code === 0, ms: end - t0, phases, upToDate: /build: up to date/.test(output), output });
    });
  });
}

export const fmtPhases = (p) =>
  ["cargo", "wasm-bindgen", "bundle", "wasm-opt", "other"]
    .filter((k) => p[k] >= 1)
    .map((k) => `${k} ${(p[k] / 1000).toFixed(1)} s`)
    .join(", ");
