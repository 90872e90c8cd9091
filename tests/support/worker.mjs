// Starts the real worker on local workerd (wrangler dev) with fresh, isolated
// state: a temporary persistence directory, migrations applied, a free
// loopback port. Always stopped by `stop()`, which tests call in `after`.
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const WRANGLER = join(ROOT, "node_modules", ".bin", "wrangler");
const ENV = { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true", NO_COLOR: "1" };

// Ports are drawn from 20000–31999, below the ephemeral ranges of Linux
// (32768–60999) and macOS (49152–65535): a port the OS hands to some socket
// bound to port 0 (wrangler and workerd open several while starting) can
// then never be the one just checked free for us. A port is handed out once
// per process, so two workers of one test file never share one.
const PORT_LOW = 20000, PORT_SPAN = 12000;
const handedOut = new Set();

function canListen(port) {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

/** A loopback port nothing listens on, outside the ephemeral range. */
export async function freePort() {
  for (let tries = 0; tries < 500; tries++) {
    const port = PORT_LOW + Math.floor(Math.random() * PORT_SPAN);
    if (handedOut.has(port)) continue;
    if (await canListen(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free loopback port in ${PORT_LOW}-${PORT_LOW + PORT_SPAN - 1}`);
}

/** Apply the D1 migrations to a new persistence directory. Under `npm test`,
 *  scripts/test.sh applies them once, to DROPPLE_MIGRATED_STATE, and every
 *  worker starts from a copy of that directory: the same empty, migrated
 *  state, without running wrangler again (seconds of CPU, tens of seconds
 *  on a loaded machine, for each of the suite's ~17 workers). */
export function migrate(persistDir, config) {
  const template = !config && process.env.DROPPLE_MIGRATED_STATE;
  if (template && existsSync(join(template, ".complete"))) {
    cpSync(template, persistDir, { recursive: true, filter: (src) => !src.endsWith(".complete") });
    return;
  }
  const c = config ? ["-c", config] : [];
  const r = spawnSync(WRANGLER, ["d1", "migrations", "apply", "DB", "--local", ...c, "--persist-to", persistDir], {
    cwd: ROOT, env: ENV, encoding: "utf8", timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`migrations failed: ${r.stdout}\n${r.stderr}`);
}

/** Start wrangler dev; resolves once `health` answers 200. `config` runs
 *  another wrangler.toml (the benchmark's baseline worker) the same way. */
export async function startWorker({ persistDir, port, vars = {}, keepState = false, logLevel = "warn", config, health = "/v1/health" } = {}) {
  const dir = persistDir ?? mkdtempSync(join(tmpdir(), "dropple-test-"));
  if (!persistDir) migrate(dir, config);
  const p = port ?? (await freePort());
  // The devtools port too: by default every wrangler dev takes 9229 when it
  // looks free, and two starting at once both take it, the second failing
  // with "Address already in use".
  const inspector = await freePort();
  const args = ["dev", ...(config ? ["-c", config] : []), "--ip", "127.0.0.1", "--port", String(p), "--persist-to", dir,
    "--inspector-port", String(inspector), "--show-interactive-dev-session=false", "--log-level", logLevel];
  for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
  const child = spawn(WRANGLER, args, { cwd: ROOT, env: ENV, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let log = "";
  child.stdout.on("data", (d) => { log += d; });
  child.stderr.on("data", (d) => { log += d; });
  const base = `http://127.0.0.1:${p}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited early:\n${log}`);
    try {
      const r = await fetch(`${base}${health}`, { signal: AbortSignal.timeout(2000) });
      if (r.status === 200) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) {
      try { process.kill(-child.pid, "SIGKILL"); } catch {}
      throw new Error(`worker did not start within 90 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  // The process group: wrangler (Node) and the workerd it spawned. Stopping
  // waits until every member is gone, not only wrangler: a workerd still
  // exiting holds the port and the persistence directory, and a restart on
  // the same port then fails with "Address already in use".
  const groupAlive = () => {
    try { process.kill(-child.pid, 0); return true; } catch (e) { return e.code === "EPERM"; }
  };
  const stop = async () => {
    if (groupAlive()) {
      try { process.kill(-child.pid, "SIGTERM"); } catch {}
      const killAt = Date.now() + 5000, giveUpAt = killAt + 10_000;
      while (groupAlive()) {
        if (Date.now() > killAt) { try { process.kill(-child.pid, "SIGKILL"); } catch {} }
        if (Date.now() > giveUpAt) throw new Error(`worker processes (group ${child.pid}) still alive 15 s after SIGTERM`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    // Debugging aid: WORKER_LOG_DIR=/tmp/x keeps each worker's output.
    if (process.env.WORKER_LOG_DIR) {
      mkdirSync(process.env.WORKER_LOG_DIR, { recursive: true });
      writeFileSync(join(process.env.WORKER_LOG_DIR, `worker-${p}-${child.pid}.log`), log);
    }
    if (!persistDir && !keepState) rmSync(dir, { recursive: true, force: true });
  };
  // A crash, not a shutdown: the whole process group dies at once (recovery tests).
  const kill = async () => {
    if (child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    try { process.kill(-child.pid, "SIGKILL"); } catch {}
    await exited;
  };
  // pgid: the process group (wrangler and its workerd), for CPU accounting.
  return { base, port: p, inspector, dir, pgid: child.pid, stop, kill, log: () => log };
}

/** A small API client bound to one worker. */
export function client(base) {
  const call = async (method, path, { token, body, headers = {}, raw } = {}) => {
    const h = { ...headers };
    if (token) h.authorization = `Bearer ${token}`;
    let payload;
    if (raw !== undefined) payload = raw;
    else if (body !== undefined) { payload = JSON.stringify(body); h["content-type"] = "application/json"; }
    const r = await fetch(base + path, { method, headers: h, body: payload, signal: AbortSignal.timeout(30_000) });
    const text = await r.text();
    let json;
    try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
    return { status: r.status, headers: r.headers, json, text };
  };
  const token = async (sub, org, roles) => {
    const r = await call("POST", "/v1/dev/tokens", { body: { sub, org, roles } });
    if (r.status !== 201) throw new Error(`dev token: ${r.status} ${r.text}`);
    return r.json.token;
  };
  return { call, token };
}

/**
 * GET /v1/runs/{id}/events until the run holds `seq`: a classroom's outbox
 * forwards its events to D1 on its own, shortly after they are live. Returns
 * the last answer; fails after `timeoutMs`.
 */
export async function runEventsThrough(api, runId, token, seq, { after = 0, timeoutMs = 20_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await api.call("GET", `/v1/runs/${runId}/events?after=${after}&limit=1000`, { token });
    if (r.status !== 200) throw new Error(`run events: ${r.status} ${r.text}`);
    if (r.json.last_seq >= seq) return r;
    if (Date.now() > deadline) throw new Error(`run ${runId} holds seq ${r.json.last_seq}, not ${seq}, after ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

// `node tests/support/worker.mjs migrate DIR`: the migrated template scripts/test.sh shares.
if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === "migrate") {
  const dir = process.argv[3];
  migrate(dir);
  writeFileSync(join(dir, ".complete"), "");
}
