// A CPU profile of the classroom Durable Object during a fan-out, taken
// through the worker's inspector (V8's sampling profiler): where the object's
// time goes per message, by function (the wasm's names are kept when
// build/index_bg.wasm carries a name section; the release build strips it:
// rebuild with `wasm-opt -g` for names).
//
//   node bench/profile.mjs [--observers 10] [--rounds 400] [--out /tmp/fan.cpuprofile]
//
// Prints the functions with the most samples (self and inclusive) and
// writes the .cpuprofile (Chrome DevTools opens it). Not part of npm test.
import { writeFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { startWorker, client } from "../tests/support/worker.mjs";
import { explanationsDone } from "./settle.mjs";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const N = Number(arg("observers", 10)), ROUNDS = Number(arg("rounds", 400));
const OUT = arg("out", join(tmpdir(), "dropple-fanout.cpuprofile"));
const LOADGEN = new URL("./loadgen/target/release/loadgen", import.meta.url).pathname;
const ORG = "profile";

const w = await startWorker();
try {
  const api = client(w.base);
  await api.call("PUT", `/v1/dev/orgs/${ORG}/plan`, { body: { plan: "enterprise" } });
  const teacher = await api.token("teacher", ORG, ["teacher"]);
  const author = await api.token("author", ORG, ["author"]);
  const observers = [];
  for (let i = 0; i < N; i++) observers.push(await api.token(`learner${i}`, ORG, ["learner"]));
  const timeline = Array.from({ length: 2000 }, (_, i) => ({ type: "narration", payload: { text: `step ${i + 1}` } }));
  const lesson = (await api.call("POST", "/v1/lessons", { token: author, body: { title: "Profile", summary: "fan-out", timeline } })).json;
  // The publish-time explanations would share the isolate: wait them out.
  await explanationsDone(api, author, lesson.lesson_id, 1);

  const session = async () => {
    const s = (await api.call("POST", "/v1/sessions", { token: teacher, body: { lesson_id: lesson.lesson_id, version: 1 } })).json;
    const wsBase = `${w.base.replace("http", "ws")}/v1/sessions/${s.session_id}/ws?token=`;
    const file = join(tmpdir(), `dropple-profile-observers-${process.pid}.txt`);
    writeFileSync(file, observers.map((t) => wsBase + t).join("\n"));
    const child = spawn(LOADGEN, ["fanout", "--teacher", wsBase + teacher, "--observers-file", file, "--observers", String(N),
      "--rounds", String(ROUNDS), "--interval-ms", "60", "--warmup", "5", "--protocol", "dropple", "--max-step", "2000"],
    { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d) => { out += d; });
    const code = await new Promise((r) => child.once("exit", r));
    if (code !== 0) throw new Error(`loadgen failed (${code})`);
    return JSON.parse(out.trim().split("\n").pop());
  };

  // wrangler's inspector proxy accepts DevTools' origin only.
  const [target] = await (await fetch(`http://127.0.0.1:${w.inspector}/json`)).json();
  const ws = new WebSocket(target.webSocketDebuggerUrl, { headers: { origin: "https://devtools.devprod.cloudflare.dev" } });
  await new Promise((resolve, reject) => { ws.addEventListener("open", resolve, { once: true }); ws.addEventListener("error", reject, { once: true }); });
  let next = 0;
  const waiting = new Map();
  ws.addEventListener("message", (m) => {
    const d = JSON.parse(m.data);
    if (d.id && waiting.has(d.id)) { waiting.get(d.id)(d); waiting.delete(d.id); }
  });
  const call = (method, params = {}) => new Promise((resolve) => {
    const id = ++next;
    waiting.set(id, resolve);
    ws.send(JSON.stringify({ id, method, params }));
  });

  const warm = await session(); // code compiled and tiered up before sampling
  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: 100 });
  await call("Profiler.start");
  const measured = await session();
  const { result } = await call("Profiler.stop");
  ws.close();
  writeFileSync(OUT, JSON.stringify(result.profile));
  console.log(`fan-out to ${N}: warm p50 ${warm.p50_ms} ms; profiled p50 ${measured.p50_ms} ms, p99 ${measured.p99_ms} ms`);
  console.log(summary(result.profile));
  console.log(`profile: ${OUT}`);
} finally {
  await w.stop();
}

/** Samples per function, self and inclusive (a function counted once per stack). */
function summary(p, k = 25) {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const hits = new Map();
  for (const s of p.samples) hits.set(s, (hits.get(s) ?? 0) + 1);
  const name = (n) => (n.callFrame.functionName || "(anonymous)").replace(/\[[0-9a-f]{16}\]/g, "").slice(0, 140);
  const self = new Map(), incl = new Map();
  for (const [id, c] of hits) {
    self.set(name(byId.get(id)), (self.get(name(byId.get(id))) ?? 0) + c);
    const seen = new Set();
    for (let x = id; x !== undefined; x = parent.get(x)) {
      const nm = name(byId.get(x));
      if (!seen.has(nm)) { seen.add(nm); incl.set(nm, (incl.get(nm) ?? 0) + c); }
    }
  }
  const total = p.samples.length;
  const top = (m) => [...m].sort((a, b) => b[1] - a[1]).slice(0, k)
    .map(([n, c]) => `  ${(100 * c / total).toFixed(1).padStart(5)} %  ${n}`).join("\n");
  return `${total} samples\nself:\n${top(self)}\ninclusive:\n${top(incl)}`;
}
