// The web app in a real browser (headless Debian Chromium via playwright-core)
// against the real worker on local workerd: a teacher and two learners in a
// live session, the learner's lack of authority, teacher loss and return,
// questions and quiz responses while live, a learner's dropped socket
// (reconnect with backoff, resume from last_seq), the keyboard console, the
// replay view, the author studio, the market's queue and reviews, self-paced
// play to a certificate, certificate verification in the browser, the
// development sign-in, accessibility and a phone-width layout, and the cache
// headers of the versioned static assets. Every test is bounded in time and
// screenshots every open page when it fails.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  startWebApp, stopWebApp, openPage, screenshot, withScreenshots, waitStep, waitConn, settled, pageContent,
} from "./support/browser.mjs";
import { runEventsThrough } from "./support/worker.mjs";
import { auditPage } from "./support/a11y.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";
import { plan as assetPlan } from "../scripts/version-assets.mjs";

const ORG = "webtest";
const SHOTS = !!process.env.WEB_SCREENSHOTS; // also keep screenshots of passing steps
const ALL_ROLES = ["author", "teacher", "reviewer", "learner", "governor"];
const USERS = {
  ada: ["author"], lea: ["learner"], leo: ["learner"], tom: ["teacher"], rex: ["reviewer"], gil: ["governor"], zed: ALL_ROLES,
};
let w, api, browser, tokens, lesson;
const pages = {};

before(async () => ({ w, api, browser, tokens, lesson } = await startWebApp({ org: ORG, users: USERS })));
after(() => stopWebApp({ w, browser }));

const shots = () => pages;
const canvasStep = (page) => page.locator("[data-testid=canvas]").getAttribute("data-step");
const svgOf = (page) => page.locator("[data-testid=canvas] svg").evaluate((svg) => {
  const copy = svg.cloneNode(true);
  copy.querySelector("title")?.remove(); // the accessible name differs per page
  return copy.outerHTML;
});
/** The market's listings hold the answer to the last search asked (none is on its way). */
const searched = (page) => page.locator("[data-testid=listings]:not([aria-busy])").waitFor({ state: "attached" });

let session; // {id, code}
const PAGES = ["/", "/teach", "/learn", "/author", "/market", "/verify", "/replay"];

test("a teacher advances three steps and both learners show the same frame", { timeout: 120_000 }, () =>
  withScreenshots("live-follow", shots, async () => {
    // The teacher signs in through the development sign-in form.
    const teacher = (pages.teacher = await openPage(browser, w.base));
    await teacher.goto("/");
    await teacher.locator("[data-testid=whoami]").click();
    await teacher.fill("#si-user", "tom");
    await teacher.fill("#si-org", ORG);
    for (const role of ["author", "teacher", "reviewer", "learner", "governor"]) {
      await teacher.locator(`#si-role-${role}`).setChecked(role === "teacher");
    }
    await teacher.locator("[data-testid=dev-signin] button[type=submit]").click();
    await teacher.waitForFunction(() => document.querySelector("[data-testid=whoami]")?.textContent.startsWith("tom"));

    await teacher.goto("/teach");
    await teacher.locator(`[data-testid=lesson-select] option[value="${lesson.lesson_id}"]`).waitFor({ state: "attached" });
    await teacher.selectOption("[data-testid=lesson-select]", lesson.lesson_id);
    await teacher.locator("[data-testid=version-select] option").first().waitFor({ state: "attached" });
    await teacher.click("[data-testid=open-session]");
    await teacher.waitForFunction(() => /^[2-9A-Z]{6}$/.test(document.querySelector("[data-testid=join-code]")?.textContent || ""));
    const code = (await teacher.textContent("[data-testid=join-code]")).trim();
    session = { code, id: new URL(teacher.url()).searchParams.get("session") };
    assert.ok(session.id, "the console URL carries the session id");
    await waitConn(teacher, "live");
    await waitStep(teacher, 1); // a new session opens on its first step, not the empty canvas

    for (const name of ["lea", "leo"]) {
      const p = (pages[name] = await openPage(browser, w.base, { token: tokens[name], viewport: name === "leo" ? { width: 390, height: 844 } : undefined }));
      await p.goto(`/learn?code=${code}`);
      await waitConn(p, "live");
      await waitStep(p, 1);
    }
    // Two learners: the teacher is not counted.
    await teacher.waitForFunction(() => document.querySelector("[data-testid=presence]")?.textContent === "2");

    for (let k = 2; k <= 3; k++) {
      await teacher.click("[data-testid=next]");
      await teacher.waitForFunction((s) => document.querySelector("[data-testid=step]")?.textContent.startsWith(`Step ${s} `), k);
    }
    await waitStep(teacher, 3);
    await waitStep(pages.lea, 3);
    await waitStep(pages.leo, 3);
    const [t, a, b] = [await svgOf(teacher), await svgOf(pages.lea), await svgOf(pages.leo)];
    assert.equal(a, b, "both learners render the same frame");
    assert.equal(a, t, "the learners render the teacher's frame");
    assert.match(a, /data-id="line"/, "frame 3 shows the number line");
    assert.equal(await pages.lea.textContent("[data-testid=narration]"), "Every fraction has a place on this line.");
    if (SHOTS) for (const [n, p] of Object.entries(pages)) await screenshot(p, `live-${n}`);
  }));

test("a learner cannot move the cursor: no controls, and a forced message is refused", { timeout: 60_000 }, () =>
  withScreenshots("learner-authority", shots, async () => {
    assert.ok(session, "needs the live session");
    const lea = pages.lea;
    for (const sel of ["[data-testid=next]", "[data-testid=prev]", "[data-testid=pause]", "[data-testid=end]"]) {
      assert.equal(await lea.locator(sel).count(), 0, `learner page has no ${sel}`);
    }
    assert.equal(await lea.getByRole("button", { name: /next|prev|pause|resume|end session/i }).count(), 0);
    // Force a teacher command through the page's own socket.
    const sent = await lea.evaluate(() => window.dropple.client.send({ type: "cursor", step: 0 }));
    assert.equal(sent, true);
    await lea.waitForFunction(() => document.querySelector("[data-testid=last-error]")?.dataset.code === "authority_violation");
    const status = await api.call("GET", `/v1/sessions/${session.id}`, { token: tokens.tom });
    assert.equal(status.json.cursor.step, 3, "the cursor did not move");
    // The status was read after the refusal: once a page holds the session's
    // seq, it has every event the server sent, a wrongly moved cursor included.
    for (const p of [pages.teacher, pages.lea, pages.leo]) {
      await p.waitForFunction((s) => window.dropple.client.state?.seq >= s, status.json.seq, { timeout: 10_000 });
      assert.equal(await canvasStep(p), "3");
    }
  }));

test("closing the teacher's page pauses both learners; reopening resumes", { timeout: 90_000 }, () =>
  withScreenshots("teacher-loss", shots, async () => {
    assert.ok(session, "needs the live session");
    await pages.teacher.context().close();
    delete pages.teacher;
    await waitConn(pages.lea, "paused");
    await waitConn(pages.leo, "paused");
    assert.equal(await canvasStep(pages.lea), "3", "the frame stays frozen");
    if (SHOTS) await screenshot(pages.leo, "paused-leo");

    const teacher = (pages.teacher = await openPage(browser, w.base, { token: tokens.tom }));
    await teacher.goto(`/teach?session=${session.id}&code=${session.code}`);
    await waitConn(teacher, "live");
    await waitConn(pages.lea, "live");
    await waitConn(pages.leo, "live");
    await waitStep(teacher, 3);
    assert.equal((await teacher.textContent("[data-testid=join-code]")).trim(), session.code);
    // Driving works again, with arrow keys this time.
    await teacher.locator("body").press("ArrowRight");
    await waitStep(pages.lea, 4);
    await waitStep(pages.leo, 4);
    if (SHOTS) await screenshot(teacher, "teacher-resumed");
  }));

test("while live, a learner asks and answers a quiz item; the teacher sees both arrive and answers", { timeout: 90_000 }, () =>
  withScreenshots("questions-quiz", shots, async () => {
    assert.ok(session, "needs the live session");
    const { teacher, lea, leo } = pages;
    await lea.fill("#ask-text", "Why is one half in the middle?");
    await lea.getByRole("button", { name: "Ask", exact: true }).click();
    const q = teacher.locator("[data-testid=questions] li[data-question]", { hasText: "Why is one half in the middle?" });
    await q.waitFor();
    assert.match(await q.textContent(), /lea/, "the teacher sees who asked");
    assert.equal(await lea.inputValue("#ask-text"), "", "the learner's box is cleared once sent");
    await lea.locator("[data-testid=questions] li", { hasText: "Why is one half" }).getByText("Not answered yet").waitFor();

    await q.getByLabel("Answer").fill("Because it splits the line into two equal parts.");
    await q.getByLabel("Answer").press("Enter");
    await q.getByText("Answered: Because it splits the line into two equal parts.").waitFor();
    assert.equal(await q.locator("form").isHidden(), true, "an answered question has no answer form");
    for (const p of [lea, leo]) {
      await p.locator("[data-testid=questions] li", { hasText: "Why is one half" }).getByText("Teacher: Because it splits the line into two equal parts.").waitFor();
    }

    // Quiz responses arrive on the teacher's tally as they are given, once
    // the teacher has reached the step the question is asked at.
    for (const p of [teacher, lea, leo]) await p.locator("[data-testid=canvas]").waitFor();
    while (Number(await canvasStep(teacher)) < DEMO_LESSON.quiz[0].step) {
      const at = Number(await canvasStep(teacher));
      await teacher.click("[data-testid=next]");
      await waitStep(teacher, at + 1);
    }
    assert.equal(await teacher.textContent("[data-testid=tally-q1-1]"), "0");
    await lea.locator("#live-quiz fieldset[data-quiz=q1]").getByRole("button", { name: "In the middle" }).click();
    await lea.locator("#live-quiz fieldset[data-quiz=q1]").getByText("You answered: In the middle").waitFor();
    await teacher.waitForFunction(() => document.querySelector("[data-testid=tally-q1-1]")?.textContent === "1");
    await leo.locator("#live-quiz fieldset[data-quiz=q1]").getByRole("button", { name: "Near 0" }).click();
    await teacher.waitForFunction(() => document.querySelector("[data-testid=tally-q1-0]")?.textContent === "1");
    assert.match(await teacher.textContent("[data-testid=quiz-tally]"), /2 responses/);
    const st = await api.call("GET", `/v1/sessions/${session.id}`, { token: tokens.tom });
    assert.equal(st.status, 200, st.text);
    if (SHOTS) for (const [n, p] of Object.entries({ teacher, lea })) await screenshot(p, `qa-${n}`);
  }));

test("a learner's socket is dropped: reconnecting, then live again with the teacher's frame and no event lost", { timeout: 90_000 }, () =>
  withScreenshots("reconnect", shots, async () => {
    assert.ok(session, "needs the live session");
    const { teacher, lea } = pages;
    await waitConn(lea, "live");
    const start = await lea.evaluate(() => {
      const c = window.dropple.client;
      const rec = (window.__rec = { statuses: [], seqs: [], snapshots: 0, attempts: [], waits: [], start: c.state.seq });
      const { onStatus, onEvent, onSnapshot } = c.cb;
      c.cb.onStatus = (st, d) => { rec.statuses.push(st); onStatus(st, d); };
      c.cb.onEvent = (ev, state) => { rec.seqs.push(state.seq); onEvent(ev, state); };
      c.cb.onSnapshot = (state) => { rec.snapshots += 1; onSnapshot(state); };
      // Until unblocked, every new socket goes to a path that refuses to open
      // (as when the network is down), so the client backs off and retries.
      const Real = c.WS;
      c.WS = class extends Real {
        constructor(url, protocols) {
          rec.attempts.push(Date.now());
          super(String(url).replace("/ws?", "/ws-unreachable?"), protocols);
        }
      };
      window.__unblock = () => { c.WS = Real; };
      // Each wait the client draws before a retry: its retry timer's delay.
      const schedule = c.scheduleRetry;
      c.scheduleRetry = function () {
        const attempt = this.attempt;
        const setTimer = window.setTimeout;
        window.setTimeout = (fn, ms) => { rec.waits.push({ attempt, ms }); return setTimer(fn, ms); };
        try { return schedule.call(this); } finally { window.setTimeout = setTimer; }
      };
      c.ws.close(4000, "test: drop the socket"); // kill the live socket
      return { seq: c.state.seq, step: c.state.cursor.step };
    });
    await waitConn(lea, "reconnecting");
    assert.match(await lea.textContent("#conn-detail"), /reconnecting/i);
    // Meanwhile the lesson goes on without her.
    for (let k = 1; k <= 2; k++) {
      await teacher.click("[data-testid=next]");
      await waitStep(teacher, start.step + k);
    }
    await lea.waitForFunction(() => window.__rec.attempts.length >= 3, null, { timeout: 20_000 });
    assert.equal(await canvasStep(lea), String(start.step), "while disconnected her frame stays where it was");
    await lea.evaluate(() => window.__unblock());

    await waitConn(lea, "live");
    await waitStep(lea, start.step + 2);
    const rec = await lea.evaluate(() => ({ ...window.__rec, seq: window.dropple.client.state.seq, attempt: window.dropple.client.attempt }));
    // Exponential backoff with full jitter: the wait before retry n is drawn from
    // [250 ms, min(15 s, 500 ms · 2^n)], and the next attempt comes no sooner
    // (later by the failed open and its HTTP probe, however long a busy machine takes).
    const gaps = rec.attempts.slice(1).map((t, i) => t - rec.attempts[i]);
    assert.ok(gaps.length >= 2, `retries: ${gaps}`);
    const waits = JSON.stringify(rec.waits);
    assert.deepEqual(rec.waits.map((x) => x.attempt), rec.waits.map((_, n) => n), `one wait per retry, counted from the drop: ${waits}`);
    rec.waits.forEach(({ attempt: n, ms }) => assert.ok(ms >= 250 && ms <= Math.min(15_000, 500 * 2 ** n), `backoff wait ${n}: ${ms} ms (all: ${waits})`));
    gaps.forEach((g, i) => assert.ok(g >= rec.waits[i + 1].ms - 10, `attempts ${i} and ${i + 1} ${g} ms apart, less than the wait ${rec.waits[i + 1].ms} ms`));
    assert.deepEqual(rec.statuses.slice(0, 1), ["reconnecting"]);
    assert.equal(rec.statuses.at(-1), "live");
    assert.equal(rec.snapshots, 0, "resumed with last_seq: no snapshot, only the missed events");
    const expected = Array.from({ length: rec.seq - start.seq }, (_, i) => start.seq + 1 + i);
    assert.deepEqual(rec.seqs, expected, "every missed event once, in order");
    const tseq = await teacher.evaluate(() => window.dropple.client.state.seq);
    assert.ok(rec.seq >= tseq - 1, `learner at seq ${rec.seq}, teacher at ${tseq}`); // presence is not an event
    // The run on the server agrees: no gap between what she had and what she holds now.
    // The classroom's outbox forwards events to D1 on its own shortly after
    // they are live: wait until D1 holds what she holds, then compare.
    const runId = await teacher.evaluate(() => window.dropple.client.state.config.run_id);
    const ev = await runEventsThrough(api, runId, tokens.tom, rec.seq, { after: start.seq });
    assert.deepEqual(ev.json.events.map((e) => e.seq).filter((s) => s <= rec.seq), expected);
    assert.equal(await svgOf(lea), await svgOf(teacher), "the learner shows the teacher's frame");
    assert.equal(await lea.textContent("[data-testid=step]"), String(start.step + 2));
  }));

test("the teacher console works from the keyboard with a visible focus", { timeout: 60_000 }, () =>
  withScreenshots("keyboard", shots, async () => {
    const { teacher, lea } = pages;
    const step = Number(await canvasStep(teacher));
    await teacher.locator("body").press("ArrowLeft");
    await waitStep(lea, step - 1);
    await teacher.locator("body").press("ArrowRight");
    await waitStep(lea, step);
    // Tab to the Next button and press it with Enter; the focus ring shows.
    await teacher.locator("#prev").focus();
    await teacher.keyboard.press("Tab");
    assert.equal(await teacher.evaluate(() => document.activeElement.id), "next");
    const ring = await teacher.evaluate(() => {
      const cs = getComputedStyle(document.activeElement);
      return { style: cs.outlineStyle, width: parseFloat(cs.outlineWidth), visible: document.activeElement.matches(":focus-visible") };
    });
    assert.ok(ring.visible && ring.style !== "none" && ring.width >= 2, `focus ring ${JSON.stringify(ring)}`);
    await teacher.keyboard.press("Enter");
    await waitStep(lea, step + 1);
    await teacher.keyboard.press("ArrowLeft"); // arrows work with a button focused too
    await waitStep(lea, step);
    // Presses faster than the server's echo count from the step asked for last,
    // not from the last one confirmed: three quick presses go three steps.
    await teacher.keyboard.press("ArrowRight");
    await teacher.keyboard.press("ArrowRight");
    await teacher.keyboard.press("ArrowLeft");
    await teacher.keyboard.press("ArrowRight");
    await waitStep(lea, step + 2);
    await waitStep(teacher, step + 2);
    await teacher.keyboard.press("ArrowLeft");
    await teacher.keyboard.press("ArrowLeft");
    await waitStep(lea, step);
  }));

test("the replay view scrubs the session's run and a canvas run to an earlier seq and shows that canvas", { timeout: 90_000 }, () =>
  withScreenshots("replay", shots, async () => {
    assert.ok(session, "needs the live session");
    const href = await pages.teacher.getAttribute("#replay-link", "href");
    assert.match(href, /^\/replay\?run=/);
    const runId = new URL(href, w.base).searchParams.get("run");
    const ev = await api.call("GET", `/v1/runs/${runId}/events?after=0&limit=1000`, { token: tokens.tom });
    assert.equal(ev.status, 200, ev.text);
    const atTwo = ev.json.events.find((e) => e.type === "cursor.moved" && e.payload.step === 2);
    assert.ok(atTwo, "the run recorded the cursor at step 2");
    const frame2 = await api.call("GET", `/v1/lessons/${lesson.lesson_id}/versions/1/frames/2`, { token: tokens.tom });
    const ids = (p) => p.locator("[data-testid=canvas] .el[data-id]").evaluateAll((els) => els.map((e) => e.dataset.id).sort());

    const p = (pages.replay = await openPage(browser, w.base, { token: tokens.tom }));
    await p.goto(href);
    await p.locator("[data-testid=events] li").first().waitFor();
    // The page opens at the run's last event (D1 may hold more by now than our read above: the outbox drains on its own).
    const last = Number(await p.textContent("#last"));
    assert.ok(last >= ev.json.last_seq, `page shows ${last} events, the API had ${ev.json.last_seq}`);
    await p.waitForFunction((s) => document.querySelector("[data-testid=seq]")?.textContent === String(s), last);
    assert.equal(await p.locator("[data-testid=events] li").count(), last);
    // Scrub with the keyboard: Home, then right arrow up to the event.
    await p.locator("[data-testid=seq-scrubber]").focus();
    await p.keyboard.press("Home");
    for (let i = 0; i < atTwo.seq; i++) await p.keyboard.press("ArrowRight");
    await p.waitForFunction((s) => document.querySelector("[data-testid=canvas]")?.dataset.step === String(s), 2);
    assert.equal(await p.textContent("[data-testid=seq]"), String(atTwo.seq));
    assert.match(await p.textContent("#session-status"), /cursor 2/);
    assert.deepEqual(await ids(p), Object.keys(frame2.json.state.elements).sort());
    assert.equal(await p.locator("[data-testid=events] li[aria-current]").getAttribute("data-seq"), String(atTwo.seq));
    if (SHOTS) await screenshot(p, "replay-session");

    // A recorded canvas run: the server rebuilds the state at any seq.
    const run = await api.call("POST", "/v1/runs", { token: tokens.tom, body: { kind: "recording" } });
    assert.equal(run.status, 201, run.text);
    const add = (id, x) => ({ id: crypto.randomUUID(), type: "element.added", payload: { id, kind: "box", x, y: 80, text: id } });
    const app = await api.call("POST", `/v1/runs/${run.json.run_id}/events`, { token: tokens.tom, body: { events: [
      add("a", 60), add("b", 260), { id: crypto.randomUUID(), type: "element.removed", payload: { id: "a" } },
    ] } });
    assert.equal(app.status, 201, app.text);
    await p.goto(`/replay?run=${run.json.run_id}`);
    await p.waitForFunction(() => document.querySelector("[data-testid=canvas]")?.dataset.step === "3");
    assert.deepEqual(await ids(p), ["b"]);
    await p.getByRole("button", { name: "Previous event" }).click();
    await p.waitForFunction(() => document.querySelector("[data-testid=canvas]")?.dataset.step === "2");
    assert.deepEqual(await ids(p), ["a", "b"], "at seq 2 the removed box is back");
    await p.locator("[data-testid=events] li[data-seq='1'] button").click();
    await p.waitForFunction(() => document.querySelector("[data-testid=canvas]")?.dataset.step === "1");
    assert.deepEqual(await ids(p), ["a"]);
  }));

test("an author builds and publishes a lesson in the studio", { timeout: 90_000 }, () =>
  withScreenshots("author", shots, async () => {
    const p = (pages.author = await openPage(browser, w.base, { token: tokens.ada }));
    await p.goto("/author");
    await settled(p); // the sign-in badge can change the header's height: measure the canvas after it
    await p.fill("[data-testid=title]", "Plants need light");
    await p.fill("[data-testid=summary]", "Leaves turn light into sugar.");
    const canvas = p.locator("[data-testid=canvas] svg");
    await canvas.waitFor();
    const box = await canvas.boundingBox();
    const at = (fx, fy) => ({ x: box.x + box.width * fx, y: box.y + box.height * fy });

    await p.fill("[data-testid=element-text]", "Sun");
    await p.click("[data-testid=tool-dot]");
    let pt = at(0.2, 0.25);
    await p.mouse.click(pt.x, pt.y);
    await p.fill("[data-testid=element-text]", "Leaf");
    await p.click("[data-testid=tool-box]");
    pt = at(0.6, 0.6);
    await p.mouse.click(pt.x, pt.y);
    await p.fill("[data-testid=element-text]", "Photosynthesis");
    await p.click("[data-testid=tool-label]");
    pt = at(0.5, 0.9);
    await p.mouse.click(pt.x, pt.y);
    await p.click("[data-testid=tool-connect]");
    await p.locator('[data-id="dot1"] circle').click();
    await p.locator('[data-id="box1"] rect').first().click();
    // Drag the leaf with the select tool.
    await p.getByRole("button", { name: "Select / move" }).click();
    const leaf = await p.locator('[data-id="box1"] rect').first().boundingBox();
    await p.mouse.move(leaf.x + leaf.width / 2, leaf.y + leaf.height / 2);
    await p.mouse.down();
    await p.mouse.move(leaf.x + leaf.width / 2 + 40, leaf.y + leaf.height / 2 - 30, { steps: 5 });
    await p.mouse.up();
    // Remove the label again.
    await p.click("[data-testid=tool-remove]");
    await p.locator('[data-id="label1"] text').click();
    await p.fill("[data-testid=narration-input]", "The sun shines on the leaf.");
    await p.press("[data-testid=narration-input]", "Enter");
    await p.fill("[data-testid=chapter-input]", "Light");
    await p.press("[data-testid=chapter-input]", "Enter");
    await p.fill("[data-testid=quiz-prompt]", "What do leaves need?");
    await p.fill("[data-testid=quiz-choices]", "Light\nNoise\nWind");
    await p.fill("[data-testid=quiz-answer]", "1");
    await p.getByRole("button", { name: "Add question" }).click();

    const types = await p.locator("[data-testid=timeline] li").evaluateAll((lis) => lis.map((li) => li.dataset.type));
    assert.deepEqual(types, ["element.added", "element.added", "element.added", "edge.added", "element.moved", "element.removed", "narration", "chapter"]);
    await p.click("[data-testid=publish]");
    await p.waitForFunction(() => document.querySelector("[data-testid=publish-status]")?.dataset.lessonId);
    const status = p.locator("[data-testid=publish-status]");
    assert.match(await status.textContent(), /Published “Plants need light” version 1/);
    const lessonId = await status.getAttribute("data-lesson-id");
    if (SHOTS) await screenshot(p, "author-published");

    const artifact = await api.call("GET", `/v1/lessons/${lessonId}/versions/1`, { token: tokens.ada });
    assert.equal(artifact.status, 200, artifact.text);
    assert.equal(artifact.json.title, "Plants need light");
    assert.deepEqual(artifact.json.timeline.map((i) => i.type), types);
    assert.equal(artifact.json.quiz.length, 1);
    const last = await api.call("GET", `/v1/lessons/${lessonId}/versions/1/frames/8`, { token: tokens.lea });
    assert.deepEqual(Object.keys(last.json.state.elements).sort(), ["box1", "dot1"]);
    assert.ok(Object.keys(last.json.state.edges).length === 1);

    // A learner plays it self-paced and sees the final frame.
    const learner = (pages.selfpaced = await openPage(browser, w.base, { token: tokens.lea }));
    await learner.goto(`/learn?lesson=${lessonId}&version=1&step=8`);
    await waitStep(learner, 8);
    assert.equal(await learner.locator("[data-testid=canvas] [data-id]").evaluateAll((els) => els.filter((e) => e.classList.contains("el")).length), 2);
    if (SHOTS) await screenshot(learner, "selfpaced");
  }));

test("market: the author submits, a reviewer approves and a governor publishes from the queue, a learner writes a review", { timeout: 120_000 }, () =>
  withScreenshots("market", shots, async () => {
    const author = pages.author;
    assert.ok(author, "needs the published lesson from the studio test");
    await author.locator("#market-form").waitFor();
    await author.selectOption("#visibility", "public");
    await author.click("[data-testid=submit-market]");
    await author.locator("#market-status[data-kind=ok]").waitFor();
    // The message names no id (issue 21): the listing is reached through its link.
    const listingHref = await author.locator("#market-status a").getAttribute("href");
    const listingId = new URL(listingHref, w.base).searchParams.get("listing");
    assert.ok(listingId, await author.textContent("#market-status"));
    const title = "Plants need light";

    // The reviewer sees it in the queue and approves it.
    const rex = (pages.rex = await openPage(browser, w.base, { token: tokens.rex }));
    await rex.goto("/market");
    const rexItem = rex.locator(`[data-testid=queue] li[data-listing="${listingId}"]`);
    await rexItem.waitFor();
    assert.match(await rexItem.textContent(), /Plants need light.*submitted/is);
    assert.equal(await rexItem.locator("button[data-decision=publish]").count(), 0, "a reviewer cannot publish");
    await rexItem.getByLabel("Reason").fill("Clear and correct.");
    await rexItem.getByRole("button", { name: "approve" }).click();
    await rex.getByText(`“${title}” is now approved.`).waitFor();
    await rexItem.waitFor({ state: "detached" }); // nothing left for a reviewer to decide

    // The governor publishes it.
    const gil = (pages.gil = await openPage(browser, w.base, { token: tokens.gil }));
    await gil.goto("/market");
    const gilItem = gil.locator(`[data-testid=queue] li[data-listing="${listingId}"]`);
    await gilItem.getByRole("button", { name: "publish" }).click();
    await gil.getByText(`“${title}” is now published.`).waitFor();
    await gil.locator(`[data-testid=listings] [data-listing="${listingId}"]`).waitFor(); // the browse list refreshed at once

    // A learner finds it, opens it and reviews it.
    const lea = (pages.marketLea = await openPage(browser, w.base, { token: tokens.lea }));
    await lea.goto("/market");
    assert.equal(await lea.locator("#queue").isHidden(), true, "no decision queue for learners");
    await lea.fill("#q", "plants");
    await lea.getByRole("button", { name: "Search" }).click();
    await searched(lea); // not the list the page opened with
    const card = lea.locator(`[data-testid=listings] [data-listing="${listingId}"]`);
    await card.waitFor();
    assert.equal(await lea.locator("[data-testid=listings] [data-listing]").count(), 1, "the search narrows to the listing");
    await card.getByRole("link", { name: title }).click();
    await lea.waitForURL(/listing=/);
    await lea.locator("[data-testid=review-form]").waitFor();
    assert.equal(await lea.textContent("[data-testid=rating-count]"), "0");
    await lea.getByLabel("4", { exact: true }).check();
    await lea.getByLabel("Review", { exact: true }).fill("Short and clear; the drawing helps.");
    await lea.getByRole("button", { name: "Post review" }).click();
    await lea.locator("#review-status[data-kind=ok]").waitFor();
    await lea.locator("[data-testid=reviews] li[data-review=lea]", { hasText: "Short and clear; the drawing helps." }).waitFor();
    await lea.waitForFunction(() => document.querySelector("[data-testid=rating-count]")?.textContent === "1");
    assert.match(await lea.textContent("[data-testid=rating]"), /4\.0/);
    // One review per learner: the form gives way to a thank-you, and the API refuses a second.
    await lea.locator("[data-testid=review-form]").waitFor({ state: "hidden" });
    assert.match(await lea.textContent("[data-testid=review-status]"), /Thank you/);
    const again = await api.call("POST", `/v1/marketplace/listings/${listingId}/reviews`, { token: tokens.lea, body: { rating: 1, text: "Again!" } });
    assert.equal(again.status, 409);
    const detail = await api.call("GET", `/v1/marketplace/listings/${listingId}`);
    assert.equal(detail.json.rating_count, 1);
    assert.equal(detail.json.status, "published");
    if (SHOTS) await screenshot(lea, "market-reviewed");
  }));

test("market reads as a product: human decision buttons, who decided, the queue on top, completers' reviews first and marked, the form gives way to a thank-you, cards agree with the detail", { timeout: 120_000 }, () =>
  withScreenshots("market-product", shots, async () => {
    const title = "Shadows and light";
    const made = await api.call("POST", "/v1/lessons", { token: tokens.ada, body: { ...DEMO_LESSON, title } });
    assert.equal(made.status, 201, made.text);
    const sub = await api.call("POST", "/v1/marketplace/listings", { token: tokens.ada, body: { lesson_id: made.json.lesson_id, version: 1, visibility: "public" } });
    assert.equal(sub.status, 201, sub.text);
    const id = sub.json.listing_id;

    // The reviewer's queue is the first thing on the page, above the fold, with words for buttons.
    const rex = (pages.rexQueue = await openPage(browser, w.base, { token: tokens.rex, viewport: { width: 1280, height: 800 } }));
    await rex.goto("/market");
    const item = rex.locator(`[data-testid=queue] li[data-listing="${id}"]`);
    await item.waitFor();
    await settled(rex); // the header (its sign-in badge) is drawn: the positions below are final
    const place = await rex.evaluate(() => ({
      queue: document.querySelector("#queue").getBoundingClientRect().top,
      item: document.querySelector("[data-testid=queue] li").getBoundingClientRect().bottom,
      browse: document.querySelector("#browse").getBoundingClientRect().top,
      fold: innerHeight,
    }));
    assert.ok(place.queue < place.browse, `the queue comes before browsing: ${JSON.stringify(place)}`);
    assert.ok(place.item <= place.fold, `the first queued listing is above the fold: ${JSON.stringify(place)}`);
    const labels = await item.locator("button[data-decision]").allTextContents();
    assert.deepEqual(labels.sort(), ["Approve", "Reject", "Start review"]);
    assert.match(await item.textContent(), /author ada/);
    if (SHOTS) await screenshot(rex, "market-queue-1280");
    await item.getByLabel("Reason").fill("Accurate and well paced.");
    await item.getByRole("button", { name: "Approve" }).click();
    await rex.getByText(`“${title}” is now approved.`).waitFor();

    // The governor sees who approved it (the reviewer, not the author) and publishes.
    const gil = (pages.gilQueue = await openPage(browser, w.base, { token: tokens.gil }));
    await gil.goto("/market");
    const gItem = gil.locator(`[data-testid=queue] li[data-listing="${id}"]`);
    await gItem.waitFor();
    assert.equal(await gItem.locator("[data-testid=decided-by]").textContent(), "Approved by rex");
    assert.doesNotMatch(await gItem.textContent(), /approved by ada/i);
    for (const b of await gil.locator("[data-testid=queue] button[data-decision]").allTextContents()) {
      assert.match(b, /^(Approve|Reject|Start review|Publish|Suspend|Reinstate|Resubmit)$/, `a human label: ${b}`);
    }
    if (SHOTS) {
      await screenshot(gil, "market-governor-1280");
      await gil.setViewportSize({ width: 375, height: 740 });
      await screenshot(gil, "market-governor-375");
      await gil.setViewportSize({ width: 1200, height: 860 });
    }
    await gItem.getByRole("button", { name: "Publish" }).click();
    await gil.getByText(`“${title}” is now published.`).waitFor();

    // leo finishes the lesson and reviews in the browser; lea reviews later without taking it.
    const attempt = await api.call("POST", "/v1/attempts", { token: tokens.leo, body: { lesson_id: made.json.lesson_id, version: 1 } });
    assert.equal(attempt.status, 201, attempt.text);
    assert.equal((await api.call("POST", `/v1/attempts/${attempt.json.attempt_id}/submit`, { token: tokens.leo })).status, 200);
    const leo = (pages.leoReview = await openPage(browser, w.base, { token: tokens.leo }));
    await leo.goto(`/market?listing=${encodeURIComponent(id)}`);
    await leo.locator("[data-testid=review-form]").waitFor();
    await leo.getByLabel("5", { exact: true }).check();
    await leo.getByLabel("Review", { exact: true }).fill("I finished it: the shadow demo made it click.");
    await leo.getByRole("button", { name: "Post review" }).click();
    await leo.locator("[data-testid=review-form]").waitFor({ state: "hidden" });
    assert.match(await leo.textContent("[data-testid=review-status]"), /Thank you/);
    const late = await api.call("POST", `/v1/marketplace/listings/${id}/reviews`, { token: tokens.lea, body: { rating: 4, text: "Looks good from the outline." } });
    assert.equal(late.status, 201, late.text);
    assert.equal(late.json.completed, false);

    await leo.reload();
    await leo.locator("[data-testid=reviews] li[data-review=lea]").waitFor();
    assert.equal(await leo.locator("[data-testid=review-form]").isHidden(), true, "no second form after reviewing");
    assert.match(await leo.textContent("[data-testid=review-status]"), /You have reviewed this lesson/);
    const order = await leo.locator("[data-testid=reviews] li").evaluateAll((lis) => lis.map((li) => [li.dataset.review, li.dataset.completed]));
    assert.deepEqual(order, [["leo", "true"], ["lea", "false"]], "the completer first, though the other review is newer");
    assert.match(await leo.locator("[data-testid=reviews] li[data-review=leo]").textContent(), /completed the lesson/);
    assert.doesNotMatch(await leo.locator("[data-testid=reviews] li[data-review=lea]").textContent(), /✔ completed/);
    assert.equal(await leo.textContent("[data-testid=rating-count]"), "2");
    assert.equal(await leo.textContent("[data-testid=completed-count]"), "1");
    assert.match(await leo.textContent("[data-testid=rating]"), /4\.5/);
    if (SHOTS) await screenshot(leo, "market-detail-1280");
    const detailAuthor = await leo.textContent("[data-testid=author-verified]");
    assert.match(detailAuthor, /✔ verified/);

    // The card agrees: the same count and mean, never "no ratings" beside a count, never "unverified" against the detail.
    await leo.goto("/market");
    await leo.locator(`[data-testid=listings] [data-listing="${id}"]`).waitFor();
    const mismatched = await leo.evaluate(() => [...document.querySelectorAll("[data-testid=listings] [data-listing]")]
      .map((c) => [c.querySelector("[data-testid=rating-count]")?.textContent, c.querySelector("[data-testid=rating]")?.textContent])
      .filter(([n, r]) => (r === "no ratings") !== (n === "0")));
    assert.deepEqual(mismatched, [], '"no ratings" exactly when there are none');
    await leo.fill("#q", "shadows");
    await leo.getByRole("button", { name: "Search" }).click();
    await searched(leo); // the search hit, not the card the page opened with
    const card = leo.locator(`[data-testid=listings] [data-listing="${id}"]`);
    await card.waitFor();
    assert.equal(await card.locator("[data-testid=rating-count]").textContent(), "2");
    assert.match(await card.locator("[data-testid=rating]").textContent(), /4\.5/);
    assert.doesNotMatch(await card.textContent(), /unverified/);
    if (SHOTS) {
      await screenshot(leo, "market-browse-1280");
      await leo.goto(`/market?listing=${encodeURIComponent(id)}`);
      await leo.setViewportSize({ width: 375, height: 740 });
      await leo.locator("[data-testid=reviews] li[data-review=lea]").waitFor();
      await screenshot(leo, "market-detail-375");
    }
    for (const k of ["rexQueue", "gilQueue", "leoReview"]) {
      await pages[k].context().close();
      delete pages[k];
    }
  }));

test("home and phone: card actions are buttons, the menu is one row at 375px, canvas text is at least 12px on a phone", { timeout: 60_000 }, () =>
  withScreenshots("home-phone", shots, async () => {
    const check = async (page) => page.evaluate(() => {
      const nav = document.querySelector(".main-nav");
      const links = [...nav.querySelectorAll("a")].filter((a) => a.getBoundingClientRect().width > 0);
      const tops = links.map((a) => Math.round(a.getBoundingClientRect().top));
      const input = getComputedStyle(document.querySelector("#join-code"));
      const actions = [...document.querySelectorAll(".card > a.button")].map((a) => {
        const cs = getComputedStyle(a);
        return { text: a.textContent, bg: cs.backgroundColor, weight: Number(cs.fontWeight), border: cs.borderColor };
      });
      return {
        rows: new Set(tops).size,
        overflow: nav.scrollWidth - nav.clientWidth,
        links: links.length,
        header: document.querySelector("#app-header").getBoundingClientRect().height,
        inputBg: input.backgroundColor,
        inputBorder: input.borderColor,
        actions,
      };
    });
    for (const width of [1280, 375]) {
      const p = (pages.home = await openPage(browser, w.base, { token: tokens.zed, viewport: { width, height: width > 400 ? 860 : 740 } }));
      await p.goto("/");
      await p.locator(".main-nav a[href='/market']").waitFor();
      await settled(p); // the header with its sign-in badge, as measured below
      const r = await check(p);
      assert.equal(r.rows, 1, `${width}px: the menu is one row: ${JSON.stringify(r)}`);
      assert.ok(r.overflow <= 1, `${width}px: every menu item is on screen: ${r.overflow}px hidden`);
      assert.ok(r.links >= 6, `${width}px: the menu shows every page for this user: ${r.links}`);
      if (width === 375) assert.ok(r.header <= 100, `375px: the header takes at most two rows: ${r.header}px`);
      assert.ok(r.actions.length >= 4);
      for (const a of r.actions) {
        assert.notEqual(a.bg, r.inputBg, `"${a.text}" is filled like a button, not like a text box`);
        assert.ok(a.weight >= 600, `"${a.text}" reads as an action`);
      }
      if (width === 375) {
        // The stylesheet keeps canvas text readable when the 640-unit canvas shrinks to a phone.
        const sizes = await p.evaluate(() => {
          const NS = "http://www.w3.org/2000/svg";
          const fig = document.createElement("figure");
          fig.className = "canvas panel";
          const svg = document.createElementNS(NS, "svg");
          svg.setAttribute("viewBox", "0 0 640 400");
          svg.setAttribute("class", "canvas-svg");
          for (const cls of ["el-text", "el-text label", "el-text muted", "annotation-text"]) {
            const t = document.createElementNS(NS, "text");
            t.setAttribute("class", cls);
            t.setAttribute("x", "20");
            t.setAttribute("y", "60");
            t.textContent = "Leaf";
            svg.append(t);
          }
          fig.append(svg);
          document.querySelector("main").append(fig);
          const out = [...svg.querySelectorAll("text")].map((t) => ({ cls: t.getAttribute("class"), px: parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a }));
          fig.remove();
          return out;
        });
        for (const s of sizes) assert.ok(s.px >= 12, `canvas ${s.cls} renders at ${s.px.toFixed(1)}px on a phone`);
      }
      if (SHOTS) {
        await screenshot(p, `home-${width}`);
        await p.goto("/market");
        await p.locator("[data-testid=listings] [data-listing]").first().waitFor();
        await screenshot(p, `market-${width}`);
      }
      await p.context().close();
    }
  }));

test("self-paced: a learner scrubs the timeline, takes the quiz and gets a certificate that verifies", { timeout: 120_000 }, () =>
  withScreenshots("self-paced", shots, async () => {
    const p = (pages.selfLeo = await openPage(browser, w.base, { token: tokens.leo }));
    await p.goto(`/learn?lesson=${lesson.lesson_id}&version=1`);
    await waitStep(p, 1); // opens on the first step, not the empty canvas
    assert.equal(await p.textContent("#self-steps"), String(DEMO_LESSON.timeline.length));
    const scrub = p.getByLabel(/Timeline: step/);
    await scrub.focus();
    await p.keyboard.press("End");
    await waitStep(p, DEMO_LESSON.timeline.length);
    await p.keyboard.press("Home");
    await waitStep(p, 0);
    for (let i = 0; i < 3; i++) await p.keyboard.press("ArrowRight");
    await waitStep(p, 3);
    assert.equal(await p.textContent("[data-testid=narration]"), "Every fraction has a place on this line.");
    await p.getByRole("button", { name: "Next step" }).click();
    await waitStep(p, 4);
    await p.getByRole("button", { name: "Previous step" }).click();
    await waitStep(p, 3);
    // The questions open as the lesson reaches them: all of them at its end.
    await scrub.focus();
    await p.keyboard.press("End");
    await waitStep(p, DEMO_LESSON.timeline.length);

    const form = p.locator("[data-testid=quiz-form]");
    await form.locator("fieldset[data-quiz=q1]").getByLabel("In the middle").check();
    await form.locator("fieldset[data-quiz=q2]").getByLabel("1/4").check();
    await p.click("[data-testid=submit-quiz]");
    await p.waitForFunction(() => document.querySelector("#quiz-status")?.dataset.passed !== undefined, null, { timeout: 20_000 });
    assert.equal(await p.getAttribute("#quiz-status", "data-passed"), "true", await p.textContent("#quiz-status"));
    assert.match(await p.textContent("#quiz-status"), /Score 100% — passed/);
    const cert = p.locator("[data-testid=certificate]");
    await cert.waitFor();
    const certId = await cert.getAttribute("data-certificate-id");
    assert.ok(certId);
    await p.click("[data-testid=certificate-link]");
    await p.waitForURL(/\/verify\?id=/);
    await p.waitForFunction(() => document.querySelector("[data-testid=verdict]")?.dataset.valid !== undefined, null, { timeout: 20_000 });
    assert.equal(await p.getAttribute("[data-testid=verdict]", "data-valid"), "true");
    const list = await api.call("GET", `/v1/certificates?learner_id=leo`, { token: tokens.leo });
    assert.equal(list.status, 200, list.text);
    assert.ok(JSON.stringify(list.json).includes(certId), "the certificate is indexed for the learner");
    if (SHOTS) await screenshot(p, "selfpaced-certificate");
  }));

test("the verify page shows valid for a real certificate and invalid for a tampered one", { timeout: 90_000 }, () =>
  withScreenshots("verify", shots, async () => {
    const probe = await api.call("POST", "/v1/attempts", { token: tokens.lea, body: { lesson_id: lesson.lesson_id, version: 1 } });
    assert.equal(probe.status, 201, probe.text);
    const attempt = probe.json.attempt_id;
    for (const q of DEMO_LESSON.quiz) {
      const r = await api.call("POST", `/v1/attempts/${attempt}/answers`, { token: tokens.lea, body: { question_id: q.id, answer: q.answer } });
      assert.ok(r.status < 300, r.text);
    }
    const sub = await api.call("POST", `/v1/attempts/${attempt}/submit`, { token: tokens.lea, body: {} });
    assert.equal(sub.status, 200, sub.text);
    assert.equal(sub.json.passed, true);
    const certId = sub.json.certificate_id;
    assert.ok(certId);

    const p = (pages.verify = await openPage(browser, w.base, { token: tokens.lea }));
    await p.goto(`/verify?id=${encodeURIComponent(certId)}`);
    await p.waitForFunction(() => document.querySelector("[data-testid=verdict]")?.dataset.valid !== undefined, null, { timeout: 20_000 });
    assert.equal(await p.getAttribute("[data-testid=verdict]", "data-valid"), "true", await p.textContent("#browser-checks"));
    assert.equal(await p.getAttribute("[data-testid=browser-verdict]", "data-valid"), "true");
    assert.equal(await p.locator("[data-testid=browser-checks] li[data-check=proof][data-ok=true]").count(), 1);
    if (SHOTS) await screenshot(p, "verify-valid");

    // Tamper: change who earned it.
    const doc = JSON.parse(await p.inputValue("[data-testid=credential]"));
    doc.credentialSubject = { ...doc.credentialSubject, id: `${doc.credentialSubject?.id ?? "urn:x"}-forged` };
    await p.fill("[data-testid=credential]", JSON.stringify(doc, null, 2));
    await p.click("[data-testid=verify]");
    await p.waitForFunction(() => document.querySelector("[data-testid=verdict]")?.dataset.valid === "false", null, { timeout: 20_000 });
    assert.equal(await p.getAttribute("[data-testid=browser-verdict]", "data-valid"), "false");
    assert.equal(await p.locator("[data-testid=browser-checks] li[data-check=proof][data-ok=false]").count(), 1);
    if (SHOTS) await screenshot(p, "verify-tampered");
  }));

test("every page loads its stamped modules and stylesheet without script errors", { timeout: 60_000 }, () =>
  withScreenshots("pages", shots, async () => {
    const { stamps } = assetPlan();
    const p = (pages.tour = await openPage(browser, w.base, { token: tokens.tom }));
    const loaded = [];
    p.on("response", (r) => {
      const u = new URL(r.url());
      if (/^\/(js|css)\//.test(u.pathname)) loaded.push({ path: u.pathname, v: u.searchParams.get("v"), status: r.status(), page: new URL(p.url()).pathname });
    });
    for (const path of PAGES) {
      await p.goto(path);
      await settled(p, pageContent(path, USERS.tom)); // drawn from its fetches too: their script errors count
      assert.ok(await p.locator("#app-header nav").count(), `${path} has the header`);
      if (SHOTS) await screenshot(p, `page${path.replace("/", "-") || "-home"}`);
    }
    const problems = p.problems.filter((m) => !/Failed to load resource/.test(m));
    assert.deepEqual(problems, []);
    assert.ok(loaded.length >= PAGES.length * 3, `${loaded.length} module/stylesheet loads seen`);
    for (const l of loaded) {
      assert.equal(l.v, stamps[l.path.slice(1)], `${l.page} loaded ${l.path} with the current stamp`);
      assert.ok(l.status === 200 || l.status === 304, `${l.path}: ${l.status}`);
    }
    for (const page of ["/teach", "/learn", "/replay"]) {
      const mods = new Set(loaded.filter((l) => l.page === page).map((l) => l.path));
      for (const m of ["/js/api.js", "/js/ui.js", "/js/auth.js", "/js/canvas.js", "/js/classroom-client.js", "/css/app.css"]) assert.ok(mods.has(m), `${page} loaded ${m} (imports carry stamps too)`);
    }
  }));

test("the development sign-in picker mints a token for a demo user, and is hidden where dev tokens do not exist", { timeout: 60_000 }, () =>
  withScreenshots("dev-signin", shots, async () => {
    const p = (pages.signin = await openPage(browser, w.base));
    await p.goto("/market");
    assert.equal((await p.textContent("[data-testid=whoami]")).trim(), "Sign in");
    await p.locator("[data-testid=whoami]").click();
    const form = p.locator("[data-testid=dev-signin]");
    await form.waitFor();
    assert.equal(await form.getByRole("group", { name: "Demo users" }).getByRole("button").count(), 5);
    await form.getByRole("button", { name: "Gil (governor)" }).click();
    assert.equal(await p.inputValue("#si-user"), "gil");
    assert.deepEqual(await form.locator("input[name=role]:checked").evaluateAll((b) => b.map((x) => x.value)), ["governor"]);
    await form.getByLabel("Org").fill(ORG);
    await form.getByRole("button", { name: "Get token" }).click();
    await p.waitForFunction(() => document.querySelector("[data-testid=whoami]")?.textContent === "gil · webtest · governor");
    await p.locator("#queue").waitFor(); // the page follows the new identity: a governor sees the queue
    await p.locator("[data-testid=whoami]").click();
    await p.click("[data-testid=signout]");
    await p.waitForFunction(() => document.querySelector("[data-testid=whoami]")?.textContent === "Sign in");
    assert.equal(await p.locator("#queue").isHidden(), true);

    // Outside development POST /v1/dev/tokens answers 404: no picker, only "paste a token".
    const prod = (pages.signinProd = await openPage(browser, w.base));
    await prod.route("**/v1/dev/tokens", (r) => r.fulfill({ status: 404, contentType: "application/json", body: JSON.stringify({ error: { code: "not_found", message: "no such route" } }) }));
    await prod.goto("/");
    await prod.locator("[data-testid=whoami]").click();
    await prod.getByLabel("Or paste a token").waitFor();
    assert.equal(await prod.locator("[data-testid=dev-signin]").count(), 0);
  }));

// ---------------------------------------------------------------- accessibility

/** Tab through the page; every element that takes focus shows a focus ring. */
async function tabRing(p, presses = 12) {
  const out = [];
  await p.locator("body").focus().catch(() => {});
  for (let i = 0; i < presses; i++) {
    await p.keyboard.press("Tab");
    out.push(await p.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null;
      const cs = getComputedStyle(el);
      const ok = el.matches(":focus-visible") && cs.outlineStyle !== "none" && parseFloat(cs.outlineWidth) >= 2;
      return ok ? null : `${el.tagName.toLowerCase()}#${el.id || ""}.${el.className || ""} outline ${cs.outlineStyle} ${cs.outlineWidth}`;
    }));
  }
  return out.filter(Boolean);
}

test("accessibility: labelled controls, AA text contrast and a visible focus ring on every page, the live console and player", { timeout: 120_000 }, () =>
  withScreenshots("a11y", shots, async () => {
    const p = (pages.a11y = await openPage(browser, w.base, { token: tokens.zed }));
    const report = {};
    for (const path of PAGES) {
      await p.goto(path);
      await settled(p, pageContent(path, USERS.zed)); // audit what the page fetched and drew, not its first paint
      const { problems, checked } = await p.evaluate(auditPage);
      assert.ok(checked > 5, `${path}: ${checked} text elements checked`);
      report[path] = [...problems, ...(await tabRing(p)).map((x) => `no focus ring: ${x}`)];
    }
    for (const [name, page] of [["teacher console", pages.teacher], ["live learner", pages.lea]]) {
      report[name] = (await page.evaluate(auditPage)).problems;
    }
    for (const [k, v] of Object.entries(report)) if (!v.length) delete report[k];
    assert.deepEqual(report, {});
    // The audit itself catches what it looks for: an unlabelled input and pale text.
    await p.evaluate(() => {
      const m = document.querySelector("main");
      m.insertAdjacentHTML("beforeend", '<input id="canary-input"><p id="canary-text" style="color:#cbd5e1">pale</p>');
    });
    const canary = (await p.evaluate(auditPage)).problems.join("\n");
    assert.match(canary, /no accessible name: <input id="canary-input">/);
    assert.match(canary, /contrast 1\.\d+ < 4\.5: "pale"/);
  }));

test("responsive: at a 375px phone width nothing overflows and the main controls are on screen", { timeout: 120_000 }, () =>
  withScreenshots("phone", shots, async () => {
    const W = 375;
    const fits = async (page, label, selectors) => {
      const r = await page.evaluate(({ sels, W }) => {
        const bad = [];
        const doc = document.documentElement;
        if (doc.scrollWidth > W + 1) bad.push(`page scrolls sideways: ${doc.scrollWidth}px`);
        for (const s of sels) {
          const el = document.querySelector(s);
          if (!el) { bad.push(`${s} missing`); continue; }
          const b = el.getBoundingClientRect();
          if (b.width === 0 || b.height === 0) bad.push(`${s} not visible`);
          else if (b.left < -1 || b.right > W + 1) bad.push(`${s} off screen: ${Math.round(b.left)}..${Math.round(b.right)}`);
        }
        return bad;
      }, { sels: selectors, W });
      assert.deepEqual(r, [], label);
    };
    const p = (pages.phone = await openPage(browser, w.base, { token: tokens.zed, viewport: { width: W, height: 740 } }));
    const controls = {
      "/": ["#join-code", "#join-form button", "[data-testid=whoami]", ".main-nav"],
      "/teach": ["[data-testid=lesson-select]", "[data-testid=version-select]", "[data-testid=open-session]"],
      "/learn": ["#code", "#join-form button", "#lesson-list"],
      "/author": ["[data-testid=canvas] svg", "[data-testid=tool-box]", "[data-testid=publish]", "[data-testid=title]"],
      "/market": ["#q", "#search button[type=submit]", "[data-testid=listings]", "#queue-list"],
      "/verify": ["[data-testid=credential]", "[data-testid=verify]", "[data-testid=cert-id]"],
      "/replay": ["[data-testid=run-id]", "#load-form button"],
      [`/learn?lesson=${lesson.lesson_id}&version=1`]: ["[data-testid=canvas] svg", "[data-testid=scrubber]", "#s-next", "[data-testid=submit-quiz]"],
    };
    for (const [path, sels] of Object.entries(controls)) {
      await p.goto(path);
      await settled(p, pageContent(path, USERS.zed)); // widths with the fetched content (a select is as wide as its options)
      // Some controls are drawn or filled after a fetch (the sign-in badge asks
      // whether development sign-in exists, the lesson list is empty until its
      // fetch returns): wait until each has a box, `fits` names any that never does.
      await Promise.all(sels.map((s) => p.waitForSelector(s, { state: "visible", timeout: 15_000 }).catch(() => {})));
      await fits(p, path, sels);
      if (SHOTS) await screenshot(p, `phone${path.replace(/[^a-z]+/g, "-")}`);
    }
    // The live teacher console and learner player, narrowed to a phone.
    for (const [name, page, sels] of [
      ["teacher console", pages.teacher, ["[data-testid=next]", "[data-testid=prev]", "[data-testid=pause]", "[data-testid=end]", "[data-testid=join-code]", "[data-testid=canvas] svg", "[data-testid=conn-state]"]],
      ["live learner", pages.lea, ["[data-testid=canvas] svg", "[data-testid=conn-state]", "#ask-text", "#ask-form button"]],
    ]) {
      const before = page.viewportSize();
      await page.setViewportSize({ width: W, height: 740 });
      try {
        await page.waitForFunction((w) => innerWidth === w, W); // the page has its phone width (the layout follows on read)
        await fits(page, name, sels);
        if (SHOTS) await screenshot(page, `phone-${name.replace(/ /g, "-")}`);
      } finally {
        await page.setViewportSize(before);
      }
    }
  }));

// ---------------------------------------------------------------- caching

test("static assets: stamped names (modules, stylesheet, the browser core) are cached for a year, pages and the service worker are revalidated", { timeout: 60_000 }, async () => {
  const { stamps } = assetPlan();
  const get = (path, headers = {}) => fetch(w.base + path, { headers, redirect: "manual", signal: AbortSignal.timeout(10_000) });
  for (const path of [...PAGES, "/sw.js", "/manifest.webmanifest"]) {
    const r = await get(path);
    assert.equal(r.status, 200, path);
    assert.equal(r.headers.get("cache-control"), "no-cache", path);
    const body = await r.text();
    const etag = r.headers.get("etag");
    assert.ok(etag, `${path} has an ETag to revalidate against`);
    assert.equal((await get(path, { "if-none-match": etag })).status, 304, `${path} revalidates to 304`);
    if (path.startsWith("/") && !path.includes(".")) {
      const refs = [...body.matchAll(/(?:src|href)="(\/(?:js|css)\/[^"]+)"/g)].map((m) => m[1]);
      assert.equal(refs.length, 2, `${path} references one module and one stylesheet`);
      for (const ref of refs) assert.equal(ref.split("?v=")[1], stamps[ref.slice(1).split("?")[0]], `${path} → ${ref}`);
    }
  }
  for (const [key, v] of Object.entries(stamps)) {
    const r = await get(`/${key}?v=${v}`);
    assert.equal(r.status, 200, key);
    assert.equal(r.headers.get("cache-control"), "public, max-age=31536000, immutable", key);
    assert.match(r.headers.get("content-type"), key.endsWith(".css") ? /^text\/css/ : /javascript/, key);
    await r.arrayBuffer();
  }
  // The browser build of the core: stamped with its sources' hash, cached the same way.
  const { core } = assetPlan();
  for (const [file, type] of [["dropple_core.js", /javascript/], ["dropple_core_bg.wasm", /^application\/wasm/]]) {
    const r = await get(`/core/${file}?v=${core}`);
    assert.equal(r.status, 200, file);
    assert.equal(r.headers.get("cache-control"), "public, max-age=31536000, immutable", file);
    assert.match(r.headers.get("content-type"), type, file);
    await r.arrayBuffer();
  }
  const headersFile = await get("/_headers");
  assert.notEqual(headersFile.status, 200, "the _headers file itself is not served");
  await headersFile.arrayBuffer();
});
