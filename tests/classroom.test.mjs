// The live classroom over real WebSockets on local workerd: authority,
// ordering, join, teacher loss, resume, Q&A and quiz, SSE, limits, and the
// outbox to D1 (including a D1 outage through the development fault switch).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { startWorker, client } from "./support/worker.mjs";
import { openSocket } from "./support/ws.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";

let w, api, author, teacher, teacher2, learner, learner2, outsider, governor, lesson;
before(async () => {
  // Free-plan orgs here may have 2 observers per session, to reach room_full cheaply.
  w = await startWorker({ vars: { PLAN_OVERRIDES: JSON.stringify({ free: { observers_per_session: 2 } }) } });
  api = client(w.base);
  author = await api.token("ana", "acme", ["author"]);
  teacher = await api.token("tom", "acme", ["teacher"]);
  teacher2 = await api.token("tia", "acme", ["teacher"]);
  learner = await api.token("lea", "acme", ["learner"]);
  learner2 = await api.token("leo", "acme", ["learner"]);
  outsider = await api.token("oz", "globex", ["learner", "teacher", "governor"]);
  governor = await api.token("gil", "acme", ["governor"]);
  lesson = (await api.call("POST", "/v1/lessons", { token: author, body: DEMO_LESSON })).json;
  // Many sessions stay open across these tests: more than the free plan's 3.
  assert.equal((await api.call("PUT", "/v1/dev/orgs/acme/plan", { body: { plan: "pro" } })).status, 200);
});
after(async () => { await w?.stop(); });

const wsUrl = (sid, token) => `${w.base.replace("http", "ws")}/v1/sessions/${sid}/ws?token=${token}`;
async function newSession() {
  const r = await api.call("POST", "/v1/sessions", { token: teacher, body: { lesson_id: lesson.lesson_id, version: 1 } });
  assert.equal(r.status, 201, r.text);
  return r.json;
}
async function d1Events(runId) {
  const r = await api.call("GET", `/v1/runs/${runId}/events?limit=1000`, { token: teacher });
  assert.equal(r.status, 200, r.text);
  return r.json.events;
}
async function observersMetric() {
  const r = await api.call("GET", "/v1/metrics", { token: governor });
  assert.equal(r.status, 200, r.text);
  const line = r.text.split("\n").find((l) => l.startsWith("dropple_connected_observers "));
  assert.ok(line, r.text);
  return Number(line.split(" ")[1]);
}
async function eventually(fn, ms = 8000) {
  const end = Date.now() + ms;
  for (;;) {
    try { return await fn(); } catch (e) { if (Date.now() > end) throw e; }
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("create and join by code; only teachers open sessions", async () => {
  const s = await newSession();
  assert.match(s.join_code, /^[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{6}$/);
  assert.ok(s.run_id && s.session_id);
  const j = await api.call("GET", `/v1/join/${s.join_code.toLowerCase()}`, { token: learner });
  assert.equal(j.status, 200);
  assert.equal(j.json.session_id, s.session_id);
  assert.equal((await api.call("GET", "/v1/join/ZZZZZZ", { token: learner })).status, 404);
  assert.equal((await api.call("POST", "/v1/sessions", { token: learner, body: { lesson_id: lesson.lesson_id, version: 1 } })).status, 403);
  assert.equal((await api.call("POST", "/v1/sessions", { token: teacher, body: { lesson_id: lesson.lesson_id, version: 9 } })).status, 404);
  const st = await api.call("GET", `/v1/sessions/${s.session_id}`, { token: learner });
  assert.equal(st.status, 200);
  assert.deepEqual(Object.keys(st.json).filter((k) => ["status", "cursor", "seq", "participants"].includes(k)).sort(), ["cursor", "participants", "seq", "status"]);
  assert.equal(st.json.status, "waiting");
});

test("another org's session is invisible: join, status, WebSocket and SSE answer 404", async () => {
  const s = await newSession();
  const paths = [`/v1/join/${s.join_code}`, `/v1/sessions/${s.session_id}`, `/v1/sessions/${s.session_id}/sse`];
  for (const path of paths) {
    const r = await api.call("GET", path, { token: outsider });
    assert.equal(r.status, 404, `${path}: ${r.text}`);
    assert.equal(r.json.error.code, "not_found");
  }
  // A real upgrade request: the worker refuses before any socket exists.
  const wsStatus = await new Promise((resolve, reject) => {
    const req = http.get(`${w.base}/v1/sessions/${s.session_id}/ws?token=${outsider}`, {
      headers: { connection: "Upgrade", upgrade: "websocket", "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" },
      timeout: 10_000,
    });
    req.on("response", (res) => { res.resume(); resolve(res.statusCode); });
    req.on("upgrade", (res, socket) => { socket.destroy(); resolve(res.statusCode); });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
  assert.equal(wsStatus, 404);
  // Nobody was let in: presence and the log are untouched.
  const st = await api.call("GET", `/v1/sessions/${s.session_id}`, { token: teacher });
  assert.equal(st.json.participants, 0);
  assert.equal(st.json.seq, 0);
});

test("the teacher drives, observers follow in order, an observer cannot move the cursor", async () => {
  const s = await newSession();
  const t = await openSocket(wsUrl(s.session_id, teacher));
  const snapT = await t.next((m) => m.type === "snapshot");
  assert.equal(snapT.state.status, "live");
  const a = await openSocket(wsUrl(s.session_id, learner));
  const b = await openSocket(wsUrl(s.session_id, learner2));
  const snapA = await a.next((m) => m.type === "snapshot");
  await b.next((m) => m.type === "snapshot");
  assert.equal(snapA.state.config.lesson_id, lesson.lesson_id);
  for (const step of [1, 2, 3]) t.send({ type: "cursor", step });
  for (const c of [a, b]) {
    const evs = await c.events(3);
    assert.deepEqual(evs.map((e) => e.event.payload.step), [1, 2, 3]);
    const seqs = evs.map((e) => e.seq);
    assert.deepEqual(seqs, [snapA.seq + 1, snapA.seq + 2, snapA.seq + 3]);
  }
  a.send({ type: "cursor", step: 7 });
  const err = await a.next((m) => m.type === "error");
  assert.equal(err.code, "authority_violation");
  const st = await api.call("GET", `/v1/sessions/${s.session_id}`, { token: learner });
  assert.equal(st.json.cursor.step, 3);
  assert.equal(st.json.participants, 3);
  // Connected observers reach /v1/metrics (the teacher is not one).
  await eventually(async () => assert.equal(await observersMetric(), 2));
  // Annotations: drawn by the teacher, seen by everyone, cleared.
  t.send({ type: "annotate", kind: "arrow", points: [[0.1, 0.2], [0.3, 0.4]], color: "#ff0000" });
  const [drawn] = await a.events(1);
  assert.equal(drawn.event.type, "annotation.added");
  assert.deepEqual(drawn.event.payload.points, [[0.1, 0.2], [0.3, 0.4]]);
  assert.equal(drawn.event.payload.step, 3);
  t.send({ type: "clear_annotations" });
  assert.equal((await a.events(1))[0].event.type, "annotations.cleared");
  await b.events(2);
  const audit = await eventually(async () => {
    const r = await api.call("GET", "/v1/audit?org_id=acme", { token: governor });
    const hit = r.json.entries.find((e) => e.action === "classroom.authority_violation" && e.actor === "lea");
    assert.ok(hit, JSON.stringify(r.json));
    return hit;
  });
  assert.equal(audit.detail.command, "cursor");
  t.send({ type: "cursor", step: 999 });
  assert.equal((await t.next((m) => m.type === "error")).code, "invalid_cursor");
  await Promise.all([t.close(), a.close(), b.close()]);
  await eventually(async () => assert.equal(await observersMetric(), 0));
});

test("teacher disconnect pauses, reconnect resumes; a resuming observer gets exactly what it missed", async () => {
  const s = await newSession();
  let t = await openSocket(wsUrl(s.session_id, teacher));
  await t.next((m) => m.type === "snapshot");
  const a = await openSocket(wsUrl(s.session_id, learner));
  const snap = await a.next((m) => m.type === "snapshot");
  t.send({ type: "cursor", step: 2 });
  await a.events(1);
  await t.close();
  const paused = await a.next((m) => m.type === "event" && m.event.type === "session.paused");
  assert.equal(paused.event.payload.reason, "teacher_disconnected");
  a.send({ type: "ask", text: "Are you there?" });
  await a.next((m) => m.type === "event" && m.event.type === "question.asked");
  t = await openSocket(wsUrl(s.session_id, teacher));
  await t.next((m) => m.type === "snapshot");
  const resumed = await a.next((m) => m.type === "event" && m.event.type === "session.resumed");
  // An observer that drops and comes back with last_seq gets exactly the gap.
  const lastSeen = resumed.seq;
  await a.close();
  t.send({ type: "cursor", step: 4 });
  t.send({ type: "cursor", step: 5 });
  await t.events(2);
  const back = await openSocket(wsUrl(s.session_id, learner), { lastSeq: lastSeen });
  const missed = await back.events(2);
  assert.deepEqual(missed.map((m) => m.seq), [lastSeen + 1, lastSeen + 2]);
  assert.deepEqual(missed.map((m) => m.event.payload.step), [4, 5]);
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(!back.inbox.some((m) => m.type === "snapshot" || m.type === "event"), JSON.stringify(back.inbox));
  assert.ok(snap.seq < lastSeen);
  await Promise.all([t.close(), back.close()]);
});

test("questions, answers, quiz responses; end stops everything", async () => {
  const s = await newSession();
  const t = await openSocket(wsUrl(s.session_id, teacher));
  await t.next((m) => m.type === "snapshot");
  const a = await openSocket(wsUrl(s.session_id, learner));
  await a.next((m) => m.type === "snapshot");
  a.send({ type: "ask", text: "Why halves?" });
  const asked = await t.next((m) => m.type === "event" && m.event.type === "question.asked");
  t.send({ type: "answer", question_id: asked.event.payload.question_id, text: "Because." });
  const answered = await a.next((m) => m.type === "event" && m.event.type === "question.answered");
  assert.equal(answered.event.payload.text, "Because.");
  a.send({ type: "respond", question_id: "q1", choice: 1 });
  await t.next((m) => m.type === "event" && m.event.type === "quiz.responded");
  a.send({ type: "respond", question_id: "q1", choice: 0 });
  assert.equal((await a.next((m) => m.type === "error")).code, "already_responded");
  a.send({ type: "respond", question_id: "nope", choice: 0 });
  assert.equal((await a.next((m) => m.type === "error")).code, "unknown_question");
  a.send({ type: "ping" });
  await a.next((m) => m.type === "pong");
  a.send("not json at all".split(""));
  assert.ok((await a.next((m) => m.type === "error")).code);
  t.send({ type: "end" });
  await a.next((m) => m.type === "event" && m.event.type === "session.ended");
  t.send({ type: "cursor", step: 1 });
  assert.equal((await t.next((m) => m.type === "error")).code, "session_ended");
  await Promise.all([t.close(), a.close()]);
  // The join code is released once the end reaches D1.
  await eventually(async () => assert.equal((await api.call("GET", `/v1/join/${s.join_code}`, { token: learner })).status, 404));
});

test("the teacher's roster names the learners and never counts the teacher; the key goes to the teacher, feedback to the responder alone", async () => {
  const s = await newSession();
  const t = await openSocket(wsUrl(s.session_id, teacher));
  await t.next((m) => m.type === "snapshot");
  const first = await t.next((m) => m.type === "roster");
  assert.deepEqual(first, { type: "roster", count: 0, learners: [] });
  const key = await t.next((m) => m.type === "answer_key");
  assert.deepEqual(key.answers, Object.fromEntries(DEMO_LESSON.quiz.map((q) => [q.id, q.answer])));
  const a = await openSocket(wsUrl(s.session_id, learner));
  const b = await openSocket(wsUrl(s.session_id, learner2));
  const seenByB = [];
  b.ws.addEventListener("message", (ev) => seenByB.push(JSON.parse(ev.data).type));
  await Promise.all([a.next((m) => m.type === "snapshot"), b.next((m) => m.type === "snapshot")]);
  const full = await t.next((m) => m.type === "roster" && m.count === 2);
  assert.deepEqual(full.learners, ["lea", "leo"]);
  assert.ok(!a.inbox.some((m) => m.type === "roster" || m.type === "answer_key"), "learners get neither roster nor key");
  // Snapshots never carry the key.
  assert.ok(!JSON.stringify(await (async () => { const o = await openSocket(wsUrl(s.session_id, learner)); const m = await o.next((x) => x.type === "snapshot"); await o.close(); return m; })()).includes("answer_key"));

  a.send({ type: "respond", question_id: "q1", choice: 0 });
  const fb = await a.next((m) => m.type === "quiz_feedback");
  assert.deepEqual(fb, { type: "quiz_feedback", question_id: "q1", choice: 0, correct: false, answer: DEMO_LESSON.quiz[0].answer });
  await b.next((m) => m.type === "event" && m.event.type === "quiz.responded");
  b.send({ type: "respond", question_id: "q1", choice: DEMO_LESSON.quiz[0].answer });
  assert.equal((await b.next((m) => m.type === "quiz_feedback")).correct, true);
  a.send({ type: "respond", question_id: "q1", choice: 1 });
  assert.equal((await a.next((m) => m.type === "error")).code, "already_responded");
  assert.equal(seenByB.filter((x) => x === "quiz_feedback").length, 1, "only her own feedback");
  assert.ok(!t.inbox.some((m) => m.type === "quiz_feedback"));
  await b.close();
  assert.deepEqual((await t.next((m) => m.type === "roster" && m.count < 3 && !m.learners.includes("leo"))).learners, ["lea"]);
  await Promise.all([t.close(), a.close()]);
});

test("live explanation is the teacher's opt-in; the result arrives as a session event", async () => {
  const s = await newSession();
  const t = await openSocket(wsUrl(s.session_id, teacher));
  await t.next((m) => m.type === "snapshot");
  const a = await openSocket(wsUrl(s.session_id, learner));
  await a.next((m) => m.type === "snapshot");
  a.send({ type: "explain", step: 2 });
  assert.equal((await a.next((m) => m.type === "error")).code, "authority_violation");
  t.send({ type: "explain", step: 2 });
  const requested = await a.next((m) => m.type === "event" && m.event.type === "explanation.requested");
  assert.equal(requested.event.payload.step, 2);
  const ready = await a.next((m) => m.type === "event" && m.event.type === "explanation.ready", 20000);
  assert.equal(ready.seq, requested.seq + 1);
  assert.equal(ready.event.author_id, "system");
  assert.match(ready.event.payload.text, /Step 2/);
  await Promise.all([t.close(), a.close()]);
});

test("SSE: id is the seq, resumable with after", async () => {
  const s = await newSession();
  const t = await openSocket(wsUrl(s.session_id, teacher));
  await t.next((m) => m.type === "snapshot");
  t.send({ type: "cursor", step: 1 });
  await t.events(1);
  const ctrl = new AbortController();
  const res = await fetch(`${w.base}/v1/sessions/${s.session_id}/sse?after=0&token=${learner}`, { signal: ctrl.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /text\/event-stream/);
  const reader = res.body.getReader();
  let text = "";
  const readUntil = async (pred) => {
    const end = Date.now() + 5000;
    while (!pred(text) && Date.now() < end) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
  };
  await readUntil((x) => x.includes("id: 2\n"));
  t.send({ type: "cursor", step: 2 });
  await readUntil((x) => x.includes("id: 3\n"));
  const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
  assert.deepEqual(ids, [1, 2, 3]);
  ctrl.abort();
  // A browser's EventSource resumes with Last-Event-ID: exactly what came after.
  const ctrl2 = new AbortController();
  const res2 = await fetch(`${w.base}/v1/sessions/${s.session_id}/sse?token=${learner}`, {
    signal: ctrl2.signal, headers: { "last-event-id": "2" },
  });
  assert.equal(res2.status, 200);
  const reader2 = res2.body.getReader();
  let text2 = "";
  const end = Date.now() + 5000;
  while (!text2.includes("id: 3\n") && Date.now() < end) {
    const { value, done } = await reader2.read();
    if (done) break;
    text2 += new TextDecoder().decode(value);
  }
  assert.deepEqual([...text2.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1])), [3]);
  ctrl2.abort();
  await t.close();
});

test("the outbox delivers every session event and attendance to D1, also after a D1 outage", async () => {
  const s = await newSession();
  let leo;
  const t = await openSocket(wsUrl(s.session_id, teacher));
  await t.next((m) => m.type === "snapshot");
  for (let i = 1; i <= 5; i++) t.send({ type: "cursor", step: i });
  await t.events(5);
  await eventually(async () => assert.equal((await d1Events(s.run_id)).length, 6));
  assert.equal((await api.call("PUT", "/v1/dev/faults", { body: { d1_writes: "fail" } })).status, 200);
  try {
    // A learner comes in while D1 is down: the classroom lets her in and
    // keeps her attendance (her right to replay this class) for D1.
    leo = await openSocket(wsUrl(s.session_id, learner2));
    await leo.next((m) => m.type === "snapshot");
    for (let i = 6; i <= 12; i++) t.send({ type: "cursor", step: i % 12 });
    await t.events(7);
    await new Promise((r) => setTimeout(r, 700));
    assert.equal((await d1Events(s.run_id)).length, 6, "D1 is down: nothing new lands");
    const early = await api.call("GET", `/v1/runs/${s.run_id}/events?after=0`, { token: learner2 });
    assert.equal(early.status, 403, `D1 is down: her attendance has not landed: ${early.text}`);
  } finally {
    await api.call("PUT", "/v1/dev/faults", { body: { d1_writes: "ok" } });
  }
  await eventually(async () => {
    const r = await api.call("GET", `/v1/runs/${s.run_id}/events?after=0`, { token: learner2 });
    assert.equal(r.status, 200, r.text);
  }, 15000);
  await leo.close();
  const stored = await eventually(async () => {
    const evs = await d1Events(s.run_id);
    assert.equal(evs.length, 13);
    return evs;
  }, 15000);
  assert.deepEqual(stored.map((e) => e.seq), Array.from({ length: 13 }, (_, i) => i + 1));
  const after = await openSocket(wsUrl(s.session_id, learner), { lastSeq: 0 });
  const live = await after.events(13);
  assert.deepEqual(live.map((m) => m.event.id), stored.map((e) => e.id));
  await Promise.all([t.close(), after.close()]);
});

test("the free plan caps concurrent live sessions with 402", async () => {
  const tk = await api.token("fay", "freeorg", ["teacher", "author"]);
  const l = (await api.call("POST", "/v1/lessons", { token: tk, body: DEMO_LESSON })).json;
  const open = async () => api.call("POST", "/v1/sessions", { token: tk, body: { lesson_id: l.lesson_id, version: 1 } });
  const made = [];
  for (let i = 0; i < 3; i++) { const r = await open(); assert.equal(r.status, 201, r.text); made.push(r.json); }
  const refused = await open();
  assert.equal(refused.status, 402);
  assert.equal(refused.json.error.code, "plan_limit_reached");
  assert.match(refused.json.error.message, /live_sessions/);
  // Ending one frees a slot once the end reaches D1.
  const t = await openSocket(`${w.base.replace("http", "ws")}/v1/sessions/${made[0].session_id}/ws?token=${tk}`);
  await t.next((m) => m.type === "snapshot");
  t.send({ type: "end" });
  await t.next((m) => m.type === "event" && m.event.type === "session.ended");
  await t.close();
  await eventually(async () => assert.equal((await open()).status, 201));
});

test("observers past the plan's cap are turned away with room_full", async () => {
  const tk = await api.token("tia", "tinyorg", ["teacher", "author"]);
  const l = (await api.call("POST", "/v1/lessons", { token: tk, body: DEMO_LESSON })).json;
  const s = (await api.call("POST", "/v1/sessions", { token: tk, body: { lesson_id: l.lesson_id, version: 1 } })).json;
  const url = (token) => `${w.base.replace("http", "ws")}/v1/sessions/${s.session_id}/ws?token=${token}`;
  const o1 = await openSocket(url(await api.token("o1", "tinyorg", ["learner"])));
  const o2 = await openSocket(url(await api.token("o2", "tinyorg", ["learner"])));
  await o1.next((m) => m.type === "snapshot");
  await o2.next((m) => m.type === "snapshot");
  const o3 = await openSocket(url(await api.token("o3", "tinyorg", ["learner"])));
  assert.equal((await o3.next((m) => m.type === "error")).code, "room_full");
  await o3.closedWithin(5000);
  assert.equal(o3.closed?.code, 4429);
  assert.equal(o3.closed?.reason, "room_full");
  // The teacher is never counted against the observer cap.
  const t = await openSocket(url(tk));
  await t.next((m) => m.type === "snapshot");
  await Promise.all([o1.close(), o2.close(), t.close()]);
});

test("protocol abuse gets clear errors", async () => {
  const s = await newSession();
  const a = await openSocket(wsUrl(s.session_id, learner), { hello: false });
  a.send({ type: "ask", text: "before hello" });
  assert.equal((await a.next((m) => m.type === "error")).code, "hello_required");
  a.send({ type: "hello", version: 99 });
  assert.equal((await a.next((m) => m.type === "error")).code, "unsupported_version");
  const b = await openSocket(wsUrl(s.session_id, learner));
  await b.next((m) => m.type === "snapshot");
  b.ws.send("{ truncated");
  assert.equal((await b.next((m) => m.type === "error")).code, "malformed_message");
  b.send({ type: "teleport" });
  assert.equal((await b.next((m) => m.type === "error")).code, "unknown_message_type");
  b.send({ type: "ask", text: "x".repeat(20000) });
  assert.equal((await b.next((m) => m.type === "error")).code, "message_too_large");
  for (let i = 0; i < 60; i++) b.send({ type: "ping" });
  await b.next((m) => m.type === "error" && m.code === "rate_limited");
  await b.close();
  // Two sockets taking turns keep a bucket each: every message of one takes
  // the other's place in the object's memory, which writes the other's back.
  // Strict turns (each ping answered before the other socket sends), until
  // both were refused: a bucket lost at each turn would never run out.
  const c = await openSocket(wsUrl(s.session_id, learner));
  const d = await openSocket(wsUrl(s.session_id, learner2));
  await Promise.all([c.next((m) => m.type === "snapshot"), d.next((m) => m.type === "snapshot")]);
  const limited = new Set();
  for (let i = 0; i < 400 && limited.size < 2; i++) {
    for (const sock of [c, d]) {
      sock.send({ type: "ping" });
      const reply = await sock.next((m) => m.type === "pong" || m.type === "error");
      if (reply.type === "error") { assert.equal(reply.code, "rate_limited"); limited.add(sock); }
    }
  }
  assert.equal(limited.size, 2, "both sockets taking turns were rate limited");
  await Promise.all([c.close(), d.close()]);
  const status = await new Promise((resolve, reject) => {
    const req = http.get(`${w.base}/v1/sessions/${s.session_id}/ws?token=garbage`, {
      headers: { connection: "Upgrade", upgrade: "websocket", "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" },
    }, (res) => { res.resume(); resolve(res.statusCode); });
    req.on("upgrade", () => reject(new Error("upgraded with a bad token")));
    req.on("error", reject);
  });
  assert.equal(status, 401);
  const noUpgrade = await api.call("GET", `/v1/sessions/${s.session_id}/ws`, { token: learner });
  assert.equal(noUpgrade.status, 426);
  assert.equal((await api.call("GET", "/v1/sessions/nope/ws", { token: learner })).status, 404);
  // Another teacher of the org is an observer here, not the driver.
  const other = await openSocket(wsUrl(s.session_id, teacher2));
  await other.next((m) => m.type === "snapshot");
  other.send({ type: "cursor", step: 1 });
  assert.equal((await other.next((m) => m.type === "error")).code, "authority_violation");
  await other.close();
});
