// Hostile input: a table of named cases across every endpoint and the
// WebSocket protocol. Each must answer a 4xx JSON error {"error":{"code",
// "message"}} (a WebSocket message: an `error` server message) and leave every
// store unchanged — checked by reading the stores back after each case.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startWorker, client, ROOT } from "./support/worker.mjs";
import { openSocket } from "./support/ws.mjs";
import { rawSocket } from "./support/rawws.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";

let w, api, T = {}, fx = {};
let teacherWs, learnerWs;
const tally = { http: 0, ws: 0, checks: 0 };

const b64 = (o) => Buffer.from(typeof o === "string" ? o : JSON.stringify(o)).toString("base64url");
const secret = readFileSync(join(ROOT, ".dev.vars"), "utf8").match(/^AUTH_SECRET=(.*)$/m)[1];
const sign = (header, claims, key = secret) => {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${createHmac("sha256", key).update(input).digest("base64url")}`;
};
const now = () => Math.floor(Date.now() / 1000);
const claims = (extra = {}) => ({ sub: "ana", org: "acme", roles: ["author"], exp: now() + 3600, ...extra });
const ev = (type = "narration", payload = { text: "x" }, id = randomUUID()) => ({ id, type, payload });
const nest = (n, inner = "1") => "[".repeat(n) + inner + "]".repeat(n);
const SQLI = "x' OR '1'='1'; DROP TABLE events; --";

async function eventually(fn, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    try { return await fn(); } catch (e) { if (Date.now() > end) throw e; }
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  w = await startWorker();
  api = client(w.base);
  T.author = await api.token("ana", "acme", ["author"]);
  T.author2 = await api.token("abe", "acme", ["author"]);
  T.teacher = await api.token("tom", "acme", ["teacher"]);
  T.learner = await api.token("lea", "acme", ["learner"]);
  T.learner2 = await api.token("lou", "acme", ["learner"]);
  T.reviewer = await api.token("rex", "acme", ["reviewer"]);
  T.governor = await api.token("gil", "acme", ["governor"]);
  T.outsider = await api.token("oz", "globex", ["author", "teacher", "governor", "learner", "reviewer"]);
  // Fixture: a run with events, a lesson, a live session with a question and a
  // quiz response, a submitted listing, a passed attempt with its certificate.
  fx.run = (await api.call("POST", "/v1/runs", { token: T.author, body: { kind: "recording" } })).json.run_id;
  const app = await api.call("POST", `/v1/runs/${fx.run}/events`, { token: T.author, body: { events: [ev("element.added", { id: "a", kind: "box", x: 1, y: 2 }), ev("narration", { text: "hi" }), ev("chapter", { title: "c" })] } });
  assert.equal(app.status, 201, app.text);
  fx.lesson = (await api.call("POST", "/v1/lessons", { token: T.author, body: DEMO_LESSON })).json;
  const s = await api.call("POST", "/v1/sessions", { token: T.teacher, body: { lesson_id: fx.lesson.lesson_id, version: 1 } });
  assert.equal(s.status, 201, s.text);
  fx.session = s.json;
  teacherWs = await openSocket(wsUrl(T.teacher));
  await teacherWs.next((m) => m.type === "snapshot");
  teacherWs.send({ type: "cursor", step: 2 });
  await teacherWs.events(1);
  learnerWs = await openSocket(wsUrl(T.learner));
  await learnerWs.next((m) => m.type === "snapshot");
  learnerWs.send({ type: "respond", question_id: "q1", choice: 1 });
  await learnerWs.next((m) => m.type === "event" && m.event.type === "quiz.responded");
  const lst = await api.call("POST", "/v1/marketplace/listings", { token: T.author, body: { lesson_id: fx.lesson.lesson_id, version: 1, visibility: "public" } });
  assert.equal(lst.status, 201, lst.text);
  fx.listing = lst.json.listing_id;
  const at = await api.call("POST", "/v1/attempts", { token: T.learner, body: { lesson_id: fx.lesson.lesson_id, version: 1 } });
  fx.attempt = at.json.attempt_id;
  for (const [question_id, answer] of [["q1", 1], ["q2", 1]]) {
    await api.call("POST", `/v1/attempts/${fx.attempt}/answers`, { token: T.learner, body: { question_id, answer } });
  }
  const sub = await api.call("POST", `/v1/attempts/${fx.attempt}/submit`, { token: T.learner });
  assert.equal(sub.status, 200, sub.text);
  fx.cert = sub.json.certificate_id;
  assert.ok(fx.cert, sub.text);
  // Publish-time explanation jobs have finished (their lifecycle events count
  // in the org's usage): from here on, nothing changes unless a case changes it.
  await eventually(async () => {
    const r = await api.call("GET", `/v1/lessons/${fx.lesson.lesson_id}/versions/1/explanations`, { token: T.author });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.explanations.length && r.json.explanations.every((e) => ["succeeded", "failed"].includes(e.status)), r.text.slice(0, 300));
  }, 30000);
  // The session's outbox has drained: D1 holds every session event.
  await eventually(async () => {
    const st = (await api.call("GET", `/v1/sessions/${fx.session.session_id}`, { token: T.teacher })).json;
    const d1 = (await api.call("GET", `/v1/runs/${fx.session.run_id}/events?limit=1000`, { token: T.teacher })).json;
    assert.equal(d1.last_seq, st.seq);
  });
});
after(async () => {
  await Promise.all([teacherWs?.close(), learnerWs?.close()].filter(Boolean));
  await w?.stop();
  console.log(`hostile catalog: ${tally.http} HTTP cases + ${tally.ws} WebSocket cases = ${tally.http + tally.ws} cases, ${tally.checks} store read-backs`);
});

const wsUrl = (token, sid = fx.session.session_id) => `${w.base.replace("http", "ws")}/v1/sessions/${sid}/ws?token=${token}`;

/** Every store the cases could touch, read back. */
async function snapshot() {
  const get = async (path, token) => {
    const r = await api.call("GET", path, { token });
    assert.equal(r.status, 200, `${path}: ${r.text}`);
    return r.json;
  };
  const sess = await get(`/v1/sessions/${fx.session.session_id}`, T.teacher);
  const audit = await get("/v1/audit?org_id=acme", T.governor);
  const auditOut = await get("/v1/audit?org_id=globex", T.outsider);
  return {
    run: await get(`/v1/runs/${fx.run}/events?limit=1000`, T.author),
    runState: await get(`/v1/runs/${fx.run}/state`, T.author),
    lesson: await get(`/v1/lessons/${fx.lesson.lesson_id}`, T.author),
    artifact: await get(`/v1/lessons/${fx.lesson.lesson_id}/versions/1`, T.author),
    session: { status: sess.status, cursor: sess.cursor, seq: sess.seq },
    sessionLog: (await get(`/v1/runs/${fx.session.run_id}/events?limit=1000`, T.teacher)).events.map((e) => [e.seq, e.id, e.type]),
    listing: await get(`/v1/marketplace/listings/${fx.listing}`, T.author),
    certs: await get(`/v1/certificates?lesson_id=${fx.lesson.lesson_id}`, T.governor),
    cert: await get(`/v1/certificates/${fx.cert}`, T.learner),
    attempt: await get(`/v1/attempts/${fx.attempt}`, T.learner).catch(() => null),
    audit: audit.entries.length,
    auditActions: audit.entries.map((e) => e.action),
    auditOutsider: auditOut.entries.length,
    usage: await get("/v1/orgs/acme/usage", T.governor),
    usageOutsider: await get("/v1/orgs/globex/usage", T.outsider),
  };
}

function assertErrorShape(r, name) {
  assert.ok(r.status >= 400 && r.status < 500, `${name}: expected 4xx, got ${r.status} ${r.text.slice(0, 300)}`);
  assert.match(r.headers.get("content-type") ?? "", /application\/json/, `${name}: content-type`);
  assert.equal(typeof r.json?.error?.code, "string", `${name}: ${r.text.slice(0, 300)}`);
  assert.match(r.json.error.code, /^[a-z][a-z0-9_]*$/, name);
  assert.equal(typeof r.json.error.message, "string", name);
}

// ---------------------------------------------------------------- HTTP cases
// { name, method, path | () => path, token (key of T, a literal token, or null), body | raw, headers, status }
const tok = {
  none: sign({ alg: "none", typ: "JWT" }, claims()).replace(/\.[^.]*$/, "."),
  noneUpper: sign({ alg: "NONE" }, claims()).replace(/\.[^.]*$/, "."),
  forged: sign({ alg: "HS256", typ: "JWT" }, claims({ roles: ["author", "governor"] }), "not-the-secret-at-all"),
  expired: sign({ alg: "HS256", typ: "JWT" }, claims({ exp: now() - 10 })),
  sqliSub: sign({ alg: "HS256", typ: "JWT" }, claims({ sub: SQLI })),
  badRole: sign({ alg: "HS256", typ: "JWT" }, claims({ roles: ["root"] })),
  hugeExp: sign({ alg: "HS256", typ: "JWT" }, claims({ exp: 1e308 })),
  rs256: sign({ alg: "RS256", typ: "JWT" }, claims()),
  long: `${b64({ alg: "HS256" })}.${"A".repeat(6000)}.sig`,
  twoParts: `${b64({ alg: "HS256" })}.${b64(claims())}`,
};
const R = () => `/v1/runs/${fx.run}`;
const L = () => `/v1/lessons/${fx.lesson.lesson_id}`;
const S = () => `/v1/sessions/${fx.session.session_id}`;
const lessonBody = (over) => ({ ...DEMO_LESSON, ...over });

const HTTP_CASES = [
  // identity
  { name: "no token", method: "POST", path: () => R() + "/events", token: null, body: { events: [ev()] }, status: 401 },
  { name: "garbage bearer token", method: "POST", path: () => R() + "/events", token: "abc.def", body: { events: [ev()] }, status: 401 },
  { name: "alg none token", method: "POST", path: () => R() + "/events", token: tok.none, body: { events: [ev()] }, status: 401 },
  { name: "alg NONE (case) token", method: "GET", path: () => R() + "/events", token: tok.noneUpper, status: 401 },
  { name: "alg RS256 token", method: "GET", path: () => R() + "/events", token: tok.rs256, status: 401 },
  { name: "forged signature granting governor", method: "GET", path: "/v1/audit?org_id=acme", token: tok.forged, status: 401 },
  { name: "expired token", method: "POST", path: () => R() + "/events", token: tok.expired, body: { events: [ev()] }, status: 401 },
  { name: "signed token with SQL injection as sub", method: "POST", path: () => R() + "/events", token: tok.sqliSub, body: { events: [ev()] }, status: 401 },
  { name: "signed token with an unknown role", method: "POST", path: "/v1/runs", token: tok.badRole, body: {}, status: 401 },
  { name: "signed token with exp 1e308", method: "POST", path: () => R() + "/events", token: tok.hugeExp, body: { events: [ev()] }, status: 401 },
  { name: "6 KB token", method: "GET", path: () => R() + "/events", token: tok.long, status: 401 },
  { name: "two-part token", method: "GET", path: () => R() + "/events", token: tok.twoParts, status: 401 },
  { name: "alg none token in ?token=", method: "GET", path: () => `${R()}/events?token=${tok.none}`, token: null, status: 401 },
  // runs: append
  { name: "malformed JSON", method: "POST", path: () => R() + "/events", raw: '{"events": [', status: 400 },
  { name: "truncated JSON inside a string", method: "POST", path: () => R() + "/events", raw: '{"events":[{"id":"', status: 400 },
  { name: "body is an array", method: "POST", path: () => R() + "/events", raw: "[]", status: 400 },
  { name: "empty body", method: "POST", path: () => R() + "/events", raw: "", status: 400 },
  { name: "events is a string", method: "POST", path: () => R() + "/events", body: { events: "all of them" }, status: 400 },
  { name: "events is empty", method: "POST", path: () => R() + "/events", body: { events: [] }, status: 400 },
  { name: "event without type", method: "POST", path: () => R() + "/events", body: { events: [{ id: randomUUID(), payload: {} }] }, status: 400 },
  { name: "event with an extra field", method: "POST", path: () => R() + "/events", body: { events: [{ ...ev(), seq: 1 }] }, status: 400 },
  { name: "SQL injection as event id", method: "POST", path: () => R() + "/events", body: { events: [ev("narration", {}, SQLI)] }, status: 400 },
  { name: "event type is a number", method: "POST", path: () => R() + "/events", body: { events: [{ id: randomUUID(), type: 7, payload: {} }] }, status: 400 },
  { name: "event type with an RTL mark", method: "POST", path: () => R() + "/events", body: { events: [ev("narr\u200fation")] }, status: 400 },
  { name: "payload is an array", method: "POST", path: () => R() + "/events", body: { events: [{ id: randomUUID(), type: "narration", payload: [1] }] }, status: 400 },
  { name: "70 KB payload string", method: "POST", path: () => R() + "/events", body: { events: [ev("narration", { text: "x".repeat(70_000) })] }, status: 413 },
  { name: "101 events in a batch", method: "POST", path: () => R() + "/events", body: { events: Array.from({ length: 101 }, () => ev()) }, status: 413 },
  { name: "second event bad: batch is atomic", method: "POST", path: () => R() + "/events", body: { events: [ev(), ev("Bad Type")] }, status: 400 },
  { name: "duplicate id within a batch", method: "POST", path: () => R() + "/events", body: (() => { const e = ev(); return { events: [e, { ...e, payload: { text: "y" } }] }; })(), status: 400 },
  { name: "expected_seq -1", method: "POST", path: () => R() + "/events", body: { events: [ev()], expected_seq: -1 } },
  { name: "expected_seq 2^63", method: "POST", path: () => R() + "/events", raw: `{"events":[${JSON.stringify(ev())}],"expected_seq":9223372036854775808}` },
  { name: "expected_seq 2^64", method: "POST", path: () => R() + "/events", raw: `{"events":[${JSON.stringify(ev())}],"expected_seq":18446744073709551616}` },
  { name: "expected_seq 1e308", method: "POST", path: () => R() + "/events", raw: `{"events":[${JSON.stringify(ev())}],"expected_seq":1e308}` },
  { name: "expected_seq is a string", method: "POST", path: () => R() + "/events", body: { events: [ev()], expected_seq: "3" } },
  { name: "expected_seq is stale", method: "POST", path: () => R() + "/events", body: { events: [ev()], expected_seq: 1 }, status: 409 },
  { name: "10k-deep nested payload", method: "POST", path: () => R() + "/events", raw: `{"events":[{"id":"${randomUUID()}","type":"narration","payload":{"t":${nest(10_000)}}}]}`, status: 400 },
  { name: "invalid UTF-8 bytes in the body", method: "POST", path: () => R() + "/events", raw: Buffer.concat([Buffer.from(`{"events":[{"id":"${randomUUID()}","type":"narration","payload":{"text":"`), Buffer.from([0xff, 0xfe, 0xc3, 0x28]), Buffer.from('"}}]}')]), status: 400 },
  { name: "lone surrogate escaped in a payload", method: "POST", path: () => R() + "/events", raw: `{"events":[{"id":"${randomUUID()}","type":"narration","payload":{"text":"\\ud800"}}]}`, status: 400 },
  { name: "declared body over 1 MiB", method: "POST", path: () => R() + "/events", raw: "{" + " ".repeat(1_100_000) + "}", status: 413 },
  { name: "another org appends to the run", method: "POST", path: () => R() + "/events", token: "outsider", body: { events: [ev()] } },
  { name: "a learner appends to the run", method: "POST", path: () => R() + "/events", token: "learner", body: { events: [ev()] }, status: 403 },
  { name: "another author of the org appends", method: "POST", path: () => R() + "/events", token: "author2", body: { events: [ev()] }, status: 403 },
  { name: "PUT an event", method: "PUT", path: () => R() + "/events/1", body: { type: "narration", payload: {} }, status: 405 },
  { name: "DELETE the events", method: "DELETE", path: () => R() + "/events", status: 405 },
  { name: "PATCH an event", method: "PATCH", path: () => R() + "/events/1", body: {}, status: 405 },
  // runs: reads
  { name: "after=-1", method: "GET", path: () => R() + "/events?after=-1", status: 400 },
  { name: "limit=1e308", method: "GET", path: () => R() + "/events?limit=1e308", status: 400 },
  { name: "after=2^63", method: "GET", path: () => R() + "/events?after=9223372036854775808", status: 400 },
  { name: "limit with SQL injection", method: "GET", path: () => `${R()}/events?limit=${encodeURIComponent("1; DROP TABLE events")}`, status: 400 },
  { name: "at_seq=-1", method: "GET", path: () => R() + "/state?at_seq=-1", status: 400 },
  { name: "at is not a time", method: "GET", path: () => R() + "/state?at=yesterday", status: 400 },
  { name: "run id is a traversal", method: "GET", path: "/v1/runs/..%2F..%2Fetc%2Fpasswd/events", status: 404 },
  { name: "run id with an encoded slash", method: "GET", path: () => `/v1/runs/${fx.run}%2Fevents/events` },
  { name: "run id with SQL injection", method: "GET", path: () => `/v1/runs/${encodeURIComponent(SQLI)}/events`, status: 404 },
  { name: "run id with NUL and emoji", method: "GET", path: "/v1/runs/%00%F0%9F%A6%80/events", status: 404 },
  { name: "another org reads the run", method: "GET", path: () => R() + "/events", token: "outsider" },
  { name: "another org replays the run", method: "GET", path: () => R() + "/state", token: "outsider" },
  { name: "kind is an object", method: "POST", path: "/v1/runs", body: { kind: { $ne: 1 } }, status: 400 },
  { name: "kind is reserved", method: "POST", path: "/v1/runs", body: { kind: "session" } },
  // lessons
  { name: "lesson without title", method: "POST", path: "/v1/lessons", body: lessonBody({ title: undefined }) },
  { name: "lesson title is a number", method: "POST", path: "/v1/lessons", body: lessonBody({ title: 42 }) },
  { name: "lesson title 10k characters", method: "POST", path: "/v1/lessons", body: lessonBody({ title: "t".repeat(10_000) }) },
  { name: "lesson title a lone surrogate", method: "POST", path: "/v1/lessons", raw: JSON.stringify(lessonBody({ title: "TITLE" })).replace("TITLE", "\\udc00") },
  { name: "timeline of 10,001 items", method: "POST", path: "/v1/lessons", body: lessonBody({ timeline: Array.from({ length: 10_001 }, () => ({ type: "narration", payload: { text: "n" } })) }) },
  { name: "timeline item of unknown type", method: "POST", path: "/v1/lessons", body: lessonBody({ timeline: [{ type: "element.exploded", payload: {} }] }) },
  { name: "pass_threshold 1e308", method: "POST", path: "/v1/lessons", raw: JSON.stringify(lessonBody({ pass_threshold: 0.5 })).replace('"pass_threshold":0.5', '"pass_threshold":1e308') },
  { name: "quiz answer -1", method: "POST", path: "/v1/lessons", body: lessonBody({ quiz: [{ id: "q1", prompt: "p", choices: ["a", "b"], answer: -1 }] }) },
  { name: "tags is a huge array", method: "POST", path: "/v1/lessons", body: lessonBody({ tags: Array.from({ length: 5000 }, (_, i) => `t${i}`) }) },
  { name: "a learner creates a lesson", method: "POST", path: "/v1/lessons", token: "learner", body: DEMO_LESSON, status: 403 },
  { name: "another author versions the lesson", method: "POST", path: () => L() + "/versions", token: "author2", body: DEMO_LESSON, status: 403 },
  { name: "another org versions the lesson", method: "POST", path: () => L() + "/versions", token: "outsider", body: DEMO_LESSON },
  { name: "new version with a bad body", method: "POST", path: () => L() + "/versions", body: { title: [] } },
  { name: "import with a tampered sha256", method: "POST", path: "/v1/lessons/import", body: { format: "dropple.lesson/1", ...DEMO_LESSON, sha256: "0".repeat(64) } },
  { name: "import of a 10k-deep document", method: "POST", path: "/v1/lessons/import", raw: `{"title":${nest(10_000, '"x"')}}` },
  { name: "version -1", method: "GET", path: () => L() + "/versions/-1" },
  { name: "version 2^64", method: "GET", path: () => L() + "/versions/18446744073709551616" },
  { name: "frame -1", method: "GET", path: () => L() + "/versions/1/frames/-1" },
  { name: "frame 1e308", method: "GET", path: () => L() + "/versions/1/frames/1e308" },
  { name: "frame past the end", method: "GET", path: () => L() + "/versions/1/frames/99999" },
  { name: "lesson id is a traversal", method: "GET", path: "/v1/lessons/..%2F..%2Fartifacts/versions/1" },
  { name: "another org reads the lesson", method: "GET", path: () => L() + "/versions/1", token: "outsider" },
  { name: "asset key traversal", method: "GET", path: "/v1/assets/..%2Fartifacts%2Flessons", token: null, status: 404 },
  { name: "asset key with dot segments", method: "GET", path: "/v1/assets/%2e%2e%2f%2e%2e%2fx", token: null, status: 404 },
  { name: "asset that does not exist", method: "GET", path: `/v1/assets/${"ab".repeat(32)}`, status: 404 },
  { name: "export by another org", method: "POST", path: () => R() + "/export", token: "outsider", body: { title: "t", summary: "s" } },
  { name: "export without a title", method: "POST", path: () => R() + "/export", body: { summary: "s" } },
  // sessions
  { name: "session for a SQL-injection lesson id", method: "POST", path: "/v1/sessions", token: "teacher", body: { lesson_id: SQLI, version: 1 } },
  { name: "session version -1", method: "POST", path: "/v1/sessions", token: "teacher", body: { lesson_id: "x", version: -1 } },
  { name: "session version 2^63", method: "POST", path: "/v1/sessions", token: "teacher", raw: '{"lesson_id":"x","version":9223372036854775808}' },
  { name: "session version is a string", method: "POST", path: "/v1/sessions", token: "teacher", body: { lesson_id: "x", version: "1" } },
  { name: "a learner opens a session", method: "POST", path: "/v1/sessions", token: "learner", body: { lesson_id: "x", version: 1 }, status: 403 },
  { name: "another org opens a session on the lesson", method: "POST", path: "/v1/sessions", token: "outsider", body: () => ({ lesson_id: fx.lesson.lesson_id, version: 1 }) },
  { name: "another org reads the session", method: "GET", path: () => S(), token: "outsider", status: 404 },
  { name: "another org joins by code", method: "GET", path: () => `/v1/join/${fx.session.join_code}`, token: "outsider", status: 404 },
  { name: "another org listens to the session", method: "GET", path: () => S() + "/sse", token: "outsider", status: 404 },
  { name: "join code with SQL injection", method: "GET", path: () => `/v1/join/${encodeURIComponent(SQLI)}`, token: "learner" },
  { name: "SSE after=-1", method: "GET", path: () => S() + "/sse?after=-1", token: "learner", status: 400 },
  { name: "session id traversal", method: "GET", path: "/v1/sessions/..%2F..%2Fx", token: "learner", status: 404 },
  // attempts and certificates
  { name: "attempt version is a string", method: "POST", path: "/v1/attempts", token: "learner", body: () => ({ lesson_id: fx.lesson.lesson_id, version: "1" }) },
  { name: "answer on a submitted attempt", method: "POST", path: () => `/v1/attempts/${fx.attempt}/answers`, token: "learner", body: { question_id: "q1", answer: 0 }, status: 409 },
  { name: "answer 1e308", method: "POST", path: () => `/v1/attempts/${fx.attempt}/answers`, token: "learner", raw: '{"question_id":"q1","answer":1e308}' },
  { name: "another learner resubmits the attempt", method: "POST", path: () => `/v1/attempts/${fx.attempt}/submit`, token: "learner2", status: 403 },
  { name: "verify a malformed credential", method: "POST", path: "/v1/certificates/verify", token: null, raw: '{"proof": ' },
  { name: "verify a 10k-deep credential", method: "POST", path: "/v1/certificates/verify", token: null, raw: `{"credentialSubject":${nest(10_000)}}` },
  { name: "a teacher revokes a certificate", method: "POST", path: () => `/v1/certificates/${fx.cert}/revoke`, token: "teacher", status: 403 },
  { name: "another org's governor revokes", method: "POST", path: () => `/v1/certificates/${fx.cert}/revoke`, token: "outsider" },
  { name: "certificates of another learner", method: "GET", path: () => `/v1/certificates?learner_id=${encodeURIComponent("lou' OR 1=1 --")}`, token: "learner" },
  { name: "status list id traversal", method: "GET", path: "/v1/status-lists/..%2F1", token: null, status: 404 },
  { name: "certificate id with SQL injection", method: "GET", path: () => `/v1/certificates/${encodeURIComponent(SQLI)}`, token: null },
  // marketplace
  { name: "listing price -1", method: "POST", path: "/v1/marketplace/listings", body: () => ({ lesson_id: fx.lesson.lesson_id, version: 1, visibility: "public", price_cents: -1 }) },
  { name: "listing price 1e308", method: "POST", path: "/v1/marketplace/listings", raw: () => `{"lesson_id":"${fx.lesson.lesson_id}","version":1,"visibility":"public","price_cents":1e308}` },
  { name: "listing visibility unknown", method: "POST", path: "/v1/marketplace/listings", body: () => ({ lesson_id: fx.lesson.lesson_id, version: 1, visibility: "everyone" }) },
  { name: "listing of another org's lesson", method: "POST", path: "/v1/marketplace/listings", token: "outsider", body: () => ({ lesson_id: fx.lesson.lesson_id, version: 1, visibility: "public" }) },
  { name: "decision 'delete'", method: "POST", path: () => `/v1/marketplace/listings/${fx.listing}/decisions`, token: "reviewer", body: { decision: "delete" } },
  { name: "a reviewer publishes", method: "POST", path: () => `/v1/marketplace/listings/${fx.listing}/decisions`, token: "reviewer", body: { decision: "publish" } },
  { name: "an author decides on their own listing", method: "POST", path: () => `/v1/marketplace/listings/${fx.listing}/decisions`, token: "author", body: { decision: "approve" }, status: 403 },
  { name: "review rating 6", method: "POST", path: () => `/v1/marketplace/listings/${fx.listing}/reviews`, token: "learner", body: { rating: 6, text: "great" } },
  { name: "review rating is a string", method: "POST", path: () => `/v1/marketplace/listings/${fx.listing}/reviews`, token: "learner", body: { rating: "5", text: "great" } },
  { name: "listings cursor garbage", method: "GET", path: "/v1/marketplace/listings?cursor=%27%20OR%201%3D1", token: null, status: 400 },
  { name: "listings sort unknown", method: "GET", path: "/v1/marketplace/listings?sort=DROP%20TABLE", token: null, status: 400 },
  { name: "listing id traversal", method: "GET", path: "/v1/marketplace/listings/..%2F..%2Fqueue", token: null, status: 404 },
  // orgs, audit, dev, AI
  { name: "usage of another org", method: "GET", path: "/v1/orgs/globex/usage", token: "governor" },
  { name: "audit of another org", method: "GET", path: "/v1/audit?org_id=globex", token: "governor" },
  { name: "audit org_id with SQL injection", method: "GET", path: () => `/v1/audit?org_id=${encodeURIComponent(SQLI)}`, token: "governor" },
  { name: "erase another org's user", method: "DELETE", path: "/v1/users/oz/personal-data", token: "governor" },
  { name: "erase with a traversal user id", method: "DELETE", path: "/v1/users/..%2Foz/personal-data", token: "governor", status: 404 },
  { name: "fault switch with an unknown value", method: "PUT", path: "/v1/dev/faults", token: null, body: { d1_writes: "explode" }, status: 400 },
  { name: "dev token with an unknown role", method: "POST", path: "/v1/dev/tokens", token: null, body: { sub: "x", org: "acme", roles: ["root"] }, status: 400 },
  { name: "dev token with a traversal sub", method: "POST", path: "/v1/dev/tokens", token: null, body: { sub: "../../x", org: "acme", roles: [] }, status: 400 },
  { name: "AI job kind unknown", method: "POST", path: "/v1/ai/jobs", token: "learner", body: () => ({ kind: "rm -rf", lesson_id: fx.lesson.lesson_id, version: 1, input: {} }) },
  { name: "AI job on another org's lesson", method: "POST", path: "/v1/ai/jobs", token: "outsider", body: () => ({ kind: "answer", lesson_id: fx.lesson.lesson_id, version: 1, input: { question: "q?" } }) },
  { name: "AI job id traversal", method: "GET", path: "/v1/ai/jobs/..%2F..%2Fx", token: "learner" },
];

test(`HTTP hostile catalog (${HTTP_CASES.length} cases): 4xx JSON errors, every store unchanged`, async () => {
  let base = await snapshot();
  tally.checks++;
  const failures = [];
  for (const c of HTTP_CASES) {
    const path = typeof c.path === "function" ? c.path() : c.path;
    const token = c.token === null ? undefined : c.token === undefined ? T.author : (T[c.token] ?? c.token);
    const body = typeof c.body === "function" ? c.body() : c.body;
    const raw = typeof c.raw === "function" ? c.raw() : c.raw;
    const headers = raw !== undefined ? { "content-type": "application/json", ...c.headers } : c.headers;
    tally.http++;
    try {
      const r = await api.call(c.method, path, { token, body: raw === undefined ? body : undefined, raw, headers });
      assertErrorShape(r, c.name);
      if (c.status) assert.equal(r.status, c.status, `${c.name}: ${r.text.slice(0, 300)}`);
      const now = await snapshot();
      tally.checks++;
      assert.deepEqual(now, base, `${c.name}: a store changed`);
    } catch (e) {
      failures.push(`${c.name}: ${e.message.split("\n").slice(0, 6).join(" ")}`);
      base = await snapshot();
    }
  }
  assert.deepEqual(failures, [], `${failures.length} of ${HTTP_CASES.length} cases failed:\n${failures.join("\n")}`);
});

// ---------------------------------------------------------------- WebSocket cases
// send: a message object or raw text; from: "learner" | "teacher" | "fresh" (no hello);
// code: the expected error code (or a list of acceptable ones).
const WS_CASES = [
  { name: "truncated JSON", from: "learner", text: '{"type":"ask","text":"hi', code: "malformed_message" },
  { name: "10k-deep nesting", from: "learner", text: `{"type":"ask","text":${nest(10_000, '"x"')}}`, code: ["malformed_message", "message_too_large"] },
  { name: "5k-deep nesting under 16 KB", from: "learner", text: nest(5000), code: "malformed_message" },
  { name: "17 KB message", from: "learner", send: { type: "ask", text: "x".repeat(17_000) }, code: "message_too_large" },
  { name: "type is a number", from: "learner", send: { type: 5 }, code: "malformed_message" },
  { name: "no type", from: "learner", send: { text: "hi" }, code: "malformed_message" },
  { name: "a JSON string, not an object", from: "learner", text: '"hello"', code: "malformed_message" },
  { name: "unknown type", from: "learner", send: { type: "drop_table" }, code: "unknown_message_type" },
  { name: "type with SQL injection", from: "learner", send: { type: SQLI }, code: "unknown_message_type" },
  { name: "ask without text", from: "learner", send: { type: "ask" }, code: "invalid_message" },
  { name: "ask with blank text", from: "learner", send: { type: "ask", text: " \n\t " }, code: "invalid_message" },
  { name: "ask with a lone surrogate", from: "learner", text: '{"type":"ask","text":"\\ud800"}', code: ["malformed_message", "invalid_message"] },
  { name: "ask with text as an array", from: "learner", send: { type: "ask", text: ["a"] }, code: "invalid_message" },
  { name: "respond replayed (already responded)", from: "learner", send: { type: "respond", question_id: "q1", choice: 1 }, code: "already_responded" },
  { name: "respond out of order (unknown question)", from: "learner", send: { type: "respond", question_id: "q9", choice: 0 }, code: "unknown_question" },
  { name: "respond with SQL injection id", from: "learner", send: { type: "respond", question_id: "q1'--", choice: 0 }, code: ["unknown_question", "invalid_message"] },
  { name: "respond choice -1", from: "learner", send: { type: "respond", question_id: "q2", choice: -1 }, code: "invalid_message" },
  { name: "respond choice 2^32", from: "learner", send: { type: "respond", question_id: "q2", choice: 4294967296 }, code: "invalid_message" },
  { name: "hello last_seq -1", from: "fresh", send: { type: "hello", last_seq: -1 }, code: "invalid_message" },
  { name: "hello last_seq 1e308", from: "fresh", text: '{"type":"hello","last_seq":1e308}', code: "invalid_message" },
  { name: "hello last_seq 2^64", from: "fresh", text: '{"type":"hello","last_seq":18446744073709551616}', code: ["invalid_message", "malformed_message"] },
  { name: "hello version 2", from: "fresh", send: { type: "hello", version: 2 }, code: "unsupported_version" },
  { name: "ask before hello", from: "fresh", send: { type: "ask", text: "early" }, code: "hello_required" },
  { name: "cursor step is a string", from: "teacher", send: { type: "cursor", step: "two" }, code: "invalid_message" },
  { name: "cursor step -1", from: "teacher", send: { type: "cursor", step: -1 }, code: "invalid_cursor" },
  { name: "cursor step 2^63", from: "teacher", text: '{"type":"cursor","step":9223372036854775808}', code: "invalid_message" },
  { name: "cursor step 1e308", from: "teacher", text: '{"type":"cursor","step":1e308}', code: "invalid_message" },
  { name: "cursor x 1e309 (overflow)", from: "teacher", text: '{"type":"cursor","step":1,"x":1e309}', code: ["malformed_message", "invalid_message"] },
  { name: "cursor past the last step", from: "teacher", send: { type: "cursor", step: 99999 }, code: "invalid_cursor" },
  { name: "annotate with 1001 points", from: "teacher", send: { type: "annotate", kind: "ink", points: Array.from({ length: 1001 }, () => [1, 1]) }, code: "invalid_message" },
  { name: "annotate kind with a space and RTL mark", from: "teacher", send: { type: "annotate", kind: "in\u202ek x" }, code: "invalid_message" },
  { name: "annotate color with NUL", from: "teacher", send: { type: "annotate", kind: "ink", color: "red\u0000" }, code: "invalid_message" },
  { name: "answer an unknown question", from: "teacher", send: { type: "answer", question_id: "nope", text: "yes" }, code: "unknown_question" },
  { name: "explain step 2^32", from: "teacher", send: { type: "explain", step: 4294967296 }, code: "invalid_message" },
];

async function wsError(client, code, name) {
  const m = await client.next((x) => x.type === "error" || x.type === "event", 5000);
  assert.equal(m.type, "error", `${name}: expected an error, got ${JSON.stringify(m).slice(0, 300)}`);
  const ok = Array.isArray(code) ? code : [code];
  assert.ok(ok.includes(m.code), `${name}: got ${m.code} (${m.message})`);
  assert.equal(typeof m.message, "string");
}

test(`WebSocket hostile catalog (${WS_CASES.length + 4} cases): error messages, the session unchanged`, async () => {
  let base = await snapshot();
  tally.checks++;
  const failures = [];
  const sockets = { learner: learnerWs, teacher: teacherWs };
  for (const c of WS_CASES) {
    tally.ws++;
    let fresh;
    try {
      const sock = c.from === "fresh" ? (fresh = await openSocket(wsUrl(T.learner2), { hello: false })) : sockets[c.from];
      sock.inbox.length = 0;
      if (c.text !== undefined) sock.ws.send(c.text); else sock.send(c.send);
      await wsError(sock, c.code, c.name);
      // Ping round trip: the socket still works and nothing else was queued for it.
      if (!fresh) {
        sock.send({ type: "ping" });
        await sock.next((m) => m.type === "pong");
      }
      const now = await snapshot();
      tally.checks++;
      assert.deepEqual(now, base, `${c.name}: a store changed`);
    } catch (e) {
      failures.push(`${c.name}: ${e.message.split("\n").slice(0, 4).join(" ")}`);
      base = await snapshot();
    } finally {
      await fresh?.close();
    }
  }
  // A binary frame.
  tally.ws++;
  try {
    learnerWs.inbox.length = 0;
    learnerWs.ws.send(new Uint8Array([0xff, 0x00, 0x7b]));
    await wsError(learnerWs, "invalid_message", "binary frame");
    assert.deepEqual(await snapshot(), base, "binary frame: a store changed");
    tally.checks++;
  } catch (e) { failures.push(`binary frame: ${e.message}`); }
  // Text frames holding invalid UTF-8 (only a raw socket can send them).
  // Note: workerd decodes them lossily (U+FFFD) before the worker sees them,
  // so the bytes are put where the result is refused whatever they decode to.
  for (const [name, bytes, code] of [
    ["invalid UTF-8 in the type", Buffer.concat([Buffer.from('{"type":"as'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('k","text":"x"}')]), "unknown_message_type"],
    ["a frame of invalid UTF-8 only", Buffer.from([0xff, 0xfe, 0xfd, 0x80, 0xc0]), "malformed_message"],
  ]) {
    tally.ws++;
    try {
      const raw = await rawSocket(w.base, `/v1/sessions/${fx.session.session_id}/ws?token=${T.learner2}`);
      raw.text('{"type":"hello"}');
      assert.ok(await raw.until((m) => m.type === "snapshot"), "raw socket: no snapshot");
      raw.frame(1, bytes);
      const m = await raw.until((x) => x.type === "error" || x.type === "event");
      // An error message, or a protocol close (1007) by the runtime.
      assert.ok(m === null ? raw.closed : m.type === "error" && m.code === code, `${name}: ${JSON.stringify(m ?? raw.closed)}`);
      raw.destroy();
      await new Promise((r) => setTimeout(r, 300));
      const now = await snapshot();
      tally.checks++;
      assert.deepEqual(now, base, `${name}: a store changed`);
    } catch (e) { failures.push(`${name}: ${e.message.split("\n").slice(0, 4).join(" ")}`); base = await snapshot(); }
  }
  // An observer's teacher command: authority_violation, the cursor stays, and
  // the audit gains exactly one entry (the expected one).
  tally.ws++;
  try {
    learnerWs.inbox.length = 0;
    learnerWs.send({ type: "cursor", step: 4 });
    await wsError(learnerWs, "authority_violation", "observer cursor");
    const now = await eventually(async () => {
      const s = await snapshot();
      assert.equal(s.audit, base.audit + 1);
      return s;
    });
    tally.checks++;
    assert.equal(now.auditActions[0] === "classroom.authority_violation" || now.auditActions.at(-1) === "classroom.authority_violation", true);
    assert.deepEqual({ ...now, audit: base.audit, auditActions: base.auditActions }, base, "observer cursor: a store changed");
  } catch (e) { failures.push(`observer cursor: ${e.message}`); }
  assert.deepEqual(failures, [], `${failures.length} WebSocket cases failed:\n${failures.join("\n")}`);
});

test("a replayed hello on a synced socket repeats no event and changes nothing", async () => {
  const base = await snapshot();
  learnerWs.inbox.length = 0;
  learnerWs.send({ type: "hello", last_seq: 0 });
  learnerWs.send({ type: "hello" });
  learnerWs.send({ type: "ping" });
  await learnerWs.next((m) => m.type === "pong");
  const evs = learnerWs.inbox.filter((m) => m.type === "event");
  // Replays the log (seq 1..n, each once) but commits nothing new.
  assert.deepEqual(evs.map((m) => m.seq), [...new Set(evs.map((m) => m.seq))]);
  assert.deepEqual(await snapshot(), base);
  tally.checks++;
});
