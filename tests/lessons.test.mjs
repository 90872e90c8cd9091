// Lessons: immutable, versioned, content-addressed artifacts in R2; frames,
// ETag/304, answer-key hiding, export, import, media assets with ranges.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID, createHash } from "node:crypto";
import { startWorker, client } from "./support/worker.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";

let w, api, author, author2, learner, reviewer, teacher, governor, outsider;
const MAX_ASSET_BYTES = 8192;
before(async () => {
  w = await startWorker({ vars: { MAX_ASSET_BYTES: String(MAX_ASSET_BYTES), AI_ON_PUBLISH: "off" } });
  api = client(w.base);
  author = await api.token("ana", "acme", ["author"]);
  author2 = await api.token("abe", "acme", ["author"]);
  learner = await api.token("lea", "acme", ["learner"]);
  reviewer = await api.token("rex", "acme", ["reviewer"]);
  teacher = await api.token("tom", "acme", ["teacher"]);
  governor = await api.token("gil", "acme", ["governor"]);
  outsider = await api.token("oz", "globex", ["author", "learner", "governor"]);
});
after(async () => { await w?.stop(); });

async function createLesson(body = DEMO_LESSON, token = author) {
  const r = await api.call("POST", "/v1/lessons", { token, body });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

test("create, then version: old versions never change", async () => {
  const v1 = await createLesson();
  assert.equal(v1.version, 1);
  assert.match(v1.sha256, /^[0-9a-f]{64}$/);
  const a1 = await api.call("GET", `/v1/lessons/${v1.lesson_id}/versions/1`, { token: author });
  const v2 = await api.call("POST", `/v1/lessons/${v1.lesson_id}/versions`, { token: author, body: { ...DEMO_LESSON, title: "Fractions, revised" } });
  assert.equal(v2.status, 201, v2.text);
  assert.equal(v2.json.version, 2);
  assert.notEqual(v2.json.sha256, v1.sha256);
  const again = await api.call("GET", `/v1/lessons/${v1.lesson_id}/versions/1`, { token: author });
  assert.equal(again.text, a1.text);
  assert.equal(again.json.title, DEMO_LESSON.title);
  const meta = await api.call("GET", `/v1/lessons/${v1.lesson_id}`, { token: learner });
  assert.equal(meta.status, 200);
  assert.deepEqual(meta.json.versions.map((v) => v.version), [1, 2]);
  assert.equal(meta.json.title, "Fractions, revised");
  // Only the lesson's author versions it.
  assert.equal((await api.call("POST", `/v1/lessons/${v1.lesson_id}/versions`, { token: author2, body: DEMO_LESSON })).status, 403);
  assert.equal((await api.call("POST", `/v1/lessons/${v1.lesson_id}/versions`, { token: outsider, body: DEMO_LESSON })).status, 404);
  assert.equal((await api.call("POST", "/v1/lessons", { token: learner, body: DEMO_LESSON })).status, 403);
});

test("ETag is the sha256, If-None-Match gives 304, caching is immutable", async () => {
  const { lesson_id, sha256 } = await createLesson();
  const r = await api.call("GET", `/v1/lessons/${lesson_id}/versions/1`, { token: learner });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("etag").replaceAll('"', ""), sha256);
  assert.match(r.headers.get("cache-control"), /max-age=31536000/);
  assert.match(r.headers.get("cache-control"), /immutable/);
  assert.equal(r.json.sha256, sha256);
  const again = await api.call("GET", `/v1/lessons/${lesson_id}/versions/1`, { token: learner, headers: { "if-none-match": `"${sha256}"` } });
  assert.equal(again.status, 304);
  assert.equal(again.text, "");
});

test("the answer key is hidden from learners and teachers, shown to its author and reviewers", async () => {
  const { lesson_id } = await createLesson();
  for (const [token, sees] of [[author, true], [reviewer, true], [learner, false], [teacher, false], [author2, false]]) {
    const r = await api.call("GET", `/v1/lessons/${lesson_id}/versions/1`, { token });
    assert.equal(r.status, 200);
    assert.equal(r.json.quiz.length, 2);
    assert.equal("answer" in r.json.quiz[0], sees, `${sees}`);
    assert.ok(r.json.quiz[0].prompt);
  }
  assert.equal((await api.call("GET", `/v1/lessons/${lesson_id}/versions/1`, { token: outsider })).status, 404);
  assert.equal((await api.call("GET", `/v1/lessons/${lesson_id}/versions/1`, {})).status, 401);
  assert.equal((await api.call("GET", `/v1/lessons/${lesson_id}/versions/9`, { token: author })).status, 404);
});

test("frames fold the timeline; past the end is a JSON 404", async () => {
  const { lesson_id, sha256 } = await createLesson();
  const f0 = await api.call("GET", `/v1/lessons/${lesson_id}/versions/1/frames/0`, { token: learner });
  assert.equal(f0.status, 200);
  assert.deepEqual(f0.json.state.elements, {});
  const f2 = await api.call("GET", `/v1/lessons/${lesson_id}/versions/1/frames/2`, { token: learner });
  assert.deepEqual(Object.keys(f2.json.state.elements), ["line"]);
  const n = DEMO_LESSON.timeline.length;
  const last = await api.call("GET", `/v1/lessons/${lesson_id}/versions/1/frames/${n}`, { token: learner });
  assert.equal(last.json.state.elements.quarter.y, 190);
  assert.match(last.headers.get("cache-control"), /immutable/);
  assert.ok(last.headers.get("etag").includes(sha256));
  for (const k of [n + 1, 99999, -1, "x"]) {
    const r = await api.call("GET", `/v1/lessons/${lesson_id}/versions/1/frames/${k}`, { token: learner });
    assert.equal(r.status, 404, String(k));
    assert.equal(r.json.error.code, "frame_out_of_range");
  }
});

test("export turns a recorded run into a lesson version", async () => {
  const run = (await api.call("POST", "/v1/runs", { token: author, body: {} })).json.run_id;
  const events = [
    { id: randomUUID(), type: "element.added", payload: { id: "a", kind: "box", x: 1, y: 1 } },
    { id: randomUUID(), type: "narration", payload: { text: "recorded" } },
    { id: randomUUID(), type: "cursor.moved", payload: { step: 1 } },
  ];
  await api.call("POST", `/v1/runs/${run}/events`, { token: author, body: { events } });
  const r = await api.call("POST", `/v1/runs/${run}/export`, { token: author, body: { title: "Recorded", summary: "From a run" } });
  assert.equal(r.status, 201, r.text);
  const art = (await api.call("GET", `/v1/lessons/${r.json.lesson_id}/versions/1`, { token: author })).json;
  assert.deepEqual(art.timeline.map((i) => i.type), ["element.added", "narration"]);
  assert.deepEqual(art.source, { run_id: run, from_seq: 1, to_seq: 3 });
  assert.equal((await api.call("POST", `/v1/runs/${run}/export`, { token: teacher, body: { title: "x" } })).status, 403);
});

test("import round trip, and validation errors name the field path", async () => {
  const { lesson_id } = await createLesson();
  const exported = (await api.call("GET", `/v1/lessons/${lesson_id}/versions/1`, { token: author })).json;
  const imported = await api.call("POST", "/v1/lessons/import", { token: author2, body: exported });
  assert.equal(imported.status, 201, imported.text);
  const back = (await api.call("GET", `/v1/lessons/${imported.json.lesson_id}/versions/1`, { token: author2 })).json;
  assert.deepEqual(back.timeline, exported.timeline);
  assert.deepEqual(back.quiz, exported.quiz);
  const tampered = await api.call("POST", "/v1/lessons/import", { token: author2, body: { ...exported, title: "changed" } });
  assert.equal(tampered.status, 422);
  const cases = [
    [{ ...DEMO_LESSON, title: "" }, "title"],
    [{ ...DEMO_LESSON, timeline: [{ type: "element.added", payload: { id: "a", kind: "box", x: "1", y: 1 } }] }, "timeline[0].payload.x"],
    [{ ...DEMO_LESSON, timeline: [{ type: "teleport", payload: {} }] }, "timeline[0].type"],
    [{ ...DEMO_LESSON, quiz: [{ id: "q", prompt: "p", choices: ["a", "b"], answer: 7 }] }, "quiz[0].answer"],
    [{ ...DEMO_LESSON, pass_threshold: 3 }, "pass_threshold"],
  ];
  for (const [body, field] of cases) {
    const r = await api.call("POST", "/v1/lessons/import", { token: author, body });
    assert.ok(r.status === 400 || r.status === 422, r.text);
    assert.ok(r.json.error.message.startsWith(field), `${r.json.error.message} should name ${field}`);
  }
});

test("media assets: content-addressed upload, ranged download, type checks", async () => {
  const pdf = Buffer.concat([Buffer.from("%PDF-1.4\n"), Buffer.alloc(5000, 7)]);
  const sha = createHash("sha256").update(pdf).digest("hex");
  const up = await api.call("POST", "/v1/assets", { token: author, raw: pdf, headers: { "content-type": "application/pdf" } });
  assert.equal(up.status, 201, up.text);
  assert.equal(up.json.sha256, sha);
  const auth = { authorization: `Bearer ${author}` };
  const full = await fetch(`${w.base}/v1/assets/${sha}`, { headers: auth });
  assert.equal(full.status, 200);
  assert.equal(Buffer.from(await full.arrayBuffer()).compare(pdf), 0);
  assert.match(full.headers.get("cache-control"), /immutable/);
  assert.equal(full.headers.get("accept-ranges"), "bytes");
  const part = await fetch(`${w.base}/v1/assets/${sha}`, { headers: { ...auth, range: "bytes=0-7" } });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get("content-range"), `bytes 0-7/${pdf.length}`);
  assert.equal(Buffer.from(await part.arrayBuffer()).toString(), "%PDF-1.4");
  const suffix = await fetch(`${w.base}/v1/assets/${sha}`, { headers: { ...auth, range: "bytes=-10" } });
  assert.equal((await suffix.arrayBuffer()).byteLength, 10);
  const bad = await fetch(`${w.base}/v1/assets/${sha}`, { headers: { ...auth, range: "bytes=99999-" } });
  assert.equal(bad.status, 416);
  await bad.text();
  const html = await api.call("POST", "/v1/assets", { token: author, raw: "<script>", headers: { "content-type": "text/html" } });
  assert.equal(html.status, 415);
  const liar = await api.call("POST", "/v1/assets", { token: author, raw: "not a png", headers: { "content-type": "image/png" } });
  assert.equal(liar.status, 422);
  assert.equal((await api.call("POST", "/v1/assets", { token: learner, raw: pdf, headers: { "content-type": "application/pdf" } })).status, 403);
  assert.equal((await api.call("GET", "/v1/assets/../../etc/passwd")).status, 404);
  assert.equal((await api.call("GET", `/v1/assets/${"0".repeat(64)}`)).status, 404);
});

const png = (n, fill = 1) => Buffer.concat([Buffer.from("\x89PNG\r\n\x1a\n", "latin1"), Buffer.alloc(n, fill)]);
const upload = (bytes, token = author, type = "image/png") =>
  api.call("POST", "/v1/assets", { token, raw: bytes, headers: { "content-type": type } });
const getAsset = (sha, token, headers = {}) =>
  api.call("GET", `/v1/assets/${sha}`, { token, headers });

test("assets: 413 past MAX_ASSET_BYTES, 304 on If-None-Match, re-upload keeps the same bytes", async () => {
  const big = await upload(png(MAX_ASSET_BYTES));
  assert.equal(big.status, 413, big.text);
  assert.equal(big.json.error.code, "payload_too_large");
  const bytes = png(3000, 2);
  const sha = createHash("sha256").update(bytes).digest("hex");
  const first = await upload(bytes);
  assert.equal(first.status, 201, first.text);
  const again = await upload(bytes);
  assert.equal(again.status, 200, again.text);
  assert.equal(again.json.sha256, sha);
  assert.equal(again.json.existing, true);
  const usage = (await api.call("GET", "/v1/orgs/acme/usage", { token: author })).json;
  const got = await fetch(`${w.base}/v1/assets/${sha}`, { headers: { authorization: `Bearer ${author}` } });
  assert.equal(Buffer.from(await got.arrayBuffer()).compare(bytes), 0);
  const etag = got.headers.get("etag");
  assert.equal(etag, `"${sha}"`);
  const cached = await getAsset(sha, author, { "if-none-match": etag });
  assert.equal(cached.status, 304);
  assert.equal(cached.text, "");
  assert.equal(cached.headers.get("etag"), etag);
  // Counted once: a third upload changes nothing.
  await upload(bytes);
  const after = (await api.call("GET", "/v1/orgs/acme/usage", { token: author })).json;
  assert.deepEqual(after.usage, usage.usage);
});

test("asset references: well-formed, uploaded in the lesson's org; private media need the org's token until published publicly", async () => {
  const bytes = png(2000, 3);
  const sha = createHash("sha256").update(bytes).digest("hex");
  assert.equal((await upload(bytes)).status, 201);
  const withAsset = (asset) => ({ ...DEMO_LESSON, timeline: [{ type: "element.added", payload: { id: "pic", kind: "image", x: 10, y: 10, asset } }, ...DEMO_LESSON.timeline] });
  // Malformed → 400; well-formed but not uploaded in this org → 422, both naming the field path.
  const malformed = await api.call("POST", "/v1/lessons", { token: author, body: withAsset("../etc/passwd") });
  assert.equal(malformed.status, 400, malformed.text);
  assert.match(malformed.json.error.message, /^timeline\[0\]\.payload\.asset/);
  const unknown = await api.call("POST", "/v1/lessons", { token: author, body: withAsset("ab".repeat(32)) });
  assert.equal(unknown.status, 422, unknown.text);
  assert.equal(unknown.json.error.code, "unknown_asset");
  assert.match(unknown.json.error.message, /^timeline\[0\]\.payload\.asset/);
  const before = (await api.call("GET", "/v1/lessons", { token: outsider })).json.lessons.length;
  const foreign = await api.call("POST", "/v1/lessons", { token: outsider, body: withAsset(sha) });
  assert.equal(foreign.status, 422, "another org cannot reference acme's media");
  const afterRefusal = (await api.call("GET", "/v1/lessons", { token: outsider })).json.lessons.length;
  assert.equal(afterRefusal, before, "a refused lesson leaves nothing behind");
  const lesson = await createLesson(withAsset(sha));

  // Org-private: the org's token only; private caching for versions, frames and media.
  assert.equal((await getAsset(sha)).status, 401);
  assert.equal((await getAsset(sha, outsider)).status, 404);
  const own = await getAsset(sha, learner);
  assert.equal(own.status, 200);
  assert.match(own.headers.get("cache-control"), /^private.*immutable/);
  const viaQuery = await fetch(`${w.base}/v1/assets/${sha}?token=${learner}`);
  assert.equal(viaQuery.status, 200);
  await viaQuery.arrayBuffer();
  const v = await api.call("GET", `/v1/lessons/${lesson.lesson_id}/versions/1`, { token: learner });
  assert.match(v.headers.get("cache-control"), /^private, max-age=31536000, immutable$/);
  assert.ok(v.headers.get("etag"));
  const f = await api.call("GET", `/v1/lessons/${lesson.lesson_id}/versions/1/frames/1`, { token: learner });
  assert.equal(f.json.state.elements.pic.asset, sha);
  assert.match(f.headers.get("cache-control"), /^private.*immutable$/);
  const f304 = await api.call("GET", `/v1/lessons/${lesson.lesson_id}/versions/1/frames/1`, { token: learner, headers: { "if-none-match": f.headers.get("etag") } });
  assert.equal(f304.status, 304);
  assert.match(f304.headers.get("cache-control"), /^private/);

  // Published publicly in the marketplace: anyone may read it, shared caches too.
  const listing = await api.call("POST", "/v1/marketplace/listings", { token: author, body: { lesson_id: lesson.lesson_id, version: 1, visibility: "public" } });
  assert.equal(listing.status, 201, listing.text);
  const id = listing.json.listing_id;
  assert.equal((await api.call("POST", `/v1/marketplace/listings/${id}/decisions`, { token: reviewer, body: { decision: "approve" } })).status, 200);
  const pub = await api.call("POST", `/v1/marketplace/listings/${id}/decisions`, { token: governor, body: { decision: "publish" } });
  assert.equal(pub.status, 200, pub.text);
  const anon = await fetch(`${w.base}/v1/assets/${sha}`);
  assert.equal(anon.status, 200);
  assert.equal(Buffer.from(await anon.arrayBuffer()).compare(bytes), 0);
  assert.match(anon.headers.get("cache-control"), /^public.*immutable/);
  assert.equal((await getAsset(sha, outsider)).status, 200);
  const pv = await api.call("GET", `/v1/lessons/${lesson.lesson_id}/versions/1`);
  assert.equal(pv.status, 200);
  assert.match(pv.headers.get("cache-control"), /^public, max-age=31536000, immutable$/);
  const pf = await api.call("GET", `/v1/lessons/${lesson.lesson_id}/versions/1/frames/2`);
  assert.match(pf.headers.get("cache-control"), /^public.*immutable$/);
  // Its author still sees the answer key: never in a shared cache.
  const keyed = await api.call("GET", `/v1/lessons/${lesson.lesson_id}/versions/1`, { token: author });
  assert.match(keyed.headers.get("cache-control"), /^private/);

  // The same bytes uploaded by another org become theirs too, without touching acme's.
  const other = png(2000, 9);
  const otherSha = createHash("sha256").update(other).digest("hex");
  assert.equal((await upload(other, outsider)).status, 201);
  assert.equal((await getAsset(otherSha, author)).status, 404);
  assert.equal((await getAsset(otherSha, outsider)).status, 200);
  assert.equal((await upload(bytes, outsider)).status, 201);
  assert.equal((await api.call("POST", "/v1/lessons", { token: outsider, body: withAsset(sha) })).status, 201);
});
