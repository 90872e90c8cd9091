// Identity and policy at the edge: cross-org refusals, usage, audit, metrics
// exposition, and erasure of personal data with an untouched event log.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { startWorker, client } from "./support/worker.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";

let w, api, author, governor, learner, otherGov;
before(async () => {
  w = await startWorker();
  api = client(w.base);
  author = await api.token("ana", "acme", ["author"]);
  governor = await api.token("gil", "acme", ["governor"]);
  otherGov = await api.token("ozz", "globex", ["governor", "author", "teacher", "learner"]);
  const r = await api.call("POST", "/v1/dev/tokens", { body: { sub: "lea", org: "acme", roles: ["learner"], display_name: "Lea Leclerc" } });
  learner = r.json.token;
});
after(async () => { await w?.stop(); });

test("another org's resources answer 404, never data", async () => {
  const lesson = (await api.call("POST", "/v1/lessons", { token: author, body: DEMO_LESSON })).json;
  const run = (await api.call("POST", "/v1/runs", { token: author, body: {} })).json.run_id;
  const paths = [
    ["GET", `/v1/runs/${run}/events`], ["GET", `/v1/runs/${run}/state`], ["GET", `/v1/lessons/${lesson.lesson_id}`],
    ["GET", `/v1/lessons/${lesson.lesson_id}/versions/1`], ["GET", `/v1/lessons/${lesson.lesson_id}/versions/1/frames/1`],
    ["POST", `/v1/lessons/${lesson.lesson_id}/versions`], ["GET", "/v1/orgs/acme/usage"], ["GET", "/v1/audit?org_id=acme"],
    ["GET", "/v1/users/lea"],
  ];
  for (const [method, path] of paths) {
    const r = await api.call(method, path, { token: otherGov, body: method === "POST" ? DEMO_LESSON : undefined });
    assert.ok(r.status === 404 || r.status === 403, `${method} ${path} → ${r.status}`);
    assert.ok(!r.text.includes("Fractions"), `${path} leaked data`);
  }
});

test("usage shows plan, limits and current use", async () => {
  const r = await api.call("GET", "/v1/orgs/acme/usage", { token: learner });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.plan, "free");
  assert.equal(r.json.limits.ai_jobs_per_minute, 60);
  assert.ok(r.json.usage.runs >= 1);
  assert.equal(typeof r.json.usage.live_sessions, "number");
});

test("audit is for the org's governors, paged, append-only", async () => {
  assert.equal((await api.call("GET", "/v1/audit", { token: author })).status, 403);
  assert.equal((await api.call("DELETE", "/v1/users/nobody/personal-data", { token: governor })).status, 404, "an unknown person is no one's to erase");
  await api.token("lou", "acme", ["learner"]);
  assert.equal((await api.call("DELETE", "/v1/users/lou/personal-data", { token: governor })).status, 200);
  const page1 = await api.call("GET", "/v1/audit?limit=1", { token: governor });
  assert.equal(page1.status, 200);
  assert.equal(page1.json.entries.length, 1);
  assert.ok(page1.json.entries[0].action);
  assert.equal((await api.call("DELETE", "/v1/audit", { token: governor })).status, 405);
});

test("metrics are Prometheus text for governors", async () => {
  const run = (await api.call("POST", "/v1/runs", { token: author, body: {} })).json.run_id;
  await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [{ id: randomUUID(), type: "narration", payload: { text: "x" } }] } });
  await api.call("GET", `/v1/runs/${run}/state`, { token: author });
  assert.equal((await api.call("GET", "/v1/metrics", { token: author })).status, 403);
  const r = await api.call("GET", "/v1/metrics", { token: governor });
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /text\/plain/);
  const samples = new Map();
  for (const line of r.text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+-]+|NaN)$/);
    assert.ok(m, `not exposition format: ${line}`);
    samples.set(m[1] + (m[2] ?? ""), Number(m[3]));
  }
  assert.ok(samples.get("dropple_events_appended_total") >= 1);
  assert.ok(samples.get("dropple_replay_seconds_count") >= 1);
  for (const name of ["dropple_live_sessions", "dropple_lesson_completion_rate", "dropple_certificate_pass_rate", 'dropple_ai_jobs{status="failed"}', "dropple_events_per_run_max"]) {
    assert.ok(samples.has(name), name);
  }
});

test("erasure removes personal data, keeps the log, and is audited", async () => {
  const me = await api.call("GET", "/v1/users/lea", { token: learner });
  assert.equal(me.json.display_name, "Lea Leclerc");
  const run = (await api.call("POST", "/v1/runs", { token: author, body: {} })).json.run_id;
  await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [{ id: randomUUID(), type: "narration", payload: { text: "kept" } }] } });
  const before = (await api.call("GET", `/v1/runs/${run}/events`, { token: author })).text;
  assert.equal((await api.call("DELETE", "/v1/users/lea/personal-data", { token: author })).status, 403);
  const r = await api.call("DELETE", "/v1/users/lea/personal-data", { token: learner });
  assert.equal(r.status, 200, r.text);
  const after = await api.call("GET", "/v1/users/lea", { token: governor });
  assert.equal(after.json.erased, true);
  assert.equal(after.json.display_name, after.json.pseudonym);
  assert.ok(!after.text.includes("Leclerc"));
  assert.equal((await api.call("GET", `/v1/runs/${run}/events`, { token: author })).text, before);
  const audit = (await api.call("GET", "/v1/audit?limit=500", { token: governor })).json.entries;
  assert.ok(audit.some((e) => e.action === "personal_data.erased" && e.target === "lea" && e.actor === "lea"));
  assert.ok(!JSON.stringify(audit).includes("Leclerc"));
});
