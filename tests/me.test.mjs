// "My past sessions" (GET /v1/me/sessions) and the participant's right to
// replay: a learner who opened a session's door is recorded once as an
// attendee, lists the class, and reads its run; one who was not there does
// not; the teacher lists what they taught; a learner lists their attempts.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, client } from "./support/worker.mjs";
import { openSocket } from "./support/ws.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";

let w, api, tokens, lesson;
before(async () => {
  w = await startWorker();
  api = client(w.base);
  tokens = {
    ana: await api.token("ana", "acme", ["author"]),
    tom: await api.token("tom", "acme", ["teacher"]),
    lea: await api.token("lea", "acme", ["learner"]),
    leo: await api.token("leo", "acme", ["learner"]),
    oz: await api.token("lea", "globex", ["learner", "teacher"]),
  };
  const r = await api.call("POST", "/v1/lessons", { token: tokens.ana, body: DEMO_LESSON });
  assert.equal(r.status, 201, r.text);
  lesson = r.json;
});
after(async () => { await w?.stop(); });

const wsUrl = (sid, token) => `${w.base.replace("http", "ws")}/v1/sessions/${sid}/ws?token=${token}`;

test("no token is a 401 JSON error; a new person has empty lists", async () => {
  const r = await api.call("GET", "/v1/me/sessions");
  assert.equal(r.status, 401, r.text);
  assert.equal(typeof r.json.error.code, "string");
  const post = await api.call("POST", "/v1/me/sessions", { token: tokens.leo, body: {} });
  assert.equal(post.status, 405, post.text);
  const empty = await api.call("GET", "/v1/me/sessions", { token: tokens.leo });
  assert.equal(empty.status, 200, empty.text);
  assert.deepEqual(empty.json, { sessions: [], runs: [] });
});

test("an attendee lists the class and replays its run; the teacher lists it too; others cannot read it", { timeout: 60_000 }, async () => {
  const s = await api.call("POST", "/v1/sessions", { token: tokens.tom, body: { lesson_id: lesson.lesson_id, version: 1 } });
  assert.equal(s.status, 201, s.text);
  const { session_id, run_id, join_code } = s.json;
  const teacher = await openSocket(wsUrl(session_id, tokens.tom));
  await teacher.next((m) => m.type === "snapshot");
  teacher.send({ type: "cursor", step: 2 });
  await teacher.next((m) => m.type === "event" && m.event.type === "cursor.moved");

  // Before she joins, lea may not read the class's run.
  const before = await api.call("GET", `/v1/runs/${run_id}/events?after=0`, { token: tokens.lea });
  assert.equal(before.status, 403, before.text);

  // She opens the door twice (a reconnect): one attendance row, listed once.
  for (let k = 0; k < 2; k++) {
    const lea = await openSocket(wsUrl(session_id, tokens.lea));
    await lea.next((m) => m.type === "snapshot");
    lea.ws.close();
  }
  // The classroom records her at the door and its outbox carries the row to
  // D1 with its next batch (about 100 ms after a join).
  let mine;
  for (const deadline = Date.now() + 20_000; ; await new Promise((r) => setTimeout(r, 50))) {
    mine = await api.call("GET", "/v1/me/sessions", { token: tokens.lea });
    assert.equal(mine.status, 200, mine.text);
    if (mine.json.sessions.length > 0 || Date.now() > deadline) break;
  }
  assert.equal(mine.json.sessions.length, 1, mine.text);
  const row = mine.json.sessions[0];
  assert.deepEqual(
    { session_id: row.session_id, run_id: row.run_id, lesson_id: row.lesson_id, version: row.version, join_code: row.join_code, role: row.role, title: row.title },
    { session_id, run_id, lesson_id: lesson.lesson_id, version: 1, join_code, role: "attendee", title: DEMO_LESSON.title });
  assert.ok(!Number.isNaN(Date.parse(row.created_at)), row.created_at);

  // The attendee reads the run, its state and its verification.
  // (The classroom forwards its events to D1 on its own, within about 100 ms.)
  let events;
  for (const deadline = Date.now() + 20_000; ; await new Promise((r) => setTimeout(r, 100))) {
    events = await api.call("GET", `/v1/runs/${run_id}/events?after=0`, { token: tokens.lea });
    assert.equal(events.status, 200, events.text);
    if (events.json.events.some((e) => e.type === "cursor.moved" && e.payload.step === 2) || Date.now() > deadline) break;
  }
  assert.ok(events.json.events.some((e) => e.type === "cursor.moved" && e.payload.step === 2), events.text);
  assert.equal((await api.call("GET", `/v1/runs/${run_id}/state?at_seq=1`, { token: tokens.lea })).status, 200);
  assert.equal((await api.call("GET", `/v1/runs/${run_id}/verify`, { token: tokens.lea })).status, 200);
  // Reading is not writing: she still cannot append to the class's run.
  const write = await api.call("POST", `/v1/runs/${run_id}/events`, { token: tokens.lea, body: { events: [{ id: crypto.randomUUID(), type: "narration", payload: { text: "x" } }] } });
  assert.equal(write.status, 403, write.text);

  // Leo was not there; the same user id in another org is another person.
  const leo = await api.call("GET", `/v1/runs/${run_id}/events?after=0`, { token: tokens.leo });
  assert.equal(leo.status, 403, leo.text);
  assert.equal(leo.json.error.code, "forbidden");
  const foreign = await api.call("GET", `/v1/runs/${run_id}/events?after=0`, { token: tokens.oz });
  assert.equal(foreign.status, 404, foreign.text);
  assert.deepEqual((await api.call("GET", "/v1/me/sessions", { token: tokens.oz })).json.sessions, []);

  // The teacher lists the class as taught (and is not recorded as an attendee).
  const taught = await api.call("GET", "/v1/me/sessions", { token: tokens.tom });
  assert.equal(taught.status, 200, taught.text);
  assert.deepEqual(taught.json.sessions.map((x) => [x.session_id, x.role]), [[session_id, "teacher"]]);
  teacher.ws.close();
});

test("a learner's quiz attempts are listed as their runs, with the lesson", async () => {
  const a = await api.call("POST", "/v1/attempts", { token: tokens.leo, body: { lesson_id: lesson.lesson_id, version: 1 } });
  assert.equal(a.status, 201, a.text);
  const mine = await api.call("GET", "/v1/me/sessions", { token: tokens.leo });
  assert.equal(mine.status, 200, mine.text);
  const run = mine.json.runs.find((r) => r.run_id === a.json.run_id);
  assert.ok(run, mine.text);
  assert.deepEqual({ kind: run.kind, lesson_id: run.lesson_id, version: run.version, title: run.title },
    { kind: "attempt", lesson_id: lesson.lesson_id, version: 1, title: DEMO_LESSON.title });
  // Their own attempt run is theirs to replay.
  const events = await api.call("GET", `/v1/runs/${a.json.run_id}/events?after=0`, { token: tokens.leo });
  assert.equal(events.status, 200, events.text);
});
