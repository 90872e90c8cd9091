// Where a fresh instance's first requests and first live session spend their
// time: every step timed on its own (first HTTP request, first D1 write, the
// first socket's hello → snapshot, each cursor round to 10 observers).
// `node bench/cold.mjs` prints them; bench/run.mjs reports the same first
// session through the load generator.
import { startWorker, client } from "../tests/support/worker.mjs";

const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

export async function coldSteps() {
  const w = await startWorker();
  const api = client(w.base);
  const steps = [];
  const step = async (name, fn) => { const t0 = process.hrtime.bigint(); const r = await fn(); steps.push([name, ms(t0)]); return r; };
  try {
    await step("first GET /v1/health after start", () => api.call("GET", "/v1/health"));
    await step("second GET /v1/health", () => api.call("GET", "/v1/health"));
    await step("first dev token", () => api.call("POST", "/v1/dev/tokens", { body: { sub: "t0", org: "cold", roles: ["author"] } }));
    const author = await api.token("author", "cold", ["author"]);
    const teacher = await api.token("teacher", "cold", ["teacher"]);
    const learners = await Promise.all(Array.from({ length: 10 }, (_, i) => api.token(`l${i}`, "cold", ["learner"])));
    const timeline = Array.from({ length: 2000 }, (_, i) => ({ type: "narration", payload: { text: `step ${i + 1}` } }));
    const lesson = (await step("first POST /v1/lessons (first D1 write)", () => api.call("POST", "/v1/lessons", { token: author, body: { title: "Cold", summary: "cold", timeline } }))).json;
    const session = (await step("first POST /v1/sessions", () => api.call("POST", "/v1/sessions", { token: teacher, body: { lesson_id: lesson.lesson_id, version: 1 } }))).json;
    const url = (tok) => `${w.base.replace("http", "ws")}/v1/sessions/${session.session_id}/ws?token=${tok}`;
    const open = (tok) => new Promise((resolve, reject) => {
      const ws = new WebSocket(url(tok));
      ws.onopen = () => ws.send(JSON.stringify({ type: "hello" }));
      ws.onmessage = (m) => { const v = JSON.parse(m.data); if (v.type === "snapshot") { ws.onmessage = null; resolve(ws); } };
      ws.onerror = reject;
    });
    const teacherWs = await step("first socket: connect + hello → snapshot (Durable Object created)", () => open(teacher));
    const observers = [];
    await step("second socket: connect + hello → snapshot", async () => observers.push(await open(learners[0])));
    await step("8 more sockets", async () => observers.push(...await Promise.all(learners.slice(1, 9).map(open))));
    observers.push(await open(learners[9]));
    // COLD_IDLE_MS: wait before the rounds, to tell time-dependent warm-up
    // (the engine tiering the wasm up in the background) from per-round work.
    const idle = Number(process.env.COLD_IDLE_MS ?? 0);
    if (idle > 0) await step(`idle ${idle} ms before the rounds`, () => new Promise((r) => setTimeout(r, idle)));
    for (let round = 1; round <= 25; round++) {
      const got = observers.map((ws) => new Promise((resolve) => {
        ws.onmessage = (m) => { const v = JSON.parse(m.data); if (v.type === "event" && v.event?.type === "cursor.moved" && v.event.payload.step === round + 1) resolve(); };
      }));
      await step(`round ${round}: cursor → 10 observers`, async () => { teacherWs.send(JSON.stringify({ type: "cursor", step: round + 1 })); await Promise.all(got); });
      await new Promise((r) => setTimeout(r, 60));
    }
    [teacherWs, ...observers].forEach((ws) => ws.close());
    return steps;
  } finally {
    await w.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const [name, t] of await coldSteps()) console.log(`${t.toFixed(2).padStart(9)} ms  ${name}`);
}
