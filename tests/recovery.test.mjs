// Disaster recovery, proven by destroying things: (a) a realistic day is
// recorded, archived to R2, the local D1 is deleted outright, an empty D1 is
// migrated and restored from R2 alone, and every answer is compared; (b) one
// event row is edited behind the product's back with `wrangler d1 execute`:
// verify names its seq, repair rewrites it (and nothing else); (c) the worker
// is killed in the middle of an archive pass: after a restart and another pass
// nothing is sealed twice and nothing is missing.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startWorker, client, migrate, ROOT } from "./support/worker.mjs";
import { openSocket } from "./support/ws.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";
import { restore } from "../scripts/restore.mjs";

const WRANGLER = join(ROOT, "node_modules", ".bin", "wrangler");
let w, api, dir;
const T = {};
const figures = {};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "dropple-recovery-"));
  migrate(dir);
  w = await startWorker({ persistDir: dir });
  api = client(w.base);
  for (const [name, roles] of [["ana", ["author"]], ["tom", ["teacher"]], ["lea", ["learner"]], ["rex", ["reviewer"]], ["gil", ["governor", "teacher"]]]) {
    T[name] = await api.token(name, "acme", roles);
  }
  for (let i = 0; i < 3; i++) T[`obs${i}`] = await api.token(`obs${i}`, "acme", ["learner"]);
});
after(async () => {
  await w?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  console.log(`recovery: ${JSON.stringify(figures)}`);
});

async function must(r, status, what) {
  assert.equal(r.status, status, `${what}: ${r.status} ${r.text}`);
  return r.json;
}
async function eventually(fn, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    try { return await fn(); } catch (e) { if (Date.now() > end) throw e; }
    await new Promise((r) => setTimeout(r, 100));
  }
}
async function allEvents(run, token = T.gil) {
  const out = [];
  let after = 0;
  for (;;) {
    const page = await must(await api.call("GET", `/v1/runs/${run}/events?after=${after}&limit=1000`, { token }), 200, "events");
    out.push(...page.events);
    if (page.next_after == null) return out;
    after = page.next_after;
  }
}
const verify = async (run) => must(await api.call("GET", `/v1/runs/${run}/verify`, { token: T.gil }), 200, "verify");
/** Start the worker again on the same state and port (credentials name the issuer by its URL). */
async function restart(vars = {}) {
  const port = w.port;
  await w.stop();
  w = await startWorker({ persistDir: dir, port, vars });
  api = client(w.base);
}
const archivePass = async () => must(await api.call("POST", "/v1/ops/archive", { body: {} }), 200, "archive pass");

/** A day of use through the public API; returns every id worth asking about again. */
async function recordDay() {
  const lesson = await must(await api.call("POST", "/v1/lessons", { token: T.ana, body: DEMO_LESSON }), 201, "lesson");
  await must(await api.call("POST", `/v1/lessons/${lesson.lesson_id}/versions`, { token: T.ana, body: { ...DEMO_LESSON, title: "Fractions, take two" } }), 201, "version 2");
  // A recording.
  const rec = (await must(await api.call("POST", "/v1/runs", { token: T.ana, body: { kind: "recording" } }), 201, "run")).run_id;
  for (let b = 0; b < 3; b++) {
    const events = Array.from({ length: 40 }, (_, i) => ({ id: randomUUID(), type: "element.moved", payload: { id: `e${i % 7}`, x: b * 40 + i + 0.25, y: i } }));
    events[0] = { id: randomUUID(), type: "element.added", payload: { id: `e${b}`, kind: "box", x: 1, y: 2, label: "ünïcödé ✓" } };
    await must(await api.call("POST", `/v1/runs/${rec}/events`, { token: T.ana, body: { events } }), 201, "append");
  }
  // A live class: the teacher drives, three observers follow over WebSocket, one asks.
  const session = await must(await api.call("POST", "/v1/sessions", { token: T.tom, body: { lesson_id: lesson.lesson_id, version: 1 } }), 201, "session");
  const url = (tok) => `${w.base.replace("http", "ws")}/v1/sessions/${session.session_id}/ws?token=${tok}`;
  const teacher = await openSocket(url(T.tom));
  await teacher.next((m) => m.type === "snapshot");
  const observers = [];
  for (let i = 0; i < 3; i++) {
    const o = await openSocket(url(T[`obs${i}`]));
    await o.next((m) => m.type === "snapshot");
    observers.push(o);
  }
  for (let step = 1; step <= DEMO_LESSON.timeline.length; step++) teacher.send({ type: "cursor", step });
  observers[0].send({ type: "ask", text: "Why is a quarter half of a half?" });
  const asked = await teacher.next((m) => m.type === "event" && m.event.type === "question.asked");
  teacher.send({ type: "answer", question_id: asked.event.payload.question_id, text: "Halve it twice." });
  teacher.send({ type: "end" });
  const ended = await observers[2].next((m) => m.type === "event" && m.event.type === "session.ended", 10000);
  assert.match(ended.event.hash, /^[0-9a-f]{64}$/, "live events carry their hash");
  for (const s of [teacher, ...observers]) await s.close();
  // The outbox has forwarded the whole session to D1, chained as the object sealed it.
  await eventually(async () => {
    const v = await verify(session.run_id);
    assert.equal(v.ok, true);
    assert.equal(v.last_seq, ended.seq);
    assert.equal(v.head_hash, ended.event.hash);
  });
  // An attempt that passes and earns a certificate, and one that is revoked.
  const attempt = await must(await api.call("POST", "/v1/attempts", { token: T.lea, body: { lesson_id: lesson.lesson_id, version: 1 } }), 201, "attempt");
  for (const [question_id, answer] of [["q1", 1], ["q2", 1]]) {
    await must(await api.call("POST", `/v1/attempts/${attempt.attempt_id}/answers`, { token: T.lea, body: { question_id, answer } }), 201, "answer");
  }
  const submitted = await must(await api.call("POST", `/v1/attempts/${attempt.attempt_id}/submit`, { token: T.lea }), 200, "submit");
  assert.ok(submitted.passed && submitted.certificate_id);
  const attempt2 = await must(await api.call("POST", "/v1/attempts", { token: T.obs1, body: { lesson_id: lesson.lesson_id, version: 1 } }), 201, "attempt 2");
  for (const [question_id, answer] of [["q1", 1], ["q2", 1]]) {
    await must(await api.call("POST", `/v1/attempts/${attempt2.attempt_id}/answers`, { token: T.obs1, body: { question_id, answer } }), 201, "answer");
  }
  const revoked = (await must(await api.call("POST", `/v1/attempts/${attempt2.attempt_id}/submit`, { token: T.obs1 }), 200, "submit 2")).certificate_id;
  await must(await api.call("POST", `/v1/certificates/${revoked}/revoke`, { token: T.gil, body: {} }), 200, "revoke");
  // The marketplace: submitted, approved, published, reviewed.
  const listing = (await must(await api.call("POST", "/v1/marketplace/listings", { token: T.ana, body: { lesson_id: lesson.lesson_id, version: 1, visibility: "public", price_cents: 900 } }), 201, "listing")).listing_id;
  await must(await api.call("POST", `/v1/marketplace/listings/${listing}/decisions`, { token: T.rex, body: { decision: "approve" } }), 200, "approve");
  await must(await api.call("POST", `/v1/marketplace/listings/${listing}/decisions`, { token: T.gil, body: { decision: "publish" } }), 200, "publish");
  await must(await api.call("POST", `/v1/marketplace/listings/${listing}/reviews`, { token: T.lea, body: { rating: 5, text: "Clear and short." } }), 201, "review");
  // Publishing queued an explanation job per step (their runs are part of the
  // day): the day ends when the queue has run them.
  await eventually(async () => {
    const ex = await must(await api.call("GET", `/v1/lessons/${lesson.lesson_id}/versions/1/explanations`, { token: T.ana }), 200, "explanations");
    assert.ok(ex.explanations.length > 0, JSON.stringify(ex));
    for (const e of ex.explanations) {
      // Settled, and its terminal event written to the job's run.
      assert.ok(e.status === "succeeded" || e.status === "failed", JSON.stringify(e));
      const events = (await must(await api.call("GET", `/v1/runs/${e.run_id}/events?limit=1000`, { token: T.ana }), 200, "job run")).events;
      assert.ok(["ai_job.succeeded", "ai_job.failed"].includes(events.at(-1)?.type), JSON.stringify(events.map((x) => x.type)));
    }
  }, 60_000);
  return { lesson: lesson.lesson_id, rec, session, attempt, certificates: [submitted.certificate_id, revoked], listing };
}

/** Every answer the day left behind, as the API gives it. */
async function answers(day) {
  const get = async (path, token = T.gil) => {
    const r = await api.call("GET", path, { token });
    return { status: r.status, json: r.json };
  };
  const out = {};
  for (const run of [day.rec, day.session.run_id, day.attempt.run_id]) {
    out[`verify ${run}`] = await verify(run);
    out[`events ${run}`] = (await allEvents(run)).map((e) => [e.seq, e.id, e.type, e.timestamp, e.author_id, e.hash]);
    out[`state ${run}`] = (await get(`/v1/runs/${run}/state`)).json?.hash;
  }
  out.lesson = await get(`/v1/lessons/${day.lesson}`, T.ana);
  for (const v of [1, 2]) {
    const r = await api.call("GET", `/v1/lessons/${day.lesson}/versions/${v}`, { token: T.ana });
    out[`version ${v}`] = { status: r.status, etag: r.headers.get("etag"), sha256: r.json?.sha256 };
    out[`frame ${v}`] = (await get(`/v1/lessons/${day.lesson}/versions/${v}/frames/5`, T.ana)).json;
  }
  out.session = (await get(`/v1/sessions/${day.session.session_id}`, T.tom)).json;
  out.listing = await get(`/v1/marketplace/listings/${day.listing}`, undefined);
  out.listings = (await get("/v1/marketplace/listings", undefined)).json?.listings?.map((l) => l.listing_id);
  out.reviews = (await get(`/v1/marketplace/listings/${day.listing}/reviews`, undefined)).json;
  for (const id of day.certificates) {
    const cred = (await get(`/v1/certificates/${id}`)).json;
    const checked = await api.call("POST", "/v1/certificates/verify", { body: cred });
    out[`certificate ${id}`] = { cred, valid: checked.json.valid, checks: checked.json.checks };
  }
  out.byLearner = (await get("/v1/certificates?learner_id=lea", T.lea)).json;
  const statusList = out[`certificate ${day.certificates[1]}`].cred.credentialStatus?.statusListCredential;
  // The list credential is signed when served (its proof and validFrom are fresh): its bits are the answer.
  if (statusList) out.statusList = (await get(new URL(statusList).pathname, undefined)).json?.credentialSubject;
  out.audit = (await get("/v1/audit?org_id=acme")).json;
  out.usage = (await get("/v1/orgs/acme/usage")).json;
  return out;
}

test("(a) a day is archived, the local D1 is deleted, an empty D1 is restored from R2 and answers exactly as before", { timeout: 300_000 }, async () => {
  const day = await recordDay();
  const before = await answers(day);
  assert.equal(before[`certificate ${day.certificates[0]}`].valid, true);
  assert.equal(before[`certificate ${day.certificates[1]}`].valid, false, "the revoked one says so");
  assert.equal(before.listing.json.rating_count, 1);
  const t0 = Date.now();
  const pass = await archivePass();
  figures.archiveMs = Date.now() - t0;
  assert.deepEqual(pass.broken, []);
  assert.ok(pass.segments_sealed >= 3 && pass.tables.rows > 0, JSON.stringify(pass));
  // Writers in the background (the day's AI jobs, the classroom outbox) may
  // still add events after the first pass: passes catch up until one finds
  // nothing new; after that, a pass over an unchanged D1 seals nothing.
  await eventually(async () => {
    const p = await archivePass();
    assert.deepEqual(p.broken, []);
    assert.equal(p.runs, 0, JSON.stringify(p));
  }, 30_000);
  const again = await archivePass();
  assert.equal(again.runs, 0);
  assert.equal(again.tables.segments_sealed, 0, "unchanged tables seal to the same addresses");
  // A class that goes on after the last pass: its events reach D1 but not the archive.
  const late = await must(await api.call("POST", "/v1/sessions", { token: T.tom, body: { lesson_id: day.lesson, version: 1 } }), 201, "late session");
  await archivePass(); // the session and its run are in the table snapshot, with no events yet
  const lateTeacher = await openSocket(`${w.base.replace("http", "ws")}/v1/sessions/${late.session_id}/ws?token=${T.tom}`);
  await lateTeacher.next((m) => m.type === "snapshot");
  for (let step = 1; step <= 4; step++) lateTeacher.send({ type: "cursor", step });
  const lateLast = await lateTeacher.next((m) => m.type === "event" && m.event.type === "cursor.moved" && m.event.payload.step === 4);
  await lateTeacher.close();
  // The teacher's departure pauses the class (one more event); then D1 holds the whole log.
  const lateBefore = await eventually(async () => {
    const st = await must(await api.call("GET", `/v1/sessions/${late.session_id}`, { token: T.tom }), 200, "late status");
    assert.equal(st.status, "paused");
    assert.ok(st.seq > lateLast.seq);
    const v = await verify(late.run_id);
    assert.equal(v.last_seq, st.seq);
    return v;
  });
  before.usage = (await api.call("GET", "/v1/orgs/acme/usage", { token: T.gil })).json; // now with the late class

  // Disaster: the worker stops and the D1 database files are deleted.
  await w.stop();
  const d1 = join(dir, "v3", "d1");
  const files = readdirSync(d1, { recursive: true }).filter((f) => /\.sqlite(-wal|-shm)?$/.test(f));
  assert.ok(files.length > 0, "the local D1 lives in sqlite files under v3/d1");
  rmSync(d1, { recursive: true, force: true });
  migrate(dir);
  w = await startWorker({ persistDir: dir, port: w.port });
  api = client(w.base);
  assert.equal((await api.call("GET", `/v1/lessons/${day.lesson}`, { token: T.ana })).status, 404, "D1 is empty");
  assert.equal((await api.call("GET", `/v1/runs/${day.rec}/verify`, { token: T.gil })).status, 404);

  const restored = await restore({ base: w.base, log: () => {} });
  figures.restore = restored;
  assert.ok(restored.events > 0, JSON.stringify(restored));
  assert.equal(restored.missing, 1, "only the late session's run had nothing archived");
  assert.equal(restored.sessionsResynced, 2, "both sessions' objects forward their logs again");
  // The late class's events were never archived: its object forwards them again.
  await eventually(async () => assert.deepEqual(await verify(late.run_id), lateBefore));
  const afterRestore = await answers(day);
  figures.answersCompared = Object.keys(before).length;
  assert.deepEqual(afterRestore, before);
  // Life goes on on the restored database: the chain continues from the archived head.
  await must(await api.call("POST", `/v1/runs/${day.rec}/events`, { token: T.ana, body: { events: [{ id: randomUUID(), type: "narration", payload: { text: "after the restore" } }], expected_seq: 120 } }), 201, "append after restore");
  assert.equal((await verify(day.rec)).ok, true);
});

function d1Execute(sql) {
  const r = spawnSync(WRANGLER, ["d1", "execute", "DB", "--local", "--persist-to", dir, "--command", sql], {
    cwd: ROOT, env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true", NO_COLOR: "1" }, encoding: "utf8", timeout: 120_000,
  });
  assert.equal(r.status, 0, `wrangler d1 execute: ${r.stdout}\n${r.stderr}`);
}

test("(b) an event row edited behind the product's back: verify names its seq, repair rewrites it and nothing else", { timeout: 300_000 }, async () => {
  const run = (await must(await api.call("POST", "/v1/runs", { token: T.ana, body: {} }), 201, "run")).run_id;
  const events = Array.from({ length: 30 }, (_, i) => ({ id: randomUUID(), type: "narration", payload: { text: `line ${i + 1}` } }));
  await must(await api.call("POST", `/v1/runs/${run}/events`, { token: T.ana, body: { events } }), 201, "append");
  await archivePass();
  const original = await allEvents(run);
  const good = await verify(run);
  // And a run as migration 0008 finds it: rows without hashes (SQL cannot compute SHA-256).
  const legacy = (await must(await api.call("POST", "/v1/runs", { token: T.ana, body: {} }), 201, "legacy run")).run_id;
  await must(await api.call("POST", `/v1/runs/${legacy}/events`, { token: T.ana, body: { events: events.map((e) => ({ ...e, id: randomUUID() })) } }), 201, "append");
  const legacyHead = (await verify(legacy)).head_hash;
  // The trigger keeps events append-only, so whoever tampers drops it first
  // (and puts it back, as the migration defines it).
  const migration = readFileSync(join(ROOT, "schema", "migrations", "0008_event_chain.sql"), "utf8");
  const trigger = migration.slice(migration.indexOf("CREATE TRIGGER events_no_update"), migration.indexOf("END;", migration.indexOf("CREATE TRIGGER events_no_update")) + 4);
  await w.stop();
  d1Execute(`DROP TRIGGER events_no_update; UPDATE events SET payload = '{"text":"line 17, rewritten"}' WHERE run_id = '${run}' AND seq = 17; UPDATE events SET hash = NULL WHERE run_id = '${legacy}'; INSERT INTO chain_backfill (run_id) VALUES ('${legacy}'); ${trigger.replace(/\s+/g, " ")}`);
  w = await startWorker({ persistDir: dir, port: w.port });
  api = client(w.base);
  assert.equal((await allEvents(run))[16].payload.text, "line 17, rewritten", "the edit is there");
  assert.deepEqual(await verify(run), { ok: false, first_bad_seq: 17, reason: "hash_mismatch" });
  assert.equal((await allEvents(legacy))[0].hash, "", "legacy rows have no hash yet");
  assert.deepEqual(await verify(legacy), { ok: true, last_seq: 30, head_hash: legacyHead }, "the worker fills a legacy chain, identical");
  assert.equal((await allEvents(legacy))[29].hash, legacyHead);
  // The scheduled sweep finds it too: it never archives past a break, and audits it.
  await must(await api.call("POST", `/v1/runs/${run}/events`, { token: T.ana, body: { events: [{ id: randomUUID(), type: "narration", payload: { text: "line 31" } }] } }), 201, "append");
  const sweep = await archivePass();
  assert.deepEqual(sweep.broken, [{ run_id: run, first_bad_seq: 17, reason: "hash_mismatch" }]);
  const audit = (await must(await api.call("GET", "/v1/audit?org_id=acme", { token: T.gil }), 200, "audit")).entries;
  assert.ok(audit.some((e) => e.action === "chain.broken" && e.target === run), "the break is audited");

  const repaired = await must(await api.call("POST", "/v1/ops/repair", { body: { run_id: run } }), 200, "repair");
  assert.deepEqual(repaired.repaired, [17], "only the edited row is rewritten");
  assert.equal(repaired.verify.ok, true);
  assert.equal(repaired.verify.last_seq, 31);
  const now = await allEvents(run);
  assert.deepEqual(now.slice(0, 30), original, "every row is as it was sealed");
  assert.equal((await verify(run)).ok, true);
  assert.equal(now[29].hash, good.head_hash);
  // Repairing an intact run changes nothing; ops paths answer 400 to bad input.
  assert.deepEqual((await must(await api.call("POST", "/v1/ops/repair", { body: { run_id: run } }), 200, "repair again")).repaired, []);
  assert.equal((await api.call("POST", "/v1/ops/repair", { body: { run_id: "../x" } })).status, 400);
  assert.equal((await api.call("POST", "/v1/ops/restore", { body: { phase: "everything" } })).status, 400);
  figures.repair = { tamperedSeq: 17, rowsRewritten: repaired.repaired.length };
});

test("(c) the worker killed in the middle of an archive pass: after a restart nothing is sealed twice and nothing is missing", { timeout: 300_000 }, async () => {
  // A slow R2 (development knob: a pause after each sealed segment) makes the
  // pass long enough to be cut: 10 runs of 1,200 events, two segments each.
  await restart({ ARCHIVE_DEV_DELAY_MS: "250" });
  const runs = [];
  for (let r = 0; r < 10; r++) {
    const run = (await must(await api.call("POST", "/v1/runs", { token: T.ana, body: {} }), 201, "run")).run_id;
    runs.push(run);
    for (let b = 0; b < 12; b++) {
      const events = Array.from({ length: 100 }, (_, i) => ({ id: randomUUID(), type: "element.moved", payload: { id: "a", x: b * 100 + i, y: r } }));
      await must(await api.call("POST", `/v1/runs/${run}/events`, { token: T.ana, body: { events } }), 201, "append");
    }
  }
  const status = async (manifests = true) => must(await api.call("GET", `/v1/ops/archive${manifests ? "" : "?manifests=false"}`), 200, "archive status");
  const segmentsIn = (s) => s.objects.filter((o) => /^archive\/runs\/.+\/segments\//.test(o.key)).length;
  const before = segmentsIn(await status(false));
  // Start a pass and kill the worker as soon as it has sealed something.
  const pass = api.call("POST", "/v1/ops/archive", { body: {} }).then((r) => r.status, () => "killed");
  await eventually(async () => assert.ok(segmentsIn(await status(false)) >= before + 3), 60_000);
  await w.kill();
  assert.equal(await pass, "killed", "the pass was cut short");
  const cut = segmentsIn(await (async () => {
    w = await startWorker({ persistDir: dir, port: w.port });
    api = client(w.base);
    return status();
  })());
  figures.killedAfterSegments = cut - before;
  assert.ok(cut - before < runs.length * 2, `the kill came mid-pass (${cut - before} segments sealed)`);
  const resumed = await archivePass();
  figures.resumedPass = { sealed: resumed.segments_sealed, alreadySealed: resumed.segments_existing };
  const s = await status();
  // Every segment object is named by exactly one manifest entry, every
  // manifest is one contiguous chain ending at the run's verified head.
  const named = new Map();
  for (const [run, m] of Object.entries(s.runs)) {
    let next = 1;
    for (const seg of m.segments) {
      assert.equal(seg.first_seq, next, `run ${run}: segments contiguous`);
      next = seg.last_seq + 1;
      const key = `archive/runs/${run}/segments/${seg.address}.ndjson`;
      assert.ok(!named.has(key), `${key} named twice`);
      named.set(key, run);
    }
    assert.equal(m.last_seq, next - 1);
  }
  const objects = s.objects.filter((o) => /^archive\/runs\/.+\/segments\//.test(o.key)).map((o) => o.key);
  assert.deepEqual(objects.filter((k) => !named.has(k)), [], "no segment sealed outside a manifest (none twice)");
  assert.deepEqual([...named.keys()].filter((k) => !objects.includes(k)), [], "no manifest names a missing segment");
  for (const run of runs) {
    const v = await verify(run);
    assert.equal(s.runs[run]?.last_seq, 1200, `run ${run} fully archived`);
    assert.equal(s.runs[run].head_hash, v.head_hash);
  }
  figures.segmentsChecked = named.size;
});
