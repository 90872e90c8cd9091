// Truth layer: append-only runs in D1 — idempotency, optimistic concurrency,
// atomic batches, paging, replay at a seq or a time, checkpoints, xAPI.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID, createHash } from "node:crypto";
import { jcs } from "./support/jcs-verify.mjs";
import { startWorker, client } from "./support/worker.mjs";

let w, api, author, teacher, learner, other;
// A small checkpoint interval so the tests cross several checkpoints.
before(async () => {
  w = await startWorker({ vars: { CHECKPOINT_EVERY: "5" } });
  api = client(w.base);
  author = await api.token("ana", "acme", ["author"]);
  teacher = await api.token("tom", "acme", ["teacher"]);
  learner = await api.token("lea", "acme", ["learner"]);
  other = await api.token("oz", "globex", ["author", "governor"]);
});
after(async () => { await w?.stop(); });

const ev = (type, payload = {}, id = randomUUID()) => ({ id, type, payload });
async function newRun(token = author) {
  const r = await api.call("POST", "/v1/runs", { token, body: { kind: "recording" } });
  assert.equal(r.status, 201, r.text);
  return r.json.run_id;
}
async function allEvents(runId, token = author) {
  const r = await api.call("GET", `/v1/runs/${runId}/events?limit=1000`, { token });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

test("append assigns gapless seqs and the envelope is complete", async () => {
  const run = await newRun();
  const a = await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [ev("element.added", { id: "a", kind: "box", x: 1, y: 2 }), ev("narration", { text: "hi" })] } });
  assert.equal(a.status, 201, a.text);
  assert.deepEqual(a.json, { first_seq: 1, last_seq: 2 });
  const b = await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [ev("chapter", { title: "c" })], expected_seq: 2 } });
  assert.deepEqual(b.json, { first_seq: 3, last_seq: 3 });
  const { events, last_seq } = await allEvents(run);
  assert.equal(last_seq, 3);
  assert.deepEqual(events.map((e) => e.seq), [1, 2, 3]);
  for (const e of events) {
    for (const k of ["id", "run_id", "seq", "type", "payload", "timestamp", "author_id"]) assert.ok(k in e, k);
    assert.equal(e.author_id, "ana");
    assert.equal(e.run_id, run);
  }
});

test("re-sending an event id is a no-op answering its seq", async () => {
  const run = await newRun();
  const e = ev("narration", { text: "once" });
  assert.equal((await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [e] } })).status, 201);
  const again = await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [e] } });
  assert.equal(again.status, 200, again.text);
  assert.equal(again.json.first_seq, 1);
  // A retry with the original expected_seq is still a no-op, not a conflict.
  const retry = await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [e], expected_seq: 0 } });
  assert.equal(retry.status, 200);
  assert.equal((await allEvents(run)).events.length, 1);
});

test("expected_seq mismatch is 409 and changes nothing", async () => {
  const run = await newRun();
  await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [ev("narration", { text: "1" })] } });
  const r = await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [ev("narration", { text: "2" })], expected_seq: 0 } });
  assert.equal(r.status, 409, r.text);
  assert.equal(r.json.error.code, "seq_conflict");
  assert.equal((await allEvents(run)).last_seq, 1);
});

test("a batch with one bad event is rejected whole, naming it", async () => {
  const run = await newRun();
  const r = await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [ev("narration", { text: "ok" }), { id: "not-a-uuid", type: "narration", payload: {} }] } });
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /^events\[1\]\.id/);
  const r2 = await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [ev("narration"), ev("Bad Type")] } });
  assert.match(r2.json.error.message, /^events\[1\]\.type/);
  assert.equal((await allEvents(run)).last_seq, 0);
});

test("events cannot be changed or deleted: 405", async () => {
  const run = await newRun();
  await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [ev("narration", { text: "x" })] } });
  for (const method of ["PUT", "PATCH", "DELETE"]) {
    for (const path of [`/v1/runs/${run}/events`, `/v1/runs/${run}/events/1`]) {
      const r = await api.call(method, path, { token: author, body: { events: [] } });
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.equal(r.json.error.code, "method_not_allowed");
    }
  }
  assert.equal((await allEvents(run)).events[0].payload.text, "x");
});

test("oversized batches and payloads are 413", async () => {
  const run = await newRun();
  const many = Array.from({ length: 101 }, () => ev("narration"));
  assert.equal((await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: many } })).status, 413);
  const huge = await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [ev("narration", { text: "x".repeat(70 * 1024) })] } });
  assert.equal(huge.status, 413);
  assert.equal((await allEvents(run)).last_seq, 0);
});

test("paging by seq", async () => {
  const run = await newRun();
  await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: Array.from({ length: 25 }, (_, i) => ev("narration", { text: `n${i}` })) } });
  const seen = [];
  let after = 0;
  for (;;) {
    const r = await api.call("GET", `/v1/runs/${run}/events?after=${after}&limit=10`, { token: author });
    assert.equal(r.status, 200);
    seen.push(...r.json.events.map((e) => e.seq));
    if (r.json.next_after == null) break;
    after = r.json.next_after;
  }
  assert.deepEqual(seen, Array.from({ length: 25 }, (_, i) => i + 1));
  for (const q of ["after=-1", "limit=0", "limit=abc", "after=99999999999999999999"]) {
    assert.equal((await api.call("GET", `/v1/runs/${run}/events?${q}`, { token: author })).status, 400, q);
  }
});

test("20 parallel appends come out as 1..20", async () => {
  const run = await newRun();
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) =>
    api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [ev("narration", { text: `p${i}` })] } })));
  assert.ok(results.every((r) => r.status === 201), results.map((r) => r.status).join());
  const seqs = results.map((r) => r.json.first_seq).sort((a, b) => a - b);
  assert.deepEqual(seqs, Array.from({ length: 20 }, (_, i) => i + 1));
  assert.deepEqual((await allEvents(run)).events.map((e) => e.seq), seqs);
});

test("state at a seq and at a time, identical with or without checkpoints", async () => {
  const run = await newRun();
  const batch1 = [ev("element.added", { id: "a", kind: "box", x: 0.1, y: 0.2 }), ev("element.added", { id: "b", kind: "box", x: 3, y: 4 }), ev("edge.added", { id: "e", from: "a", to: "b" })];
  await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: batch1 } });
  await new Promise((r) => setTimeout(r, 30));
  const between = new Date().toISOString();
  await new Promise((r) => setTimeout(r, 30));
  const rest = Array.from({ length: 14 }, (_, i) => ev("element.moved", { id: "a", x: i * 1.1, y: -i }));
  rest.push(ev("custom.unknown", { ignored: true }), ev("element.removed", { id: "b" }));
  await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: rest } });

  const atTime = await api.call("GET", `/v1/runs/${run}/state?at=${encodeURIComponent(between)}`, { token: author });
  assert.equal(atTime.status, 200, atTime.text);
  assert.equal(atTime.json.seq, 3);
  assert.deepEqual(Object.keys(atTime.json.state.elements), ["a", "b"]);

  // First read folds from scratch and stores the last checkpoint it passes
  // (seq 15, on the interval of 5); later reads start from it. All must agree
  // bit for bit.
  const cold = await api.call("GET", `/v1/runs/${run}/state`, { token: author });
  const warm = await api.call("GET", `/v1/runs/${run}/state`, { token: author });
  assert.equal(cold.json.seq, 19);
  assert.equal(cold.text.length, warm.text.length);
  assert.deepEqual(cold.json, warm.json);
  assert.equal(cold.json.state.elements.a.x, 13 * 1.1);
  assert.equal(cold.json.state.edges.e, undefined, "edges go with their element");
  for (const s of [7, 10, 12]) {
    const a = await api.call("GET", `/v1/runs/${run}/state?at_seq=${s}`, { token: author });
    const b = await api.call("GET", `/v1/runs/${run}/state?at_seq=${s}`, { token: author });
    assert.equal(a.json.seq, s);
    assert.equal(a.json.hash, b.json.hash);
  }
  const past = await api.call("GET", `/v1/runs/${run}/state?at_seq=999`, { token: author });
  assert.equal(past.status, 404);
  assert.equal((await api.call("GET", `/v1/runs/${run}/state?at=yesterday`, { token: author })).status, 400);
});

test("who may create, append and read", async () => {
  assert.equal((await api.call("POST", "/v1/runs", { token: learner, body: {} })).status, 403);
  const run = await newRun(teacher);
  // Not the run's creator: the org's author may read it but not append.
  assert.equal((await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [ev("narration")] } })).status, 403);
  assert.equal((await api.call("GET", `/v1/runs/${run}/events`, { token: author })).status, 200);
  assert.equal((await api.call("GET", `/v1/runs/${run}/events`, { token: learner })).status, 403);
  // Another org never sees it.
  for (const path of ["/events", "/state", "/xapi", ""]) {
    const r = await api.call("GET", `/v1/runs/${run}${path}`, { token: other });
    assert.equal(r.status, 404, path);
  }
  assert.equal((await api.call("POST", `/v1/runs/${run}/events`, { token: other, body: { events: [ev("narration")] } })).status, 404);
  assert.equal((await api.call("GET", `/v1/runs/${run}/events`, {})).status, 401);
  assert.equal((await api.call("GET", `/v1/runs/${run}/events`, { token: teacher })).json.last_seq, 0);
});

test("xAPI statements carry the event ids", async () => {
  const run = await newRun();
  const e = ev("narration", { text: "hi" });
  await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [e] } });
  const r = await api.call("GET", `/v1/runs/${run}/xapi`, { token: author });
  assert.equal(r.status, 200);
  const [s] = r.json.statements;
  assert.equal(s.id, e.id);
  assert.equal(s.actor.account.name, "ana");
  assert.equal(s.verb.display["en-US"], "narration");
  assert.match(s.timestamp, /^\d{4}-\d\d-\d\dT/);
});

test("bad input never changes the log", async () => {
  const run = await newRun();
  await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [ev("narration", { text: "keep" })] } });
  const before = (await allEvents(run)).events;
  const bodies = [
    { events: "x" }, { events: [null] }, { events: [{}] }, { events: [ev("narration", [])] },
    { events: [ev("narration")], expected_seq: -1 }, { events: [ev("narration")], expected_seq: "1" },
    { events: [ev("narration")], extra: true }, { events: [{ ...ev("narration"), seq: 1 }] },
    { events: [ev("narration'); DROP TABLE events; --")] },
  ];
  for (const body of bodies) {
    const r = await api.call("POST", `/v1/runs/${run}/events`, { token: author, body });
    assert.ok(r.status >= 400 && r.status < 500, `${JSON.stringify(body)} → ${r.status}`);
    assert.ok(r.json.error.code);
  }
  assert.deepEqual((await allEvents(run)).events, before);
});

// The hash chain (shared/API.md), checked with an independent JCS + SHA-256
// that shares no code with the server.
const ZEROS = "0".repeat(64);
function chainHash(prev, e) {
  const { hash, ...body } = e;
  return createHash("sha256").update(prev + jcs(body)).digest("hex");
}

test("every envelope carries its chained hash, and verify walks the chain", async () => {
  const run = await newRun();
  for (let b = 0; b < 3; b++) {
    const events = Array.from({ length: 4 }, (_, i) => ev("element.moved", { id: "a", x: b * 10 + i + 0.5, y: -1, note: "é\u2028" }));
    assert.equal((await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events } })).status, 201);
  }
  const { events } = await allEvents(run);
  assert.equal(events.length, 12);
  let prev = ZEROS;
  for (const e of events) {
    assert.match(e.hash, /^[0-9a-f]{64}$/);
    assert.equal(e.hash, chainHash(prev, e), `seq ${e.seq}`);
    prev = e.hash;
  }
  const v = await api.call("GET", `/v1/runs/${run}/verify`, { token: teacher });
  assert.equal(v.status, 200, v.text);
  assert.deepEqual(v.json, { ok: true, last_seq: 12, head_hash: prev });
  // An idempotent re-send keeps the chain as it was.
  const again = await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [{ id: events[3].id, type: "x", payload: {} }] } });
  assert.equal(again.status, 200);
  assert.deepEqual((await api.call("GET", `/v1/runs/${run}/verify`, { token: author })).json.head_hash, prev);
  // An empty run verifies with the zero head; readers only.
  const empty = await newRun();
  assert.deepEqual((await api.call("GET", `/v1/runs/${empty}/verify`, { token: author })).json, { ok: true, last_seq: 0, head_hash: ZEROS });
  assert.equal((await api.call("GET", `/v1/runs/${run}/verify`, { token: learner })).status, 403);
  assert.equal((await api.call("GET", `/v1/runs/${run}/verify`, { token: other })).status, 404);
  assert.equal((await api.call("POST", `/v1/runs/${run}/verify`, { token: author })).status, 405);
});

test("parallel appends still chain: verify passes after 20 racing writers", async () => {
  const run = await newRun();
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) =>
    api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events: [ev("narration", { text: `p${i}` }), ev("narration", { text: `q${i}` })] } })));
  assert.ok(results.every((r) => r.status === 201), results.map((r) => r.text).join("\n"));
  const v = await api.call("GET", `/v1/runs/${run}/verify`, { token: author });
  assert.equal(v.json.ok, true, v.text);
  assert.equal(v.json.last_seq, 40);
});
