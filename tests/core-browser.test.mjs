// The browser runs the server's core (src/browser.rs, built by scripts/build.sh
// into public/core/): proof that they are one, and that it works offline.
//
// 1. Parity: 200 seeded random event streams (src/streams.rs: every event type,
//    odd payloads) are appended to runs on the real worker; the browser core
//    folds the same streams; the canonical hash of the server's
//    `GET /v1/runs/{id}/state` state equals the browser's, every time. The
//    hashes of all 200 also equal the digest the native suite pins
//    (`streams::tests`), so native, edge and browser agree.
// 2. Offline: after one online visit, with the worker stopped and the browser
//    context offline, /verify tells apart a valid, a tampered and a revoked
//    credential (revocation as of the cached status list), and a learner plays a
//    lesson opened before, every frame folded locally.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, client } from "./support/worker.mjs";
import { launchBrowser, openPage, withScreenshots } from "./support/browser.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";
import { plan as assetPlan } from "../scripts/version-assets.mjs";

// Pinned in src/streams.rs too (PARITY_DIGEST): sha256 of the 200 state hashes.
const PARITY_DIGEST = "032eebc781071d41986d22fa7f654d7f46a0863572b8e711713cce04116bcaf9";
const STREAMS = 200;
const ORG = "coretest";

let browser;
const pages = {};
const shots = () => pages;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
});

test(`parity: ${STREAMS} random event streams fold to the same state hash in the browser core and on the server`, { timeout: 240_000 }, async () => {
  const w = await startWorker();
  try {
    await withScreenshots("core-parity", shots, async () => {
      const api = client(w.base);
      const token = await api.token("ada", ORG, ["author"]);
      const p = (pages.parity = await openPage(browser, w.base, { token }));
      await p.goto("/");
      const corePath = `/js/core.js?v=${assetPlan().stamps["js/core.js"]}`;
      const out = await p.evaluate(async ({ corePath, n, token }) => {
        const { core } = await import(corePath);
        const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
        const types = new Set();
        const one = async (seed) => {
          const r = await fetch("/v1/runs", { method: "POST", headers, body: JSON.stringify({ kind: "parity" }) });
          if (r.status !== 201) throw new Error(`seed ${seed}: create run ${r.status} ${await r.text()}`);
          const { run_id: run } = await r.json();
          // The bodies go out as the core wrote them (no JavaScript re-encoding of numbers).
          for (const body of core.random_stream_batches(seed)) {
            const a = await fetch(`/v1/runs/${run}/events`, { method: "POST", headers, body });
            if (a.status !== 201) throw new Error(`seed ${seed}: append ${a.status} ${await a.text()}`);
          }
          const s = await fetch(`/v1/runs/${run}/state`, { headers });
          const text = await s.text();
          if (s.status !== 200) throw new Error(`seed ${seed}: state ${s.status} ${text}`);
          const stream = core.random_stream(seed);
          for (const m of stream.matchAll(/"type":"([a-z_.0-9]+)"/g)) types.add(m[1]);
          const fold = new core.CanvasFold();
          fold.apply_all(stream);
          const result = {
            seed,
            browser: fold.hash(),
            applied: fold.applied(),
            server: core.canonical_hash_at(text, "/state"),
            serverHash: JSON.parse(text).hash,
            seq: JSON.parse(text).seq,
          };
          fold.free();
          if (seed % 10 === 0 && result.seq > 1) {
            // The replay of /replay: the run's envelopes folded here, scrubbed to the middle.
            const mid = Math.ceil(result.seq / 2);
            const ev = await (await fetch(`/v1/runs/${run}/events?after=0&limit=1000`, { headers })).text();
            const replay = new core.Replay("canvas");
            replay.push(ev); // the page as the server wrote it
            const at = await (await fetch(`/v1/runs/${run}/state?at_seq=${mid}`, { headers })).text();
            result.replayMid = [core.canonical_hash_at(replay.state_at(mid), "/state"), core.canonical_hash_at(at, "/state")];
            replay.free();
          }
          return result;
        };
        const results = new Array(n);
        let next = 0;
        await Promise.all(Array.from({ length: 4 }, async () => {
          while (next < n) {
            const seed = next++;
            results[seed] = await one(seed);
          }
        }));
        const bytes = new TextEncoder().encode(results.map((r) => r.browser).join("\n"));
        const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
        return { results, digest, types: [...types].sort() };
      }, { corePath, n: STREAMS, token });
      assert.equal(out.results.length, STREAMS);
      let events = 0;
      let scrubbed = 0;
      for (const r of out.results) {
        assert.equal(r.seq, r.applied, `seed ${r.seed}: the server holds every event`);
        assert.equal(r.server, r.browser, `seed ${r.seed}: the server's state hashes like the browser's fold`);
        assert.equal(r.serverHash, r.browser, `seed ${r.seed}: the server's own hash agrees`);
        events += r.seq;
        if (r.replayMid) {
          assert.equal(r.replayMid[0], r.replayMid[1], `seed ${r.seed}: replay scrubbed to the middle equals the server's state there`);
          scrubbed += 1;
        }
      }
      assert.ok(scrubbed >= 15, `${scrubbed} replays scrubbed`);
      assert.ok(out.types.length >= 25, `every event type is generated: ${out.types.join(", ")}`);
      assert.equal(out.digest, PARITY_DIGEST, "the browser folds like the native suite");
      // (The sign-in picker's probe of /v1/dev/tokens answers 400 without a body: not a script error.)
      assert.deepEqual(p.problems.filter((m) => !/Failed to load resource/.test(m)), []);
      console.log(`# parity: ${STREAMS} streams, ${events} events, ${out.types.length} event types: all equal`);
    });
  } finally {
    await w.stop();
  }
});

test("offline after one visit: /verify tells valid, tampered and revoked apart; a learner plays a lesson opened before", { timeout: 180_000 }, async () => {
  const w = await startWorker();
  let stopped = false;
  try {
    await withScreenshots("core-offline", shots, async () => {
      const api = client(w.base);
      const tokens = {
        ada: await api.token("ada", ORG, ["author"]),
        lea: await api.token("lea", ORG, ["learner"]),
        leo: await api.token("leo", ORG, ["learner"]),
        gil: await api.token("gil", ORG, ["governor"]),
      };
      const created = await api.call("POST", "/v1/lessons", { token: tokens.ada, body: DEMO_LESSON });
      assert.equal(created.status, 201, created.text);
      const lessonId = created.json.lesson_id;
      const certify = async (learner) => {
        const a = await api.call("POST", "/v1/attempts", { token: tokens[learner], body: { lesson_id: lessonId, version: 1 } });
        assert.equal(a.status, 201, a.text);
        for (const q of DEMO_LESSON.quiz) {
          const r = await api.call("POST", `/v1/attempts/${a.json.attempt_id}/answers`, { token: tokens[learner], body: { question_id: q.id, answer: q.answer } });
          assert.ok(r.status < 300, r.text);
        }
        const s = await api.call("POST", `/v1/attempts/${a.json.attempt_id}/submit`, { token: tokens[learner], body: {} });
        assert.equal(s.status, 200, s.text);
        const c = await api.call("GET", `/v1/certificates/${s.json.certificate_id}`, { token: tokens[learner] });
        assert.equal(c.status, 200, c.text);
        return { id: s.json.certificate_id, doc: c.json };
      };
      const valid = (await certify("lea")).doc;
      const leo = await certify("leo");
      const revoked = leo.doc;
      const rv = await api.call("POST", `/v1/certificates/${encodeURIComponent(leo.id)}/revoke`, { token: tokens.gil, body: {} });
      assert.equal(rv.status, 200, rv.text);
      const tampered = structuredClone(valid);
      tampered.credentialSubject.id = `${tampered.credentialSubject.id ?? "urn:x"}-forged`;

      // --- online: one visit to /verify (which checks the revoked one) and to the lesson.
      const v = (pages.verify = await openPage(browser, w.base));
      const verify = async (doc) => {
        await v.fill("[data-testid=credential]", JSON.stringify(doc, null, 2));
        await v.evaluate(() => { delete document.querySelector("[data-testid=verdict]").dataset.valid; });
        await v.click("[data-testid=verify]");
        await v.waitForFunction(() => document.querySelector("[data-testid=verdict]")?.dataset.valid !== undefined, null, { timeout: 20_000 });
        const checks = await v.$$eval("[data-testid=browser-checks] li", (lis) => Object.fromEntries(lis.map((li) => [li.dataset.check, { ok: li.dataset.ok === "true", text: li.textContent }])));
        return {
          verdict: await v.getAttribute("[data-testid=verdict]", "data-valid"),
          browser: await v.getAttribute("[data-testid=browser-verdict]", "data-valid"),
          server: await v.getAttribute("[data-testid=server-verdict]", "data-valid"),
          checks,
        };
      };
      await v.goto("/verify");
      const online = await verify(revoked);
      assert.equal(online.browser, "false");
      assert.equal(online.server, "false");
      assert.equal(online.checks.status.ok, false, online.checks.status.text);
      // Until the service worker controls the page and holds `paths` in
      // `cacheName` (polled: waitForFunction does not await a promise).
      const cached = async (page, cacheName, paths) => {
        const deadline = Date.now() + 20_000;
        for (;;) {
          const missing = await page.evaluate(async ({ cacheName, paths }) => {
            if (!navigator.serviceWorker.controller) return ["(no controller)"];
            const c = await caches.open(cacheName);
            const out = [];
            for (const path of paths) if (!(await c.match(path, { ignoreVary: true }))) out.push(path);
            return out;
          }, { cacheName, paths });
          if (!missing.length) return;
          if (Date.now() > deadline) throw new Error(`not cached in ${cacheName}: ${missing.join(", ")}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      };
      await cached(v, "dropple-reference-v1", ["/v1/issuer", "/v1/status-lists/1"]);
      // The service worker's shell (pages, modules, the core) is in place.
      const { release, core, stamps } = assetPlan();
      const shell = [`/core/dropple_core_bg.wasm?v=${core}`, `/core/dropple_core.js?v=${core}`, `/js/core.js?v=${stamps["js/core.js"]}`];
      await cached(v, `dropple-shell-${release}`, ["/verify", `/js/verify.js?v=${stamps["js/verify.js"]}`, ...shell]);

      const l = (pages.learner = await openPage(browser, w.base, { token: tokens.lea }));
      const lessonPath = `/learn?lesson=${lessonId}&version=1`;
      await l.goto(lessonPath);
      // A lesson opens on its first step (step 0 is the empty canvas).
      await l.waitForFunction(() => document.querySelector("[data-testid=canvas]")?.dataset.step === "1");
      await cached(l, "dropple-lessons-v1", [`/v1/lessons/${lessonId}/versions/1`]);
      await cached(l, `dropple-shell-${release}`, ["/learn", `/js/learn.js?v=${stamps["js/learn.js"]}`, ...shell]);

      // --- the network is gone: the worker is stopped and both contexts are offline.
      await w.stop();
      stopped = true;
      await v.context().setOffline(true);
      await l.context().setOffline(true);

      await v.reload();
      const good = await verify(valid);
      assert.equal(good.browser, "true", JSON.stringify(good.checks));
      assert.equal(good.verdict, "true");
      assert.equal(good.server, "null", "the server is unreachable: only the browser checked");
      assert.ok(good.checks.proof.ok && good.checks.status.ok, JSON.stringify(good.checks));
      const bad = await verify(tampered);
      assert.equal(bad.browser, "false");
      assert.equal(bad.checks.proof.ok, false, "a tampered credential fails the signature");
      const gone = await verify(revoked);
      assert.equal(gone.browser, "false");
      assert.equal(gone.checks.proof.ok, true, "the revoked credential's signature still holds");
      assert.equal(gone.checks.status.ok, false);
      assert.match(gone.checks.status.text, /revoked \(status list of /, "revoked as of the cached list");

      await l.reload();
      await l.waitForFunction(() => document.querySelector("[data-testid=canvas]")?.dataset.step === "1");
      const last = DEMO_LESSON.timeline.length;
      const scrub = l.getByLabel(/Timeline: step/);
      await scrub.focus();
      for (let i = 1; i < 3; i++) await l.keyboard.press("ArrowRight");
      await l.waitForFunction(() => document.querySelector("[data-testid=canvas]")?.dataset.step === "3");
      assert.equal(await l.textContent("[data-testid=narration]"), "Every fraction has a place on this line.");
      await l.keyboard.press("End");
      await l.waitForFunction((s) => document.querySelector("[data-testid=canvas]")?.dataset.step === String(s), last);
      assert.ok(Number(await l.getAttribute("[data-testid=canvas]", "data-elements")) > 0, "the last frame has elements");
      const problems = [...v.problems, ...l.problems].filter((m) => !/Failed to load resource|ERR_INTERNET_DISCONNECTED|net::/.test(m));
      assert.deepEqual(problems, []);
    });
  } finally {
    if (!stopped) await w.stop();
  }
});
