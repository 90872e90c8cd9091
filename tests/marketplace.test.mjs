// Marketplace: governance path, visibility at once after every write (KV
// cache with generation stamps), reviews, trust signals, search and paging.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, client } from "./support/worker.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";

let w, api, author, author2, reviewer, governor, learner, learner2, outsider;
before(async () => {
  w = await startWorker();
  api = client(w.base);
  author = await api.token("ana", "acme", ["author"]);
  author2 = await api.token("abe", "acme", ["author", "reviewer"]);
  reviewer = await api.token("rex", "acme", ["reviewer"]);
  governor = await api.token("gil", "acme", ["governor"]);
  learner = await api.token("lea", "acme", ["learner"]);
  learner2 = await api.token("lou", "acme", ["learner"]);
  outsider = await api.token("oz", "globex", ["learner", "reviewer", "governor"]);
});
after(async () => { await w?.stop(); });

async function lessonAndListing(body = {}, token = author, visibility = "public") {
  const l = (await api.call("POST", "/v1/lessons", { token, body: { ...DEMO_LESSON, ...body } })).json;
  const r = await api.call("POST", "/v1/marketplace/listings", { token, body: { lesson_id: l.lesson_id, version: 1, visibility, price_cents: 500 } });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.status, "submitted");
  return { lesson: l, listing: r.json.listing_id };
}
const decide = (id, decision, token, reason) => api.call("POST", `/v1/marketplace/listings/${id}/decisions`, { token, body: { decision, reason } });
const listIds = async (q = "", token) => (await api.call("GET", `/v1/marketplace/listings${q}`, { token })).json.listings.map((l) => l.listing_id);

test("submit → approve → publish → visible at once → review → suspend → gone at once", async () => {
  const { listing } = await lessonAndListing({ title: "Governed lesson" });
  assert.ok(!(await listIds()).includes(listing));
  assert.equal((await decide(listing, "approve", reviewer)).json.status, "approved");
  await listIds(); // warm the cache before the write that must invalidate it
  const pub = await decide(listing, "publish", governor);
  assert.equal(pub.status, 200, pub.text);
  assert.equal(pub.json.status, "published");
  assert.ok((await listIds()).includes(listing), "visible on the very next read");
  const second = await api.call("GET", "/v1/marketplace/listings");
  assert.equal(second.headers.get("x-cache"), "hit");
  const rv = await api.call("POST", `/v1/marketplace/listings/${listing}/reviews`, { token: learner, body: { rating: 5, text: "Clear!" } });
  assert.equal(rv.status, 201, rv.text);
  assert.equal((await api.call("POST", `/v1/marketplace/listings/${listing}/reviews`, { token: learner, body: { rating: 1, text: "again" } })).status, 409);
  const d = (await api.call("GET", `/v1/marketplace/listings/${listing}`)).json;
  assert.equal(d.rating_count, 1, JSON.stringify(d));
  assert.equal(d.rating_avg, 5);
  for (const k of ["rating_avg", "rating_count", "completion_rate", "certificate_pass_rate", "author_verified"]) assert.ok(k in d, k);
  assert.equal(d.author_verified, true, "approved by an independent reviewer");
  assert.equal(d.completed_rating_count, 0, "the reviewer never took the lesson");
  assert.equal((await decide(listing, "suspend", governor)).status, 422, "suspending needs a reason");
  assert.equal((await decide(listing, "suspend", governor, "complaints")).json.status, "suspended");
  assert.ok(!(await listIds()).includes(listing), "gone on the very next read");
  assert.equal((await api.call("GET", `/v1/marketplace/listings/${listing}`)).status, 404);
  assert.equal((await decide(listing, "reinstate", governor)).json.status, "published");
  const audit = (await api.call("GET", "/v1/audit?limit=500", { token: governor })).json.entries;
  for (const a of ["listing.approve", "listing.publish", "listing.suspend", "listing.reinstate"]) {
    assert.ok(audit.some((e) => e.action === a && e.target === listing), a);
  }
});

test("roles and transitions: 403s and 409s", async () => {
  const { listing, lesson } = await lessonAndListing({ title: "Rules" }, author2);
  assert.equal((await decide(listing, "approve", author2)).status, 403, "never their own");
  assert.equal((await decide(listing, "approve", learner)).status, 403);
  assert.equal((await decide(listing, "publish", reviewer)).status, 403);
  assert.equal((await decide(listing, "approve", outsider)).status, 404);
  const illegal = await decide(listing, "publish", governor);
  assert.equal(illegal.status, 409);
  assert.equal(illegal.json.error.code, "illegal_transition");
  assert.match(illegal.json.error.message, /submitted/);
  assert.equal((await decide(listing, "fly", governor)).status, 400);
  assert.equal((await decide(listing, "reject", reviewer, "needs work")).json.status, "rejected");
  assert.equal((await decide(listing, "approve", reviewer)).status, 409);
  assert.equal((await decide(listing, "resubmit", author2)).json.status, "submitted");
  const again = await api.call("POST", "/v1/marketplace/listings", { token: author2, body: { lesson_id: lesson.lesson_id, version: 1, visibility: "public" } });
  assert.equal(again.status, 409);
  assert.equal((await api.call("POST", "/v1/marketplace/listings", { token: author, body: { lesson_id: lesson.lesson_id, version: 1, visibility: "public" } })).status, 403);
  assert.equal((await api.call("POST", "/v1/marketplace/listings", { token: author, body: { lesson_id: lesson.lesson_id, version: 1, visibility: "everyone" } })).status, 400);
  const q = await api.call("GET", "/v1/marketplace/queue", { token: reviewer });
  const item = q.json.listings.find((l) => l.listing_id === listing);
  assert.ok(item?.available_decisions.includes("approve"), JSON.stringify(item));
  // The latest decision names who took it (the author's resubmit), not only the author.
  assert.deepEqual(item.last_decision, { decision: "resubmit", actor: "abe" });
  assert.equal((await api.call("GET", "/v1/marketplace/queue", { token: learner })).status, 403);
});

test("org-private listings are seen by their org only", async () => {
  const { listing } = await lessonAndListing({ title: "Internal training" }, author, "org");
  await decide(listing, "approve", reviewer);
  await decide(listing, "publish", governor);
  assert.ok((await listIds("", learner)).includes(listing));
  assert.ok(!(await listIds("", outsider)).includes(listing));
  assert.ok(!(await listIds()).includes(listing));
  assert.equal((await api.call("GET", `/v1/marketplace/listings/${listing}`, { token: outsider })).status, 404);
  assert.equal((await api.call("POST", `/v1/marketplace/listings/${listing}/reviews`, { token: outsider, body: { rating: 4, text: "" } })).status, 404);
});

test("search, tag filter, sort and stable paging", async () => {
  const ids = [];
  for (let i = 0; i < 7; i++) {
    const { listing } = await lessonAndListing({ title: `Algebra ${i}`, tags: i % 2 ? ["odd", "algebra"] : ["even", "algebra"] });
    await decide(listing, "approve", reviewer);
    await decide(listing, "publish", governor);
    ids.push(listing);
  }
  await api.call("POST", `/v1/marketplace/listings/${ids[3]}/reviews`, { token: learner2, body: { rating: 5, text: "great" } });
  const byRating = await listIds("?q=algebra&sort=rating&limit=50");
  assert.equal(byRating[0], ids[3]);
  assert.deepEqual(new Set(byRating), new Set(ids));
  assert.deepEqual((await listIds("?tag=odd&limit=50")).sort(), [ids[1], ids[3], ids[5]].sort());
  assert.deepEqual(await listIds("?q=algebra%206"), [ids[6]]);
  const seen = [];
  let cursor = "";
  for (let page = 0; page < 10; page++) {
    const r = await api.call("GET", `/v1/marketplace/listings?q=algebra&sort=new&limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    seen.push(...r.json.listings.map((l) => l.listing_id));
    if (!r.json.next_cursor) break;
    cursor = r.json.next_cursor;
  }
  assert.deepEqual(seen, [...ids].reverse());
  assert.equal((await api.call("GET", "/v1/marketplace/listings?sort=price")).status, 400);
  assert.equal((await api.call("GET", "/v1/marketplace/listings?cursor=garbage")).status, 400);
  assert.equal((await api.call("GET", "/v1/marketplace/listings?limit=0")).status, 400);
});

test("trust signals come from the records; reviews say who completed the lesson; the cache counts hits and misses and never serves a stale detail", async () => {
  const { lesson, listing } = await lessonAndListing({ title: "Trusted lesson" });
  await decide(listing, "approve", reviewer);
  await decide(listing, "publish", governor);
  const metric = async (result) => {
    const text = (await api.call("GET", "/v1/metrics", { token: governor })).text;
    const line = text.split("\n").find((l) => l.startsWith(`dropple_market_cache_total{result="${result}"}`));
    return line ? Number(line.split(" ").at(-1)) : 0;
  };
  const [hits0, misses0] = [await metric("hit"), await metric("miss")];
  const detail = async () => (await api.call("GET", `/v1/marketplace/listings/${listing}`)).json;
  const fresh = await detail(); // a miss fills the cache
  assert.equal(fresh.completion_rate, null, "no attempts yet");
  assert.equal((await detail()).rating_count, 0); // a hit
  // Two learners: one passes (2/2), one fails (0/2) and one only starts.
  const take = async (token, answers, submit = true) => {
    const a = (await api.call("POST", "/v1/attempts", { token, body: { lesson_id: lesson.lesson_id, version: 1 } })).json;
    for (const [question_id, answer] of answers) await api.call("POST", `/v1/attempts/${a.attempt_id}/answers`, { token, body: { question_id, answer } });
    if (submit) assert.equal((await api.call("POST", `/v1/attempts/${a.attempt_id}/submit`, { token })).status, 200);
  };
  const third = await api.token("lia", "acme", ["learner"]);
  await take(learner, [["q1", 1], ["q2", 1]]);
  await take(learner2, [["q1", 0], ["q2", 0]]);
  await take(third, [], false);
  // Reviews: the learner who finished is flagged, the one who only started is not.
  const done = await api.call("POST", `/v1/marketplace/listings/${listing}/reviews`, { token: learner, body: { rating: 4, text: "Solid" } });
  assert.equal(done.status, 201, done.text);
  assert.equal(done.json.completed, true);
  const started = await api.call("POST", `/v1/marketplace/listings/${listing}/reviews`, { token: third, body: { rating: 2, text: "Did not finish" } });
  assert.equal(started.json.completed, false);
  // The warm detail reflects every write on the very next read.
  const after = await detail();
  assert.equal(after.rating_count, 2);
  assert.equal(after.completion_rate, 2 / 3);
  assert.equal(after.certificate_pass_rate, 1 / 2);
  assert.ok(after.rating_avg > 2 && after.rating_avg < 4, `Bayesian average between the prior and the mean: ${after.rating_avg}`);
  const reviews = (await api.call("GET", `/v1/marketplace/listings/${listing}/reviews`)).json.reviews;
  // The completer reviewed first, so newest-first alone would list them last: completers lead.
  assert.deepEqual(reviews.map((r) => [r.learner_id, r.completed]), [["lea", true], ["lia", false]]);
  assert.equal(after.completed_rating_count, 1, "one of the two ratings comes from a completer");
  assert.equal(fresh.completed_rating_count, 0);
  // The search hit's mean agrees with the detail's.
  const hit = (await api.call("GET", "/v1/marketplace/listings?q=trusted")).json.listings.find((l) => l.listing_id === listing);
  assert.equal(hit?.rating_avg, after.rating_avg);
  assert.equal(hit?.rating_count, 2);
  assert.ok((await metric("hit")) > hits0, "cache hits counted");
  assert.ok((await metric("miss")) > misses0, "cache misses counted");
});
