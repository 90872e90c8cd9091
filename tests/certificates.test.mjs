// Certification: graded attempts, Open Badges 3.0 credentials signed with
// Ed25519, verified by the server and independently offline, revocation.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, client } from "./support/worker.mjs";
import { verifyOffline, statusBit } from "./support/jcs-verify.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";

let w, api, author, learner, learner2, teacher, governor, outsider, lesson;
before(async () => {
  w = await startWorker();
  api = client(w.base);
  author = await api.token("ana", "acme", ["author"]);
  learner = await api.token("lea", "acme", ["learner"]);
  learner2 = await api.token("lou", "acme", ["learner"]);
  teacher = await api.token("tom", "acme", ["teacher"]);
  governor = await api.token("gil", "acme", ["governor"]);
  outsider = await api.token("oz", "globex", ["learner", "governor"]);
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
  const audit = (await api.call("GET", "/v1/audit", { token: governor })).json.entries;
  assert.ok(audit.some((e) => e.action === "certificate.revoked" && e.target === r.certificate_id));
  assert.ok(audit.some((e) => e.action === "certificate.issued" && e.target === r.certificate_id));
});
