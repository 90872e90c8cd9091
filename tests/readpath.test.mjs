// The read side at the edge (issue 16): every response says what it cost in
// `Server-Timing`; warm public reads run no D1 statement; a writer reads its
// write at once (bookmark or not); bad bookmarks and hostile searches are
// answered without a 5xx; read requests write nothing to D1; the simulated
// far primary (`d1_delay_ms`) is added to every D1 call.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, client } from "./support/worker.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";

let w, api, author, reviewer, governor, learner;
let lesson, listing, assetSha, certificate;

/** `Server-Timing` as {d1, d1_rows, kv, r2, cache, total}. */
export function timing(headers) {
  const raw = headers.get("server-timing");
  assert.ok(raw, "Server-Timing present");
  const out = {};
  for (const part of raw.split(",")) {
    const [name, ...params] = part.trim().split(";");
    for (const p of params) {
      const [k, v] = p.split("=");
      if (k === "desc") out[name] = /^\d+$/.test(v.replace(/"/g, "")) ? Number(v.replace(/"/g, "")) : v.replace(/"/g, "");
      if (k === "dur") out[name] = Number(v);
    }
  }
  return out;
}

/** GET twice; the second (warm) answer must come from the edge with 0 D1 statements. */
async function warm(path, opts = {}) {
  const first = await api.call("GET", path, opts);
  assert.equal(first.status, 200, `${path}: ${first.text}`);
  const second = await api.call("GET", path, opts);
  assert.equal(second.status, 200, `${path}: ${second.text}`);
  const t = timing(second.headers);
  assert.equal(t.d1, 0, `${path}: warm read ran ${t.d1} D1 statements (${second.headers.get("server-timing")})`);
  assert.equal(t.cache, "hit", `${path}: cache ${t.cache}`);
  assert.equal(second.text, first.text, `${path}: the warm answer is the same answer`);
  return second;
}

before(async () => {
  w = await startWorker();
  api = client(w.base);
  author = await api.token("ana", "acme", ["author"]);
  reviewer = await api.token("rex", "acme", ["reviewer"]);
  governor = await api.token("gil", "acme", ["governor"]);
  learner = await api.token("lea", "acme", ["learner"]);
  const png = Buffer.from("89504e470d0a1a0a0000000d4948445200000001000000010806000000", "hex");
  const up = await api.call("POST", "/v1/assets", { token: author, raw: png, headers: { "content-type": "image/png" } });
  assert.equal(up.status, 201, up.text);
  assetSha = up.json.sha256;
  const timeline = [...DEMO_LESSON.timeline, { type: "element.added", payload: { id: "pic", kind: "image", x: 1, y: 1, asset: assetSha } }];
  const l = await api.call("POST", "/v1/lessons", { token: author, body: { ...DEMO_LESSON, title: "Edge lesson", timeline } });
  assert.equal(l.status, 201, l.text);
  lesson = l.json;
  listing = (await api.call("POST", "/v1/marketplace/listings", { token: author, body: { lesson_id: lesson.lesson_id, version: 1, visibility: "public" } })).json.listing_id;
  assert.equal((await api.call("POST", `/v1/marketplace/listings/${listing}/decisions`, { token: reviewer, body: { decision: "approve" } })).status, 200);
  assert.equal((await api.call("POST", `/v1/marketplace/listings/${listing}/decisions`, { token: governor, body: { decision: "publish" } })).status, 200);
  const a = (await api.call("POST", "/v1/attempts", { token: learner, body: { lesson_id: lesson.lesson_id, version: 1 } })).json;
  for (const q of DEMO_LESSON.quiz) await api.call("POST", `/v1/attempts/${a.attempt_id}/answers`, { token: learner, body: { question_id: q.id, answer: q.answer } });
  const s = await api.call("POST", `/v1/attempts/${a.attempt_id}/submit`, { token: learner });
  assert.equal(s.status, 200, s.text);
  assert.ok(s.json.certificate_id, "passed with a certificate");
  certificate = (await api.call("GET", `/v1/certificates/${s.json.certificate_id}`, { token: learner })).json;
});
after(async () => { await w?.stop(); });

test("every response carries Server-Timing: D1 statements, KV and R2 operations, cache, total; no personal data", async () => {
  for (const [method, path, opts] of [
    ["GET", "/v1/health"],
    ["GET", "/v1/nope"],
    ["GET", "/v1/metrics"],
    ["POST", "/v1/runs", { token: author, body: {} }],
    ["GET", `/v1/lessons/${lesson.lesson_id}`, { token: author }],
  ]) {
    const r = await api.call(method, path, opts);
    const raw = r.headers.get("server-timing");
    assert.match(raw, /^d1;desc="\d+", d1_rows;desc="\d+", kv;desc="\d+", r2;desc="\d+", cache;desc="(hit|miss|bypass)", total;dur=\d+$/, `${method} ${path}: ${raw}`);
    assert.ok(!raw.includes("ana") && !raw.includes("acme"), "counts only");
  }
  const health = timing((await api.call("GET", "/v1/health")).headers);
  assert.deepEqual([health.d1, health.kv, health.r2, health.cache], [0, 0, 0, "bypass"]);
  const created = await api.call("POST", "/v1/runs", { token: author, body: {} });
  assert.ok(timing(created.headers).d1 >= 1, "a write counts its statements");
});

test("warm public reads make zero D1 calls: marketplace list, search and detail; lesson metadata, version, frames; media; issuer; status list; verification", async () => {
  await warm("/v1/marketplace/listings");
  await warm("/v1/marketplace/listings?q=edge&sort=new&limit=5");
  await warm("/v1/marketplace/listings?tag=fractions");
  await warm(`/v1/marketplace/listings/${listing}`);
  await warm(`/v1/lessons/${lesson.lesson_id}`);
  const v = await warm(`/v1/lessons/${lesson.lesson_id}/versions/1`);
  assert.equal(v.headers.get("etag"), `"${lesson.sha256}"`);
  assert.ok(!("answer" in (v.json.quiz?.[0] ?? {})), "no answer key for the public");
  await warm(`/v1/lessons/${lesson.lesson_id}/versions/1/frames/0`);
  await warm(`/v1/lessons/${lesson.lesson_id}/versions/1/frames/2`);
  const media = await warm(`/v1/assets/${assetSha}`);
  assert.equal(media.headers.get("content-type"), "image/png");
  const issuer = await api.call("GET", "/v1/issuer");
  assert.equal(timing(issuer.headers).d1, 0, "the issuer profile never needs D1");
  await warm("/v1/status-lists/1");
  // Verification: the status list behind it is warm, so no D1 either.
  const first = await api.call("POST", "/v1/certificates/verify", { body: certificate });
  assert.equal(first.json.valid, true, first.text);
  const second = await api.call("POST", "/v1/certificates/verify", { body: certificate });
  assert.equal(second.json.valid, true);
  assert.equal(timing(second.headers).d1, 0, second.headers.get("server-timing"));
  // A conditional read of immutable content is a 304 from the edge.
  const nm = await api.call("GET", `/v1/lessons/${lesson.lesson_id}/versions/1`, { headers: { "if-none-match": `"${lesson.sha256}"` } });
  assert.equal(nm.status, 304);
  assert.equal(timing(nm.headers).d1, 0);
});

test("a read request writes nothing to D1 (no bookmark handed out), a write hands one out", async () => {
  for (const path of ["/v1/marketplace/listings", `/v1/marketplace/listings/${listing}`, `/v1/lessons/${lesson.lesson_id}/versions/1/frames/1`]) {
    const r = await api.call("GET", path);
    assert.equal(r.headers.get("x-d1-bookmark"), null, path);
  }
  const write = await api.call("POST", "/v1/runs", { token: author, body: {} });
  assert.equal(write.status, 201);
  assert.ok(write.headers.get("x-d1-bookmark"), "a write returns its bookmark");
});

test("read-your-writes: the writer's next read (with or without its bookmark) and every read here see a review and a revocation at once", async () => {
  const detail = (headers) => api.call("GET", `/v1/marketplace/listings/${listing}`, { headers });
  await warm(`/v1/marketplace/listings/${listing}`);
  const before = (await detail()).json.rating_count;
  const review = await api.call("POST", `/v1/marketplace/listings/${listing}/reviews`, { token: learner, body: { rating: 5, text: "Great" } });
  assert.equal(review.status, 201, review.text);
  const bookmark = review.headers.get("x-d1-bookmark");
  assert.ok(bookmark, "the write returned a bookmark");
  const mine = await detail({ "x-d1-bookmark": bookmark });
  assert.equal(mine.json.rating_count, before + 1, "the writer sees its review");
  assert.equal(timing(mine.headers).cache, "bypass", "a bookmarked read goes to D1");
  const anyone = await detail();
  assert.equal(anyone.json.rating_count, before + 1, "so does every read in this location");
  const list = (await api.call("GET", "/v1/marketplace/listings?q=edge")).json.listings.find((l) => l.listing_id === listing);
  assert.equal(list.rating_count, before + 1, "list pages too");
  // Revocation: verify and the status list say so on the next read.
  await warm("/v1/status-lists/1");
  const revoke = await api.call("POST", `/v1/certificates/${certificate.id.split(":").pop()}/revoke`, { token: governor, body: { reason: "test" } });
  assert.equal(revoke.status, 200, revoke.text);
  const v = await api.call("POST", "/v1/certificates/verify", { body: certificate });
  assert.equal(v.json.valid, false, "revoked at once");
  const again = await api.call("POST", "/v1/certificates/verify", { body: certificate });
  assert.equal(again.json.valid, false);
  assert.equal(timing(again.headers).d1, 0, "and warm again");
});

test("hostile: malformed bookmarks and search strings never cause a 5xx or change anything", async () => {
  const bad = ["", "x", "../../etc", "'; DROP TABLE listings; --", "0".repeat(5000), "zzzz-not-hex-zzzz", "00000000-00000000-00000000-" + "f".repeat(64), "\u00e9\u00e9\u00e9"];
  for (const b of bad) {
    let r;
    try {
      r = await api.call("GET", `/v1/marketplace/listings/${listing}`, { headers: { "x-d1-bookmark": b } });
    } catch {
      continue; // the HTTP client itself refused the header value
    }
    assert.ok(r.status === 200 || r.status === 400, `bookmark ${JSON.stringify(b).slice(0, 40)}: ${r.status} ${r.text}`);
    if (r.status === 400) assert.ok(r.json?.error?.code);
  }
  const write = await api.call("POST", "/v1/runs", { token: author, body: {}, headers: { "x-d1-bookmark": "not-a-bookmark" } });
  assert.equal(write.status, 201, "a bad bookmark on a write is ignored");
  const hostile = ['"', '""', '"*', "NEAR(a b)", "a OR b", "-a", "title:x", "*", "^", "a AND", "(((", "'", "%", "_", "\\", "\u0000", "x".repeat(200), "ab cd", "é", "🙂🙂🙂"];
  for (const q of hostile) {
    const r = await api.call("GET", `/v1/marketplace/listings?q=${encodeURIComponent(q)}`);
    assert.ok(r.status === 200 || r.status === 400, `q=${JSON.stringify(q)}: ${r.status} ${r.text}`);
    if (r.status === 200) assert.ok(Array.isArray(r.json.listings));
  }
  for (const tag of ['"', "%", "x".repeat(64), "a'b"]) {
    const r = await api.call("GET", `/v1/marketplace/listings?tag=${encodeURIComponent(tag)}`);
    assert.equal(r.status, 200, r.text);
  }
  const substring = (await api.call("GET", "/v1/marketplace/listings?q=dge%20less")).json.listings.map((l) => l.listing_id);
  assert.ok(substring.includes(listing), "terms match inside words, as before");
  assert.equal((await api.call("GET", `/v1/marketplace/listings/${listing}`)).status, 200, "nothing changed");
});

test("d1_delay_ms: a far primary is added to every D1 call, a warm read does not feel it", async () => {
  const bad = await api.call("PUT", "/v1/dev/faults", { body: { d1_delay_ms: 9999 } });
  assert.equal(bad.status, 400);
  await warm("/v1/marketplace/listings?sort=new");
  const set = await api.call("PUT", "/v1/dev/faults", { body: { d1_delay_ms: 150 } });
  assert.equal(set.status, 200, set.text);
  assert.equal(set.json.d1_delay_ms, 150);
  assert.equal(set.json.d1_writes, "ok", "a field left out keeps its value");
  try {
    const far = await api.call("GET", "/v1/lessons", { token: author });
    const t = timing(far.headers);
    assert.ok(t.d1 >= 1 && t.total >= 150 * t.d1, `each D1 call waited: ${far.headers.get("server-timing")}`);
    const near = await api.call("GET", "/v1/marketplace/listings?sort=new");
    assert.equal(timing(near.headers).d1, 0, "served at the edge");
  } finally {
    const reset = await api.call("PUT", "/v1/dev/faults", { body: { d1_delay_ms: 0 } });
    assert.equal(reset.json.d1_delay_ms, 0);
  }
});
