// Certification: graded attempts, Open Badges 3.0 credentials signed with
// Ed25519, verified by the server and independently offline, revocation.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes, createHash } from "node:crypto";
import { startWorker, client, migrate, freePort } from "./support/worker.mjs";
import { verifyOffline, statusBit, jcs } from "./support/jcs-verify.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";

let w, api, author, learner, learner2, teacher, governor, outsider, twin, lesson;
before(async () => {
  w = await startWorker();
  api = client(w.base);
  author = await api.token("ana", "acme", ["author"]);
  learner = await api.token("lea", "acme", ["learner"]);
  learner2 = await api.token("lou", "acme", ["learner"]);
  teacher = await api.token("tom", "acme", ["teacher"]);
  governor = await api.token("gil", "acme", ["governor"]);
  outsider = await api.token("oz", "globex", ["learner", "governor"]);
  // Same user id as `learner`, another org: never the same person.
  twin = await api.token("lea", "globex", ["learner", "teacher", "governor"]);
  lesson = (await api.call("POST", "/v1/lessons", { token: author, body: DEMO_LESSON })).json;
});
after(async () => { await w?.stop(); });

async function attempt(token, answers) {
  const a = await api.call("POST", "/v1/attempts", { token, body: { lesson_id: lesson.lesson_id, version: 1 } });
  assert.equal(a.status, 201, a.text);
  for (const [question_id, answer] of answers) {
    const r = await api.call("POST", `/v1/attempts/${a.json.attempt_id}/answers`, { token, body: { question_id, answer } });
    assert.equal(r.status, 201, r.text);
  }
  const s = await api.call("POST", `/v1/attempts/${a.json.attempt_id}/submit`, { token });
  assert.equal(s.status, 200, s.text);
  return { ...a.json, ...s.json };
}

test("a failing attempt earns nothing; answers are validated", async () => {
  const r = await attempt(learner, [["q1", 0], ["q2", 0]]);
  assert.equal(r.score, 0);
  assert.equal(r.passed, false);
  assert.equal(r.certificate_id ?? null, null);
  const a = (await api.call("POST", "/v1/attempts", { token: learner, body: { lesson_id: lesson.lesson_id, version: 1 } })).json;
  assert.equal((await api.call("POST", `/v1/attempts/${a.attempt_id}/answers`, { token: learner, body: { question_id: "zz", answer: 0 } })).status, 422);
  assert.equal((await api.call("POST", `/v1/attempts/${a.attempt_id}/answers`, { token: learner, body: { question_id: "q1", answer: 9 } })).status, 422);
  assert.equal((await api.call("POST", `/v1/attempts/${a.attempt_id}/answers`, { token: learner2, body: { question_id: "q1", answer: 1 } })).status, 403);
  assert.equal((await api.call("POST", `/v1/attempts/${a.attempt_id}/answers`, { token: outsider, body: { question_id: "q1", answer: 1 } })).status, 404);
  await api.call("POST", `/v1/attempts/${a.attempt_id}/submit`, { token: learner });
  const late = await api.call("POST", `/v1/attempts/${a.attempt_id}/answers`, { token: learner, body: { question_id: "q1", answer: 1 } });
  assert.equal(late.status, 409);
  assert.equal((await api.call("POST", "/v1/attempts", { token: teacher, body: { lesson_id: lesson.lesson_id, version: 1 } })).status, 403);
});

test("a pass issues exactly one certificate that verifies, online and offline", async () => {
  const r = await attempt(learner, [["q1", 1], ["q2", "1/4"]]);
  assert.equal(r.score, 1);
  assert.equal(r.passed, true);
  assert.ok(r.certificate_id);
  const again = await api.call("POST", `/v1/attempts/${r.attempt_id}/submit`, { token: learner });
  assert.equal(again.json.certificate_id, r.certificate_id, "a second submit never issues again");
  const cred = (await api.call("GET", `/v1/certificates/${r.certificate_id}`, { token: learner })).json;
  assert.deepEqual(cred.type, ["VerifiableCredential", "OpenBadgeCredential"]);
  assert.ok(cred["@context"].includes("https://www.w3.org/ns/credentials/v2"));
  assert.equal(cred.proof.cryptosuite, "eddsa-jcs-2022");
  assert.equal(cred.credentialStatus.type, "BitstringStatusListEntry");
  assert.equal(cred.evidence[0].runId, r.run_id);
  const v = await api.call("POST", "/v1/certificates/verify", { body: cred });
  assert.equal(v.status, 200);
  assert.equal(v.json.valid, true, JSON.stringify(v.json));
  assert.ok(v.json.checks.length >= 4);
  // Offline: only the credential and the published key, no server code.
  const issuer = (await api.call("GET", "/v1/issuer")).json;
  assert.ok(JSON.stringify(issuer).includes("z6Mk"));
  assert.equal(verifyOffline(cred, issuer), true);
  const tampered = structuredClone(cred);
  tampered.credentialSubject.achievement.name = "Quantum physics";
  assert.equal(verifyOffline(tampered, issuer), false);
  const tv = await api.call("POST", "/v1/certificates/verify", { body: tampered });
  assert.equal(tv.status, 200);
  assert.equal(tv.json.valid, false);
  assert.equal(tv.json.checks.find((c) => c.name === "proof").ok, false);
  const mine = await api.call("GET", "/v1/certificates?learner_id=lea", { token: learner });
  assert.deepEqual(mine.json.certificates.map((c) => c.certificate_id), [r.certificate_id]);
  const byLesson = await api.call("GET", `/v1/certificates?lesson_id=${lesson.lesson_id}`, { token: teacher });
  assert.ok(byLesson.json.certificates.some((c) => c.certificate_id === r.certificate_id));
  assert.equal((await api.call("GET", "/v1/certificates?learner_id=lea", { token: learner2 })).status, 403);
  assert.equal((await api.call("GET", `/v1/certificates/${r.certificate_id}`, { token: learner2 })).status, 403);
  assert.equal((await api.call("GET", `/v1/certificates/${r.certificate_id}`, { token: outsider })).status, 404);
  assert.equal((await api.call("POST", "/v1/certificates/verify", { raw: "{oops" })).status, 400);
});

test("revocation: governors only; the status list and verify say so", async () => {
  const r = await attempt(learner2, [["q1", 1], ["q2", 1]]);
  const cred = (await api.call("GET", `/v1/certificates/${r.certificate_id}`, { token: learner2 })).json;
  assert.equal((await api.call("POST", `/v1/certificates/${r.certificate_id}/revoke`, { token: teacher })).status, 403);
  assert.equal((await api.call("POST", `/v1/certificates/${r.certificate_id}/revoke`, { token: outsider })).status, 404);
  const rv = await api.call("POST", `/v1/certificates/${r.certificate_id}/revoke`, { token: governor, body: { reason: "test" } });
  assert.equal(rv.status, 200, rv.text);
  const v = await api.call("POST", "/v1/certificates/verify", { body: cred });
  assert.equal(v.json.valid, false);
  assert.equal(v.json.checks.find((c) => c.name === "status").ok, false);
  const listUrl = new URL(cred.credentialStatus.statusListCredential);
  const list = (await api.call("GET", listUrl.pathname)).json;
  assert.equal(list.type.includes("BitstringStatusListCredential"), true);
  const issuer = (await api.call("GET", "/v1/issuer")).json;
  assert.equal(verifyOffline(list, issuer), true, "the status list is itself signed");
  assert.equal(statusBit(list, Number(cred.credentialStatus.statusListIndex)), 1);
  // Later lists exist once the one before is full (the core's next_status_slot).
  const none = await api.call("GET", "/v1/status-lists/2");
  assert.equal(none.status, 404);
  assert.equal(none.json.error.code, "not_found");
  const audit = (await api.call("GET", "/v1/audit", { token: governor })).json.entries;
  assert.ok(audit.some((e) => e.action === "certificate.revoked" && e.target === r.certificate_id));
  assert.ok(audit.some((e) => e.action === "certificate.issued" && e.target === r.certificate_id));
});

test("a same-named user of another org never reaches an attempt or a certificate", async () => {
  const r = await attempt(learner, [["q1", 1], ["q2", 1]]);
  assert.ok(r.certificate_id);
  const a = (await api.call("POST", "/v1/attempts", { token: learner, body: { lesson_id: lesson.lesson_id, version: 1 } })).json;
  for (const [method, path, body] of [
    ["GET", `/v1/attempts/${a.attempt_id}`],
    ["POST", `/v1/attempts/${a.attempt_id}/answers`, { question_id: "q1", answer: 1 }],
    ["POST", `/v1/attempts/${a.attempt_id}/submit`],
    ["GET", `/v1/certificates/${r.certificate_id}`],
  ]) {
    const res = await api.call(method, path, { token: twin, body });
    assert.equal(res.status, 404, `${method} ${path}: ${res.text}`);
    assert.ok(res.json.error.code);
  }
  const theirs = await api.call("GET", "/v1/certificates?learner_id=lea", { token: twin });
  assert.equal(theirs.status, 200);
  assert.deepEqual(theirs.json.certificates, []);
  // Nothing changed: the attempt is still open for its learner.
  const mine = await api.call("GET", `/v1/attempts/${a.attempt_id}`, { token: learner });
  assert.equal(mine.json.submitted, false);
});

test("answers can be changed; the latest counts and the evidence covers every event", async () => {
  const a = (await api.call("POST", "/v1/attempts", { token: learner2, body: { lesson_id: lesson.lesson_id, version: 1 } })).json;
  for (const answer of [0, 0, 1]) {
    const res = await api.call("POST", `/v1/attempts/${a.attempt_id}/answers`, { token: learner2, body: { question_id: "q1", answer } });
    assert.equal(res.status, 201, res.text);
  }
  await api.call("POST", `/v1/attempts/${a.attempt_id}/answers`, { token: learner2, body: { question_id: "q2", answer: 1 } });
  const s = await api.call("POST", `/v1/attempts/${a.attempt_id}/submit`, { token: learner2 });
  assert.equal(s.json.score, 1, s.text);
  const cred = (await api.call("GET", `/v1/certificates/${s.json.certificate_id}`, { token: learner2 })).json;
  const ev = cred.evidence[0];
  // attempt.started, 4 answers, attempt.submitted, attempt.graded
  assert.deepEqual([ev.seqFrom, ev.seqTo], [1, 7]);
  // A bounded number of answers per attempt (20 per question): then a clear 422, nothing appended.
  const b = (await api.call("POST", "/v1/attempts", { token: learner2, body: { lesson_id: lesson.lesson_id, version: 1 } })).json;
  let last;
  for (let n = 0; n < 41; n++) {
    last = await api.call("POST", `/v1/attempts/${b.attempt_id}/answers`, { token: learner2, body: { question_id: "q1", answer: n % 2 } });
  }
  assert.equal(last.status, 422, last.text);
  assert.equal(last.json.error.code, "too_many_answers");
});

test("an answer after the submit is a 409 and writes nothing; the run ends with the graded event", async () => {
  const a = (await api.call("POST", "/v1/attempts", { token: learner2, body: { lesson_id: lesson.lesson_id, version: 1 } })).json;
  const first = await api.call("POST", `/v1/attempts/${a.attempt_id}/answers`, { token: learner2, body: { question_id: "q1", answer: 1 } });
  assert.equal(first.status, 201, first.text);
  assert.equal(first.json.seq, 2);
  const s = await api.call("POST", `/v1/attempts/${a.attempt_id}/submit`, { token: learner2 });
  assert.equal(s.status, 200, s.text);
  for (const answer of [0, 1]) {
    const late = await api.call("POST", `/v1/attempts/${a.attempt_id}/answers`, { token: learner2, body: { question_id: "q2", answer } });
    assert.equal(late.status, 409, late.text);
    assert.equal(late.json.error.code, "attempt_submitted");
  }
  const events = (await api.call("GET", `/v1/runs/${a.run_id}/events`, { token: teacher })).json.events;
  assert.deepEqual(events.map((e) => e.type), ["attempt.started", "attempt.answered", "attempt.submitted", "attempt.graded"]);
  assert.deepEqual(events.map((e) => e.seq), [1, 2, 3, 4]);
  const graded = events[3].payload;
  assert.equal(graded.score, s.json.score);
  assert.equal(graded.passed, s.json.passed);
});

test("the evidence hash is the SHA-256 of the run's events 1..seqTo in their canonical form", async () => {
  // Two attempts: one straight through, one whose answers changed (more events before the submit).
  for (const answers of [DEMO_LESSON.quiz.map((q) => [q.id, q.answer]), [...DEMO_LESSON.quiz.map((q) => [q.id, 0]), ...DEMO_LESSON.quiz.map((q) => [q.id, q.answer])]]) {
    const r = await attempt(learner2, answers);
    assert.ok(r.certificate_id, JSON.stringify(r));
    const cred = (await api.call("GET", `/v1/certificates/${r.certificate_id}`, { token: learner2 })).json;
    const ev = cred.evidence[0];
    const page = await api.call("GET", `/v1/runs/${ev.runId}/events?after=0&limit=1000`, { token: learner2 });
    assert.equal(page.status, 200, page.text);
    const covered = page.json.events.filter((e) => e.seq <= ev.seqTo);
    assert.equal(covered.length, ev.seqTo);
    assert.equal(createHash("sha256").update(jcs(covered)).digest("hex"), ev.eventsSha256);
  }
});

test("concurrent submits of one attempt: one grade, one certificate, the same id for all", async () => {
  const a = (await api.call("POST", "/v1/attempts", { token: learner2, body: { lesson_id: lesson.lesson_id, version: 1 } })).json;
  for (const [question_id, answer] of [["q1", 1], ["q2", 1]]) {
    await api.call("POST", `/v1/attempts/${a.attempt_id}/answers`, { token: learner2, body: { question_id, answer } });
  }
  const results = await Promise.all([1, 2, 3, 4].map(() => api.call("POST", `/v1/attempts/${a.attempt_id}/submit`, { token: learner2 })));
  for (const r of results) assert.equal(r.status, 200, r.text);
  const ids = new Set(results.map((r) => r.json.certificate_id));
  assert.equal(ids.size, 1);
  assert.ok([...ids][0]);
  const mine = (await api.call("GET", "/v1/certificates?learner_id=lou", { token: learner2 })).json.certificates;
  assert.equal(mine.filter((c) => c.certificate_id === [...ids][0]).length, 1);
  const run = (await api.call("GET", `/v1/attempts/${a.attempt_id}`, { token: learner2 })).json.run_id;
  const types = (await api.call("GET", `/v1/runs/${run}/events`, { token: teacher })).json.events.map((e) => e.type);
  assert.deepEqual(types, ["attempt.started", "attempt.answered", "attempt.answered", "attempt.submitted", "attempt.graded"]);
});

test("a class submitting at once: every pass gets its certificate and its own status slot", async () => {
  // 40 learners' passing attempts, submitted together (the class load of the
  // bench once saw half of 100 such submits refused as "busy").
  const learners = await Promise.all(Array.from({ length: 40 }, (_, i) => api.token(`class${i}`, "acme", ["learner"])));
  const attempts = await Promise.all(learners.map(async (token) => {
    const a = await api.call("POST", "/v1/attempts", { token, body: { lesson_id: lesson.lesson_id, version: 1 } });
    assert.equal(a.status, 201, a.text);
    for (const [question_id, answer] of [["q1", 1], ["q2", 1]]) {
      const r = await api.call("POST", `/v1/attempts/${a.json.attempt_id}/answers`, { token, body: { question_id, answer } });
      assert.equal(r.status, 201, r.text);
    }
    return { token, id: a.json.attempt_id };
  }));
  const submits = await Promise.all(attempts.map(({ token, id }) => api.call("POST", `/v1/attempts/${id}/submit`, { token })));
  for (const r of submits) assert.equal(r.status, 200, r.text);
  const slots = await Promise.all(submits.map(async (r, i) => {
    assert.ok(r.json.passed && r.json.certificate_id, r.text);
    const c = await api.call("GET", `/v1/certificates/${r.json.certificate_id}`, { token: attempts[i].token });
    assert.equal(c.status, 200, c.text);
    return `${c.json.credentialStatus.statusListCredential} ${c.json.credentialStatus.statusListIndex}`;
  }));
  assert.equal(new Set(slots).size, slots.length, "no two certificates share a status entry");
});

// Restarts on one persistence directory: an issue that failed half-way is
// completed by the next submit; key rotation keeps old certificates valid.
test("failed issue is completed by re-submit; rotated keys still verify old certificates", async () => {
  const dir = mkdtempSync(join(tmpdir(), "dropple-rotation-"));
  migrate(dir);
  const k1 = randomBytes(32).toString("hex");
  const k2 = randomBytes(32).toString("hex");
  // One origin throughout: the issuer id (and so every key id) is the origin's.
  const port = await freePort();
  const run = async (vars, body) => {
    const wk = await startWorker({ persistDir: dir, port, vars });
    try { return await body(client(wk.base)); } finally { await wk.stop(); }
  };
  try {
    const ids = {};
    // 1. The signing key is broken: grading happens, issuing fails (a real fault → 500).
    await run({ CERT_SIGNING_KEY: "not-a-key", CERT_KEY_ID: "k1" }, async (c) => {
      const au = await c.token("ana", "acme", ["author"]);
      const le = await c.token("lea", "acme", ["learner"]);
      ids.lesson = (await c.call("POST", "/v1/lessons", { token: au, body: DEMO_LESSON })).json.lesson_id;
      ids.attempt = (await c.call("POST", "/v1/attempts", { token: le, body: { lesson_id: ids.lesson, version: 1 } })).json.attempt_id;
      for (const [question_id, answer] of [["q1", 1], ["q2", 1]]) {
        await c.call("POST", `/v1/attempts/${ids.attempt}/answers`, { token: le, body: { question_id, answer } });
      }
      const s = await c.call("POST", `/v1/attempts/${ids.attempt}/submit`, { token: le });
      assert.equal(s.status, 500, s.text);
      const a = (await c.call("GET", `/v1/attempts/${ids.attempt}`, { token: le })).json;
      assert.equal(a.submitted, true);
      assert.equal(a.certificate_id, null, "never points at a certificate that does not exist");
    });
    // 2. Key k1 works: re-submitting finishes the issue, once, with a stable id.
    await run({ CERT_SIGNING_KEY: k1, CERT_KEY_ID: "k1" }, async (c) => {
      const le = await c.token("lea", "acme", ["learner"]);
      const s1 = await c.call("POST", `/v1/attempts/${ids.attempt}/submit`, { token: le });
      assert.equal(s1.status, 200, s1.text);
      assert.ok(s1.json.certificate_id);
      const s2 = await c.call("POST", `/v1/attempts/${ids.attempt}/submit`, { token: le });
      assert.equal(s2.json.certificate_id, s1.json.certificate_id);
      const list = (await c.call("GET", "/v1/certificates?learner_id=lea", { token: le })).json.certificates;
      assert.deepEqual(list.map((x) => x.certificate_id), [s1.json.certificate_id]);
      ids.cert = (await c.call("GET", `/v1/certificates/${s1.json.certificate_id}`, { token: le })).json;
      assert.match(ids.cert.proof.verificationMethod, /#k1$/);
      // The run holds one submitted and one graded event despite two submits.
      const evs = ids.cert.evidence[0];
      assert.deepEqual([evs.seqFrom, evs.seqTo], [1, 5]);
      const issuer = (await c.call("GET", "/v1/issuer")).json;
      ids.k1multikey = issuer.verificationMethod[0].publicKeyMultibase;
      assert.equal((await c.call("POST", "/v1/certificates/verify", { body: ids.cert })).json.valid, true);
    });
    // 3. Rotated to k2 with k1 retired: the old certificate verifies, new ones use k2.
    const previous = JSON.stringify({ k1: ids.k1multikey });
    await run({ CERT_SIGNING_KEY: k2, CERT_KEY_ID: "k2", CERT_PREVIOUS_KEYS: previous }, async (c) => {
      const issuer = (await c.call("GET", "/v1/issuer")).json;
      assert.deepEqual(issuer.verificationMethod.map((m) => m.id.split("#")[1]), ["k2", "k1"]);
      assert.ok(issuer.verificationMethod.every((m) => m.type === "Multikey" && m.publicKeyJwk.crv === "Ed25519"));
      const v = await c.call("POST", "/v1/certificates/verify", { body: ids.cert });
      assert.equal(v.json.valid, true, JSON.stringify(v.json));
      assert.equal(verifyOffline(ids.cert, issuer), true);
      const le = await c.token("lea", "acme", ["learner"]);
      const b = (await c.call("POST", "/v1/attempts", { token: le, body: { lesson_id: ids.lesson, version: 1 } })).json;
      for (const [question_id, answer] of [["q1", 1], ["q2", 1]]) {
        await c.call("POST", `/v1/attempts/${b.attempt_id}/answers`, { token: le, body: { question_id, answer } });
      }
      const s = await c.call("POST", `/v1/attempts/${b.attempt_id}/submit`, { token: le });
      const fresh = (await c.call("GET", `/v1/certificates/${s.json.certificate_id}`, { token: le })).json;
      assert.match(fresh.proof.verificationMethod, /#k2$/);
      assert.equal((await c.call("POST", "/v1/certificates/verify", { body: fresh })).json.valid, true);
      assert.equal(verifyOffline(fresh, issuer), true);
    });
    // 4. Without CERT_PREVIOUS_KEYS the old certificate no longer verifies, and the check names the key.
    await run({ CERT_SIGNING_KEY: k2, CERT_KEY_ID: "k2" }, async (c) => {
      const v = (await c.call("POST", "/v1/certificates/verify", { body: ids.cert })).json;
      assert.equal(v.valid, false);
      const check = v.checks.find((x) => x.name === "issuer_key");
      assert.equal(check.ok, false);
      assert.match(check.detail, /#k1/);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
