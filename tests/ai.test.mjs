// AI jobs on Queues: 202 at once, queue-driven completion, result cache,
// retry then success, exhaustion → failed + dead letter, 429 and 402, org
// isolation, publish-time explanations, and the OpenAI-compatible provider
// against a local stub speaking that protocol.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { startWorker, client, freePort } from "./support/worker.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";

let w, api, author, learner, outsider, lesson;
before(async () => {
  // Retries without waiting (the backoff arithmetic is tested natively); a
  // tiny monthly budget on the pro plan to reach 402 quickly.
  w = await startWorker({ vars: { AI_RETRY_SCALE: "0", PLAN_OVERRIDES: JSON.stringify({ pro: { ai_jobs_per_month: 3 } }) } });
  api = client(w.base);
  author = await api.token("ana", "acme", ["author"]);
  learner = await api.token("lea", "acme", ["learner"]);
  outsider = await api.token("oz", "globex", ["learner"]);
  lesson = (await api.call("POST", "/v1/lessons", { token: author, body: DEMO_LESSON })).json;
});
after(async () => { await w?.stop(); });

const job = (token, kind, input, extra = {}) =>
  api.call("POST", "/v1/ai/jobs", { token, body: { kind, lesson_id: lesson.lesson_id, version: 1, input, ...extra } });
async function settle(id, token = learner, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    const r = await api.call("GET", `/v1/ai/jobs/${id}`, { token });
    assert.equal(r.status, 200, r.text);
    if (["succeeded", "failed"].includes(r.json.status)) return r.json;
    if (Date.now() > end) throw new Error(`job ${id} still ${r.json.status}`);
    await new Promise((res) => setTimeout(res, 150));
  }
}

test("202 at once, then the queue completes the job; the same input hits the cache", async () => {
  const r = await job(learner, "answer", { question: "What is a quarter?" });
  assert.equal(r.status, 202, r.text);
  assert.equal(r.json.status, "queued");
  const done = await settle(r.json.job_id);
  assert.equal(done.status, "succeeded");
  assert.equal(done.cached, false);
  assert.ok(done.result.citations.length > 0);
  assert.match(done.result.answer, /quarter/i);
  const again = await settle((await job(learner, "answer", { question: "  what IS a   quarter? " })).json.job_id);
  assert.equal(again.cached, true);
  assert.deepEqual(again.result, done.result);
  const graded = await settle((await job(learner, "grade", { question: "Where is 1/2?", answer: "In the middle of the line", rubric: ["mentions the middle", { criterion: "names the line", weight: 2 }] })).json.job_id);
  assert.equal(graded.result.score, 1);
  assert.equal((await job(learner, "explain", { step: 999 }).then((x) => settle(x.json.job_id))).status, "failed");
});

test("a failing provider is retried to success; one that always fails is dead-lettered", async () => {
  const flaky = await settle((await job(learner, "answer", { question: "Which half is flaky?" }, { _fail_first: 2 })).json.job_id);
  assert.equal(flaky.status, "succeeded");
  assert.equal(flaky.attempts, 3);
  const doomed = await settle((await job(learner, "answer", { question: "Which quarter is doomed?" }, { _fail_first: 99 })).json.job_id, learner, 30000);
  assert.equal(doomed.status, "failed");
  assert.equal(doomed.attempts, 5);
  const letter = async () => (await api.call("GET", `/v1/ai/jobs/${doomed.job_id}`, { token: learner })).json.dead_lettered;
  const end = Date.now() + 15000;
  while (!(await letter()) && Date.now() < end) await new Promise((r) => setTimeout(r, 200));
  assert.equal(await letter(), true);
  // The job's lifecycle is a run of events, readable by the org's authors.
  const events = await api.call("GET", `/v1/runs/${doomed.run_id}/events`, { token: author });
  assert.equal(events.status, 200, events.text);
  const types = events.json.events.map((e) => e.type);
  assert.equal(types[0], "ai_job.queued");
  assert.equal(types.filter((t) => t === "ai_job.running").length, 5);
  assert.ok(types.includes("ai_job.failed"));
  // Each status change and its event land together (one batch, sealed after
  // the head read with the job): the whole lifecycle in order, no gaps, and a
  // chain that verifies.
  assert.deepEqual(types, ["ai_job.queued", ...Array(4).fill(["ai_job.running", "ai_job.retrying"]).flat(), "ai_job.running", "ai_job.failed"]);
  assert.deepEqual(events.json.events.map((e) => e.seq), types.map((_, n) => n + 1));
  const verified = await api.call("GET", `/v1/runs/${doomed.run_id}/verify`, { token: author });
  assert.equal(verified.status, 200, verified.text);
  assert.equal(verified.json.ok, true, verified.text);
  const flakyTypes = (await api.call("GET", `/v1/runs/${flaky.run_id}/events`, { token: author })).json.events.map((e) => e.type);
  assert.deepEqual(flakyTypes, ["ai_job.queued", "ai_job.running", "ai_job.retrying", "ai_job.running", "ai_job.retrying", "ai_job.running", "ai_job.succeeded"]);
  assert.equal((await api.call("GET", `/v1/runs/${flaky.run_id}/verify`, { token: author })).json.ok, true);
});

test("validation, isolation", async () => {
  const bad = await job(learner, "poem", {});
  assert.equal(bad.status, 400);
  assert.match(bad.json.error.message, /^kind/);
  assert.equal((await job(learner, "explain", { step: -3 })).status, 400);
  const mine = (await job(learner, "explain", { step: 1 })).json.job_id;
  assert.equal((await api.call("GET", `/v1/ai/jobs/${mine}`, { token: outsider })).status, 404);
  assert.equal((await api.call("POST", "/v1/ai/jobs", { token: outsider, body: { kind: "explain", lesson_id: lesson.lesson_id, version: 1, input: { step: 1 } } })).status, 404);
});

test("publish-time explanations for every step, served with the version", async () => {
  const end = Date.now() + 20000;
  for (;;) {
    const r = await api.call("GET", `/v1/lessons/${lesson.lesson_id}/versions/1/explanations`, { token: learner });
    assert.equal(r.status, 200, r.text);
    const done = r.json.explanations.filter((e) => e.status === "succeeded");
    if (done.length === DEMO_LESSON.timeline.length) {
      assert.ok(done.every((e) => typeof e.explanation.text === "string"));
      break;
    }
    if (Date.now() > end) throw new Error(`explanations: ${JSON.stringify(r.json).slice(0, 300)}`);
    await new Promise((res) => setTimeout(res, 200));
  }
});

// A one-step lesson: its questions are asked at its end (the demo's are
// placed at steps 8 and 12, which a one-step lesson does not have).
const ONE_STEP_LESSON = { ...DEMO_LESSON, timeline: DEMO_LESSON.timeline.slice(0, 1), quiz: DEMO_LESSON.quiz.map(({ step, ...q }) => q) };

test("over the rate: 429 with Retry-After; over the plan: 402", async () => {
  const t = await api.token("rae", "rateorg", ["learner", "author"]);
  const l = (await api.call("POST", "/v1/lessons", { token: t, body: ONE_STEP_LESSON })).json;
  let limited;
  for (let i = 0; i < 125 && !limited; i++) {
    const r = await api.call("POST", "/v1/ai/jobs", { token: t, body: { kind: "explain", lesson_id: l.lesson_id, version: 1, input: { step: 1 } } });
    if (r.status === 429) limited = r;
    else assert.equal(r.status, 202, r.text);
  }
  assert.ok(limited, "the free plan allows at most 60 per minute");
  assert.equal(limited.json.error.code, "rate_limited");
  assert.ok(Number(limited.headers.get("retry-after")) >= 1);
  const p = await api.token("pia", "proorg", ["learner", "author"]);
  await api.call("PUT", "/v1/dev/orgs/proorg/plan", { body: { plan: "pro" } });
  const pl = (await api.call("POST", "/v1/lessons", { token: p, body: ONE_STEP_LESSON })).json;
  const codes = [];
  for (let i = 0; i < 4; i++) {
    codes.push((await api.call("POST", "/v1/ai/jobs", { token: p, body: { kind: "explain", lesson_id: pl.lesson_id, version: 1, input: { step: 1 } } })).status);
  }
  assert.deepEqual(codes, [202, 202, 402, 402], "1 publish-time job + 2 requests fill a budget of 3");
  const usage = (await api.call("GET", "/v1/orgs/proorg/usage", { token: p })).json;
  assert.equal(usage.limits.ai_jobs_per_month, 3);
  assert.equal(usage.usage.ai_jobs_this_month, 3);
  // Both refusals are in the org's audit log, naming the limit.
  const audited = async (org, action) => {
    const gov = await api.token("gus", org, ["governor"]);
    const r = await api.call("GET", "/v1/audit?limit=500", { token: gov });
    assert.equal(r.status, 200, r.text);
    return r.json.entries.filter((e) => e.action === action);
  };
  const rate = await audited("rateorg", "rate_limit.refused");
  assert.ok(rate.length >= 1 && rate.every((e) => e.target === "ai_jobs_per_minute" && e.actor === "rae"), JSON.stringify(rate));
  const plan = await audited("proorg", "plan_limit.refused");
  assert.equal(plan.length, 2);
  assert.ok(plan.every((e) => e.target === "ai_jobs_per_month" && e.actor === "pia"));
});

test("the OpenAI-compatible provider, against a local stub of that protocol", async () => {
  const seen = [];
  const stub = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => { body += c; });
    req.on("end", () => {
      seen.push({ url: req.url, auth: req.headers.authorization, body: JSON.parse(body) });
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ choices: [{ message: { role: "assistant", content: JSON.stringify({ answer: "From the stub", citations: [{ step: 3, text: "x" }], confidence: 0.9 }) } }] }));
    });
  });
  const port = await freePort();
  await new Promise((r) => stub.listen(port, "127.0.0.1", r));
  const ow = await startWorker({ vars: { AI_PROVIDER: "openai", OPENAI_BASE_URL: `http://127.0.0.1:${port}/v1`, OPENAI_MODEL: "stub-model", AI_ON_PUBLISH: "off" } });
  try {
    const oapi = client(ow.base);
    const a = await oapi.token("ana", "acme", ["author", "learner"]);
    const l = (await oapi.call("POST", "/v1/lessons", { token: a, body: DEMO_LESSON })).json;
    const r = await oapi.call("POST", "/v1/ai/jobs", { token: a, body: { kind: "answer", lesson_id: l.lesson_id, version: 1, input: { question: "Where is 1/2?" } } });
    assert.equal(r.status, 202);
    const end = Date.now() + 20000;
    let j;
    do {
      await new Promise((res) => setTimeout(res, 150));
      j = (await oapi.call("GET", `/v1/ai/jobs/${r.json.job_id}`, { token: a })).json;
    } while (!["succeeded", "failed"].includes(j.status) && Date.now() < end);
    assert.equal(j.status, "succeeded", JSON.stringify(j));
    assert.equal(j.result.answer, "From the stub");
    assert.equal(j.provider, "openai");
    assert.equal(seen.length, 1);
    assert.equal(seen[0].url, "/v1/chat/completions");
    assert.equal(seen[0].body.model, "stub-model");
    assert.equal(seen[0].body.temperature, 0);
    assert.ok(seen[0].body.messages[1].content.includes("Where is 1/2?"));
  } finally {
    await ow.stop();
    stub.close();
  }
});

test("review_assist end to end through the queue", async () => {
  const reviewer = await api.token("rex", "acme", ["reviewer"]);
  const listing = await api.call("POST", "/v1/marketplace/listings", { token: author, body: { lesson_id: lesson.lesson_id, version: 1, visibility: "public" } });
  assert.equal(listing.status, 201, listing.text);
  const r = await api.call("POST", "/v1/ai/jobs", { token: reviewer, body: { kind: "review_assist", lesson_id: lesson.lesson_id, version: 1, input: { listing_id: listing.json.listing_id } } });
  assert.equal(r.status, 202, r.text);
  const done = await settle(r.json.job_id, reviewer);
  assert.equal(done.status, "succeeded", JSON.stringify(done));
  assert.equal(done.kind, "review_assist");
  assert.ok(Array.isArray(done.result.flags));
  assert.equal(typeof done.result.ok, "boolean");
  const types = (await api.call("GET", `/v1/runs/${done.run_id}/events`, { token: author })).json.events.map((e) => e.type);
  assert.deepEqual([types[0], types.at(-1)], ["ai_job.queued", "ai_job.succeeded"]);
  // An unknown listing, or another org's, is refused at once: nothing is queued.
  const ghost = await api.call("POST", "/v1/ai/jobs", { token: reviewer, body: { kind: "review_assist", lesson_id: lesson.lesson_id, version: 1, input: { listing_id: "no-such-listing" } } });
  assert.equal(ghost.status, 422, ghost.text);
  assert.equal(ghost.json.error.code, "unknown_listing");
  const publicLesson = await api.call("POST", "/v1/lessons", { token: await api.token("oz", "globex", ["author"]), body: DEMO_LESSON });
  assert.equal(publicLesson.status, 201, publicLesson.text);
  const foreign = await api.call("POST", "/v1/ai/jobs", { token: outsider, body: { kind: "review_assist", lesson_id: publicLesson.json.lesson_id, version: 1, input: { listing_id: listing.json.listing_id } } });
  assert.equal(foreign.status, 422, foreign.text);
  assert.equal(foreign.json.error.code, "unknown_listing");
});

test("publish-time explanations count against the monthly budget; past it they are skipped and audited, the publish still succeeds", async () => {
  const a = await api.token("bo", "budgetorg", ["author", "learner", "governor"]);
  await api.call("PUT", "/v1/dev/orgs/budgetorg/plan", { body: { plan: "pro" } });
  const first = await api.call("POST", "/v1/lessons", { token: a, body: DEMO_LESSON });
  assert.equal(first.status, 201, first.text);
  assert.deepEqual(first.json.explanations, { queued: 3, skipped: DEMO_LESSON.timeline.length - 3, reason: "ai_jobs_per_month" });
  const second = await api.call("POST", "/v1/lessons", { token: a, body: DEMO_LESSON });
  assert.equal(second.status, 201, second.text);
  assert.deepEqual(second.json.explanations, { queued: 0, skipped: DEMO_LESSON.timeline.length, reason: "ai_jobs_per_month" });
  const usage = (await api.call("GET", "/v1/orgs/budgetorg/usage", { token: a })).json;
  assert.equal(usage.usage.ai_jobs_this_month, 3);
  const audit = (await api.call("GET", "/v1/audit", { token: a })).json.entries.filter((e) => e.action === "ai_explanations.skipped");
  assert.equal(audit.length, 2);
  // The three that fit were queued in one batch and all complete.
  const end = Date.now() + 20000;
  for (;;) {
    const r = (await api.call("GET", `/v1/lessons/${first.json.lesson_id}/versions/1/explanations`, { token: a })).json;
    const steps = r.explanations.filter((e) => e.status === "succeeded").map((e) => e.step).sort();
    if (steps.length === 3) { assert.deepEqual(steps, [1, 2, 3]); break; }
    if (Date.now() > end) throw new Error(JSON.stringify(r).slice(0, 300));
    await new Promise((res) => setTimeout(res, 200));
  }
});

test("the OpenAI-compatible provider's timeout: a slow answer is retried, one that never comes fails; nothing hangs", async () => {
  let calls = { twice: 0, never: 0 };
  const stub = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => { body += c; });
    req.on("end", () => {
      const answer = () => {
        if (res.destroyed) return;
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ choices: [{ message: { role: "assistant", content: JSON.stringify({ answer: "Late but fine", citations: [], confidence: 0.5 }) } }] }));
      };
      if (body.includes("slow twice") && calls.twice++ < 2) setTimeout(answer, 5000);
      else if (body.includes("never answers")) { calls.never++; /* hold the connection open */ }
      else answer();
    });
  });
  const port = await freePort();
  await new Promise((r) => stub.listen(port, "127.0.0.1", r));
  const ow = await startWorker({ vars: { AI_PROVIDER: "openai", OPENAI_BASE_URL: `http://127.0.0.1:${port}/v1`, OPENAI_TIMEOUT_MS: "700", AI_RETRY_SCALE: "0", AI_ON_PUBLISH: "off" } });
  try {
    const oapi = client(ow.base);
    const a = await oapi.token("ana", "acme", ["author", "learner"]);
    const l = (await oapi.call("POST", "/v1/lessons", { token: a, body: DEMO_LESSON })).json;
    const ask = async (question) => (await oapi.call("POST", "/v1/ai/jobs", { token: a, body: { kind: "answer", lesson_id: l.lesson_id, version: 1, input: { question } } })).json.job_id;
    const wait = async (id) => {
      const end = Date.now() + 60000;
      for (;;) {
        const j = (await oapi.call("GET", `/v1/ai/jobs/${id}`, { token: a })).json;
        if (["succeeded", "failed"].includes(j.status)) return j;
        if (Date.now() > end) throw new Error(`still ${j.status}: ${JSON.stringify(j)}`);
        await new Promise((res) => setTimeout(res, 200));
      }
    };
    const started = Date.now();
    const [slow, never] = await Promise.all([ask("slow twice?"), ask("never answers?")].map((p) => p.then(wait)));
    assert.equal(slow.status, "succeeded", JSON.stringify(slow));
    assert.equal(slow.attempts, 3);
    assert.equal(slow.result.answer, "Late but fine");
    assert.equal(never.status, "failed", JSON.stringify(never));
    assert.equal(never.attempts, 5);
    assert.match(never.error, /did not answer within 700 ms/);
    assert.equal(calls.never, 5);
    assert.ok(Date.now() - started < 45000, "bounded by the timeout, not by the provider");
  } finally {
    await ow.stop();
    stub.closeAllConnections();
    stub.close();
  }
});
